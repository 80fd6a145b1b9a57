// Package ledger is the stored form of the scheduler's lease ledger, shared
// by its one writer (the scheduler) and its readers (the API's queue usage
// and web view, the launcher's replicas). docs/scheduling.md describes the
// ledger; this package only says how it is kept in its document.
//
// The document is {_id: "ledger", epoch, version, held: "<leases>"}: all the
// leases in one string, a line per holder, sorted:
//
//	<holder> <queue id>=<count> <queue id>=<count>…
//
// (or, if an id holds a space, "=" or a line break, which the ids the
// services make never do, the JSON of {holder: [{q, n}]}). The leases were
// kept before 2026-12-01 as a map of holders to arrays of documents (field
// "leases"); the embedded store (FerretDB v1) decodes each nested value on
// every read and write of the document, so that one admission pass's write
// cost about 0.18 ms per live lease (107 ms with 600 running jobs). One
// string is one value. Documents in the earlier form are still read, and
// the scheduler's next write replaces it.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Collection and document of the ledger.
const (
	Collection = "leases"
	ID         = "ledger"
)

// Claim is a number of instances held on a queue (by id).
type Claim struct {
	Queue string `json:"q" bson:"queue"`
	Count int    `json:"n" bson:"count"`
}

// Doc is the ledger document as stored. Read its leases with Leases.
type Doc struct {
	ID      string `bson:"_id"`
	Epoch   int64  `bson:"epoch"`
	Version int64  `bson:"version"`
	// Held is Encode of the leases.
	Held string `bson:"held,omitempty"`
	// Legacy is the form before 2026-12-01, read when there is no Held.
	Legacy map[string][]Claim `bson:"leases,omitempty"`
}

// Leases returns the leases of d by holder, never nil.
func (d Doc) Leases() (map[string][]Claim, error) {
	if d.Held == "" {
		if d.Legacy == nil {
			return map[string][]Claim{}, nil
		}
		return d.Legacy, nil
	}
	leases, err := Decode(d.Held)
	if err != nil {
		return nil, fmt.Errorf("ledger version %d: %w", d.Version, err)
	}
	return leases, nil
}

// Encode is the stored form of leases (Doc.Held); never empty. Equal leases
// give equal strings.
func Encode(leases map[string][]Claim) string {
	holders := slices.Sorted(maps.Keys(leases))
	size := len(linesMark)
	for h, cs := range leases {
		size += len(h) + 1
		for _, c := range cs {
			size += len(c.Queue) + 8
		}
	}
	var sb strings.Builder
	sb.Grow(size) // one allocation: the ledger is written whole at every admission
	sb.WriteString(linesMark)
	for _, h := range holders {
		if !plain(h) {
			return encodeJSON(leases)
		}
		sb.WriteString(h)
		for _, c := range leases[h] {
			if !plain(c.Queue) {
				return encodeJSON(leases)
			}
			sb.WriteByte(' ')
			sb.WriteString(c.Queue)
			sb.WriteByte('=')
			sb.WriteString(strconv.Itoa(c.Count))
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

// linesMark starts the line form, so that no ledger is stored as "" and
// the JSON form ("{…") is told apart by its first byte.
const linesMark = "leases\n"

// plain reports whether id can stand in the line form.
func plain(id string) bool {
	for i := 0; i < len(id); i++ { // not strings.ContainsAny: asked of every holder at every write
		switch id[i] {
		case ' ', '=', '\n', '\r', '\t':
			return false
		}
	}
	return id != ""
}

func encodeJSON(leases map[string][]Claim) string {
	b, err := json.Marshal(leases)
	if err != nil { // strings and ints only: cannot happen
		panic(fmt.Sprintf("ledger: encode leases: %v", err))
	}
	return string(b)
}

// Decode reads the leases from their stored form (Encode's).
func Decode(held string) (map[string][]Claim, error) {
	out := map[string][]Claim{}
	if strings.HasPrefix(held, "{") {
		if err := json.Unmarshal([]byte(held), &out); err != nil {
			return nil, fmt.Errorf("stored leases: %w", err)
		}
		return out, nil
	}
	rest, ok := strings.CutPrefix(held, linesMark)
	if !ok {
		return nil, fmt.Errorf("stored leases: neither lines nor JSON: %.40q", held)
	}
	for line := range strings.Lines(rest) {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil, fmt.Errorf("stored leases: empty line")
		}
		cs := make([]Claim, 0, len(f)-1)
		for _, x := range f[1:] {
			q, n, ok := strings.Cut(x, "=")
			count, err := strconv.Atoi(n)
			if !ok || q == "" || err != nil {
				return nil, fmt.Errorf("stored leases: holder %s: claim %q is not <queue>=<count>", f[0], x)
			}
			cs = append(cs, Claim{Queue: q, Count: count})
		}
		out[f[0]] = cs
	}
	return out, nil
}

// Allocated returns the instances held on each queue.
func Allocated(leases map[string][]Claim) map[string]int {
	out := map[string]int{}
	for _, cs := range leases {
		for _, c := range cs {
			out[c.Queue] += c.Count
		}
	}
	return out
}

// Read returns the leases of db's ledger by holder: none before the
// scheduler has made the ledger.
func Read(ctx context.Context, db *mongo.Database) (map[string][]Claim, error) {
	var d Doc
	err := db.Collection(Collection).FindOne(ctx, bson.D{{Key: "_id", Value: ID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return map[string][]Claim{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the lease ledger: %w", err)
	}
	return d.Leases()
}
