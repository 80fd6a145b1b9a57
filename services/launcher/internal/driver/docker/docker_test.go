package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/docker"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
)

// testImage is built by TestMain: FROM scratch plus the static sleeper.
var testImage string

// installation is this test process's installation id: other processes
// using the engine at the same time (the launcher's tests) have their own,
// so that neither sees nor removes the other's containers.
var installation = "test-" + randomHex(6)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		fmt.Fprintln(os.Stderr, "docker client:", err)
		return 1
	}
	defer cli.Close()
	tag, err := buildImage(cli)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build test image:", err)
		return 1
	}
	testImage = tag
	code := m.Run()
	// Containers of this run are removed by each test's cleanup.
	if _, err := cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
		fmt.Fprintln(os.Stderr, "remove test image:", err)
	}
	return code
}

// buildImage compiles testdata/sleeper statically and sends a FROM scratch
// build context to the engine.
func buildImage(cli *client.Client) (string, error) {
	dir, err := os.MkdirTemp("", "rm-docker-test")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "sleeper")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./testdata/sleeper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build sleeper: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY sleeper /sleeper\nENTRYPOINT [\"/sleeper\"]\n")},
		{"sleeper", 0o755, exe},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	tag := "rm-driver-test-sleeper:" + randomHex(4)
	resp, err := cli.ImageBuild(context.Background(), &ctxTar, build.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Dockerfile: "Dockerfile",
	})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if bytes.Contains(out, []byte(`"errorDetail"`)) {
		return "", fmt.Errorf("build failed: %s", out)
	}
	return tag, nil
}

func newDriver(t *testing.T) driver.Driver {
	return newDriverOf(t, installation)
}

func newDriverOf(t *testing.T, installation string) *docker.Driver {
	d, err := docker.NewDriver(driver.DockerConfig{}, driver.Options{Installation: installation}, docker.WithStopTimeout(time.Second))
	if err != nil {
		t.Fatalf("NewDriver() error = %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func behave(_ *testing.T, s *driver.Spec, b drivertest.Behaviour) {
	s.Image = testImage
	s.Command = []string{"/sleeper"}
	s.Env["RM_TEST_PRINT"] = b.Print
	s.Env["RM_TEST_SLEEP"] = strconv.FormatFloat(b.RunFor.Seconds(), 'f', 3, 64)
	s.Env["RM_TEST_EXIT"] = strconv.Itoa(b.Exit)
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, newDriver, drivertest.Features{
		Behave: behave, Logs: true, RealProcesses: true, ExitCodes: true, Reattach: true,
		Timeout: 30 * time.Second,
	})
}

// TestContainerSettings runs a container and checks, from inside it and
// through inspect, what the driver set.
func TestContainerSettings(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	ch, _ := d.Watch(ctx)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker, Index: 4}
	t.Cleanup(func() { d.Cleanup(context.Background(), ref.JobID) })
	host := t.TempDir()
	s := driver.Spec{
		Ref: ref, Name: ref.Name(), Queue: "q-gpu", Image: testImage,
		Command: []string{"/sleeper"}, Args: []string{"a", "b c"}, WorkingDir: "/data",
		Env:       map[string]string{"RM_TEST_SHOW": "1", "SEED": "42"},
		Resources: driver.Resources{CPU: "500m", Memory: "64Mi"},
		Storages: []driver.Storage{
			{Name: "scratch", Type: driver.StorageEmptyDir, MountPath: "/data"},
			{Name: "host", Type: driver.StorageHostPath, Source: host, MountPath: "/host", ReadOnly: true},
		},
		Labels: map[string]string{"team": "adas", docker.LabelJobID: "spoofed"},
	}
	if err := d.Start(ctx, s); err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	for st := range ch {
		if st.Ref == ref && st.State.Final() {
			if st.State != driver.Succeeded {
				t.Fatalf("container ended %+v", st)
			}
			break
		}
	}
	rc, err := d.Logs(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(rc)
	rc.Close()
	for _, want := range []string{"wd=/data", "env SEED=42", "args [a b c]"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("container output lacks %q:\n%s", want, out)
		}
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	info, err := cli.ContainerInspect(ctx, ref.Name())
	if err != nil {
		t.Fatal(err)
	}
	if got := info.HostConfig.NanoCPUs; got != 500_000_000 {
		t.Errorf("NanoCPUs = %d, want 5e8", got)
	}
	if got := info.HostConfig.Memory; got != 64<<20 {
		t.Errorf("Memory = %d, want %d", got, 64<<20)
	}
	wantLabels := map[string]string{"rm.managed": installation, "rm.job-id": ref.JobID, "rm.role": "worker", "rm.index": "4", "rm.queue": "q-gpu", "team": "adas"}
	for k, v := range wantLabels {
		if info.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, info.Config.Labels[k], v)
		}
	}
	mounts := map[string]string{}
	for _, m := range info.Mounts {
		mounts[m.Destination] = string(m.Type) + " rw=" + strconv.FormatBool(m.RW)
	}
	if mounts["/data"] != "volume rw=true" || mounts["/host"] != "bind rw=false" {
		t.Errorf("mounts = %v, want /data a writable volume and /host a read-only bind", mounts)
	}
}

// TestStartFailureIsReported: a container whose entrypoint does not exist
// fails to start; Start says so, as an invalid spec (no retry can cure it:
// the launcher fails the job at once with the engine's words, where it
// retried until the start timeout), and leaves nothing behind. So does an
// image reference the engine refuses.
func TestStartFailureIsReported(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	t.Cleanup(func() { d.Cleanup(context.Background(), ref.JobID) })
	err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: testImage, Command: []string{"/no/such/binary"}})
	if !errors.Is(err, driver.ErrInvalidSpec) || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Fatalf("Start() with a missing entrypoint = %v, want driver.ErrInvalidSpec naming it", err)
	}
	err = d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: "Not//A:Reference"})
	if !errors.Is(err, driver.ErrInvalidSpec) || !strings.Contains(err.Error(), "invalid reference format") {
		t.Errorf("Start() with an invalid image reference = %v, want driver.ErrInvalidSpec with the engine's reason", err)
	}
	sts, _ := d.List(ctx)
	for _, st := range sts {
		if st.Ref == ref {
			t.Errorf("List() still has %s after a failed start", ref)
		}
	}
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Queue: "q"}); err == nil {
		t.Error("Start() without an image succeeded")
	}
}

// TestContainerRemovedByHandIsLost: a running container removed behind the
// driver's back ends Failed with driver.ReasonLost and no exit code, so that
// the launcher records it lost (InstanceLost, retried by retry_on "lost").
// Before, the kill of the removal was reported as a failure "container
// being removed" with code 137, an InstanceFailed.
func TestContainerRemovedByHandIsLost(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	ch, _ := d.Watch(ctx)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	t.Cleanup(func() { d.Cleanup(context.Background(), ref.JobID) })
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: testImage,
		Command: []string{"/sleeper"}, Env: map[string]string{"RM_TEST_SLEEP": "60"}}); err != nil {
		t.Fatal(err)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	timeout := time.After(30 * time.Second)
	for removed := false; ; {
		select {
		case st := <-ch:
			if st.Ref != ref {
				continue
			}
			if st.State == driver.Running && !removed {
				if err := cli.ContainerRemove(ctx, ref.Name(), container.RemoveOptions{Force: true}); err != nil {
					t.Fatal(err)
				}
				removed = true
			}
			if !st.State.Final() {
				continue
			}
			if st.State != driver.Failed || st.Reason != driver.ReasonLost || st.ExitCode != nil {
				t.Errorf("status of a container removed by hand = %s reason %q message %q exit code %v, want Failed, %s, no exit code",
					st.State, st.Reason, st.Message, st.ExitCode, driver.ReasonLost)
			}
			return
		case <-timeout:
			t.Fatal("no final status after the container was removed")
		}
	}
}

// TestMissingImageIsImagePull: an image on no reachable registry makes
// Start fail with driver.ErrImagePull, its message the engine's ("pull
// image x: …"), so that the launcher reports ImagePullFailed; an engine
// that cannot be reached is driver.ErrUnavailable.
func TestMissingImageIsImagePull(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	t.Cleanup(func() { d.Cleanup(context.Background(), ref.JobID) })
	image := "rm-missing-" + strings.ToLower(drivertest.JobID(t)) + ":1"
	err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: image})
	if !errors.Is(err, driver.ErrImagePull) || errors.Is(err, driver.ErrInvalidSpec) {
		t.Fatalf("Start() with a missing image = %v, want driver.ErrImagePull", err)
	}
	if want := "pull image " + image + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}

	// An engine that refuses connections is known at once: the launcher
	// makes a driver on a job's way, and waiting 10 s for it there held
	// one of its workers per job on that plugin, the others' jobs waiting.
	began := time.Now()
	_, err = docker.NewDriver(driver.DockerConfig{Host: "unix://" + t.TempDir() + "/no.sock"}, driver.Options{Installation: installation})
	if !errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("NewDriver() on an engine that is down = %v, want driver.ErrUnavailable", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("NewDriver() on an engine that refuses connections took %s", took)
	}
}

// TestEngineThatDoesNotAnswer: an engine that accepts the connection and
// never answers fails NewDriver with driver.ErrUnavailable once the answer
// timeout has passed, after one connection, which it closes. Before,
// NewDriver returned a driver after 10 s whose List then waited for good,
// whatever its context said, behind the client's version negotiation (a
// ping without deadline): the launcher's worker that made the driver, and
// every one waiting for that plugin, were held with it.
func TestEngineThatDoesNotAnswer(t *testing.T) {
	engine := drivertest.ListenSilently(t)
	_, err := docker.NewDriver(driver.DockerConfig{Host: "tcp://" + engine.Addr}, driver.Options{Installation: installation},
		docker.WithAnswerTimeout(300*time.Millisecond))
	if !errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("NewDriver() on an engine that does not answer = %v, want driver.ErrUnavailable", err)
	}
	accepted, open := engine.Conns()
	for deadline := time.Now().Add(10 * time.Second); open > 0 && time.Now().Before(deadline); accepted, open = engine.Conns() {
		time.Sleep(10 * time.Millisecond)
	}
	if open != 0 || accepted != 1 {
		t.Errorf("after NewDriver(): %d connections open of %d accepted, want 0 of 1", open, accepted)
	}
}

// TestStartFromImageID: the engine creates a container from an image's
// id, bare (as 'docker images --no-trunc' prints it without sha256:) or
// with sha256:, so the API lets a queue on docker run one. A bare id of an
// image the engine has not is refused at its pull ("cannot specify 64-byte
// hexadecimal strings"): an invalid spec, which fails the job at once.
func TestStartFromImageID(t *testing.T) {
	ctx := context.Background()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	img, err := cli.ImageInspect(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	d := newDriver(t)
	ch, _ := d.Watch(ctx)
	for i, id := range []string{strings.TrimPrefix(img.ID, "sha256:"), img.ID} {
		ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker, Index: i}
		t.Cleanup(func() { d.Cleanup(context.Background(), ref.JobID) })
		if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: id, Command: []string{"/sleeper"}}); err != nil {
			t.Fatalf("Start() from image id %s: %v", id, err)
		}
		for st := range ch {
			if st.Ref == ref && st.State.Final() {
				if st.State != driver.Succeeded {
					t.Errorf("the container of image id %s ended %s (%s), want succeeded", id, st.State, st.Message)
				}
				break
			}
		}
	}
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker, Index: 2}
	err = d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: randomHex(32)})
	if !errors.Is(err, driver.ErrInvalidSpec) || !strings.Contains(err.Error(), "64-byte hexadecimal") {
		t.Errorf("Start() from the bare id of no image = %v, want driver.ErrInvalidSpec with the engine's reason", err)
	}
}

// TestStartsGoJobByJob: with one start at a time, a job's later start goes
// before the starts of a job that asked after it, as the engine's creation
// times show.
func TestStartsGoJobByJob(t *testing.T) {
	ctx := context.Background()
	d, err := docker.NewDriver(driver.DockerConfig{}, driver.Options{Installation: installation},
		docker.WithStopTimeout(time.Second), docker.WithStartSlots(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	jobA, jobB := drivertest.JobID(t)+"-a", drivertest.JobID(t)+"-b"
	t.Cleanup(func() {
		d.Cleanup(context.Background(), jobA)
		d.Cleanup(context.Background(), jobB)
	})
	release := docker.HoldStartSlots(d)
	refs := []driver.Ref{
		{JobID: jobA, Role: driver.RoleWorker, Index: 0},
		{JobID: jobB, Role: driver.RoleWorker, Index: 0},
		{JobID: jobA, Role: driver.RoleWorker, Index: 1},
	}
	errs := make(chan error, len(refs))
	for i, ref := range refs {
		go func() {
			errs <- d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: testImage,
				Command: []string{"/sleeper"}, Env: map[string]string{"RM_TEST_SLEEP": "30"}})
		}()
		for deadline := time.Now().Add(10 * time.Second); docker.StartsWaiting(d) < i+1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("start %d of %v never waited for a slot", i, ref)
			}
		}
	}
	release()
	for range refs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	created := map[driver.Ref]time.Time{}
	for _, ref := range refs {
		info, err := cli.ContainerInspect(ctx, ref.Name())
		if err != nil {
			t.Fatal(err)
		}
		if created[ref], err = time.Parse(time.RFC3339Nano, info.Created); err != nil {
			t.Fatal(err)
		}
	}
	a0, b0, a1 := created[refs[0]], created[refs[1]], created[refs[2]]
	if !a0.Before(a1) || !a1.Before(b0) {
		t.Errorf("created %s at %s, %s at %s, %s at %s; want job A's both before job B's",
			refs[0], a0.Format(time.StampMicro), refs[2], a1.Format(time.StampMicro), refs[1], b0.Format(time.StampMicro))
	}
}

// TestFailedStartIsNotLost: a container the engine creates and then cannot
// start for a reason a retry may cure (here the plugin's network does not
// exist; an NFS server down, a GPU busy) makes Start fail, and nothing else:
// the watch reports no end of the instance, and a later Start tries again.
// Before, the container's create and destroy events (the driver removes
// what did not start) reached the watch as a Pending instance that ended
// Failed with driver.ReasonLost: the launcher failed the job at once, "lost:
// the runtime no longer knows this instance", instead of retrying it with
// the engine's words until the queue's start timeout.
func TestFailedStartIsNotLost(t *testing.T) {
	ctx := context.Background()
	network := "rm-no-such-network-" + randomHex(4)
	d, err := docker.NewDriver(driver.DockerConfig{Network: network}, driver.Options{Installation: installation},
		docker.WithStopTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ch, _ := d.Watch(ctx)
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	t.Cleanup(func() { d.Cleanup(context.Background(), ref.JobID) })
	spec := driver.Spec{Ref: ref, Name: ref.Name(), Image: testImage, Command: []string{"/sleeper"}}
	for try := range 2 {
		err := d.Start(ctx, spec)
		if err == nil || errors.Is(err, driver.ErrInvalidSpec) || !strings.Contains(err.Error(), network) {
			t.Fatalf("Start() %d on a missing network = %v, want an error naming the network, to retry", try, err)
		}
	}
	// The engine's events of the two tries have come by now; another
	// container's start and end, after them, marks the end of the wait.
	other := driver.Ref{JobID: ref.JobID, Role: driver.RoleWorker, Index: 1}
	if err := newDriver(t).Start(ctx, driver.Spec{Ref: other, Name: other.Name(), Image: testImage, Command: []string{"/sleeper"}}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case st := <-ch:
			if st.Ref == ref {
				t.Fatalf("the watch reported %s %s (reason %q, %q) after failed starts, want nothing", ref, st.State, st.Reason, st.Message)
			}
			if st.Ref == other && st.State.Final() {
				if sts, _ := d.List(ctx); slices.ContainsFunc(sts, func(st driver.Status) bool { return st.Ref == ref }) {
					t.Errorf("List() reports %s after its failed starts", ref)
				}
				return
			}
		case <-timeout:
			t.Fatalf("no end of %s", other)
		}
	}
}

// TestCreatedContainerIsStartedByTheNextStart: a container created and
// never started (the launcher died between the create and the start of a
// Start) is not reported, so that the launcher, seeing the instance
// missing, starts it again, and that Start starts it. Before, List
// reported it Pending, which a container never leaves on its own: the
// launcher waited for it until the queue's start timeout.
func TestCreatedContainerIsStartedByTheNextStart(t *testing.T) {
	ctx := context.Background()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ref := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	d := newDriverOf(t, installation)
	t.Cleanup(func() { d.Cleanup(context.Background(), ref.JobID) })
	labels := map[string]string{docker.LabelManaged: installation, docker.LabelJobID: ref.JobID,
		docker.LabelRole: string(ref.Role), docker.LabelIndex: "0", docker.LabelQueue: "q"}
	if _, err := cli.ContainerCreate(ctx, &container.Config{Image: testImage, Entrypoint: []string{"/sleeper"},
		Env: []string{"RM_TEST_SLEEP=30"}, Labels: labels}, nil, nil, nil, ref.Name()); err != nil {
		t.Fatal(err)
	}
	d2 := newDriverOf(t, installation) // the launcher started again
	ch, _ := d2.Watch(ctx)
	sts, err := d2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Ref == ref {
			t.Fatalf("List() reports the created container %s %s, want it missing", ref, st.State)
		}
	}
	if err := d2.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: testImage, Command: []string{"/sleeper"}}); err != nil {
		t.Fatalf("Start() of the created container: %v", err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case st := <-ch:
			if st.Ref != ref {
				continue
			}
			if st.State != driver.Running {
				t.Fatalf("%s is %s (%s), want Running", ref, st.State, st.Message)
			}
			return
		case <-timeout:
			t.Fatalf("%s never reported running", ref)
		}
	}
}

// watchedJob is a driver, its status updates and a job id whose containers
// the test's cleanup removes.
func watchedJob(t *testing.T) (driver.Driver, <-chan driver.Status, string) {
	d := newDriver(t)
	ch, err := d.Watch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	job := drivertest.JobID(t)
	t.Cleanup(func() { d.Cleanup(context.Background(), job) })
	return d, ch, job
}

// codeOf is st's exit code as text, "none" without one.
func codeOf(st driver.Status) string {
	if st.ExitCode == nil {
		return "none"
	}
	return strconv.Itoa(*st.ExitCode)
}

// A process of the container killed at its memory limit fails the
// instance even when the main process goes on and exits 0: the job did not
// do all its work, and the engine says so (State.OOMKilled), as Slurm says
// OUT_OF_MEMORY of a step whose cgroup saw an OOM kill.
func TestOOMKillInsideFailsTheInstance(t *testing.T) {
	ctx := context.Background()
	d, ch, job := watchedJob(t)
	ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: testImage, Command: []string{"/sleeper"},
		Resources: driver.Resources{Memory: "32Mi"},
		Env:       map[string]string{"RM_TEST_CHILD_HOG": "256", "RM_TEST_EXIT": "0"}}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(60 * time.Second)
	for {
		select {
		case st := <-ch:
			if st.Ref != ref || !st.State.Final() {
				continue
			}
			if st.State != driver.Failed || st.ExitCode == nil || *st.ExitCode != 0 || !strings.Contains(st.Message, "out of memory") {
				t.Errorf("final status %s, exit code %s, message %q, want Failed, 0, out of memory", st.State, codeOf(st), st.Message)
			}
			if st.Reason != driver.ReasonExited {
				t.Errorf("reason %q, want %s (no stop of the driver's ended it)", st.Reason, driver.ReasonExited)
			}
			logs, _ := d.Logs(ctx, ref)
			if logs != nil {
				b, _ := io.ReadAll(logs)
				logs.Close()
				if !strings.Contains(string(b), "child: signal: killed") {
					t.Errorf("the log says %q, want the child killed (else the test tried nothing)", b)
				}
			}
			return
		case <-timeout:
			t.Fatal("no final status within 60 s")
		}
	}
}

// TestOwnEndIsTold: a container that fails on its own ends Failed with
// driver.ReasonExited, even when a Stop follows its end; one that a Stop
// ends does not, so that the launcher records the first failed and the
// second stopped when it stops a job's instances. Before, no docker
// container was told: one that failed on its own while the launcher was
// stopping the others (a controller and a worker failing together) was
// recorded stopped, its failure hidden.
func TestOwnEndIsTold(t *testing.T) {
	ctx := context.Background()
	d, ch, job := watchedJob(t)
	own := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 0}
	stopped := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: 1}
	for ref, env := range map[driver.Ref]map[string]string{
		own:     {"RM_TEST_SLEEP": "0.2", "RM_TEST_EXIT": "3"},
		stopped: {"RM_TEST_SLEEP": "60"},
	} {
		if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Image: testImage, Command: []string{"/sleeper"}, Env: env}); err != nil {
			t.Fatal(err)
		}
	}
	final := map[driver.Ref]driver.Status{}
	timeout := time.After(30 * time.Second)
	for len(final) < 2 {
		select {
		case st := <-ch:
			if st.JobID != job || !st.State.Final() {
				continue
			}
			final[st.Ref] = st
			if st.Ref == own {
				// The launcher stops the others, this one too, after a failure.
				for _, ref := range []driver.Ref{own, stopped} {
					if err := d.Stop(ctx, ref); err != nil {
						t.Fatal(err)
					}
				}
			}
		case <-timeout:
			t.Fatalf("final statuses %v, want both instances'", final)
		}
	}
	if st := final[own]; st.State != driver.Failed || st.Reason != driver.ReasonExited || st.ExitCode == nil || *st.ExitCode != 3 {
		t.Errorf("own end: %s reason %q exit code %v, want Failed, %s, 3", st.State, st.Reason, st.ExitCode, driver.ReasonExited)
	}
	if st := final[stopped]; st.State != driver.Failed || st.Reason != "" {
		t.Errorf("stopped: %s reason %q, want Failed without a reason", st.State, st.Reason)
	}
}
