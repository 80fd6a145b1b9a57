package avxrm

import (
	"archive/zip"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// DownloadOptions tune a download; the zero value is fine.
type DownloadOptions struct {
	// Progress, if set, is told after each write how many bytes of the
	// file are written (a resumed .part counts from its size) and the
	// file's size (-1 until the server has said). It may go back to 0:
	// the file changed on the server and is fetched whole.
	Progress func(written, size int64)
}

// Download is the file a download wrote.
type Download struct {
	Size   int64  // bytes
	SHA256 string // hex, of the bytes; checked against the server's ETag
	// Files is how many files the zip's manifest.json lists, each of
	// which matched it (DownloadExportFile); else 0.
	Files int
}

// ErrChanged is the error of a download to an io.Writer when the file
// changed on the server after some of it was written: the bytes written
// cannot be taken back. Download it again.
var ErrChanged = errors.New("the file changed on the server during the download")

// ErrExportNotReady is the error of downloading a scenario export that is
// not ready: still pending or building (WaitExport waits for it), or failed.
var ErrExportNotReady = errors.New("not ready")

// ExportNotReadyError is the error of downloading a scenario export that is
// not ready, with its status (and the reason of a failed one); errors.Is
// finds ErrExportNotReady in it.
type ExportNotReadyError struct {
	ID, Status, Reason string
}

func (e *ExportNotReadyError) Error() string {
	msg := "download scenario export " + e.ID + ": it is " + e.State() + ", " + ErrExportNotReady.Error()
	if e.Reason == "" { // not failed: it may still become ready
		msg += "; WaitExport waits for it"
	}
	return msg
}

func (e *ExportNotReadyError) Unwrap() error { return ErrExportNotReady }

// State is the export's status as the error says it: "building", "failed
// (<reason>)", "of no status".
func (e *ExportNotReadyError) State() string {
	state := cmp.Or(e.Status, "of no status")
	if e.Reason != "" {
		state += " (" + e.Reason + ")"
	}
	return state
}

// ErrVerify is the error of a download whose bytes are not the file the
// server has: their size or sha256 differs from what it said.
var ErrVerify = errors.New("the downloaded bytes are not the server's file")

// DownloadExport writes the zip of a ready scenario export to w. A lost
// connection is resumed where it broke off (Range, with If-Range on the
// zip's sha256); at the end the size and sha256 are checked against the
// export's. An export that is not ready is ErrExportNotReady, before
// anything is written. On an error, what was written to w is not the
// whole zip.
func (c *Client) DownloadExport(ctx context.Context, id string, w io.Writer, o DownloadOptions) (Download, error) {
	t, err := c.exportTransfer(ctx, id, o)
	if err != nil {
		return Download{}, err
	}
	return t.toWriter(ctx, w)
}

// DownloadExportFile writes the zip of a ready scenario export to the file
// at path, as DownloadExport does, through path+".part": a .part left by an
// earlier attempt is resumed. The .part is made only once the server
// answers with the zip; it is renamed to path only once its size, its
// sha256 and every file against the zip's manifest.json are checked, and
// removed if they are not right (a resumed .part, which may have held
// the start of another file, is then fetched whole, once). After a lost
// connection that retries did not mend, or when ctx ends, the .part is
// kept for the next call to resume.
func (c *Client) DownloadExportFile(ctx context.Context, id, path string, o DownloadOptions) (Download, error) {
	t, err := c.exportTransfer(ctx, id, o)
	if err != nil {
		return Download{}, err
	}
	var files int
	d, err := t.toFile(ctx, path, func(part string) (err error) { files, err = VerifyExportZip(part); return err })
	d.Files = files
	return d, err
}

// exportTransfer reads the export, refuses one that is not ready, and
// prepares the transfer of its zip, whose size and sha256 it knows.
func (c *Client) exportTransfer(ctx context.Context, id string, o DownloadOptions) (*transfer, error) {
	x, err := c.GetExport(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("download scenario export %s: %w", id, err)
	}
	if x.Status == nil || *x.Status != "ready" {
		nr := &ExportNotReadyError{ID: id}
		if x.Status != nil {
			nr.Status = string(*x.Status)
		}
		if x.Reason != nil {
			nr.Reason = *x.Reason
		}
		return nil, nr
	}
	t := c.newTransfer("scenario export "+id, "/scenario-exports/"+PathSegment(id)+"/download", o)
	// A ready export's zip does not change: what its record says is what
	// the bytes must be.
	if x.Sha256 == nil || !isSHA256(*x.Sha256) || x.Size == nil {
		return nil, fmt.Errorf("download scenario export %s: it is ready but its record names no sha256 and size", id)
	}
	t.fixed, t.sum, t.etag, t.size = true, *x.Sha256, `"`+*x.Sha256+`"`, *x.Size
	return t, nil
}

// DownloadArtifact writes one of a job's artifacts to w: a, as Artifacts
// lists it, names it (its Kind, SampleId, Declaration and Path). A lost
// connection is resumed where it broke off (Range, with If-Range on the
// file's ETag, its sha256); at the end the size and sha256 are checked
// against the server's. If the file is replaced on the server during the
// download, the error is ErrChanged. On an error, what was written to w is
// not the whole file.
func (c *Client) DownloadArtifact(ctx context.Context, jobID string, a api.Artifact, w io.Writer, o DownloadOptions) (Download, error) {
	t, err := c.artifactTransfer(jobID, a, o)
	if err != nil {
		return Download{}, err
	}
	return t.toWriter(ctx, w)
}

// DownloadArtifactFile writes one of a job's artifacts to the file at path
// through path+".part", as DownloadExportFile does (without a manifest to
// check). A .part left by an earlier attempt is resumed, with If-Range on
// a.Sha256 when it is set; if the file it ends up as is not the server's,
// the file is fetched whole. If the file is replaced on the server during
// the download, the new one is fetched.
func (c *Client) DownloadArtifactFile(ctx context.Context, jobID string, a api.Artifact, path string, o DownloadOptions) (Download, error) {
	t, err := c.artifactTransfer(jobID, a, o)
	if err != nil {
		return Download{}, err
	}
	return t.toFile(ctx, path, nil)
}

// artifactTransfer prepares the transfer of the artifact a of job jobID.
func (c *Client) artifactTransfer(jobID string, a api.Artifact, o DownloadOptions) (*transfer, error) {
	if jobID == "" {
		return nil, errors.New("download artifact: job id: empty")
	}
	name, p := "", "/jobs/"+PathSegment(jobID)+"/artifacts/"
	switch {
	case a.Kind == api.ArtifactKind("scenario") && a.SampleId != nil && *a.SampleId != "":
		name = "scenarios/" + *a.SampleId + "/" + a.Path
		p += "scenarios/" + PathSegment(*a.SampleId) + "/"
	case a.Kind == api.ArtifactKind("asset"):
		name = "assets/" + a.Path
		p += "assets/"
	default:
		return nil, fmt.Errorf("download artifact %q of job %s: want Kind scenario with a SampleId, or asset", a.Path, jobID)
	}
	if a.Path == "" {
		return nil, fmt.Errorf("download artifact of job %s: Path: empty", jobID)
	}
	segs := strings.Split(a.Path, "/")
	for i, s := range segs {
		segs[i] = PathSegment(s)
	}
	p += strings.Join(segs, "/")
	if a.Declaration != nil && *a.Declaration != "" {
		name += " of declaration " + *a.Declaration
		p += "?declaration=" + url.QueryEscape(*a.Declaration)
	}
	t := c.newTransfer("artifact "+name+" of job "+jobID, p, o)
	if isSHA256(a.Sha256) {
		// What a .part left before holds the start of, if anything: a
		// resume asks If-Range on it. The server's ETag is checked anyway.
		t.resumeETag = `"` + a.Sha256 + `"`
	}
	return t, nil
}

func (c *Client) newTransfer(what, path string, o DownloadOptions) *transfer {
	return &transfer{c: c, what: what, path: path, size: -1, hash: sha256.New(), progress: o.Progress}
}

// transfer is one file being downloaded into a sink, attempt after attempt.
type transfer struct {
	c        *Client
	what     string // "scenario export exp-…", for errors
	path     string // the API path of the file
	progress func(written, size int64)

	// What the server said of the file: its ETag, the sha256 it names
	// (when it is one), its size (-1: not yet known). sum and size are
	// what the bytes are checked against.
	etag string
	// fixed: the file cannot change (an export's zip once ready), so an
	// answer of another ETag or size is an error, not a new file.
	fixed bool
	sum   string
	size  int64
	// resumeETag is the If-Range of a resumed .part when etag is not
	// known yet: the sha256 the caller named.
	resumeETag string

	sink sink
	have int64     // bytes written to the sink
	hash hash.Hash // of those bytes
}

// sink is where a transfer writes the file.
type sink interface {
	io.Writer
	// restart discards what was written, for the file fetched anew; an
	// error if it cannot (ErrChanged).
	restart() error
}

// errRead marks an error of reading the answer's body, which another
// attempt may mend, apart from an error of writing to the sink.
type errRead struct{ err error }

func (e errRead) Error() string { return e.err.Error() }
func (e errRead) Unwrap() error { return e.err }

// run fetches the file into t.sink from t.have on until it has the whole
// file, then checks its size and sha256. A lost connection is tried again
// after the client's backoff, as often as its retries allow in a row
// without a byte coming: a download that keeps coming is not given up.
func (t *transfer) run(ctx context.Context) error {
	for failures := 0; ; {
		before := t.have
		err := t.attempt(ctx)
		if err == nil {
			break
		}
		if t.have > before {
			failures = 0
		}
		if ctx.Err() != nil {
			return t.stopped(ctx)
		}
		if !t.retryable(err) || failures >= t.c.doer.retries {
			return t.fail(err)
		}
		if err := Sleep(ctx, t.c.backoff.Wait(failures)); err != nil {
			return t.stopped(ctx)
		}
		failures++
	}
	if t.size >= 0 && t.have != t.size {
		return t.fail(fmt.Errorf("%d bytes came, the server said %d: %w", t.have, t.size, ErrVerify))
	}
	if got := hex.EncodeToString(t.hash.Sum(nil)); t.sum != "" && got != t.sum {
		return t.fail(fmt.Errorf("the bytes have sha256 %s, the server says %s: %w", got, t.sum, ErrVerify))
	}
	return nil
}

// state says how far the transfer got, for errors.
func (t *transfer) state() string {
	if t.size >= 0 {
		return fmt.Sprintf("at %d of %d bytes", t.have, t.size)
	}
	return fmt.Sprintf("at %d bytes", t.have)
}

func (t *transfer) fail(err error) error {
	if t.have == 0 && t.size < 0 {
		return fmt.Errorf("download %s: %w", t.what, err)
	}
	return fmt.Errorf("download %s (%s): %w", t.what, t.state(), err)
}

// stopped is the error of a transfer that ctx ended: errors.Is finds
// ctx's error (and its cause).
func (t *transfer) stopped(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != err {
		return fmt.Errorf("download %s stopped %s: %w (%w)", t.what, t.state(), err, cause)
	}
	return fmt.Errorf("download %s stopped %s: %w", t.what, t.state(), err)
}

// retryable says whether another attempt may mend err: the connection was
// lost or the answer stopped coming, or the server (or a proxy) is
// unavailable for now.
func (t *transfer) retryable(err error) bool {
	var re errRead
	if errors.As(err, &re) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		return Unreachable(e)
	}
	return Unreachable(err) || errors.Is(err, os.ErrDeadlineExceeded)
}

// attempt sends one request for the rest of the file and writes what comes.
func (t *transfer) attempt(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.c.URL(t.path), nil)
	if err != nil {
		return err
	}
	// The bytes as stored: a transport that asked for gzip would hide
	// their length and the ranges.
	req.Header.Set("Accept-Encoding", "identity")
	if t.have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", t.have))
		if ifRange := cmp.Or(t.etag, t.resumeETag); ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
	}
	resp, err := t.c.Send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if err := t.whole(resp); err != nil {
			return err
		}
	case http.StatusPartialContent:
		if err := t.rest(resp); err != nil {
			return err
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// Every byte asked for is beyond the end: the file is t.have bytes
		// long, or shorter, and then not the one t.sink holds the start
		// of. A 416 to a request with If-Range says that its ETag held
		// (else the whole file would have come): the hash checks the rest.
		_, _, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if ok && total == t.have && req.Header.Get("If-Range") != "" {
			t.size = total
			if t.sum == "" {
				t.setETag(req.Header.Get("If-Range"))
			}
			return nil
		}
		if err := t.restart(); err != nil {
			return err
		}
		return t.attempt(ctx) // the whole file: no Range
	default:
		return ResponseError(resp)
	}
	return t.copy(resp.Body)
}

// whole takes a 200: the whole file comes, anew if some was written.
func (t *transfer) whole(resp *http.Response) error {
	etag := resp.Header.Get("ETag")
	if t.fixed && (etag != t.etag || resp.ContentLength >= 0 && resp.ContentLength != t.size) {
		return fmt.Errorf("the server sends ETag %s and %d bytes, its record says %s and %d: %w",
			etag, resp.ContentLength, t.etag, t.size, ErrVerify)
	}
	if t.have > 0 {
		if err := t.restart(); err != nil {
			return err
		}
	}
	if !t.fixed {
		t.setETag(etag)
		t.size = resp.ContentLength // -1 if it did not say
	}
	return nil
}

// rest takes a 206: the file from t.have on, which must be what it says.
func (t *transfer) rest(resp *http.Response) error {
	first, _, total, ok := contentRange(resp.Header.Get("Content-Range"))
	if !ok || first != t.have {
		return fmt.Errorf("asked for bytes %d- of %s, the server answered 206 with Content-Range %q",
			t.have, t.what, resp.Header.Get("Content-Range"))
	}
	if t.size >= 0 && total >= 0 && total != t.size {
		return fmt.Errorf("the file has %d bytes, the server said %d before: %w", total, t.size, ErrVerify)
	}
	if t.etag == "" {
		t.setETag(resp.Header.Get("ETag"))
	}
	t.size = total
	return nil
}

// setETag takes the file's ETag, and its sha256 when it names one.
func (t *transfer) setETag(etag string) {
	t.etag = etag
	if sum := strings.Trim(etag, `"`); isSHA256(sum) && !strings.HasPrefix(etag, "W/") {
		t.sum = sum
	} else {
		t.sum = ""
	}
}

// restart discards what the sink holds, for the file fetched whole.
func (t *transfer) restart() error {
	if err := t.sink.restart(); err != nil {
		return err
	}
	t.have, t.resumeETag = 0, ""
	if !t.fixed {
		t.etag, t.sum, t.size = "", "", -1
	}
	t.hash.Reset()
	t.report()
	return nil
}

func (t *transfer) report() {
	if t.progress != nil {
		t.progress(t.have, t.size)
	}
}

// copy writes body to the sink, hashing it and counting it, until its end.
func (t *transfer) copy(body io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := t.sink.Write(buf[:n]); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			t.hash.Write(buf[:n])
			t.have += int64(n)
			t.report()
		}
		if rerr == io.EOF {
			if t.size >= 0 && t.have < t.size {
				return errRead{io.ErrUnexpectedEOF}
			}
			return nil
		}
		if rerr != nil {
			return errRead{rerr}
		}
	}
}

// contentRange reads `bytes first-last/total` or `bytes */total` (first
// and last -1); total is -1 for `*`.
func contentRange(h string) (first, last, total int64, ok bool) {
	spec, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, 0, false
	}
	rng, size, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, 0, false
	}
	total = -1
	if size != "*" {
		var err error
		if total, err = strconv.ParseInt(size, 10, 64); err != nil {
			return 0, 0, 0, false
		}
	}
	if rng == "*" {
		return -1, -1, total, true
	}
	f, l, ok := strings.Cut(rng, "-")
	first, ferr := strconv.ParseInt(f, 10, 64)
	last, lerr := strconv.ParseInt(l, 10, 64)
	if !ok || ferr != nil || lerr != nil || last < first || total >= 0 && last >= total {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// writerSink writes to the caller's io.Writer, which cannot take back
// what it was given.
type writerSink struct {
	w       io.Writer
	written bool
}

func (s *writerSink) Write(p []byte) (int, error) {
	s.written = true
	return s.w.Write(p)
}

func (s *writerSink) restart() error {
	if s.written {
		return ErrChanged
	}
	return nil
}

func (t *transfer) toWriter(ctx context.Context, w io.Writer) (Download, error) {
	t.sink = &writerSink{w: w}
	if err := t.run(ctx); err != nil {
		return Download{}, err
	}
	return Download{Size: t.have, SHA256: hex.EncodeToString(t.hash.Sum(nil))}, nil
}

// fileSink writes to a .part, which it makes only when the first byte
// comes (or the file is fetched anew).
type fileSink struct {
	part string
	f    *os.File
}

func (s *fileSink) open() error {
	if s.f != nil {
		return nil
	}
	f, err := os.OpenFile(s.part, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return err
	}
	s.f = f
	return nil
}

func (s *fileSink) Write(p []byte) (int, error) {
	if err := s.open(); err != nil {
		return 0, err
	}
	return s.f.Write(p)
}

func (s *fileSink) restart() error {
	if s.f == nil {
		if err := os.Truncate(s.part, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return s.f.Truncate(0) // O_APPEND: the next write goes to the new end
}

// close syncs and closes the .part, if it was opened.
func (s *fileSink) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	return err
}

// toFile runs the transfer into path+".part", resuming what is there,
// then checks it (check, if given, reads the .part) and renames it to
// path. A .part that fails a check is removed; if it was resumed (it may
// have held the start of another file), the file is then fetched whole,
// once.
func (t *transfer) toFile(ctx context.Context, path string, check func(part string) error) (Download, error) {
	s := &fileSink{part: path + ".part"}
	t.sink = s
	if err := t.resume(s.part); err != nil {
		return Download{}, fmt.Errorf("download %s: %w", t.what, err)
	}
	resumed := t.have > 0
	err := t.run(ctx)
	if err == nil {
		err = s.open() // an empty file wrote nothing: its .part is made here
	}
	if cerr := s.close(); err == nil && cerr != nil {
		err = fmt.Errorf("download %s: %w", t.what, cerr)
	}
	if err == nil && check != nil {
		if cerr := check(s.part); cerr != nil {
			err = fmt.Errorf("download %s: %w: %w", t.what, ErrVerify, cerr)
		}
	}
	if errors.Is(err, ErrVerify) {
		// Resuming it would only add to what is wrong.
		if rerr := os.Remove(s.part); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return Download{}, errors.Join(err, rerr)
		}
		if resumed {
			t.have, t.resumeETag = 0, ""
			if !t.fixed {
				t.etag, t.sum, t.size = "", "", -1
			}
			t.hash.Reset()
			return t.toFile(ctx, path, check)
		}
	}
	if err != nil {
		if t.have > 0 && !errors.Is(err, ErrVerify) {
			err = fmt.Errorf("%w; %s keeps its %d bytes for the next download to resume", err, s.part, t.have)
		}
		return Download{}, err
	}
	if err := os.Rename(s.part, path); err != nil {
		return Download{}, fmt.Errorf("download %s: %w", t.what, err)
	}
	return Download{Size: t.have, SHA256: hex.EncodeToString(t.hash.Sum(nil))}, nil
}

// resume takes the bytes an earlier attempt left in part: their count and
// their hash.
func (t *transfer) resume(part string) error {
	f, err := os.Open(part)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(t.hash, f)
	if err != nil {
		return fmt.Errorf("read %s to resume it: %w", part, err)
	}
	t.have = n
	return nil
}

// VerifyExportZip checks each file of a scenario export's zip at path
// against its manifest.json (size and sha256; no file besides them) and
// returns how many files it lists. DownloadExportFile does so before it
// renames the .part; a zip that DownloadExport wrote may be checked with it.
func VerifyExportZip(path string) (int, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	defer zr.Close()
	files := map[string]*zip.File{}
	for _, zf := range zr.File {
		files[zf.Name] = zf
	}
	mf := files["manifest.json"]
	if mf == nil {
		return 0, fmt.Errorf("%s: no manifest.json", path)
	}
	var manifest struct {
		Files []struct {
			Path   string `json:"path"`
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
		} `json:"files"`
	}
	if err := readZipJSON(mf, &manifest); err != nil {
		return 0, fmt.Errorf("%s: manifest.json: %w", path, err)
	}
	for _, e := range manifest.Files {
		zf := files[e.Path]
		if zf == nil {
			return 0, fmt.Errorf("%s: %s is in the manifest, not in the zip", path, e.Path)
		}
		rc, err := zf.Open()
		if err != nil {
			return 0, fmt.Errorf("%s: %s: %w", path, e.Path, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return 0, fmt.Errorf("%s: %s: %w", path, e.Path, err)
		}
		if n != e.Size || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
			return 0, fmt.Errorf("%s: %s does not match the manifest", path, e.Path)
		}
	}
	if len(files) != len(manifest.Files)+1 {
		return 0, fmt.Errorf("%s: %d files, the manifest lists %d", path, len(files)-1, len(manifest.Files))
	}
	return len(manifest.Files), nil
}

func readZipJSON(zf *zip.File, v any) error {
	rc, err := zf.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return json.NewDecoder(rc).Decode(v)
}
