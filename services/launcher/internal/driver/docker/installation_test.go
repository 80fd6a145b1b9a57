package docker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/docker"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
)

// TestInstallationsDoNotSeeEachOther: two drivers of different
// installations on one engine neither report, stop, remove nor take over
// each other's containers, and neither sees a container labelled
// rm.managed=true (made before installation ids existed).
func TestInstallationsDoNotSeeEachOther(t *testing.T) {
	ctx := context.Background()
	a := newDriverOf(t, "test-a-"+randomHex(6))
	b := newDriverOf(t, "test-b-"+randomHex(6))
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	refA := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	refB := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	t.Cleanup(func() {
		a.Cleanup(context.Background(), refA.JobID)
		b.Cleanup(context.Background(), refB.JobID)
	})
	spec := func(ref driver.Ref, sleep string) driver.Spec {
		return driver.Spec{Ref: ref, Name: ref.Name(), Queue: "q", Image: testImage, Command: []string{"/sleeper"},
			Env: map[string]string{"RM_TEST_SLEEP": sleep}}
	}

	// A container as made before installation ids existed.
	legacyRef := driver.Ref{JobID: drivertest.JobID(t), Role: driver.RoleWorker}
	legacy, err := cli.ContainerCreate(ctx, &container.Config{Image: testImage, Entrypoint: []string{"/sleeper"},
		Env: []string{"RM_TEST_SLEEP=60"}, Labels: map[string]string{
			docker.LabelManaged: "true", docker.LabelJobID: legacyRef.JobID, docker.LabelRole: "worker", docker.LabelIndex: "0",
		}}, nil, nil, nil, legacyRef.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.ContainerRemove(context.Background(), legacy.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	})
	if err := cli.ContainerStart(ctx, legacy.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}

	wctx, cancel := context.WithTimeout(ctx, time.Minute) // a watch that hangs fails the test
	defer cancel()
	chA, _ := a.Watch(wctx)
	chB, _ := b.Watch(wctx)
	if err := a.Start(ctx, spec(refA, "60")); err != nil {
		t.Fatalf("A: Start() error = %v", err)
	}
	waitState(t, chA, refA, driver.Running)
	// B's events come in order: had it followed A's container, it would
	// have reported it before its own container ends.
	if err := b.Start(ctx, spec(refB, "0")); err != nil {
		t.Fatalf("B: Start() error = %v", err)
	}
	for st := range chB {
		if st.Ref != refB {
			t.Fatalf("B's Watch reported %s, not of its installation: %+v", st.Ref, st)
		}
		if st.State.Final() {
			break
		}
	}
	if wctx.Err() != nil {
		t.Fatalf("B's Watch ended before its container did: %v", wctx.Err())
	}

	for name, d := range map[string]*docker.Driver{"A": a, "B": b} {
		sts, err := d.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range sts {
			if st.Ref == legacyRef || (name == "A" && st.Ref == refB) || (name == "B" && st.Ref == refA) {
				t.Errorf("%s: List() has %s, not of its installation", name, st.Ref)
			}
		}
	}

	// B cannot touch A's container, nor the unlabelled one.
	if err := b.Stop(ctx, refA); err != nil {
		t.Errorf("B: Stop(A's) = %v, want nil (nothing of B's to stop)", err)
	}
	if err := b.Cleanup(ctx, refA.JobID); err != nil {
		t.Errorf("B: Cleanup(A's job) = %v", err)
	}
	if err := a.Cleanup(ctx, legacyRef.JobID); err != nil {
		t.Errorf("A: Cleanup(the old container's job) = %v", err)
	}
	if _, err := b.Logs(ctx, refA); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("B: Logs(A's) error = %v, want ErrNotFound", err)
	}
	if err := b.Start(ctx, spec(refA, "0")); err == nil || !strings.Contains(err.Error(), "taken by another container") {
		t.Errorf("B: Start() with the name of A's container = %v, want the name taken", err)
	}
	info, err := cli.ContainerInspect(ctx, refA.Name())
	if err != nil {
		t.Fatalf("A's container gone: %v", err)
	}
	if !info.State.Running {
		t.Errorf("A's container is %s, want running", info.State.Status)
	}
	// The old container is not checked for being there: launchers of older
	// versions, which other processes on this engine may run, remove it.
	sts, err := a.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !hasRef(sts, refA) {
		t.Errorf("A: List() lacks its own %s", refA)
	}
}

// TestNoInstallationIsRefused: a driver needs an installation id, and not
// "true", the label value of containers made before installation ids.
func TestNoInstallationIsRefused(t *testing.T) {
	for _, id := range []string{"", "true"} {
		if d, err := docker.NewDriver(driver.DockerConfig{}, driver.Options{Installation: id}); err == nil {
			d.Close()
			t.Errorf("NewDriver() with installation id %q succeeded", id)
		}
	}
}

func waitState(t *testing.T, ch <-chan driver.Status, ref driver.Ref, want driver.State) {
	t.Helper()
	for st := range ch {
		if st.Ref != ref {
			continue
		}
		if st.State == want {
			return
		}
		if st.State.Final() {
			t.Fatalf("%s ended %+v, want %s", ref, st, want)
		}
	}
	t.Fatalf("watch of %s closed before %s", ref, want)
}

func hasRef(sts []driver.Status, ref driver.Ref) bool {
	for _, st := range sts {
		if st.Ref == ref {
			return true
		}
	}
	return false
}
