package avxrm_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
)

// The package's and the README's example, compiled.
func Example() {
	ctx := context.Background()
	name, version := "sleeper", "1"
	c, err := avxrm.New("http://127.0.0.1:8080") // the root URL; the base path is appended
	if err != nil {
		log.Fatal(err)
	}
	job, err := c.SubmitJob(ctx, api.JobBody{QueueId: "Default", WorkerInstances: 8,
		Application: api.JobApplicationRef{Name: &name, Version: &version}})
	if err != nil {
		log.Fatal(err)
	}
	job, err = c.WaitJob(ctx, *job.Id) // driven by the event stream
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(*job.Status)
	for j, err := range c.Jobs(ctx, avxrm.JobFilter{QueueID: "Default"}) { // every page
		if err != nil { // the server down, a 4xx or 5xx: then j is the zero Job
			log.Fatal(err) // an *avxrm.Error carries the RFC 9457 problem
		}
		fmt.Println(*j.Id, *j.Status)
	}
	// The concrete scenario files of samples s-001 and s-007 and the job's
	// common asset data (no sample named: no scenario file).
	x, err := c.CreateExport(ctx, *job.Id, api.ExportRequest{
		Samples: nullable.NewNullableWithValue([]string{"s-001", "s-007"})})
	if err != nil {
		log.Fatal(err)
	}
	if x, err = c.WaitExport(ctx, *x.Id); err != nil {
		log.Fatal(err)
	}
	d, err := c.DownloadExportFile(ctx, *x.Id, "sweep.zip", avxrm.DownloadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Size, d.SHA256, d.Files)
}

// Check an error against nil first; errors.Is then tells the statuses
// apart.
func Example_errors() {
	ctx := context.Background()
	c, err := avxrm.New("http://127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	q, err := c.GetQueue(ctx, "sim")
	switch {
	case errors.Is(err, avxrm.ErrNotFound):
		q, err = c.CreateQueue(ctx, api.QueueBody{Name: "sim"})
		if err != nil {
			log.Fatal(err)
		}
	case err != nil:
		var e *avxrm.Error
		if errors.As(err, &e) {
			fmt.Println(e.StatusCode, e.FieldErrors())
		}
		log.Fatal(err) // the connection's error, or one line: the status and the problem's detail
	}
	fmt.Println(*q.Id)
}

// An operation the package does not wrap, with the generated client:
// CheckResponse gives the *Error of a 4xx or 5xx answer, as the package's
// own calls do.
func ExampleCheckResponse() {
	ctx := context.Background()
	c, err := avxrm.New("http://127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	r, err := c.API.CreatePluginWithResponse(ctx, &api.CreatePluginParams{},
		api.PluginBody{Name: "local", Type: "local", Config: &map[string]any{"work_dir": "/var/lib/rm"}})
	if err == nil {
		err = avxrm.CheckResponse(r.HTTPResponse, r.Body)
	}
	if errors.Is(err, avxrm.ErrConflict) {
		fmt.Println("there is a plugin of that name")
	} else if err != nil {
		log.Fatal(err) // a 422 names the refused fields: err.(*avxrm.Error).FieldErrors()
	} else {
		fmt.Println(*r.JSON201.Id)
	}

	// An app-runtime-config of queue Default and application sleeper:1.
	rc, err := c.API.CreateAppRuntimeConfigWithResponse(ctx, "Default", "sleeper:1", &api.CreateAppRuntimeConfigParams{},
		api.AppRuntimeConfigBody{Image: "registry.example/sleeper:1", WorkingDirectory: "/work"})
	if err == nil {
		err = avxrm.CheckResponse(rc.HTTPResponse, rc.Body)
	}
	if err != nil {
		log.Fatal(err)
	}

	// A list the SDK has no iterator for: one page. Its items are a plain
	// slice here; the lists of jobs, pending jobs, instances, job events and
	// exports are nullable: range over avxrm.Values(l.Items).
	pr, err := c.API.ListQueuePendingWithResponse(ctx, "Default", &api.ListQueuePendingParams{})
	if err == nil {
		err = avxrm.CheckResponse(pr.HTTPResponse, pr.Body)
	}
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range avxrm.Values(pr.JSON200.Items) {
		fmt.Println(p.QueuePosition, p.Id)
	}
}

// A job array: its jobs, and a wait until none of them is left to end.
func ExampleClient_WaitJobArray() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	c, err := avxrm.New("http://127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	name, version := "sleeper", "1"
	a, err := c.CreateJobArray(ctx, api.JobArrayBody{Count: 100, MaxParallel: ptr(int64(10)),
		Job: api.JobBody{QueueId: "Default", WorkerInstances: 1, Application: api.JobApplicationRef{Name: &name, Version: &version}}})
	if err != nil {
		log.Fatal(err)
	}
	if a, err = c.WaitJobArray(ctx, *a.Id); err != nil {
		log.Fatal(err)
	}
	fmt.Println(*a.Counts, avxrm.Values(a.FailedIndexes))
	for j, err := range c.Jobs(ctx, avxrm.JobFilter{ArrayID: *a.Id, Status: "failed"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(*j.ArrayIndex, avxrm.Values(j.Warnings))
	}
}

// An instance's log: its last lines, then what follows until the job ends.
func ExampleClient_InstanceLog() {
	ctx := context.Background()
	c, err := avxrm.New("http://127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	jobID := "job-01J…"
	o := avxrm.LogOptions{Tail: 20}
	for {
		j, err := c.GetJob(ctx, jobID)
		if err != nil {
			log.Fatal(err)
		}
		l, err := c.InstanceLog(ctx, jobID, "worker", 0, o)
		if err != nil && !errors.Is(err, avxrm.ErrNotFound) { // no log yet: the job waits
			log.Fatal(err)
		}
		fmt.Print(string(l.Data))
		if err == nil {
			o = avxrm.LogOptions{Offset: l.End()}
		}
		if avxrm.JobFinal(j) {
			return
		}
		time.Sleep(time.Second)
	}
}
