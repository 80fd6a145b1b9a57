package contracttest

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/oapi-codegen/oapi-codegen/v2/pkg/codegen"
	"github.com/oapi-codegen/oapi-codegen/v2/pkg/util"
)

var update = flag.Bool("update", false, "rewrite client/client.gen.go from the served document")

// clientConfig is how the client is generated: types and a client with
// typed responses, nullable fields as nullable.Nullable so that a merge
// patch can send null.
var clientConfig = codegen.Configuration{
	PackageName: "client",
	Generate:    codegen.GenerateOptions{Models: true, Client: true},
	OutputOptions: codegen.OutputOptions{
		NullableType: true,
	},
}

// TestGeneratedClientIsCurrent generates the client from the document the
// API serves, with oapi-codegen, and compares it with package client, which
// the other tests use. go test -run TestGeneratedClientIsCurrent -update rewrites it.
func TestGeneratedClientIsCurrent(t *testing.T) {
	root := startAPI(t)
	spec, err := util.LoadSwagger(root + "/api/resources/v1/openapi.json")
	if err != nil {
		t.Fatalf("load the served document: %v", err)
	}
	code, err := codegen.Generate(spec, clientConfig)
	if err != nil {
		t.Fatalf("oapi-codegen: %v", err)
	}
	const file = "client/client.gen.go"
	if *update {
		if err := os.WriteFile(file, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, []byte(code)) {
		t.Errorf("%s is not what oapi-codegen generates from the served document; run go test -run TestGeneratedClientIsCurrent -update", file)
	}
}
