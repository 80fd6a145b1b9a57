package httpapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/avxrm/rm/services/api/internal/problem"
)

// An upload may carry the digest of its bytes in a Content-Digest header
// (RFC 9530), e.g. "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:".
// The API checks it against what it received before it keeps the file, so
// a body changed or cut on the way is refused (400) and nothing is stored.

// headerContentDigest is the request header an upload's digest comes in.
const headerContentDigest = "Content-Digest"

// digestAlgorithms are the algorithms of RFC 9530's registry that are
// checked: the two not deprecated there.
var digestAlgorithms = map[string]func() hash.Hash{"sha-256": sha256.New, "sha-512": sha512.New}

// contentDigest is the digests a request's Content-Digest asks to check.
type contentDigest struct {
	want   map[string][]byte // by algorithm
	hashes map[string]hash.Hash
}

// parseContentDigest reads the Content-Digest header of h: nil if there is
// none. A header that is not an RFC 8941 dictionary of byte sequences, or
// that names none of digestAlgorithms, is a 400 naming it: a client that
// asked for a check must not get an upload stored unchecked.
func parseContentDigest(h http.Header) (*contentDigest, error) {
	lines := h.Values(headerContentDigest)
	if len(lines) == 0 {
		return nil, nil
	}
	d := &contentDigest{want: map[string][]byte{}, hashes: map[string]hash.Hash{}}
	var unknown []string
	for _, member := range strings.Split(strings.Join(lines, ","), ",") {
		member = strings.Trim(member, " \t")
		key, value, ok := strings.Cut(member, "=")
		value, _, _ = strings.Cut(value, ";") // its parameters, if any, say nothing checked here
		sum, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(strings.TrimPrefix(value, ":"), ":"))
		if !ok || key == "" || len(value) < 2 || value[0] != ':' || value[len(value)-1] != ':' || err != nil {
			return nil, badDigest("%q is not algorithm=:base64 digest: (RFC 9530), e.g. sha-256=:%s:",
				member, base64.StdEncoding.EncodeToString(make([]byte, sha256.Size)))
		}
		newHash, known := digestAlgorithms[key]
		if !known {
			unknown = append(unknown, key)
			continue
		}
		if size := newHash().Size(); len(sum) != size {
			return nil, badDigest("the %s digest is %d bytes, want %d", key, len(sum), size)
		}
		d.want[key], d.hashes[key] = sum, newHash()
	}
	if len(d.want) == 0 {
		return nil, badDigest("names no algorithm checked here (%s); give sha-256 or sha-512", strings.Join(unknown, ", "))
	}
	return d, nil
}

// reader returns r, whose bytes are also hashed for check.
func (d *contentDigest) reader(r io.Reader) io.Reader {
	ws := make([]io.Writer, 0, len(d.hashes))
	for _, h := range d.hashes {
		ws = append(ws, h)
	}
	return io.TeeReader(r, io.MultiWriter(ws...))
}

// check compares the digests of what reader read with those asked for.
func (d *contentDigest) check() error {
	algs := make([]string, 0, len(d.want))
	for alg := range d.want {
		algs = append(algs, alg)
	}
	slices.Sort(algs)
	for _, alg := range algs {
		if got := d.hashes[alg].Sum(nil); !bytes.Equal(got, d.want[alg]) {
			return badDigest("the body's %s digest is :%s:, the header says :%s:; nothing was stored",
				alg, base64.StdEncoding.EncodeToString(got), base64.StdEncoding.EncodeToString(d.want[alg]))
		}
	}
	return nil
}

func badDigest(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return problem.New(http.StatusBadRequest, "Content-Digest: "+msg, problem.Field(headerContentDigest, "%s", msg))
}
