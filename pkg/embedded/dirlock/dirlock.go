// Package dirlock keeps a directory of data to one process at a time.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Name is the file in a locked directory whose lock says that a process
// uses it.
const Name = "avxrm.lock"

// InUseError says that another process holds the directory's lock.
type InUseError struct {
	Dir string
	PID int // the holder's, as its lock file says; 0 if unknown
}

func (e *InUseError) Error() string {
	by := "another process"
	if e.PID > 0 {
		by += fmt.Sprintf(" (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s is in use by %s; stop it, or give this one another directory", e.Dir, by)
}

// Lock takes dir (which must exist) for this process, or returns an
// *InUseError naming the process that has it: two servers on one directory
// (two NATS servers on one JetStream store, two FerretDBs on one SQLite
// file) would each take the other's writes for its own. The lock is the
// kernel's (flock) on an open file, so a process killed with -9 leaves none
// behind, and the processes it starts do not inherit it; the file keeps the
// holder's pid for the message. The returned function releases it.
func Lock(dir string) (release func(), err error) {
	path := filepath.Join(dir, Name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InUseError{Dir: dir, PID: holder(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// holder is the pid the lock file at path names, or 0.
func holder(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 0 {
		return 0
	}
	return pid
}
