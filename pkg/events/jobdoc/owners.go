package jobdoc

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/avxrm/rm/pkg/events"
)

// Writer is a service that changes jobs. Each field of a job has one writer
// (docs/job-record.md); Update refuses a change by any other.
type Writer string

// The writers.
const (
	// API records what the user asks: the spec and the requests.
	API Writer = "api"
	// Scheduler records admission and the release of what a job held.
	Scheduler Writer = "scheduler"
	// Launcher records the run.
	Launcher Writer = "launcher"
)

// ErrNotOwner: a service changed a field another service owns.
var ErrNotOwner = errors.New("jobdoc: field written by a service that does not own it")

// owners gives the writer of each field whose writer does not depend on the
// value written. Keys are the stored names; post_controller's fields are
// post_controller.<name>. status, finished_at, conditions and
// post_controller.status are decided by value (statusWriter and the rest
// below). Fields listed nowhere are written by this package alone (version,
// updated_at, warnings, instance_chunks) or by nobody after submission
// (_id, created_at); a new field must be added here and to docs/job-record.md.
var owners = map[string]Writer{
	"name": API, "queue_id": API, "queue_name": API, "application": API,
	"worker_instances": API, "environment_variables": API, "priority": API,
	"labels": API, "runtime": API, "command": API, "args": API, "submitted_at": API,
	"depends_on": API, "array_id": API, "array_index": API,
	"cancel_requested": API, "cleanup_requested": API,
	"post_controller.requested_at": API, "post_controller.stop_requested": API,
	"max_run_seconds": API, "max_retries": API, "retry_on": API,

	"admitted_at": Scheduler, "cleaned_at": Scheduler,

	"started_at": Launcher, "instances": Launcher, "instance_counts": Launcher,
	"post_controller.started_at": Launcher, "post_controller.stopped_at": Launcher,
	"attempt": Launcher, "attempts": Launcher,
}

// conditionOwners gives the writer of each condition type.
var conditionOwners = map[string]Writer{
	CondAdmitted:               Scheduler,
	CondPostControllerAdmitted: Scheduler,
	CondFailed:                 Launcher,
	CondCancelled:              Launcher,
	CondStarted:                Launcher,
	// CondFinished: nobody; Update derives it from the final status.
}

// statusWriter returns who may move a job from status from to status to:
// the scheduler decides admission (and cancels what it never admitted), the
// launcher everything of the run.
func statusWriter(from, to string) Writer {
	switch to {
	case events.JobPending, events.JobAdmitted:
		return Scheduler
	case events.JobCancelled:
		if from == events.JobSubmitted || from == events.JobPending {
			return Scheduler
		}
		return Launcher
	case events.JobRunning, events.JobSucceeded, events.JobFailed:
		return Launcher
	case events.JobSubmitted:
		// A retry: the launcher, having stopped the attempt's instances,
		// puts the job back to wait (docs/job-record.md).
		if from == events.JobAdmitted || from == events.JobRunning {
			return Launcher
		}
	}
	return ""
}

// postControllerWriter returns who may set a post controller's status to
// to: pending is the user's start request (the API), admitted the
// scheduler's, running and stopped the launcher's.
func postControllerWriter(to string) Writer {
	switch to {
	case events.PostControllerPending:
		return API
	case events.PostControllerAdmitted:
		return Scheduler
	case events.PostControllerRunning, events.PostControllerStopped:
		return Launcher
	}
	return ""
}

// Check returns ErrNotOwner naming every field w changed from before to
// after that w does not own; nil if w wrote only its own fields.
func Check(w Writer, before, after *events.Job) error {
	var bad []string
	for _, c := range Changes(before, after) {
		if c.Writer != w {
			who := string(c.Writer)
			if who == "" {
				who = "no service"
			}
			bad = append(bad, fmt.Sprintf("%s (written by %s)", c.Field, who))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s changed %s", ErrNotOwner, w, strings.Join(bad, ", "))
	}
	return nil
}

// Change is one field a write changed and the service that owns it there.
type Change struct {
	Field  string
	Writer Writer
}

// Changes lists the fields that differ between before and after, each with
// its owner for the value written.
func Changes(before, after *events.Job) []Change {
	var out []Change
	va, vb := reflect.ValueOf(before).Elem(), reflect.ValueOf(after).Elem()
	t := va.Type()
	for i := range t.NumField() {
		name := storedName(t.Field(i))
		if name == "instances_truncated" || reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			continue
		}
		switch name {
		case "status":
			out = append(out, Change{name, statusWriter(before.Status, after.Status)})
		case "finished_at":
			// With the final status, by whoever may write that status.
			var w Writer
			if before.Status != after.Status {
				w = statusWriter(before.Status, after.Status)
			}
			out = append(out, Change{name, w})
		case "conditions":
			out = append(out, conditionChanges(before, after)...)
		case "post_controller":
			out = append(out, postControllerChanges(before.PostController, after.PostController)...)
		default:
			out = append(out, Change{name, owners[name]})
		}
	}
	return out
}

// storedName is a field's stored name: its bson name, else its JSON name
// (instances, kept apart), "meta" for the inlined Meta.
func storedName(f reflect.StructField) string {
	b, _, _ := strings.Cut(f.Tag.Get("bson"), ",")
	if f.Anonymous {
		return "meta"
	}
	if b == "" || b == "-" {
		b, _, _ = strings.Cut(f.Tag.Get("json"), ",")
	}
	return b
}

// conditionChanges lists the conditions that differ between the jobs,
// each with its owner: conditionOwners, but Cancelled is written with the
// cancelled status, by whoever may write that status (the scheduler for a
// job it never admitted).
func conditionChanges(before, after *events.Job) []Change {
	var out []Change
	seen := map[string]bool{}
	for _, list := range [][]events.Condition{before.Conditions, after.Conditions} {
		for _, c := range list {
			if seen[c.Type] {
				continue
			}
			seen[c.Type] = true
			a, b := findCondition(before.Conditions, c.Type), findCondition(after.Conditions, c.Type)
			if reflect.DeepEqual(a, b) {
				continue
			}
			w := conditionOwners[c.Type]
			if c.Type == CondCancelled && after.Status == events.JobCancelled && before.Status != after.Status {
				w = statusWriter(before.Status, after.Status)
			}
			out = append(out, Change{"conditions[" + c.Type + "]", w})
		}
	}
	return out
}

func postControllerChanges(before, after *events.PostController) []Change {
	switch {
	case after == nil:
		return []Change{{"post_controller", ""}} // nobody removes one
	case before == nil:
		// A new one: the user's start request, pending.
		if after.Status == events.PostControllerPending && after.StartedAt == nil && after.StoppedAt == nil && !after.StopRequested {
			return []Change{{"post_controller", API}}
		}
		return []Change{{"post_controller", ""}}
	}
	var out []Change
	va, vb := reflect.ValueOf(before).Elem(), reflect.ValueOf(after).Elem()
	t := va.Type()
	for i := range t.NumField() {
		if reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			continue
		}
		name := "post_controller." + storedName(t.Field(i))
		w := owners[name]
		if name == "post_controller.status" {
			w = postControllerWriter(after.Status)
		}
		out = append(out, Change{name, w})
	}
	// A new request replaces a stopped one: the API writes it whole.
	if before.Status == events.PostControllerStopped && after.Status == events.PostControllerPending &&
		!after.RequestedAt.Equal(before.RequestedAt) && after.StartedAt == nil && after.StoppedAt == nil && !after.StopRequested {
		return []Change{{"post_controller", API}}
	}
	return out
}
