package sdktest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// sdkSpec is the copy of the served document the Go SDK is generated from.
var sdkSpec = filepath.Join("..", "..", "..", "..", "sdk", "go", "avxrm", "api", "openapi.json")

// The Go SDK is generated from the document the server serves: when the
// served document changes, this fails until the copy is refreshed and the
// client regenerated (`make generate-sdk`, which runs this test with
// RM_UPDATE_SDK_SPEC=1 to write the copy).
func TestSDKIsGeneratedFromTheServedDocument(t *testing.T) {
	sys := start(t, t.TempDir(), "127.0.0.1:0")
	resp, err := http.Get(sys.URL + "/api/resources/v1/openapi-3.0.json")
	if err != nil {
		t.Fatal(err)
	}
	served, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET openapi-3.0.json: %d %v", resp.StatusCode, err)
	}
	var doc any
	if err := json.Unmarshal(served, &doc); err != nil {
		t.Fatal(err)
	}
	served, _ = json.MarshalIndent(doc, "", "  ")
	served = append(served, '\n')
	if os.Getenv("RM_UPDATE_SDK_SPEC") == "1" {
		if err := os.WriteFile(sdkSpec, served, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(sdkSpec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, served) {
		t.Errorf("%s is not the document the server serves: run `make generate-sdk`", sdkSpec)
	}
}
