package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Bad input of every kind answers a 4xx RFC 9457 problem naming the field,
// never a 5xx, and writes nothing: the collection and the event stream are
// as they were.

// badCase is one bad request: either fields laid over a valid body (set),
// or a raw body sent as it is.
type badCase struct {
	set   obj    // fields to lay over the kind's valid body
	raw   string // sent verbatim instead, when set is nil
	field string // the field the problem must name; "" for none
}

// commonBadCases apply to every kind whose body has a name.
func commonBadCases() map[string]badCase {
	return map[string]badCase{
		"malformed JSON":         {raw: `{"name": "x",`},
		"not an object":          {raw: `["x"]`},
		"JSON null":              {raw: `null`},
		"empty body":             {raw: ``},
		"trailing garbage":       {raw: `{"name": "x"} {}`},
		"name wrong type":        {set: obj{"name": 5}, field: "name"},
		"name empty":             {set: obj{"name": ""}, field: "name"},
		"name 64 characters":     {set: obj{"name": strings.Repeat("n", 64)}, field: "name"},
		"name with $":            {set: obj{"name": "a$b"}, field: "name"},
		"name with NUL":          {set: obj{"name": "a\x00b"}, field: "name"},
		"name with dot first":    {set: obj{"name": ".hidden"}, field: "name"},
		"name operator object":   {set: obj{"name": obj{"$gt": ""}}, field: "name"},
		"name operator $ne null": {set: obj{"name": obj{"$ne": nil}}, field: "name"},
		"unknown field":          {set: obj{"bogus": 1}, field: "bogus"},
		"unknown $ field":        {set: obj{"$where": "1"}, field: "$where"},
		"env name invalid":       {set: obj{"environment_variables": obj{"1BAD": "x"}}, field: "environment_variables"},
		"env name with $":        {set: obj{"environment_variables": obj{"$set": "x"}}, field: "environment_variables"},
		"env the launcher sets":  {set: obj{"environment_variables": obj{"RM_JOB_ID": "x"}}, field: "environment_variables"},
		"env value not string":   {set: obj{"environment_variables": obj{"A": 1}}, field: "environment_variables.A"},
		"env value with NUL":     {set: obj{"environment_variables": obj{"A": "a\x00b"}}, field: "environment_variables.A"},
		"description with NUL":   {set: obj{"description": "\x00"}, field: "description"},
		"key given twice":        {raw: `{"name": 5, "name": "x"}`, field: "name"},
		"number out of range":    {raw: `{"name": "x", "version": 1e400}`},
		"oversized body":         {set: obj{"description": strings.Repeat("x", 1<<20+1)}},
		"non-UTF-8":              {raw: "{\"name\": \"\xff\xfe\"}"},
	}
}

// withCommon returns the common cases and more (which win).
func withCommon(more map[string]badCase) map[string]badCase {
	out := commonBadCases()
	for k, v := range more {
		out[k] = v
	}
	return out
}

func TestBadInputWritesNothing(t *testing.T) {
	e := startEnv(t)
	// What the references of app-runtime-configs and deployments point at.
	e.create("/queues", queueBody("target"))
	app := e.create("/applications", appBody("target", "1"))
	existing := map[string]string{
		"queues":       e.create("/queues", queueBody("existing")).str("id"),
		"plugins":      e.create("/plugins", pluginBody("existing")).str("id"),
		"applications": e.create("/applications", appBody("existing", "1")).str("id"),
		"deployments":  e.create("/deployments", deploymentBody("existing", app.str("id"), "target")).str("id"),
	}
	arcPath := "/app-runtime-config/target/application/" + app.str("id")
	e.create("/app-runtime-config/existing/application/"+app.str("id"), arcBody())

	kinds := map[string]struct {
		create, item, coll string
		base               obj
		cases              map[string]badCase
	}{
		"queue": {create: "/queues", item: "/queues/" + existing["queues"], coll: "queues", base: queueBody("new"), cases: withCommon(map[string]badCase{
			"name of an id's form":     {set: obj{"name": "q-01JABCDEFGHJKMNPQRSTVWXYZ0"}, field: "name"},
			"limit negative":           {set: obj{"maximum_allowed_worker_instances": -1}, field: "maximum_allowed_worker_instances"},
			"limit too large":          {set: obj{"maximum_allowed_worker_instances": 100001}, field: "maximum_allowed_worker_instances"},
			"limit float":              {set: obj{"maximum_allowed_worker_instances": 1.5}, field: "maximum_allowed_worker_instances"},
			"limit huge float":         {set: obj{"maximum_allowed_worker_instances": 1e300}, field: "maximum_allowed_worker_instances"},
			"limit string":             {set: obj{"maximum_allowed_worker_instances": "10"}, field: "maximum_allowed_worker_instances"},
			"cpu not a quantity":       {set: obj{"resource_limits": obj{"cpu": "two"}}, field: "resource_limits.cpu"},
			"memory negative":          {set: obj{"resource_limits": obj{"memory": "-1Gi"}}, field: "resource_limits.memory"},
			"gpu float":                {set: obj{"resource_limits": obj{"gpu": 0.5}}, field: "resource_limits.gpu"},
			"relative mount path":      {set: obj{"storages": []obj{{"name": "s", "type": "pvc", "source": "c", "mount_path": "data"}}}, field: "storages[0].mount_path"},
			"unclean mount path":       {set: obj{"storages": []obj{{"name": "s", "type": "pvc", "source": "c", "mount_path": "/a/../b"}}}, field: "storages[0].mount_path"},
			"storage type unknown":     {set: obj{"storages": []obj{{"name": "s", "type": "s3", "source": "c", "mount_path": "/d"}}}, field: "storages[0].type"},
			"storage unknown field":    {set: obj{"storages": []obj{{"name": "s", "type": "pvc", "source": "c", "mount_path": "/d", "size": 1}}}, field: "storages[0].size"},
			"toleration operator":      {set: obj{"attributes": obj{"tolerations": []obj{{"key": "k", "operator": "Maybe"}}}}, field: "attributes.tolerations[0].operator"},
			"toleration effect":        {set: obj{"attributes": obj{"tolerations": []obj{{"key": "k", "operator": "Equal", "value": "v", "effect": "Sometimes"}}}}, field: "attributes.tolerations[0].effect"},
			"toleration exists value":  {set: obj{"attributes": obj{"tolerations": []obj{{"key": "k", "operator": "Exists", "value": "v"}}}}, field: "attributes.tolerations[0].value"},
			"node selector key with $": {set: obj{"attributes": obj{"node_selector": obj{"$gt": "x"}}}, field: "attributes.node_selector"},
			"starvation negative":      {set: obj{"scheduling": obj{"starvation_seconds": -1}}, field: "scheduling.starvation_seconds"},
			"default max run zero":     {set: obj{"scheduling": obj{"default_max_run_seconds": 0}}, field: "scheduling.default_max_run_seconds"},
			"start timeout zero":       {set: obj{"scheduling": obj{"start_timeout_seconds": 0}}, field: "scheduling.start_timeout_seconds"},
			"start timeout string":     {set: obj{"scheduling": obj{"start_timeout_seconds": "20"}}, field: "scheduling.start_timeout_seconds"},
			"default max run negative": {set: obj{"scheduling": obj{"default_max_run_seconds": -5}}, field: "scheduling.default_max_run_seconds"},
			"default max run too long": {set: obj{"scheduling": obj{"default_max_run_seconds": 31536001}}, field: "scheduling.default_max_run_seconds"},
			"dangling plugin":          {set: obj{"plugin_id": "plg-NOPE"}, field: "plugin_id"},
		})},
		"plugin": {create: "/plugins", item: "/plugins/" + existing["plugins"], coll: "plugins", base: pluginBody("new"), cases: withCommon(map[string]badCase{
			"name of an id's form": {set: obj{"name": "plg-01JABCDEFGHJKMNPQRSTVWXYZ0"}, field: "name"},
			"type unknown":         {set: obj{"type": "podman"}, field: "type"},
			"config not object":    {set: obj{"config": "x"}, field: "config"},
			"config unknown":       {set: obj{"config": obj{"speed": 1}}, field: "config.speed"},
			"config out of range":  {set: obj{"config": obj{"run_seconds": -1}}, field: "config.run_seconds"},
			"config operator":      {set: obj{"config": obj{"run_seconds": obj{"$gt": 0}}}, field: "config.run_seconds"},
			"is_default string":    {set: obj{"is_default": "yes"}, field: "is_default"},
			"env not allowed":      {set: obj{"environment_variables": obj{"A": "1"}}, field: "environment_variables"},
			"env name invalid":     {set: obj{"environment_variables": obj{"1BAD": "x"}}, field: "environment_variables"},
			"env name with $":      {set: obj{"environment_variables": obj{"$set": "x"}}, field: "environment_variables"},
			"env value not string": {set: obj{"environment_variables": obj{"A": 1}}, field: "environment_variables"},
		})},
		"application": {create: "/applications", item: "/applications/" + existing["applications"], coll: "applications", base: appBody("new", "1"), cases: withCommon(map[string]badCase{
			"name of an id's form":  {set: obj{"name": "app-01JABCDEFGHJKMNPQRSTVWXYZ0"}, field: "name"},
			"version empty":         {set: obj{"version": ""}, field: "version"},
			"version 64":            {set: obj{"version": strings.Repeat("1", 64)}, field: "version"},
			"version number":        {set: obj{"version": 1.2}, field: "version"},
			"image with space":      {set: obj{"image": "a b"}, field: "image"},
			"image not a reference": {set: obj{"image": "BAD//Name:x"}, field: "image"},
			"command not array":     {set: obj{"command": "/bin/sh -c x"}, field: "command"},
			"command blank":         {set: obj{"command": []string{" "}}, field: "command[0]"},
			"args not strings":      {set: obj{"args": []any{1}}, field: "args[0]"},
			"resource_version in":   {set: obj{"resource_version": 3}, field: "resource_version"},
			"id in body":            {set: obj{"id": "app-x"}, field: "id"},
		})},
		"app-runtime-config": {create: arcPath, item: "/app-runtime-config/existing/application/" + app.str("id"), coll: "app_runtime_configs", base: arcBody(), cases: map[string]badCase{
			"malformed JSON":        {raw: `{"image": `},
			"oversized body":        {set: obj{"working_directory": "/" + strings.Repeat("x", 1<<20)}},
			"non-UTF-8":             {raw: "{\"image\": \"\xff\"}"},
			"image missing":         {set: obj{"image": nil}, field: "image"},
			"image operator":        {set: obj{"image": obj{"$gt": ""}}, field: "image"},
			"image not a reference": {set: obj{"image": "team/Sim:1"}, field: "image"},
			"workdir missing":       {set: obj{"working_directory": nil}, field: "working_directory"},
			"workdir relative":      {set: obj{"working_directory": "work"}, field: "working_directory"},
			"memory not quantity":   {set: obj{"resource_limits": obj{"memory": "lots"}}, field: "resource_limits.memory"},
			"gpu negative":          {set: obj{"resource_limits": obj{"gpu": -1}}, field: "resource_limits.gpu"},
			"env name invalid":      {set: obj{"environment_variables": obj{"A-B": "x"}}, field: "environment_variables"},
			"env the launcher sets": {set: obj{"environment_variables": obj{"RM_ROLE": "worker"}}, field: "environment_variables.RM_ROLE"},
			"unknown field":         {set: obj{"queue_id": "other"}, field: "queue_id"},
			"command item too big":  {set: obj{"command": []string{strings.Repeat("c", 5000)}}, field: "command[0]"},
		}},
		"deployment": {create: "/deployments", item: "/deployments/" + existing["deployments"], coll: "deployments", base: deploymentBody("new", app.str("id"), "target"), cases: withCommon(map[string]badCase{
			"name of an id's form": {set: obj{"name": "dep-01JABCDEFGHJKMNPQRSTVWXYZ0"}, field: "name"},
			"replicas too many":    {set: obj{"replicas": 10001}, field: "replicas"},
			"replicas negative":    {set: obj{"replicas": -1}, field: "replicas"},
			"replicas float":       {set: obj{"replicas": 1.5}, field: "replicas"},
			"replicas missing":     {set: obj{"replicas": nil}, field: "replicas"},
			"dangling application": {set: obj{"application_id": "app-NOPE"}, field: "application_id"},
			"dangling queue":       {set: obj{"queue_id": "nope"}, field: "queue_id"},
			"queue operator":       {set: obj{"queue_id": obj{"$ne": ""}}, field: "queue_id"},
			"status is read-only":  {set: obj{"status": obj{"ready_replicas": 1}}, field: "status"},
		})},
	}

	for kind, k := range kinds {
		for name, tc := range k.cases {
			t.Run(kind+"/"+name, func(t *testing.T) {
				if tc.field == "" && tc.set != nil && !strings.Contains(name, "oversized") {
					t.Fatal("a case that sets a field must name it")
				}
				var body any = tc.raw
				if tc.set != nil {
					b := k.base
					for f, v := range tc.set {
						b = b.with(f, v)
					}
					body = b
				}
				before, beforeEvents := e.count(k.coll), len(e.events(""))
				beforeDoc := e.rawDoc(k.coll)
				check := func(method, path string, body any) {
					t.Helper()
					r := e.do(method, v1+path, body)
					if r.Status < 400 || r.Status > 499 {
						t.Fatalf("%s %s = %s, want 4xx", method, path, truncate(r))
					}
					assertProblem(t, r, tc.field)
				}
				check(http.MethodPost, k.create, body)
				check(http.MethodPut, k.item, body)
				if tc.set != nil {
					check(http.MethodPatch, k.item, tc.set)
				} else {
					check(http.MethodPatch, k.item, tc.raw)
				}
				if n := e.count(k.coll); n != before {
					t.Errorf("%s: %d documents, was %d", k.coll, n, before)
				}
				if n := len(e.events("")); n != beforeEvents {
					t.Errorf("%d events published, was %d", n, beforeEvents)
				}
				if after := e.rawDoc(k.coll); after != beforeDoc {
					t.Errorf("the existing %s changed:\n%s\n%s", kind, beforeDoc, after)
				}
			})
		}
	}
}

// rawDoc is the whole content of a collection, to see that nothing changed.
func (e *env) rawDoc(coll string) string {
	e.t.Helper()
	cur, err := e.db.Collection(coll).Find(context.Background(), bson.D{})
	if err != nil {
		e.t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(context.Background(), &docs); err != nil {
		e.t.Fatal(err)
	}
	var b strings.Builder
	for _, d := range docs {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func truncate(r resp) string {
	s := r.String()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// TestBadJobInputWritesNothing is the table of bad submissions: jobs are
// only created (no PUT or PATCH), so each case is one POST.
func TestBadJobInputWritesNothing(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("Default"))
	big := strings.Repeat("a", 4000)
	manyArgs := make([]string, 13) // 13 × 4000 bytes: over the 48 KiB a job may carry
	for i := range manyArgs {
		manyArgs[i] = big
	}
	cases := map[string]badCase{
		"command not array":            {set: obj{"command": "/bin/sh -c x"}, field: "command"},
		"command not strings":          {set: obj{"command": []any{1}}, field: "command[0]"},
		"command item too long":        {set: obj{"command": []string{strings.Repeat("c", 4097)}}, field: "command[0]"},
		"command with NUL":             {set: obj{"command": []string{"/bin/sh", "a\x00b"}}, field: "command[1]"},
		"command empty program":        {set: obj{"command": []string{"", "-c"}}, field: "command[0]"},
		"command too many items":       {set: obj{"command": make([]string, 257)}, field: "command"},
		"args null item":               {set: obj{"args": []any{nil}}, field: "args[0]"},
		"args with NUL":                {set: obj{"args": []string{"\x00"}}, field: "args[0]"},
		"args too many items":          {set: obj{"args": make([]string, 1025)}, field: "args"},
		"args over the budget":         {set: obj{"args": manyArgs}, field: "args"},
		"args operator object":         {set: obj{"args": obj{"$gt": ""}}, field: "args"},
		"retry_on array item":          {set: obj{"retry_on": []any{[]any{}}}, field: "retry_on[0]"},
		"retry_on object item":         {set: obj{"retry_on": []any{obj{}}}, field: "retry_on[0]"},
		"env value with NUL":           {set: obj{"environment_variables": obj{"SEED": "4\x002"}}, field: "environment_variables.SEED"},
		"env the launcher sets":        {set: obj{"environment_variables": obj{"RM_WORKER_INSTANCES": "4"}}, field: "environment_variables.RM_WORKER_INSTANCES"},
		"inline env the launcher sets": {set: obj{"application": obj{"name": "i", "version": "1", "image": "i", "environment_variables": obj{"RM_INSTANCE_INDEX": "0"}}}, field: "application.environment_variables.RM_INSTANCE_INDEX"},
		"inline env with NUL":          {set: obj{"application": obj{"name": "i", "version": "1", "image": "i", "environment_variables": obj{"A": "\x00"}}}, field: "application.environment_variables.A"},
		"label with NUL":               {set: obj{"labels": obj{"team": "a\x00"}}, field: "labels.team"},
		"NUL in a field name":          {set: obj{"labels": obj{"te\x00am": "a"}}, field: "labels"},
		"inline image invalid":         {set: obj{"application": obj{"name": "i", "version": "1", "image": "UPPER CASE/with spaces:??"}}, field: "application.image"},
		"inline image with NUL":        {set: obj{"application": obj{"name": "i", "version": "1", "image": "a\x00b"}}, field: "application.image"},
		"inline image not a reference": {set: obj{"application": obj{"name": "bb", "version": "1", "image": "BAD//Name:x"}}, field: "application.image"},
		"unknown application id":       {set: obj{"application": obj{"id": "nope:1"}}, field: "application.id"},
		"key given twice":              {raw: `{"queue_id": "Default", "worker_instances": 1, "worker_instances": "x", "application": {"image": "i"}}`, field: "worker_instances"},
		"nested key given twice":       {raw: `{"queue_id": "Default", "worker_instances": 1, "application": {"image": "i", "image": 5}}`, field: "application.image"},
		"number out of range":          {raw: `{"queue_id": "Default", "worker_instances": 1e400, "application": {"image": "i"}}`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var b any = tc.raw
			if tc.set != nil {
				o := jobBody("Default", 1)
				for f, v := range tc.set {
					o = o.with(f, v)
				}
				b = o
			}
			beforeEvents := len(e.events(""))
			r := e.do(http.MethodPost, v1+"/jobs", b)
			if r.Status < 400 || r.Status > 499 {
				t.Fatalf("POST /jobs = %s, want 4xx", truncate(r))
			}
			assertProblem(t, r, tc.field)
			if n := e.count("jobs"); n != 0 {
				t.Errorf("%d jobs stored", n)
			}
			if n := len(e.events("")); n != beforeEvents {
				t.Errorf("%d events published, was %d", n, beforeEvents)
			}
		})
	}
}

// Job submissions and job arrays have no PUT or PATCH: their bad input is
// sent to POST only, and must leave the jobs, the arrays and the stream
// as they were. Two stored jobs that depend on each other (which the API
// cannot make: a record written behind its back) give the cycle.
func TestBadJobAndArrayInputWritesNothing(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", obj{"name": "Default", "maximum_allowed_worker_instances": 10})
	existing := e.create("/jobs", jobBody("Default", 1)).str("id")
	for _, c := range [][2]string{{"job-CYCLEA000000000000000000", "job-CYCLEB000000000000000000"}, {"job-CYCLEB000000000000000000", "job-CYCLEA000000000000000000"}} {
		if _, err := e.db.Collection("jobs").InsertOne(context.Background(), bson.D{{Key: "_id", Value: c[0]}, {Key: "version", Value: 1},
			{Key: "status", Value: "pending"}, {Key: "queue_id", Value: "q-x"},
			{Key: "depends_on", Value: bson.A{bson.D{{Key: "job_id", Value: c[1]}, {Key: "condition", Value: "succeeded"}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	dep := func(id, cond string) []obj { return []obj{{"job_id": id, "condition": cond}} }
	array := func(count, maxParallel any) obj {
		return obj{"job": jobBody("Default", 1), "count": count, "max_parallel": maxParallel}
	}
	arrayWith := func(f string, v any) obj { return array(10, 2).with("job", jobBody("Default", 1).with(f, v)) }
	cases := map[string]struct {
		path  string
		body  any
		field string
	}{
		"depends_on unknown job":      {"/jobs", jobBody("Default", 1).with("depends_on", dep("job-NOPE", "succeeded")), "depends_on[0].job_id"},
		"depends_on not an id":        {"/jobs", jobBody("Default", 1).with("depends_on", dep("Default", "succeeded")), "depends_on[0].job_id"},
		"depends_on empty id":         {"/jobs", jobBody("Default", 1).with("depends_on", dep("", "succeeded")), "depends_on[0].job_id"},
		"depends_on bad condition":    {"/jobs", jobBody("Default", 1).with("depends_on", dep(existing, "started")), "depends_on[0].condition"},
		"depends_on no condition":     {"/jobs", jobBody("Default", 1).with("depends_on", []obj{{"job_id": existing}}), "depends_on[0].condition"},
		"depends_on unknown field":    {"/jobs", jobBody("Default", 1).with("depends_on", []obj{{"job_id": existing, "condition": "finished", "after": 1}}), "depends_on[0].after"},
		"depends_on operator":         {"/jobs", jobBody("Default", 1).with("depends_on", []obj{{"job_id": obj{"$ne": ""}, "condition": "finished"}}), "depends_on[0].job_id"},
		"depends_on not a list":       {"/jobs", jobBody("Default", 1).with("depends_on", existing), "depends_on"},
		"depends_on twice":            {"/jobs", jobBody("Default", 1).with("depends_on", append(dep(existing, "succeeded"), dep(existing, "finished")...)), "depends_on[1].job_id"},
		"depends_on cycle":            {"/jobs", jobBody("Default", 1).with("depends_on", dep("job-CYCLEA000000000000000000", "succeeded")), "depends_on"},
		"depends_on 101 entries":      {"/jobs", jobBody("Default", 1).with("depends_on", manyDeps(101)), "depends_on"},
		"array_id is read-only":       {"/jobs", jobBody("Default", 1).with("array_id", "arr-x"), "array_id"},
		"max_run_seconds zero":        {"/jobs", jobBody("Default", 1).with("max_run_seconds", 0), "max_run_seconds"},
		"max_run_seconds too long":    {"/jobs", jobBody("Default", 1).with("max_run_seconds", 31536001), "max_run_seconds"},
		"max_run_seconds string":      {"/jobs", jobBody("Default", 1).with("max_run_seconds", "2"), "max_run_seconds"},
		"max_retries negative":        {"/jobs", jobBody("Default", 1).with("max_retries", -1), "max_retries"},
		"max_retries too many":        {"/jobs", jobBody("Default", 1).with("max_retries", 101), "max_retries"},
		"retry_on unknown kind":       {"/jobs", jobBody("Default", 1).with("retry_on", []string{"crashed"}), "retry_on[0]"},
		"retry_on twice":              {"/jobs", jobBody("Default", 1).with("retry_on", []string{"lost", "lost"}), "retry_on[1]"},
		"array job retry_on item":     {"/job-arrays", arrayWith("retry_on", []any{[]any{"lost"}}), "job.retry_on[0]"},
		"array job max_retries":       {"/job-arrays", arrayWith("max_retries", -1), "job.max_retries"},
		"array count zero":            {"/job-arrays", array(0, 1), "count"},
		"array count too large":       {"/job-arrays", array(100001, 1), "count"},
		"array count float":           {"/job-arrays", array(2.5, 1), "count"},
		"array count string":          {"/job-arrays", array("10", 1), "count"},
		"array count missing":         {"/job-arrays", obj{"job": jobBody("Default", 1), "max_parallel": 1}, "count"},
		"array max_parallel zero":     {"/job-arrays", array(10, 0), "max_parallel"},
		"array max_parallel > count":  {"/job-arrays", array(10, 11), "max_parallel"},
		"array job missing":           {"/job-arrays", obj{"count": 10}, "job"},
		"array unknown field":         {"/job-arrays", array(10, 2).with("parallelism", 3), "parallelism"},
		"array job unknown field":     {"/job-arrays", arrayWith("gpus", 1), "job.gpus"},
		"array job unknown queue":     {"/job-arrays", arrayWith("queue_id", "nope"), "job.queue_id"},
		"array job over the limit":    {"/job-arrays", arrayWith("worker_instances", 11), "job.worker_instances"},
		"array job zero workers":      {"/job-arrays", arrayWith("worker_instances", 0), "job.worker_instances"},
		"array job bad env name":      {"/job-arrays", arrayWith("environment_variables", obj{"1X": "y"}), "job.environment_variables"},
		"array job sets the index":    {"/job-arrays", arrayWith("environment_variables", obj{"RM_ARRAY_INDEX": "7"}), "job.environment_variables.RM_ARRAY_INDEX"},
		"array job name too long":     {"/job-arrays", array(1000, 2).with("job", jobBody("Default", 1).with("name", strings.Repeat("n", 60))), "job.name"},
		"array job bad name":          {"/job-arrays", arrayWith("name", ".x"), "job.name"},
		"array job unknown dep":       {"/job-arrays", arrayWith("depends_on", dep("job-NOPE", "finished")), "job.depends_on[0].job_id"},
		"array job dep cycle":         {"/job-arrays", arrayWith("depends_on", dep("job-CYCLEB000000000000000000", "finished")), "job.depends_on"},
		"array job env too large":     {"/job-arrays", arrayWith("environment_variables", obj{"BIG": strings.Repeat("x", 48<<10)}), "job.environment_variables"},
		"array job nothing to run":    {"/job-arrays", arrayWith("application", obj{}), "job.application"},
		"array malformed JSON":        {"/job-arrays", `{"count": 1,`, ""},
		"array not an object":         {"/job-arrays", `[1]`, ""},
		"array count operator":        {"/job-arrays", array(obj{"$gt": 0}, 1), "count"},
		"array job application wrong": {"/job-arrays", arrayWith("application", "sim"), "job.application"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			jobs, arrays, evs := e.count("jobs"), e.count("job_arrays"), len(e.events(""))
			r := e.do(http.MethodPost, v1+tc.path, tc.body)
			if r.Status < 400 || r.Status > 499 {
				t.Fatalf("POST %s = %s, want 4xx", tc.path, truncate(r))
			}
			assertProblem(t, r, tc.field)
			if n := e.count("jobs"); n != jobs {
				t.Errorf("jobs: %d documents, was %d", n, jobs)
			}
			if n := e.count("job_arrays"); n != arrays {
				t.Errorf("job_arrays: %d documents, was %d", n, arrays)
			}
			if n := len(e.events("")); n != evs {
				t.Errorf("%d events published, was %d", n, evs)
			}
		})
	}
}

func manyDeps(n int) []obj {
	out := make([]obj, n)
	for i := range out {
		out[i] = obj{"job_id": fmt.Sprintf("job-%026d", i), "condition": "finished"}
	}
	return out
}

// A body made from a resource as a GET returned it is refused (nothing is
// written), and each field the server sets is named read-only rather than
// unknown: on create, replace and merge patch of every kind, and on submit.
func TestReadOnlyFieldsAreNamedSo(t *testing.T) {
	e := startEnv(t)
	e.create("/queues", queueBody("target"))
	app := e.create("/applications", appBody("target", "1"))
	made := map[string]obj{
		"/queues":       e.create("/queues", queueBody("q")),
		"/plugins":      e.create("/plugins", pluginBody("p")),
		"/applications": e.create("/applications", appBody("a", "1")),
		"/deployments":  e.create("/deployments", deploymentBody("d", app.str("id"), "target")),
		"/jobs":         e.create("/jobs", jobBody("target", 1)),
	}
	const readOnly = "read-only: the server sets it"
	check := func(what string, r resp, want map[string]string) {
		t.Helper()
		if r.Status != http.StatusUnprocessableEntity {
			t.Fatalf("%s: %s, want 422", what, r)
		}
		var p struct {
			Errors []struct{ Field, Message string }
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, fe := range p.Errors {
			got[fe.Field] = fe.Message
		}
		for field, msg := range want {
			if got[field] != msg {
				t.Errorf("%s: %s: %q, want %q (%s)", what, field, got[field], msg, r.Body)
			}
		}
	}
	counts := map[string]int64{}
	for _, coll := range []string{"queues", "plugins", "applications", "deployments", "jobs"} {
		counts[coll] = e.count(coll)
	}
	for path, res := range made {
		got := e.must(http.StatusOK, http.MethodGet, v1+path+"/"+res.str("id"), nil).obj(t)
		got["bogus"] = 1
		want := map[string]string{"id": readOnly, "created_at": readOnly, "bogus": "unexpected property"}
		if path == "/jobs" {
			want["status"] = readOnly
			check("submit of a job as read", e.do(http.MethodPost, v1+path, got), want)
			continue
		}
		if path == "/applications" {
			got["version"] = "2"
		} else {
			got["name"] = got.str("name") + "-copy"
		}
		check("create of "+path+" as read", e.do(http.MethodPost, v1+path, got), want)
		check("replace of "+path+" as read", e.do(http.MethodPut, v1+path+"/"+res.str("id"), got), want)
		check("merge patch of "+path, e.do(http.MethodPatch, v1+path+"/"+res.str("id"), obj{"updated_at": "2026-01-01T00:00:00Z", "bogus": 1}),
			map[string]string{"updated_at": readOnly, "bogus": "unexpected property"})
	}
	for coll, n := range counts {
		if got := e.count(coll); got != n {
			t.Errorf("%s: %d documents, want %d: a refused body wrote", coll, got, n)
		}
	}
}

// A type filter of the event stream that no event can pass is refused:
// it would stream nothing, forever. The refusal lists the types of the
// kind named, or the kinds.
func TestEventTypeFilterRefusesUnknownTypes(t *testing.T) {
	e := startEnv(t)
	for query, want := range map[string]string{
		"?type=rm.job.bogus":                 `"rm.job.bogus" is no event type; those of a job are rm.job.submitted, rm.job.pending,`,
		"?type=rm.job.admitted,rm.job.start": `"rm.job.start" is no event type; those of a job are`,
		"?type=rm.jobs.submitted":            `"rm.jobs.submitted" is no event type: "jobs" is no kind; the kinds are queue, plugin, application, app-runtime-config, deployment, job, export`,
		"?type=job.submitted":                `"job.submitted" is not an event type (rm.<kind>.<action>)`,
	} {
		r := e.do(http.MethodGet, v1+"/events"+query, nil)
		var p struct {
			Errors []struct{ Field, Message string }
		}
		if err := json.Unmarshal(r.Body, &p); r.Status != http.StatusUnprocessableEntity || err != nil || len(p.Errors) != 1 ||
			p.Errors[0].Field != "type" || !strings.HasPrefix(p.Errors[0].Message, want) {
			t.Errorf("GET /events%s = %s, want 422 saying %q of type", query, r, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.stream(ctx, "/events?type=rm.job.admitted,rm.export.deleted,rm.app-runtime-config.updated", "")
}
