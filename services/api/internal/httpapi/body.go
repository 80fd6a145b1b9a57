package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/avxrm/rm/services/api/internal/problem"
)

// readLimited reads the whole body (at most limit bytes) and puts it back for the handler.
func readLimited(r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	_ = r.Body.Close()
	if err != nil {
		return nil, problem.New(http.StatusBadRequest, "reading request body: "+err.Error())
	}
	if int64(len(body)) > limit {
		return nil, problem.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", limit))
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, nil
}
