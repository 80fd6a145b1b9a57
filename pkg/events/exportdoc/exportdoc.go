// Package exportdoc is the scenario export record, the one definition that
// the API (which stores the request and serves the result) and
// services/scenario-export (which claims it, builds the zip and marks it
// ready or failed) share: the document, its statuses and its collection.
// See docs/scenario-export.md. It imports events only.
package exportdoc

import (
	"slices"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// Collection is where exports are stored, through the outbox.
const Collection = "scenario_exports"

// Export statuses: the API writes pending, the export service building,
// ready and failed (and pending again when it gives a claim up).
const (
	StatusPending  = "pending"
	StatusBuilding = "building"
	StatusReady    = "ready"
	StatusFailed   = "failed"
)

// Request says what a scenario export holds.
type ExportRequest struct {
	Samples []string `json:"samples,omitempty" bson:"samples,omitempty" maxItems:"10000" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"every concrete scenario file of these samples; empty or absent: no scenario file"`
	Include []string `json:"include,omitempty" bson:"include,omitempty" maxItems:"2" enum:"scenario,asset" doc:"the kinds of document to include; empty or absent: both"`
	// FilterByAssetDeclaration picks assets by declaration.
	FilterByAssetDeclaration []string `json:"filter_by_asset_declaration,omitempty" bson:"filter_by_asset_declaration,omitempty" maxItems:"1000" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"the assets of these declarations; empty or absent: all common asset data (assets without declaration)"`
}

// Includes reports whether the request includes documents of kind: include
// empty or absent means both kinds.
func (r ExportRequest) Includes(kind string) bool {
	return len(r.Include) == 0 || slices.Contains(r.Include, kind)
}

// ScenarioExport is a document of the exports collection and (without its json:"-"
// fields) the resource the API returns and events carry: a zip of chosen
// artifacts of a job.
type ScenarioExport struct {
	events.Meta `bson:",inline"`
	JobID       string        `json:"job_id" bson:"job_id" readOnly:"true"`
	QueueID     string        `json:"queue_id,omitempty" bson:"queue_id,omitempty" readOnly:"true" doc:"the job's queue"`
	Status      string        `json:"status" bson:"status" enum:"pending,building,ready,failed" readOnly:"true"`
	Request     ExportRequest `json:"request" bson:"request"`
	Size        int64         `json:"size" bson:"size" readOnly:"true" doc:"bytes of the zip, once ready"`
	FileCount   int           `json:"file_count" bson:"file_count" readOnly:"true" doc:"files in the zip besides manifest.json, once ready"`
	SHA256      string        `json:"sha256,omitempty" bson:"sha256,omitempty" readOnly:"true" doc:"of the zip, once ready; also its ETag"`
	Reason      string        `json:"reason,omitempty" bson:"reason,omitempty" readOnly:"true" doc:"why it failed"`
	Warnings    []string      `json:"warnings,omitempty" bson:"warnings,omitempty" readOnly:"true" doc:"once ready: paths in the zip that differ only in case or in the Unicode form of a letter (é as one character or as e and an accent), of which one replaces the other when the zip is unpacked on a file system that ignores case (macOS, Windows) or that form (macOS); then paths Windows cannot unpack as they are (a device name such as aux.xosc, a name ending in a dot or a space, one of < > : \" | ? *); at most 20"`
	ExpiresAt   time.Time     `json:"expires_at" bson:"expires_at" readOnly:"true" doc:"when the export and its zip are deleted"`
	ReadyAt     *time.Time    `json:"ready_at,omitempty" bson:"ready_at,omitempty" readOnly:"true"`

	// Kept by the export service, not shown.
	ZipFileID string `json:"-" bson:"zip_file_id,omitempty"`
	Claim     *Claim `json:"-" bson:"claim,omitempty"`
	Attempts  int    `json:"-" bson:"attempts,omitempty"`
}

// Claim says which builder works on an export, until when. A builder renews
// it while it works; once Until has passed, another builder may take it.
type Claim struct {
	Owner string    `bson:"owner"`
	Until time.Time `bson:"until"`
}
