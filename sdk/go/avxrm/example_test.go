package avxrm_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
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
		if errors.Is(err, avxrm.ErrNotFound) { // *avxrm.Error carries the RFC 9457 problem
			log.Fatal(err)
		}
		fmt.Println(*j.Id)
	}
	x, err := c.CreateExport(ctx, *job.Id, api.ExportRequest{})
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
