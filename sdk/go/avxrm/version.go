package avxrm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Version is a server's build, as its GET /version answers.
type Version struct {
	Version   string `json:"version"`    // e.g. v1.2.0-3-gabc1234, or dev
	GoVersion string `json:"go_version"` // e.g. go1.26.8
	Platform  string `json:"platform"`   // GOOS/GOARCH, e.g. linux/amd64
}

// String is one line: "v1.2.0 (go1.26.8, linux/amd64)".
func (v Version) String() string {
	return fmt.Sprintf("%s (%s, %s)", v.Version, v.GoVersion, v.Platform)
}

// ServerVersion asks the server which build it runs (GET /version at its
// root; open without a token). A server too old to say answers ErrNotFound.
func (c *Client) ServerVersion(ctx context.Context) (Version, error) {
	var v Version
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.root+"/version", nil)
	if err != nil {
		return v, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Send(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return v, fmt.Errorf("GET /version: read answer: %w", err)
	}
	if resp.StatusCode >= 400 {
		e := problemError(resp, raw)
		if resp.StatusCode < 500 && isJSON(e.ContentType) && !json.Valid(raw) {
			e.notAPI = true // a page labelled JSON, as Do and the generated client take it
		}
		switch {
		case e.NotAPI():
			return v, e
		case resp.StatusCode == http.StatusNotFound:
			return v, fmt.Errorf("the server at %s does not say its version (GET /version: 404; it is older than that route): %w",
				c.root, e)
		}
		return v, e
	}
	if !json.Valid(raw) {
		// Not JSON, whatever it is labelled: another server's answer.
		e := newError(resp)
		e.notAPI = true
		return v, e
	}
	if err := json.Unmarshal(raw, &v); err != nil || v.Version == "" {
		return v, fmt.Errorf("GET /version: %s answered no version", c.root)
	}
	return v, nil
}
