package local

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestReadRecordIgnoresALineCutShort: a line without its newline (the
// writer killed mid-write) reads as absent, and a record without a whole
// spec line is no instance.
func TestReadRecordIgnoresALineCutShort(t *testing.T) {
	spec := `spec {"job_id":"j","role":"worker","index":2}` + "\n"
	for _, tc := range []struct {
		name, content string
		wantErr       bool
		wantPID       int
		wantState     bool
		wantExit      string
		wantCannot    string
		wantSignalled bool
	}{
		{name: "signal then exit", content: spec + "pid 41\nstate {\"pid\":41}\nsignal\nexit 143\n", wantPID: 41, wantState: true, wantExit: "143", wantSignalled: true},
		{name: "exit then signal", content: spec + "pid 41\nstate {\"pid\":41}\nexit 3\nsignal\n", wantPID: 41, wantState: true, wantExit: "3"},
		{name: "signal, running", content: spec + "pid 41\nstate {\"pid\":41}\nsignal\n", wantPID: 41, wantState: true, wantExit: "none", wantSignalled: true},
		{name: "whole", content: spec + "pid 41\nstate {\"pid\":41}\nexit 3\n", wantPID: 41, wantState: true, wantExit: "3"},
		{name: "cannot find", content: spec + "pid 41\nstate {\"pid\":41}\ncannot find\nexit 127\n", wantPID: 41, wantState: true, wantExit: "127", wantCannot: "find"},
		{name: "exit cut short", content: spec + "pid 41\nstate {\"pid\":41}\nexit 3", wantPID: 41, wantState: true, wantExit: "none"},
		{name: "state cut short", content: spec + "pid 41\nstate {\"pid\":4", wantPID: 41, wantExit: "none"},
		{name: "pid and state in the other order", content: spec + "state {\"pid\":41}\npid 41\n", wantPID: 41, wantState: true, wantExit: "none"},
		{name: "spec cut short", content: `spec {"job_id":"j","role":"wor`, wantErr: true},
		{name: "empty", content: "", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, recordFile), []byte(tc.content), 0o640); err != nil {
				t.Fatal(err)
			}
			r, err := readRecord(dir)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("readRecord() = %+v; want an error", r)
				}
				return
			}
			if err != nil {
				t.Fatalf("readRecord() error = %v", err)
			}
			if r.spec.JobID != "j" || r.spec.Index != 2 {
				t.Errorf("spec = %+v; want job j, index 2", r.spec)
			}
			if r.pid != tc.wantPID {
				t.Errorf("pid = %d; want %d", r.pid, tc.wantPID)
			}
			if (r.state != nil) != tc.wantState {
				t.Errorf("state = %+v; want one: %v", r.state, tc.wantState)
			}
			exit := "none"
			if r.exit != nil {
				exit = strconv.Itoa(*r.exit)
			}
			if exit != tc.wantExit {
				t.Errorf("exit = %s; want %s", exit, tc.wantExit)
			}
			if r.signalled != tc.wantSignalled {
				t.Errorf("signalled = %v; want %v", r.signalled, tc.wantSignalled)
			}
			if r.cannot != tc.wantCannot {
				t.Errorf("cannot = %q; want %q", r.cannot, tc.wantCannot)
			}
		})
	}
}
