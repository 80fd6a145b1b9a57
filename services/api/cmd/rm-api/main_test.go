package main

import (
	"testing"

	"github.com/avxrm/rm/pkg/events/standalone"
)

// --help prints every setting and exits 0; the README's table is current.
func TestSettings(t *testing.T) {
	if err := standalone.Verify(service(), "../../../../README.md"); err != nil {
		t.Fatal(err)
	}
}
