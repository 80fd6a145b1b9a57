package standalone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	dto "github.com/prometheus/client_model/go"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"github.com/avxrm/rm/pkg/events/buildinfo"
	"github.com/avxrm/rm/pkg/events/eventstest"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// Variables set the values, flags win over them, and bad values of either
// are refused with the variable's name, before anything connects.
func TestSettingsFromVariablesAndFlags(t *testing.T) {
	var d time.Duration
	var n int
	var b bool
	var str string
	declare := func(getenv func(string) string) *Settings {
		s := newSettings("t", getenv)
		s.Duration(&d, "lease", "RM_T_LEASE", "1m", "")
		s.Int(&n, "workers", "RM_T_WORKERS", "8", "")
		s.Bool(&b, "store", "RM_T_STORE", "false", "")
		s.String(&str, "name", "RM_T_NAME", "x", "")
		return s
	}
	if err := declare(noEnv).parse(nil); err != nil || d != time.Minute || n != 8 || b || str != "x" {
		t.Fatalf("defaults: %v %v %v %v %q", err, d, n, b, str)
	}
	vars := env(map[string]string{"RM_T_LEASE": "5s", "RM_T_WORKERS": "3", "RM_T_STORE": "1", "RM_T_NAME": "y"})
	if err := declare(vars).parse(nil); err != nil || d != 5*time.Second || n != 3 || !b || str != "y" {
		t.Fatalf("variables: %v %v %v %v %q", err, d, n, b, str)
	}
	if err := declare(vars).parse([]string{"--lease=7s", "--workers", "4", "--store=false", "--name=z"}); err != nil || d != 7*time.Second || n != 4 || b || str != "z" {
		t.Fatalf("flags: %v %v %v %v %q", err, d, n, b, str)
	}
	for _, bad := range []map[string]string{{"RM_T_LEASE": "-1s"}, {"RM_T_LEASE": "soon"}, {"RM_T_WORKERS": "-2"}, {"RM_T_STORE": "perhaps"}} {
		err := declare(env(bad)).parse(nil)
		for k := range bad {
			if err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("%v: %v, want an error naming %s", bad, err, k)
			}
		}
	}
	for _, bad := range []string{"--lease=-1s", "--workers=x", "--nope=1", "stray"} {
		if err := declare(noEnv).parse([]string{bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// A binary refuses to start without its servers, or with a bad common
// setting, with status 2 and the variable named; --help exits 0.
func TestExecStatus(t *testing.T) {
	svc := &Service{Name: "rm-t", HTTPAddr: ":0", Run: func(context.Context, *Env) error { t.Error("ran"); return nil }}
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "RM_MONGO_URI"},
		{map[string]string{"RM_MONGO_URI": "mongodb://x"}, "RM_NATS_URL"},
		{map[string]string{"RM_MONGO_URI": "mongodb://x", "RM_NATS_URL": "nats://x", "RM_LOG_LEVEL": "loud"}, "RM_LOG_LEVEL"},
		{map[string]string{"RM_MONGO_URI": "mongodb://x", "RM_NATS_URL": "nats://x", "RM_EVENTS_REPLICAS": "0"}, "RM_EVENTS_REPLICAS"},
		{map[string]string{"RM_MONGO_URI": "mongodb://x", "RM_NATS_URL": "nats://x", "RM_NATS_PASSWORD": "pw"}, "RM_NATS_USER"},
		{map[string]string{"RM_MONGO_URI": "mongodb://x", "RM_NATS_URL": "nats://x", "RM_NATS_USER": "u", "RM_NATS_CREDS": "/c"}, "RM_NATS_CREDS"},
	} {
		var stderr bytes.Buffer
		if code := Exec(context.Background(), svc, nil, env(c.env), io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, %q; want 2 naming %s", c.env, code, stderr.String(), c.want)
		}
	}
	var out bytes.Buffer
	if code := Exec(context.Background(), svc, []string{"-h"}, noEnv, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "RM_NATS_URL") {
		t.Errorf("-h: exit %d, %q", code, out.String())
	}
	// --version needs no settings, wherever it stands.
	for _, args := range [][]string{{"--version"}, {"--log-level=loud", "-version"}} {
		out.Reset()
		if code := Exec(context.Background(), svc, args, noEnv, &out, io.Discard); code != 0 || out.String() != "rm-t "+buildinfo.Get().String()+"\n" {
			t.Errorf("%v: exit %d, %q; want 0 and the build", args, code, out.String())
		}
	}
}

// Against real servers, a service gets its connections and ops endpoints,
// and a stop by its context exits 0; a failing service exits 1.
func TestExecRunsAgainstServers(t *testing.T) {
	mongoURI, _ := mongotest.Start(t)
	ns := eventstest.RunServer(t)
	addr := eventstest.FreeAddr(t)
	vars := env(map[string]string{"RM_MONGO_URI": mongoURI, "RM_NATS_URL": ns.ClientURL(), "RM_MONGO_DB": "standalone_t"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sctx, stopNow := context.WithCancel(ctx)
	defer stopNow()
	svc := &Service{Name: "rm-t", HTTPAddr: ":0", Run: func(ctx context.Context, e *Env) error {
		if e.DB.Name() != "standalone_t" || e.HTTPAddr != addr {
			t.Errorf("env: db %s, addr %s", e.DB.Name(), e.HTTPAddr)
		}
		if _, err := e.JS.Stream(ctx, "RM_EVENTS"); err != nil {
			t.Errorf("streams not ensured: %v", err)
		}
		if e.Lookup == nil { // the embedded store's proxy answers the probe
			t.Error("env: no reads by index from the embedded store")
		}
		if err := e.ServeOps(ctx, e.HTTPAddr, func(context.Context) error { return nil }); err != nil {
			return err
		}
		if err := Probe(ctx, e.HTTPAddr); err != nil {
			t.Errorf("probe of a ready service: %v", err)
		}
		var got buildinfo.Info
		if err := getJSON("http://"+e.HTTPAddr+"/version", &got); err != nil || got != buildinfo.Get() {
			t.Errorf("GET /version: %+v, %v; want %+v", got, err, buildinfo.Get())
		}
		if mfs, err := e.Registry.Gather(); err != nil || !slices.ContainsFunc(mfs, func(m *dto.MetricFamily) bool { return m.GetName() == "rm_build_info" }) {
			t.Errorf("metrics without rm_build_info (%v)", err)
		}
		stopNow() // as SIGTERM does
		<-ctx.Done()
		return nil
	}}
	if code := Exec(ctx, svc, []string{"probe", "--http-addr=" + addr}, vars, io.Discard, io.Discard); code != 1 {
		t.Errorf("probe of nothing: exit %d, want 1", code)
	}
	var log bytes.Buffer
	if code := Exec(sctx, svc, []string{"--http-addr=" + addr}, vars, io.Discard, &log); code != 0 {
		t.Errorf("clean stop: exit %d", code)
	}
	if want := fmt.Sprintf(`"msg":"rm-t starting","service":"rm-t","version":%q`, buildinfo.Get().Version); !strings.Contains(log.String(), want) {
		t.Errorf("log without %s:\n%s", want, log.String())
	}
	for _, want := range []string{`"level":"INFO","msg":"rm-t stopping"`, `"level":"INFO","msg":"rm-t stopped","service":"rm-t","took":`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("a clean stop logged without %s:\n%s", want, log.String())
		}
	}
	svc.Run = func(context.Context, *Env) error { return errors.New("broken") }
	var stderr bytes.Buffer
	if code := Exec(ctx, svc, nil, vars, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "broken") {
		t.Errorf("failure: exit %d, %q", code, stderr.String())
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// The README's table of the common settings is current.
func TestREADMECommonTable(t *testing.T) {
	got, err := READMETable("../../../README.md", "common")
	if err != nil {
		t.Fatal(err)
	}
	if got != CommonTable() {
		t.Errorf("README's common table is stale; replace it with:\n%s", CommonTable())
	}
}

// Settings that cannot work are refused before anything connects, with
// status 2 and the setting named: a URI or URL the clients could not use,
// an address that cannot be listened on, and what the service's own Check
// says.
func TestExecRefusesUnusableSettings(t *testing.T) {
	svc := &Service{Name: "rm-t", HTTPAddr: ":0", Run: func(context.Context, *Env) error { t.Error("ran"); return nil }}
	// Settings let through would connect: not for longer than this.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok := map[string]string{"RM_MONGO_URI": "mongodb://mongo:27017/?replicaSet=rs0", "RM_NATS_URL": "nats://nats:4222"}
	for _, c := range []struct {
		k, v, want string
	}{
		{"RM_MONGO_URI", "mongo://mongo:27017", "RM_MONGO_URI"},
		{"RM_MONGO_URI", "mongodb://mongo:99999/", "RM_MONGO_URI"},
		{"RM_MONGO_URI", "mongodb://mongo:27017/?directConnection=maybe", "RM_MONGO_URI"},
		{"RM_NATS_URL", "http://nats:4222", "RM_NATS_URL"},
		{"RM_NATS_URL", "nats://nats:4222,https://other:4222", "RM_NATS_URL"},
		{"RM_NATS_URL", "nats://:4222", "RM_NATS_URL"},
		{"RM_HTTP_ADDR", "8080", "RM_HTTP_ADDR"},
		{"RM_HTTP_ADDR", ":80800", "RM_HTTP_ADDR"},
	} {
		vars := map[string]string{c.k: c.v}
		for k, v := range ok {
			if k != c.k {
				vars[k] = v
			}
		}
		var stderr bytes.Buffer
		if code := Exec(ctx, svc, nil, env(vars), io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%s=%s: exit %d, %q; want 2 naming %s", c.k, c.v, code, stderr.String(), c.want)
		}
	}
	// Good ones pass: several NATS URLs, host:port alone, a mongodb+srv URI.
	for _, vars := range []map[string]string{
		{"RM_MONGO_URI": "mongodb+srv://rm:pw@cluster.example/", "RM_NATS_URL": "nats://a:4222, tls://b:4222,c:4222", "RM_HTTP_ADDR": "127.0.0.1:9300"},
	} {
		s, c := svc.declare(env(vars))
		if err := s.parse(nil); err != nil {
			t.Fatal(err)
		}
		if err := c.validate(); err != nil {
			t.Errorf("%v refused: %v", vars, err)
		}
	}
	checked := &Service{Name: "rm-t", HTTPAddr: ":0", Check: func() error { return errors.New("RM_T_OWN is wrong") },
		Run: func(context.Context, *Env) error { t.Error("ran"); return nil }}
	var stderr bytes.Buffer
	if code := Exec(ctx, checked, nil, env(ok), io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "RM_T_OWN is wrong") {
		t.Errorf("Check's error: exit %d, %q; want 2 with it", code, stderr.String())
	}
	if err := CheckElection("RM_T_TTL", 2*time.Second, "RM_T_RENEW", 0); err != nil {
		t.Errorf("renew 1s (default) under TTL 2s: %v", err)
	}
	if err := CheckElection("RM_T_TTL", 0, "RM_T_RENEW", 5*time.Second); err == nil || !strings.Contains(err.Error(), "RM_T_RENEW=5s") || !strings.Contains(err.Error(), "RM_T_TTL=5s") {
		t.Errorf("renew 5s, TTL 5s (default): %v; want both named", err)
	}
}

// A NATS server that refuses the service's credentials closes the
// connection for good: the service exits at once (status 1), saying so and
// naming the settings, rather than retrying forever with "connection
// closed". One it cannot reach yet is retried, the warnings saying why.
func TestExecNATSCredentialsRefused(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "scheduler", Password: "right"})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)
	svc := &Service{Name: "rm-t", HTTPAddr: ":0", Run: func(context.Context, *Env) error { t.Error("ran"); return nil }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []struct {
		user, pass, want string
	}{
		{"scheduler", "wrong", `as RM_NATS_USER=\"scheduler\" with RM_NATS_PASSWORD: nats: authorization violation`}, // in JSON
		{"", "", "anonymously (neither RM_NATS_USER nor RM_NATS_CREDS is set)"},
	} {
		vars := env(map[string]string{"RM_MONGO_URI": "mongodb://127.0.0.1:9/", "RM_NATS_URL": ns.ClientURL(),
			"RM_NATS_USER": c.user, "RM_NATS_PASSWORD": c.pass, "RM_HTTP_ADDR": "127.0.0.1:0"})
		var log eventstest.SyncBuffer
		start := time.Now()
		code := Exec(ctx, svc, nil, vars, io.Discard, &log)
		if code != 1 || !strings.Contains(strings.ToLower(log.String()), strings.ToLower("closed the connection made "+c.want)) || time.Since(start) > 10*time.Second {
			t.Errorf("user %q password %q: exit %d after %v:\n%s\nwant 1 at once, saying %s", c.user, c.pass, code,
				time.Since(start).Round(time.Millisecond), log.String(), c.want)
		}
	}
	// Nothing listening: retried until ctx ends, each warning naming NATS and why.
	dead := eventstest.FreeAddr(t)
	sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer scancel()
	var log eventstest.SyncBuffer
	Exec(sctx, svc, nil, env(map[string]string{"RM_MONGO_URI": "mongodb://127.0.0.1:9/", "RM_NATS_URL": "nats://" + dead,
		"RM_HTTP_ADDR": "127.0.0.1:0"}), io.Discard, &log)
	if want := "not connected to NATS at nats://" + dead + " (RM_NATS_URL): dial tcp " + dead + ": connect: connection refused"; !strings.Contains(log.String(), want) {
		t.Errorf("unreachable NATS, log:\n%s\nwant a warning %q", log.String(), want)
	}

	// A password in RM_NATS_URL is not logged, whether NATS refuses it or
	// cannot be reached.
	for _, c := range []struct{ url, want string }{
		{"nats://scheduler:s3cr3t-in-url@" + strings.TrimPrefix(ns.ClientURL(), "nats://"), "closed the connection"},
		{"nats://scheduler:s3cr3t-in-url@" + dead, "not connected to NATS at nats://scheduler:xxxxx@" + dead},
		{"nats://127.0.0.1:9, scheduler:s3cr3t-in-url@" + dead, "not connected to NATS at nats://127.0.0.1:9,scheduler:xxxxx@" + dead},
	} {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		var log eventstest.SyncBuffer
		Exec(sctx, svc, nil, env(map[string]string{"RM_MONGO_URI": "mongodb://127.0.0.1:9/", "RM_NATS_URL": c.url,
			"RM_HTTP_ADDR": "127.0.0.1:0"}), io.Discard, &log)
		scancel()
		if strings.Contains(log.String(), "s3cr3t") || !strings.Contains(log.String(), c.want) {
			t.Errorf("RM_NATS_URL=%s, log:\n%s\nwant %q and no password", c.url, log.String(), c.want)
		}
	}
}

// A service's StoreWait is the client's wait for an unreachable store,
// unless the URI sets serverSelectionTimeoutMS; every operation may take
// 30 s.
func TestClientOptionsStoreWait(t *testing.T) {
	for _, c := range []struct {
		wait time.Duration
		uri  string
		want *time.Duration
	}{
		{5 * time.Second, "mongodb://store:27017", ptr(5 * time.Second)},
		{5 * time.Second, "mongodb://store:27017/?serverSelectionTimeoutMS=12000", ptr(12 * time.Second)},
		{0, "mongodb://store:27017", nil},
	} {
		o := clientOptions(&Service{StoreWait: c.wait}, c.uri)
		if err := o.Validate(); err != nil {
			t.Fatalf("%s: %v", c.uri, err)
		}
		got := o.ServerSelectionTimeout
		if (got == nil) != (c.want == nil) || got != nil && *got != *c.want {
			t.Errorf("StoreWait %s, %s: server selection timeout %v, want %v", c.wait, c.uri, got, c.want)
		}
		if o.Timeout == nil || *o.Timeout != 30*time.Second {
			t.Errorf("StoreWait %s, %s: operation timeout %v, want 30s", c.wait, c.uri, o.Timeout)
		}
	}
}

func ptr[T any](v T) *T { return &v }
