package dirlock_test

import (
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

	// A holder killed with -9 leaves the directory free.
	holder := exec.Command("flock", "--close", dir+"/"+dirlock.Name, "sleep", "60") // the lock is flock(1)'s alone
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		release, err := dirlock.Lock(dir)
		if err != nil {
			break // flock(1) holds it
		}
		release()
		if i == 100 {
			t.Fatal("flock(1) never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = holder.Process.Kill()
	_ = holder.Wait()
	release, err = dirlock.Lock(dir)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	release()
}
