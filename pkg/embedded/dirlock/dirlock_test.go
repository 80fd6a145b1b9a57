package dirlock_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/dirlock"
)

// A directory is one process's: a second lock, from this process or
// another, is refused naming the holder's pid, until the first is
// released; a process that ends without releasing leaves no lock behind.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	release, err := dirlock.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Lock(dir)
	want := fmt.Sprintf("%s is in use by another process (pid %d); stop it, or give this one another directory", dir, os.Getpid())
	var inUse *dirlock.InUseError
	if !errors.As(err, &inUse) || err.Error() != want {
		t.Fatalf("second lock: %v, want %q", err, want)
	}
	// Another process (flock(1), from util-linux) is refused as well.
	if out, err := exec.Command("flock", "--nonblock", dir+"/"+dirlock.Name, "true").CombinedOutput(); err == nil {
		t.Errorf("flock(1) took the held lock: %s", out)
	}
	release()
	again, err := dirlock.Lock(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again()

	// A holder killed with -9 leaves the directory free. The holder is this
	// test binary taking the lock itself (TestMain): flock(1) forks its
	// command, and the child holds the lock until it closes the
	// descriptor, so killing flock(1) did not free it at once.
	holder := exec.Command(os.Args[0], "-test.run", "^$")
	holder.Env = append(os.Environ(), holdEnv+"="+dir)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("the holder: %q, %v", line, err)
	}
	_, err = dirlock.Lock(dir)
	if !errors.As(err, &inUse) || inUse.PID != holder.Process.Pid {
		t.Fatalf("while another process holds it: %v, want it named (pid %d)", err, holder.Process.Pid)
	}
	_ = holder.Process.Kill()
	_ = holder.Wait()
	release, err = dirlock.Lock(dir)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	release()
}

// holdEnv makes the test binary a holder: it locks the directory the
// variable names, says so, and waits to be killed.
const holdEnv = "DIRLOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(holdEnv); dir != "" {
		if _, err := dirlock.Lock(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}
