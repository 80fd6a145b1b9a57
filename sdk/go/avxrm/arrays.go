package avxrm

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// JobArrayFinal says whether no job of an array is in a status that is not
// final, as the API counts them: an array's counts cover only the jobs that
// exist (a deleted job is in none), so an array with jobs deleted ends
// with fewer jobs ended than its Count. Not final while the server has not
// said its counts.
func JobArrayFinal(a *api.JobArray) bool { return arrayActive(a) == 0 }

// arrayActive is how many jobs of an array have not ended; -1 when the
// server has not said its counts.
func arrayActive(a *api.JobArray) int64 {
	if a == nil || a.Counts == nil {
		return -1
	}
	var n int64
	for status, c := range *a.Counts {
		if !jobStatusFinal(status) {
			n += c
		}
	}
	return n
}

// arrayReadInterval is how often at most WaitJobArray reads the array
// again: a read counts its jobs (docs/API.md), so an array whose jobs end
// by the thousand is not read once for each.
const arrayReadInterval = time.Second

// arrayEnds are the events after which an array may have ended: one of
// its jobs ended or was deleted.
var arrayEnds = []string{"rm.job.succeeded", "rm.job.failed", "rm.job.cancelled", "rm.job.deleted"}

// WaitJobArray returns the job array, as GetJobArray does, once no job of
// it is in a status that is not final (JobArrayFinal; its FailedIndexes
// then name the jobs that failed), driven by the event stream: it reads the
// array, then follows the end events of the jobs of the array's queue from
// that moment on, and reads the array again after those of its jobs (at
// most once a second, however many jobs end) and once each connection of
// the stream is open (a job that ended in between is found so). It never
// polls.
func (c *Client) WaitJobArray(ctx context.Context, id string) (*api.JobArray, error) {
	a, err := c.GetJobArray(ctx, id)
	if err != nil || JobArrayFinal(a) {
		return a, err
	}
	wctx, stop := context.WithCancel(ctx)
	again := make(chan struct{}, 1) // read the array again; pending reads are one
	lost := make(chan error, 1)     // the watch's end
	tell := func() {
		select {
		case again <- struct{}{}:
		default:
		}
	}
	o := WatchOptions{Types: arrayEnds, OnConnect: tell}
	if a.QueueId != nil && *a.QueueId != "" {
		o.QueueID = *a.QueueId // the queue's id: its events, even if it is deleted meanwhile
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e, err := range c.Watch(wctx, o) {
			if err != nil {
				lost <- err
				return
			}
			if ofArray(e, id) {
				tell()
			}
		}
	}()
	defer func() { stop(); <-done }()
	read := time.Now() // when a was read
	var next <-chan time.Time
	for {
		select {
		case <-again:
			if next == nil {
				next = time.After(time.Until(read.Add(arrayReadInterval)))
			}
		case <-next:
			next = nil
			na, err := c.GetJobArray(wctx, id)
			read = time.Now()
			switch {
			case err != nil && ctx.Err() == nil:
				return a, fmt.Errorf("wait for job array %s: %w", id, err)
			case err == nil:
				a = na
				if JobArrayFinal(a) {
					return a, nil
				}
			}
		case err := <-lost:
			return a, fmt.Errorf("wait for job array %s: %w", id, err)
		case <-ctx.Done():
			state := "not final"
			if n := arrayActive(a); n >= 0 {
				state = fmt.Sprintf("not final (%d of its jobs not ended)", n)
			}
			return a, ended(ctx, "job array "+id, &state)
		}
	}
}

// ofArray says whether an event of arrayEnds may be of a job of the array
// id: its data names the array; or it is a deletion whose data names no
// array (the array is read again, rather than missing its end).
func ofArray(e Event, id string) bool {
	var j struct {
		ArrayID *string `json:"array_id"`
	}
	if json.Unmarshal(e.CloudEvent.Data, &j) != nil || j.ArrayID == nil {
		return e.Type == "rm.job.deleted"
	}
	return *j.ArrayID == id
}
