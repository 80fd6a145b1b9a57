package local

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupTree is where the driver puts each instance in a cgroup of its own
// (cgroup v2): <base>/<job>/<role>-<index>, mirroring the instance
// directories, base being a cgroup of this driver's own under the
// launcher's (cgroupBase). A process cannot leave its cgroup without write
// access to another one's cgroup.procs, which setsid, a double fork or an
// environment of its own (env -i) do not give: what an instance leaves
// behind is what its cgroup holds, read from cgroup.procs and killed
// through cgroup.kill, with no pass over /proc. Where no such cgroup can be
// made (no cgroup v2 hierarchy, a read-only one as in a container, or
// clone3 refused), the driver finds the strays by their InstanceVar as
// before.
type cgroupTree struct {
	base string
}

// cgroupBase is the cgroup a driver whose instances live under root uses:
// a child of the launcher's own cgroup named after root, so that two
// drivers on one machine never sweep each other's.
func cgroupBase(mount, own, root string) string {
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(mount, own, "avxrm-local-"+hex.EncodeToString(sum[:6]))
}

// openCgroupTree makes the driver's base cgroup and checks that a process
// can be started into a cgroup under it; it says why not when it cannot.
func openCgroupTree(root string) (*cgroupTree, error) {
	mount, own, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	t := &cgroupTree{base: cgroupBase(mount, own, root)}
	if err := os.Mkdir(t.base, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("make cgroup %s: %w", t.base, err)
	}
	// Where the kernel keeps user xattrs on cgroups (Linux 5.7), the base
	// says whose it is, so that a later driver can remove it once that
	// work_dir is gone (removeOrphans).
	syscall.Setxattr(t.base, workDirXattr, []byte(root), 0)
	probe := filepath.Join(t.base, ".probe-"+strconv.Itoa(os.Getpid()))
	err = func() error {
		if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("make cgroup %s: %w", probe, err)
		}
		defer os.Remove(probe)
		f, err := os.Open(probe)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd := exec.Command("/bin/sh", "-c", ":") // what the wrapper runs on
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("start a process into cgroup %s: %w", probe, err)
		}
		return nil
	}()
	if err != nil {
		os.Remove(t.base) // only if empty: instances of an earlier driver may live there
		return nil, err
	}
	return t, nil
}

// workDirXattr names the extended attribute of a driver's base cgroup that
// holds the work_dir it is named after.
const workDirXattr = "user.avxrm.work_dir"

// removeOrphans removes the cgroups other drivers under the same launcher
// cgroup left behind whose work_dir no longer exists: a launcher killed
// with instances running and never started again on its work_dir (a
// temporary one, say) leaves their cgroups, empty once they end, and no
// driver would otherwise look at them again. Only empty cgroups go (a
// populated one refuses rmdir), and only bases that say whose they are and
// are named after that work_dir; it reports how many bases it removed.
func (t *cgroupTree) removeOrphans() (removed int) {
	parent := filepath.Dir(t.base)
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		path := filepath.Join(parent, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "avxrm-local-") || path == t.base {
			continue
		}
		buf := make([]byte, 4096)
		n, err := syscall.Getxattr(path, workDirXattr, buf)
		if err != nil {
			continue // older, or made where xattrs are not kept: left alone
		}
		root := string(buf[:n])
		if filepath.Base(cgroupBase("/", "", root)) != e.Name() {
			continue
		}
		if _, err := os.Lstat(root); !errors.Is(err, fs.ErrNotExist) {
			continue // its driver may come back
		}
		if removeEmpty(path) {
			removed++
		}
	}
	return removed
}

// removeEmpty removes the cgroup at path and those under it, deepest
// first, leaving those a process is in; it reports whether path went.
func removeEmpty(path string) bool {
	entries, _ := os.ReadDir(path)
	for _, e := range entries {
		if e.IsDir() {
			removeEmpty(filepath.Join(path, e.Name()))
		}
	}
	return os.Remove(path) == nil
}

// ownCgroup finds the cgroup v2 hierarchy's mount point and this process's
// cgroup in it.
func ownCgroup() (mount, own string, err error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", "", err
	}
	found := false
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "0::"); ok {
			own, found = p, true
		}
	}
	if !found || !strings.HasPrefix(own, "/") {
		return "", "", errors.New("no cgroup v2 hierarchy (/proc/self/cgroup has no 0:: line)")
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		root := unescapeMount(fields[3])
		rel := own
		if root != "/" {
			r, ok := strings.CutPrefix(own, root)
			if !ok || (r != "" && !strings.HasPrefix(r, "/")) {
				continue // a mount of another part of the hierarchy
			}
			rel = r
		}
		return unescapeMount(fields[4]), rel, nil
	}
	if err := sc.Err(); err != nil {
		return "", "", err
	}
	return "", "", errors.New("no cgroup v2 hierarchy mounted")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// of is the cgroup of the instance whose directory is rel (<job>/<role>-<index>)
// under the driver's root.
func (t *cgroupTree) of(rel string) string { return filepath.Join(t.base, rel) }

// make makes the cgroup at path (and its job's) and opens it, for a start
// into it. The job's is made again when the end of the job's last other
// instance removed it between the two mkdirs (endCgroup); once the
// instance's exists, its job's cannot go.
func (t *cgroupTree) make(path string) (*os.File, error) {
	err := os.MkdirAll(path, 0o755)
	for try := 0; errors.Is(err, fs.ErrNotExist) && try < 3; try++ {
		err = os.MkdirAll(path, 0o755)
	}
	if err != nil {
		return nil, err
	}
	return os.Open(path)
}

// isDir reports whether path is a directory.
func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// cgroupPIDs lists the processes in the cgroup at path.
func cgroupPIDs(path string) []int {
	b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// populated reports whether any live process is in the cgroup at path (or
// its children); one that is gone is not.
func populated(path string) bool {
	b, err := os.ReadFile(filepath.Join(path, "cgroup.events"))
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte("populated 1"))
}

// signalCgroup sends sig to every process in the cgroup at path but those
// of process group except (0: none), which the caller signalled itself;
// for SIGKILL it uses cgroup.kill (Linux 5.14), which also reaches
// processes forked meanwhile, and then waits for the cgroup to empty, at
// most strayDeathWait (one in uninterruptible sleep ends when it wakes).
func signalCgroup(path string, sig syscall.Signal, except int) {
	if sig == syscall.SIGKILL {
		if !populated(path) {
			return // what an instance leaves is mostly nothing
		}
		err := os.WriteFile(filepath.Join(path, "cgroup.kill"), []byte("1"), 0)
		for deadline := time.Now().Add(strayDeathWait); populated(path) && time.Now().Before(deadline); {
			if err != nil { // no cgroup.kill: a process forked after a read is in the next
				for _, pid := range cgroupPIDs(path) {
					syscall.Kill(pid, sig)
				}
			}
			time.Sleep(time.Millisecond)
		}
		return
	}
	for _, pid := range cgroupPIDs(path) {
		if except <= 0 || !inGroup(pid, except) {
			syscall.Kill(pid, sig)
		}
	}
}

// inGroup reports whether pid is in process group pgid.
func inGroup(pid, pgid int) bool {
	g, err := syscall.Getpgid(pid)
	return err == nil && g == pgid
}

// endCgroup kills what is left in the cgroup at path and removes it, and
// its job's when no other instance of the job has one there (a cgroup with
// a child refuses rmdir). Before, the job's stayed until the job's Cleanup,
// which a job that ended and is kept never gets: an empty cgroup was left
// for each such job, as many as jobs had run, until the driver's next
// start. (make makes the job's again if it goes between its making it and
// making the instance's in it.)
func endCgroup(path string) {
	signalCgroup(path, syscall.SIGKILL, 0)
	if os.Remove(path) == nil {
		os.Remove(filepath.Dir(path))
	}
}

// sweep kills and removes the cgroups under the base of instances that are
// not in keep (their directories gone, or not re-adopted), and removes the
// empty job cgroups.
func (t *cgroupTree) sweep(keep map[string]bool) {
	t.eachInstance(func(path string) {
		if !keep[path] {
			endCgroup(path)
		}
	})
}

// tidy removes the empty cgroups under the base, and the base when it is
// left empty: those of instances still running stay.
func (t *cgroupTree) tidy() {
	t.eachInstance(func(path string) {
		if !populated(path) {
			os.Remove(path)
		}
	})
	os.Remove(t.base)
}

// eachInstance calls fn with each instance cgroup under the base, then
// removes its job's cgroup if that is left empty.
func (t *cgroupTree) eachInstance(fn func(path string)) {
	jobs, _ := os.ReadDir(t.base)
	for _, j := range jobs {
		if !j.IsDir() {
			continue
		}
		job := filepath.Join(t.base, j.Name())
		insts, _ := os.ReadDir(job)
		for _, i := range insts {
			if i.IsDir() {
				fn(filepath.Join(job, i.Name()))
			}
		}
		os.Remove(job)
	}
}
