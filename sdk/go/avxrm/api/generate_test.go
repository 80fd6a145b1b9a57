package api_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The generated files must be what the generators make of openapi.json now:
// a hand edit, or a document copied without regenerating, fails here.
func TestGeneratedCodeIsUpToDate(t *testing.T) {
	dir := t.TempDir()
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("output: client.gen.go"), []byte("output: "+filepath.Join(dir, "client.gen.go")), 1)
	if err := os.WriteFile(filepath.Join(dir, "cfg.yaml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "go", "tool", "oapi-codegen", "-config", filepath.Join(dir, "cfg.yaml"), "openapi.json")
	run(t, "go", "run", "../internal/genbase", "openapi.json", filepath.Join(dir, "basepath.gen.go"))
	for _, f := range []string{"client.gen.go", "basepath.gen.go"} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what openapi.json generates: run `make generate-sdk`", f)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}
