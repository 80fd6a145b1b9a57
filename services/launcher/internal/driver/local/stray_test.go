package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSignalStraysFindsAProcessInAnExec: a stray that execs over and over
// (here a script that runs itself again at once) shows no environment for
// a moment each time; a pass that met it then passed it over, and the
// stray outlived its instance (a shell's `setsid sleep 600 &` caught
// between setsid and sleep, as TestStopIsNotHeldByTheStrayGap once was in
// CI). Each of the rounds must kill it.
func TestSignalStraysFindsAProcessInAnExec(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "again")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec \"$0\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for round := range 30 {
		cmd := exec.Command(script)
		cmd.Env = []string{InstanceVar + "=" + dir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		signalStrays(strayKill{dir: dir, sig: syscall.SIGKILL})
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Fatalf("round %d: the stray, in the middle of an exec, outlived its pass", round)
		}
	}
}
