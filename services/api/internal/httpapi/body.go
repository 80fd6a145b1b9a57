package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
)

// Lingering close (as nginx does it): a body over the limit is read and
// discarded, up to lingerBytes and for at most lingerTime, before the 413 is
// written. Otherwise the server closes the connection while the client is
// still sending, the client's kernel answers the rest with a reset, and the
// client reports "connection reset" instead of reading the problem.
const (
	lingerBytes = 64 << 20
	lingerTime  = 10 * time.Second
)

// readLimited reads the whole body (at most limit bytes) and puts it back for the handler.
func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		_ = r.Body.Close()
		return nil, problem.New(http.StatusBadRequest, "reading request body: "+err.Error())
	}
	if int64(len(body)) > limit {
		return nil, tooLarge(w, r, limit)
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, nil
}

// tooLarge discards the rest of r's body (lingering close) and returns the
// 413 problem. The caller has set or lifted the connection's read deadline;
// this sets its own and leaves none behind.
func tooLarge(w http.ResponseWriter, r *http.Request, limit int64) *problem.Problem {
	linger(w, r)
	return problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", limit),
		problem.Field("", "the body has more than %d bytes; this endpoint takes at most %d", limit, limit))
}

// linger reads and discards what is left of r's body, within the bounds above.
func linger(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(lingerTime))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	// Keep-alive is not worth the risk of a body that goes on past the bound.
	w.Header().Set("Connection", "close")
	_, _ = io.CopyN(io.Discard, r.Body, lingerBytes)
	_ = r.Body.Close()
}

// humanJSON makes the JSON formats of cfg report a body that is not JSON
// with the byte offset (and line and column) and words a user reads, not
// encoding/json's "invalid character ',' looking for beginning of object key string".
func humanJSON(cfg *huma.Config) {
	for ct, f := range cfg.Formats {
		if !strings.Contains(ct, "json") {
			continue
		}
		inner := f.Unmarshal
		f.Unmarshal = func(data []byte, v any) error {
			err := inner(data, v)
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return errors.New(describeSyntaxError(data, se))
			}
			return err
		}
		cfg.Formats[ct] = f
	}
}

// describeSyntaxError says where the JSON in data breaks and what was expected there.
func describeSyntaxError(data []byte, se *json.SyntaxError) string {
	off := se.Offset
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, b := range data[:max(off-1, 0)] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	msg := se.Error()
	for _, w := range syntaxWords {
		if found, ok := strings.CutPrefix(msg, "invalid character "); ok {
			if what, ok := strings.CutSuffix(found, " "+w.after); ok {
				msg = w.expected + ", found " + what
				break
			}
		}
	}
	if msg == "unexpected end of JSON input" {
		return fmt.Sprintf("not valid JSON: the body ends at byte %d before the JSON value is complete", len(data))
	}
	return fmt.Sprintf("not valid JSON at byte %d (line %d, column %d): %s", off, line, col, msg)
}

var syntaxWords = []struct{ after, expected string }{
	{"looking for beginning of object key string", "expected a field name in double quotes"},
	{"after object key:value pair", "expected , or } after a field's value"},
	{"after object key", "expected : after a field name"},
	{"after array element", "expected , or ] after an array element"},
	{"looking for beginning of value", "expected a JSON value"},
	{"after top-level value", "expected nothing after the JSON value"},
	{"in string literal", "expected no control character inside a string (escape it)"},
	{"in string escape code", "expected a valid escape (\\n, \\\", \\uXXXX, …)"},
}
