package httpapi

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/labstack/echo/v4"
)

// Downloads (artifacts, export zips) are answered by http.ServeContent,
// which answers Range, If-Range and the other conditions, and reads only
// the chunks a range needs. Two of its answers do not fit RFC 9110 or the
// API: a Range header it cannot parse gets a 416 (the RFC says to ignore
// it and answer the whole content), and its refusals are text/plain (the
// API answers problems).

// unsatisfiableRange documents the 416 of a download.
const unsatisfiableRange = "A Range header that is not a valid bytes range is ignored (the whole content is answered); " +
	"one whose every range starts beyond the end of the content answers 416 with Content-Range: bytes */<size>."

// ignoreInvalidRange drops the Range header of a GET or HEAD when it is not
// a valid bytes ranges-specifier (RFC 9110 §14.1.1, §14.2), and hands a
// valid one on in the spelling http.ServeContent reads.
func ignoreInvalidRange(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if h := r.Header.Get("Range"); h != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			if spec := byteRanges(h); spec == "" {
				r.Header.Del("Range")
			} else {
				r.Header.Set("Range", spec)
			}
		}
		return next(c)
	}
}

// nothing is a byte range that no content reaches: it stands for a
// suffix of length 0, which selects nothing (RFC 9110 §14.1.2), where
// http.ServeContent would answer an empty 206.
var nothing = strconv.FormatInt(math.MaxInt64, 10) + "-"

// byteRanges is the Range header h as http.ServeContent parses it, or ""
// if h is not a valid bytes ranges-specifier: another unit, a range that is
// not first-last, first- or -suffix in digits, a last below its first.
// The unit is read case-insensitively, empty list elements are skipped and
// positions beyond int64 are clamped (no content is that long).
func byteRanges(h string) string {
	unit, set, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return ""
	}
	var out []string
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.Trim(spec, " \t")
		if spec == "" {
			continue
		}
		first, last, ok := strings.Cut(spec, "-")
		if !ok {
			return ""
		}
		if first == "" { // the last bytes
			n, ok := position(last)
			if !ok {
				return ""
			}
			spec = "-" + strconv.FormatInt(n, 10)
			if n == 0 {
				spec = nothing
			}
			out = append(out, spec)
			continue
		}
		f, ok := position(first)
		if !ok {
			return ""
		}
		spec = strconv.FormatInt(f, 10) + "-"
		if last != "" {
			l, ok := position(last)
			if !ok || l < f {
				return ""
			}
			spec += strconv.FormatInt(l, 10)
		}
		out = append(out, spec)
	}
	if len(out) == 0 {
		return ""
	}
	return "bytes=" + strings.Join(out, ",")
}

// position reads 1*DIGIT, clamped to math.MaxInt64.
func position(s string) (int64, bool) {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil { // only too large: the digits were checked
		return math.MaxInt64, true
	}
	return n, true
}

// serveContent answers a download of content with http.ServeContent (the
// caller sets Content-Type, ETag and Content-Disposition; a HEAD reads
// nothing of content) and returns its refusals as problems for the error
// handler: a Range that selects no byte of the content is a 416 with
// Content-Range: bytes */<size>, a failed If-Match or If-Unmodified-Since
// a 412.
func serveContent(c echo.Context, modtime time.Time, content io.ReadSeeker) error {
	w := &refusalWriter{ResponseWriter: c.Response()}
	http.ServeContent(w, c.Request(), "", modtime, content)
	if w.status == 0 {
		return nil
	}
	h := c.Response().Header()
	for _, k := range []string{"Content-Disposition", "ETag", "Last-Modified", "X-Content-Type-Options"} {
		h.Del(k) // they describe the content, not the problem
	}
	switch w.status {
	case http.StatusRequestedRangeNotSatisfiable:
		size, _ := content.Seek(0, io.SeekEnd)
		return problem.New(w.status, "the Range selects no byte of the content",
			problem.Field("Range", "every range starts at or beyond the end of the content (%d bytes)", size))
	case http.StatusPreconditionFailed:
		return problem.New(w.status, "If-Match or If-Unmodified-Since does not hold for the stored content")
	}
	return problem.New(w.status, strings.TrimSpace(w.text.String()))
}

// refusalWriter holds back a status of 400 or more that http.ServeContent
// writes, and the text/plain it writes with it, so that serveContent can
// answer a problem instead.
type refusalWriter struct {
	http.ResponseWriter
	status int
	text   bytes.Buffer
}

func (w *refusalWriter) WriteHeader(code int) {
	if code >= http.StatusBadRequest {
		w.status = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *refusalWriter) Write(p []byte) (int, error) {
	if w.status != 0 {
		return w.text.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

func (w *refusalWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
