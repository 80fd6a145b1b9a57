package standalone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// README markers: the tables between <!-- service-config: NAME --> and
// <!-- /service-config --> are generated (NAME is "common" or a binary).
const (
	markerOpen  = "<!-- service-config: %s -->"
	markerClose = "<!-- /service-config -->"
)

// READMETable returns the generated table of name in the README at path.
func READMETable(path, name string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	open := fmt.Sprintf(markerOpen, name)
	_, rest, ok := strings.Cut(string(raw), open+"\n")
	if !ok {
		return "", fmt.Errorf("%s has no %q marker", path, open)
	}
	table, _, ok := strings.Cut(rest, markerClose)
	if !ok {
		return "", fmt.Errorf("%s: %q is not closed by %q", path, open, markerClose)
	}
	return table, nil
}

// Verify is the test of a service binary's settings: --help exits 0 and
// prints both tables, and the README at readme shows the binary's own table
// exactly as generated.
func Verify(svc *Service, readme string) error {
	var out bytes.Buffer
	if code := Exec(context.Background(), svc, []string{"--help"}, noEnv, &out, io.Discard); code != 0 {
		return fmt.Errorf("%s --help: exit %d", svc.Name, code)
	}
	if !strings.Contains(out.String(), svc.Table()) || !strings.Contains(out.String(), "`RM_MONGO_URI`") {
		return fmt.Errorf("%s --help does not print the settings:\n%s", svc.Name, out.String())
	}
	got, err := READMETable(readme, svc.Name)
	if err != nil {
		return err
	}
	if got != svc.Table() {
		return errors.New("README's table of " + svc.Name + " is stale; replace it with:\n" + svc.Table())
	}
	return nil
}
