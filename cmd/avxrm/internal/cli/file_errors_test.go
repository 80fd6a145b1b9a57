package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// A -f file of the wrong shape is named with its field and what JSON it
// wants, not Go's types.
func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	for file, want := range map[string]string{
		write("j.json", `{"queue_id":"Default","worker_instances":"two"}`):            "j.json: worker_instances: expected an integer, got a string",
		write("app.yaml", "application: {name: [a]}\n"):                               "app.yaml: application.name: expected a string, got a list",
		write("n.yaml", "worker_instances: 1.5\n"):                                    "n.yaml: worker_instances: expected an integer, got 1.5",
		write("l.json", `[{"queue_id":"Default"}]`):                                   "l.json: expected a JSON or YAML object, got a list",
		write("u.yaml", "workers: 3\n"):                                               `u.yaml: unknown field "workers": the file takes the API's field names, here worker_instances (--workers is the flag's)`,
		write("q.yaml", "queue: Default\n"):                                           `q.yaml: unknown field "queue": the file takes the API's field names, here queue_id (--queue is the flag's)`,
		write("x.yaml", "bogus: 1\n"):                                                 `x.yaml: unknown field "bogus"`,
		write("got.yaml", "id: job-1\nqueue_id: Default\nstatus: failed\nbogus: 1\n"): "got.yaml: id, status: read-only, the server sets them; leave them out (to run a job again as it was: avxrm jobs resubmit <job>)",
		write("one.json", `{"queue_id":"Default","attempt":2}`):                       "one.json: attempt: read-only, the server sets it; leave it out (to run a job again as it was: avxrm jobs resubmit <job>)",
		write("v.yaml", "application: {name: sim, version: 1.0}\n"):                   `v.yaml: application.version: expected a string, got a number: quote it, e.g. "1.0"`,
	} {
		var body api.JobBody
		if err := readJobFile(file, &body); err == nil || err.Error() != filepath.Join(dir, want) {
			t.Errorf("readJobFile(%s) = %v, want %s", filepath.Base(file), err, want)
		}
	}
	for file, want := range map[string]string{
		write("txt.txt", "some text\n"): "txt.txt: expected a JSON or YAML object, got a string",
		write("a.json", `[1, 2]`):       "a.json: expected a JSON or YAML object, got a list",
		write("empty.yaml", ""):         "empty.yaml: expected a JSON or YAML object",
	} {
		if _, err := buildBody(file, nil, nil); err == nil || err.Error() != filepath.Join(dir, want) {
			t.Errorf("buildBody(%s) = %v, want %s", filepath.Base(file), err, want)
		}
	}
}
