// Package zipper owns what goes into a scenario export and how it is laid out:
// the selection rules of API.md (which artifacts a request picks) and a
// streaming zip writer that verifies every entry against its recorded size and
// sha256 and adds manifest.json. It is pure: it imports neither MongoDB nor
// NATS; the caller supplies the bytes through an Opener and the destination as
// an io.Writer, so nothing is ever held whole in memory.
package zipper

import (
	"archive/zip"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events/exportdoc"
	"golang.org/x/text/unicode/norm"
)

// Kinds of artifact (and of document a request can include).
const (
	KindScenario = "scenario"
	KindAsset    = "asset"
)

// ManifestName is the manifest's path in the zip.
const ManifestName = "manifest.json"

// ErrChecksum: an artifact's bytes do not match its recorded size or sha256.
var ErrChecksum = errors.New("artifact does not match its recorded size or sha256")

// ErrPathConflict: one entry's path is a directory of another's (a and a/b),
// which no zip tool can extract.
var ErrPathConflict = errors.New("a file's path is also a directory of another file")

// Entry is one stored artifact.
type Entry struct {
	Kind        string // KindScenario or KindAsset
	SampleID    string // scenarios only
	Declaration string // assets only; "" for common asset data
	Path        string // normalised, relative, '/'-separated
	Size        int64
	SHA256      string // hex
	Ref         string // where the bytes are, for the Opener
}

// ZipPath is where e goes in the zip: scenarios/<sample_id>/<path>,
// assets/<path> for common asset data, assets/<declaration>/<path> for the
// assets of a declaration. A request includes either common data or
// declarations, never both, so the two asset layouts cannot collide.
func (e Entry) ZipPath() string {
	switch {
	case e.Kind == KindScenario:
		return "scenarios/" + e.SampleID + "/" + e.Path
	case e.Declaration != "":
		return "assets/" + e.Declaration + "/" + e.Path
	default:
		return "assets/" + e.Path
	}
}

// Request says what an export holds: the shared export record's request.
type Request = exportdoc.ExportRequest

// Select returns the entries of all that req picks, ordered by zip path:
//   - scenario files: only if included; samples empty or absent picks none,
//     otherwise every file of the listed samples;
//   - assets: only if included; filter_by_asset_declaration empty or absent
//     picks all common asset data (no declaration), otherwise every asset of
//     the listed declarations.
func Select(req Request, all []Entry) []Entry {
	samples := set(req.Samples)
	decls := set(req.FilterByAssetDeclaration)
	var out []Entry
	for _, e := range all {
		switch e.Kind {
		case KindScenario:
			if req.Includes(KindScenario) && samples[e.SampleID] {
				out = append(out, e)
			}
		case KindAsset:
			if !req.Includes(KindAsset) {
				continue
			}
			if (len(decls) == 0 && e.Declaration == "") || (len(decls) > 0 && e.Declaration != "" && decls[e.Declaration]) {
				out = append(out, e)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ZipPath() < out[j].ZipPath() })
	return out
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Manifest is manifest.json: the export and each file in it.
type Manifest struct {
	ExportID string          `json:"export_id,omitempty"`
	JobID    string          `json:"job_id,omitempty"`
	Request  Request         `json:"request"`
	Files    []ManifestEntry `json:"files"`
}

// ManifestEntry describes one file of the zip.
type ManifestEntry struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Opener returns the bytes of an entry; the writer closes them.
type Opener func(ctx context.Context, e Entry) (io.ReadCloser, error)

// Options tune Write. The zero value deflates at flate.BestSpeed.
type Options struct {
	// Store writes entries uncompressed (for data that does not compress).
	Store bool
	// Modified is the time stamped on every entry; zero means the zip epoch
	// (1980-01-01), so the same input always gives the same bytes.
	Modified time.Time
	// AfterEntry, if set, is called after each entry with the number written;
	// an error stops the write. Tests use it to stop a build part way.
	AfterEntry func(ctx context.Context, written int) error
}

// Write writes the zip of entries to w: manifest.json first (it is known in
// advance from the recorded sizes and digests), then each entry streamed from
// open and verified on the way; a mismatch fails with ErrChecksum. Memory use
// is a copy buffer and the compressor's window, whatever the sizes.
func Write(ctx context.Context, w io.Writer, m Manifest, entries []Entry, open Opener, opt Options) error {
	if err := checkPaths(entries); err != nil {
		return err
	}
	m.Files = make([]ManifestEntry, len(entries))
	for i, e := range entries {
		m.Files[i] = ManifestEntry{Path: e.ZipPath(), Size: e.Size, SHA256: e.SHA256}
	}
	mod := opt.Modified
	if mod.IsZero() {
		mod = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	method := zip.Deflate
	if opt.Store {
		method = zip.Store
	}
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(out, flate.BestSpeed)
	})
	mw, err := zw.CreateHeader(&zip.FileHeader{Name: ManifestName, Method: method, Modified: mod})
	if err != nil {
		return fmt.Errorf("zip manifest: %w", err)
	}
	enc := json.NewEncoder(mw)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("zip manifest: %w", err)
	}
	buf := make([]byte, 256<<10)
	for i, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := writeEntry(ctx, zw, e, open, method, mod, buf); err != nil {
			return err
		}
		if opt.AfterEntry != nil {
			if err := opt.AfterEntry(ctx, i+1); err != nil {
				return err
			}
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("zip close: %w", err)
	}
	return nil
}

// checkPaths finds an entry whose path is a directory of another's.
func checkPaths(entries []Entry) error {
	files := make(map[string]bool, len(entries))
	for _, e := range entries {
		files[e.ZipPath()] = true
	}
	for _, e := range entries {
		p := e.ZipPath()
		for i := range len(p) {
			if p[i] == '/' && files[p[:i]] {
				return fmt.Errorf("%s is a file and %s needs it as a directory: %w", p[:i], p, ErrPathConflict)
			}
		}
	}
	return nil
}

// CaseClashes says which paths of entries differ only in case or in the
// Unicode form of their letters (é as one character or as e and an
// accent), as a file and a file or a file and a directory of another's.
// Unpacked on a file system that ignores case (macOS's and Windows's by
// default) or the form (macOS's) one file replaces the other, or cannot be
// written. At most max are told, the last saying how many more there are.
// Paths are compared by strings.ToLower and Unicode's NFC, not by each file
// system's own rules.
func CaseClashes(entries []Entry, max int) []string {
	first := make(map[string]string, len(entries)) // folded path → the first entry's path
	for _, e := range entries {
		p := e.ZipPath()
		if k := fold(p); first[k] == "" {
			first[k] = p
		}
	}
	var out []string
	n := 0
	tell := func(msg string) {
		if n++; n <= max {
			out = append(out, msg)
		}
	}
	for _, e := range entries {
		p := e.ZipPath()
		if q := first[fold(p)]; q != p {
			how, where := unlike(q, p)
			tell(fmt.Sprintf("%s and %s differ only in %s: unpacked where %s, one replaces the other", q, p, how, where))
		}
		for i := range len(p) {
			if p[i] != '/' {
				continue
			}
			// Folded apart: lower case may be longer or shorter in bytes
			// (the Kelvin sign), so not a slice of the whole's.
			if q, ok := first[fold(p[:i])]; ok && q != p[:i] { // the same path exactly: ErrPathConflict
				how, where := unlike(q, p[:i])
				tell(fmt.Sprintf("%s is a file and %s needs %s as a directory, which differs only in %s: unpacked where %s, it cannot be written", q, p, p[:i], how, where))
				break
			}
		}
	}
	if n > max && max > 0 {
		out[max-1] = fmt.Sprintf("%s; and %d more clashes of case", out[max-1], n-max)
	}
	return out
}

// WindowsNames says which paths of entries Windows cannot unpack as they
// are: a segment named as a device (CON, PRN, AUX, NUL, COM1–COM9,
// LPT1–LPT9, with any extension: aux.xosc), ending in a dot or a space
// (which Windows drops), or holding one of < > : " | ? * (which it
// refuses). The API takes such names, as Linux and macOS hold them; an
// engineer unpacking the zip on Windows is told beforehand. At most max
// are told, the last saying how many more there are.
func WindowsNames(entries []Entry, max int) []string {
	var out []string
	n := 0
	for _, e := range entries {
		p := e.ZipPath()
		why := ""
		for _, seg := range strings.Split(p, "/") {
			if why = windowsTrouble(seg); why != "" {
				break
			}
		}
		if why == "" {
			continue
		}
		if n++; n <= max {
			out = append(out, fmt.Sprintf("%s cannot be unpacked on Windows as it is: %s", p, why))
		}
	}
	if n > max && max > 0 {
		out[max-1] = fmt.Sprintf("%s; and %d more names Windows cannot hold", out[max-1], n-max)
	}
	return out
}

// windowsTrouble says why Windows cannot hold a file or directory named
// seg, or "".
func windowsTrouble(seg string) string {
	if i := strings.IndexAny(seg, `<>:"|?*`); i >= 0 {
		return fmt.Sprintf("%q holds %q, which Windows does not allow in a name", seg, seg[i:i+1])
	}
	if strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ") {
		return fmt.Sprintf("%q ends in a dot or a space, which Windows drops", seg)
	}
	stem, _, _ := strings.Cut(seg, ".")
	stem = strings.TrimRight(stem, " ")
	switch u := strings.ToUpper(stem); {
	case u == "CON" || u == "PRN" || u == "AUX" || u == "NUL",
		len(u) == 4 && (strings.HasPrefix(u, "COM") || strings.HasPrefix(u, "LPT")) && u[3] >= '1' && u[3] <= '9':
		return fmt.Sprintf("%q is named as the device %s, which Windows reserves with any extension", seg, u)
	}
	return ""
}

// fold is what a path is on a file system that ignores case and the
// Unicode form of letters.
func fold(p string) string { return norm.NFC.String(strings.ToLower(p)) }

// unlike says how two paths that fold alike differ, and where that makes
// them one.
func unlike(a, b string) (how, where string) {
	switch {
	case strings.ToLower(a) == strings.ToLower(b):
		return "case", "case is ignored (macOS, Windows)"
	case norm.NFC.String(a) == norm.NFC.String(b):
		return "the Unicode form of a letter (one character or a letter and an accent)", "that form is ignored (macOS)"
	}
	return "case and the Unicode form of a letter", "both are ignored (macOS)"
}

func writeEntry(ctx context.Context, zw *zip.Writer, e Entry, open Opener, method uint16, mod time.Time, buf []byte) error {
	name := e.ZipPath()
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: mod})
	if err != nil {
		return fmt.Errorf("zip %s: %w", name, err)
	}
	rc, err := open(ctx, e)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer rc.Close()
	h := sha256.New()
	// One byte more than recorded, to notice content longer than its record.
	n, err := io.CopyBuffer(io.MultiWriter(fw, h), io.LimitReader(rc, e.Size+1), buf)
	if err != nil {
		return fmt.Errorf("copy %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != e.Size || got != e.SHA256 {
		return fmt.Errorf("%w: %s: %d bytes with sha256 %s, recorded %d bytes with sha256 %s", ErrChecksum, name, n, got, e.Size, e.SHA256)
	}
	return nil
}
