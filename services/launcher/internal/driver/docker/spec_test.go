package docker

import (
	"errors"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/google/go-cmp/cmp"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

func TestContainerSpecResources(t *testing.T) {
	cases := map[string]struct {
		res     driver.Resources
		wantCPU int64
		wantMem int64
		wantGPU []container.DeviceRequest
		wantErr bool
	}{
		"none":          {},
		"millicores":    {res: driver.Resources{CPU: "250m"}, wantCPU: 250_000_000},
		"cores":         {res: driver.Resources{CPU: "2"}, wantCPU: 2_000_000_000},
		"fraction":      {res: driver.Resources{CPU: "1.5"}, wantCPU: 1_500_000_000},
		"binary memory": {res: driver.Resources{Memory: "4Gi"}, wantMem: 4 << 30},
		"si memory":     {res: driver.Resources{Memory: "128M"}, wantMem: 128_000_000},
		"gpu":           {res: driver.Resources{GPU: 2}, wantGPU: []container.DeviceRequest{{Count: 2, Capabilities: [][]string{{"gpu"}}}}},
		"bad cpu":       {res: driver.Resources{CPU: "two"}, wantErr: true},
		"negative mem":  {res: driver.Resources{Memory: "-1Gi"}, wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, hc, err := containerSpec(driver.Spec{Name: "n", Image: "img", Resources: tc.res}, "", "inst")
			if tc.wantErr {
				if !errors.Is(err, driver.ErrInvalidSpec) {
					t.Fatalf("error = %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := struct {
				CPU, Mem int64
				GPU      []container.DeviceRequest
			}{hc.NanoCPUs, hc.Memory, hc.DeviceRequests}
			want := struct {
				CPU, Mem int64
				GPU      []container.DeviceRequest
			}{tc.wantCPU, tc.wantMem, tc.wantGPU}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("resources mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMountFor(t *testing.T) {
	cases := map[string]struct {
		in      driver.Storage
		want    mount.Mount
		wantErr bool
	}{
		"host path": {
			in:   driver.Storage{Name: "h", Type: driver.StorageHostPath, Source: "/srv/data", MountPath: "/data", ReadOnly: true},
			want: mount.Mount{Type: mount.TypeBind, Source: "/srv/data", Target: "/data", ReadOnly: true},
		},
		"empty dir": {
			in:   driver.Storage{Name: "e", Type: driver.StorageEmptyDir, MountPath: "/scratch"},
			want: mount.Mount{Type: mount.TypeVolume, Target: "/scratch"},
		},
		"pvc": {
			in:   driver.Storage{Name: "p", Type: driver.StoragePVC, Source: "scenarios", MountPath: "/scenarios"},
			want: mount.Mount{Type: mount.TypeVolume, Source: "scenarios", Target: "/scenarios"},
		},
		"nfs": {
			in: driver.Storage{Name: "n", Type: driver.StorageNFS, Source: "nfs.example:/exports/sim", MountPath: "/nfs", ReadOnly: true},
			want: mount.Mount{Type: mount.TypeVolume, Source: "rm-nfs-" + nfsHash("nfs.example:/exports/sim|addr=nfs.example,ro"), Target: "/nfs", ReadOnly: true,
				VolumeOptions: &mount.VolumeOptions{DriverConfig: &mount.Driver{Name: "local",
					Options: map[string]string{"type": "nfs", "o": "addr=nfs.example,ro", "device": ":/exports/sim"}}}},
		},
		"nfs without path":   {in: driver.Storage{Type: driver.StorageNFS, Source: "server", MountPath: "/nfs"}, wantErr: true},
		"relative host path": {in: driver.Storage{Type: driver.StorageHostPath, Source: "data", MountPath: "/d"}, wantErr: true},
		"relative target":    {in: driver.Storage{Type: driver.StorageEmptyDir, MountPath: "d"}, wantErr: true},
		"pvc without name":   {in: driver.Storage{Type: driver.StoragePVC, MountPath: "/d"}, wantErr: true},
		"unknown type":       {in: driver.Storage{Type: "ceph", MountPath: "/d"}, wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := mountFor(tc.in)
			if tc.wantErr {
				if !errors.Is(err, driver.ErrInvalidSpec) {
					t.Fatalf("error = %v, want ErrInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mountFor() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A job's command and args (resolved into the spec) become the container's
// entrypoint and command, replacing the image's.
func TestContainerSpecCommandAndArgs(t *testing.T) {
	s := driver.Spec{Name: "n", Image: "img", Command: []string{"/opt/sim/run"}, Args: []string{"--seed", "42"}}
	cfg, _, err := containerSpec(s, "", "inst")
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal([]string(cfg.Entrypoint), s.Command) || !cmp.Equal([]string(cfg.Cmd), s.Args) {
		t.Errorf("entrypoint %q cmd %q, want %q %q", cfg.Entrypoint, cfg.Cmd, s.Command, s.Args)
	}
}

// A driver takes only containers labelled with its installation id for its
// own: not another installation's, nor those made before installation ids
// (rm.managed=true).
func TestRefFromLabelsIsPerInstallation(t *testing.T) {
	d := &Driver{installation: "inst"}
	l := map[string]string{LabelManaged: "inst", LabelJobID: "job-1", LabelRole: "worker", LabelIndex: "2"}
	if ref, ok := d.refFromLabels(l); !ok || ref != (driver.Ref{JobID: "job-1", Role: driver.RoleWorker, Index: 2}) {
		t.Errorf("own container: %v, %v", ref, ok)
	}
	for _, other := range []string{"other", legacyManaged, ""} {
		l[LabelManaged] = other
		if ref, ok := d.refFromLabels(l); ok {
			t.Errorf("container with %s=%q taken as %v", LabelManaged, other, ref)
		}
	}
	if got := d.managedFilter().Get("label"); !cmp.Equal(got, []string{LabelManaged + "=inst"}) {
		t.Errorf("filter labels %q, want only %s=inst", got, LabelManaged)
	}
}
