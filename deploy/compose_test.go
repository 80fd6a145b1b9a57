package deploy

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// load reads deploy/compose with files as Compose v2 does (.env included).
func load(t *testing.T, files ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(files, cli.WithWorkingDirectory("compose"), cli.WithEnvFiles("compose/.env"), cli.WithDotEnv, cli.WithName("avxrm-test"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load %v: %v", files, err)
	}
	return p
}

var rmServices = []string{"rm-api", "rm-scheduler-1", "rm-scheduler-2", "rm-launcher-1", "rm-launcher-2", "rm-scenario-export"}

func TestComposeFile(t *testing.T) {
	p := load(t, "compose/compose.yaml")
	names := p.ServiceNames()
	slices.Sort(names)
	want := append([]string{"mongo", "nats"}, rmServices...)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
	mongo := p.Services["mongo"]
	if !strings.HasPrefix(mongo.Image, "mongo:") || !slices.Contains(mongo.Command, "--replSet") ||
		mongo.HealthCheck == nil || !strings.Contains(strings.Join(mongo.HealthCheck.Test, " "), "rs.initiate") {
		t.Errorf("mongo: a replica set initiated by its health check, got %s %v %+v", mongo.Image, mongo.Command, mongo.HealthCheck)
	}
	nats := p.Services["nats"]
	if !strings.HasPrefix(nats.Image, "nats:") || len(nats.Volumes) != 2 {
		t.Errorf("nats: %s %+v", nats.Image, nats.Volumes)
	}
	users := map[string]bool{}
	for _, name := range rmServices {
		s := p.Services[name]
		if s.HealthCheck == nil || strings.Join(s.HealthCheck.Test, " ") != "CMD /app probe" {
			t.Errorf("%s: health check %+v, want /app probe (/readyz)", name, s.HealthCheck)
		}
		if s.Restart != "unless-stopped" || !s.ReadOnly {
			t.Errorf("%s: restart %q, read-only %v", name, s.Restart, s.ReadOnly)
		}
		if d, ok := s.DependsOn["mongo"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: depends on mongo %+v, want healthy", name, s.DependsOn)
		}
		if _, ok := s.DependsOn["nats"]; !ok {
			t.Errorf("%s: does not depend on nats", name)
		}
		env := s.Environment
		for _, k := range []string{"RM_MONGO_URI", "RM_NATS_URL", "RM_NATS_USER", "RM_NATS_PASSWORD"} {
			if v := env[k]; v == nil || *v == "" {
				t.Errorf("%s: %s not set", name, k)
			}
		}
		if u := env["RM_NATS_USER"]; u != nil {
			users[*u] = true
		}
		if s.Build == nil || s.Build.Dockerfile != "deploy/images/Dockerfile" || s.Build.Args["VERSION"] == nil {
			t.Errorf("%s: build %+v, want deploy/images/Dockerfile with the VERSION the binaries report", name, s.Build)
		}
	}
	if len(users) != 4 {
		t.Errorf("NATS users %v, want one per service", users)
	}
	if uri := *p.Services["rm-api"].Environment["RM_MONGO_URI"]; !strings.Contains(uri, "replicaSet=rs0") {
		t.Errorf("mongo uri %s", uri)
	}
	api := p.Services["rm-api"]
	if len(api.Ports) != 1 || api.Ports[0].HostIP != "127.0.0.1" || api.Ports[0].Published != "8080" || api.Ports[0].Target != 8080 {
		t.Errorf("rm-api ports %+v, want 127.0.0.1:8080", api.Ports)
	}
	for _, name := range []string{"rm-launcher-1", "rm-launcher-2"} {
		s := p.Services[name]
		if *s.Environment["RM_DEFAULT_DRIVER"] != "docker" || !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Source == "/var/run/docker.sock"
		}) {
			t.Errorf("%s: docker driver through the socket: %+v", name, s.Volumes)
		}
	}
	if n := p.Networks["workers"]; n.Labels["rm.stack"] != "avxrm" {
		t.Errorf("workers network %+v", n)
	}
	for _, v := range []string{"mongo-data", "nats-data", "launcher-1-data", "launcher-2-data"} {
		if _, ok := p.Volumes[v]; !ok {
			t.Errorf("volume %s missing", v)
		}
	}
}

func TestComposeOfflineOverride(t *testing.T) {
	p := load(t, "compose/compose.yaml", "compose/compose.offline.yaml")
	if img := p.Services["mongo"].Image; img != "avxrm/store:dev" {
		t.Errorf("mongo image %s", img)
	}
	if img := p.Services["nats"].Image; img != "avxrm/nats:dev" {
		t.Errorf("nats image %s", img)
	}
	if hc := p.Services["mongo"].HealthCheck; hc == nil || strings.Join(hc.Test, " ") != "CMD /app store probe" {
		t.Errorf("store health check %+v", hc)
	}
	for _, name := range rmServices {
		if uri := *p.Services[name].Environment["RM_MONGO_URI"]; uri != "mongodb://mongo:27017/" {
			t.Errorf("%s: mongo uri %s", name, uri)
		}
		if !strings.HasPrefix(p.Services[name].Image, "avxrm/") {
			t.Errorf("%s: image %s", name, p.Services[name].Image)
		}
	}
	if m := p.Services["mongo"]; *m.Environment["RM_DATA_DIR"] != "/data/db" || m.Volumes[0].Source != "mongo-data" {
		t.Errorf("store data not on the mongo-data volume: %+v %+v", m.Environment, m.Volumes)
	}
}
