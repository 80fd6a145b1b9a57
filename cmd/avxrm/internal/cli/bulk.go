package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

// jobFilter selects jobs as GET /jobs does: by queue, status, labels,
// owner and job array.
type jobFilter struct {
	queue, status, owner, array string
	labels                      []string
}

// flags declares the filter's flags on cmd; verb starts their help ("only").
func (f *jobFilter) flags(cmd *cobra.Command, verb string) {
	fs := cmd.Flags()
	fs.StringVar(&f.queue, "queue", "", verb+" this queue's jobs")
	fs.StringVar(&f.status, "status", "", verb+" jobs of this status")
	fs.StringVar(&f.array, "array", "", verb+" the jobs of this job array (arr-…)")
	fs.StringArrayVar(&f.labels, "label", nil, "k=v: "+verb+" jobs with this label (repeatable)")
	fs.StringVar(&f.owner, "owner", "", verb+" the jobs of this owner (subject or username)")
}

func (f *jobFilter) empty() bool {
	return f.queue == "" && f.status == "" && f.owner == "" && f.array == "" && len(f.labels) == 0
}

// check refuses both job ids and filters, and neither: nothing is done to
// every job for want of a filter.
func (f *jobFilter) check(cmd *cobra.Command, args []string) error {
	if len(args) > 0 && !f.empty() {
		return errors.New("name the jobs or select them with filters, not both")
	}
	if len(args) == 0 && f.empty() {
		return fmt.Errorf("name the jobs, or select them with at least one of --queue, --status, --label, --owner, --array; usage: %s", cmd.UseLine())
	}
	return nil
}

// selected is the jobs a command names (args, each once, in the order
// first named), or else those f selects (with those that have ended if
// all); when none matches it says so on cmd's stderr and returns none.
func (f *jobFilter) selected(ctx context.Context, cmd *cobra.Command, c *avxrm.Client, args []string, all bool) ([]string, error) {
	if len(args) > 0 {
		seen := map[string]bool{}
		var ids []string
		for _, id := range args {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		return ids, nil
	}
	var ids []string
	for l, err := range f.list(ctx, c, all) {
		if err != nil {
			return nil, err
		}
		ids = append(ids, *l.job.Id)
	}
	if len(ids) == 0 {
		fmt.Fprintln(cmd.ErrOrStderr(), "no job matches")
	}
	return ids, nil
}

type listedJob struct {
	raw json.RawMessage
	job api.Job
}

// list yields the jobs the filter selects, as pages does, one at a time.
func (f *jobFilter) list(ctx context.Context, c *avxrm.Client, all bool) iter.Seq2[listedJob, error] {
	return func(yield func(listedJob, error) bool) {
		for page, err := range f.pages(ctx, c, all) {
			if err != nil {
				yield(listedJob{}, err)
				return
			}
			for _, l := range page {
				if !yield(l, nil) {
					return
				}
			}
		}
	}
}

// pages yields the jobs the filter selects a page at a time, in the order
// of their ids; those that have ended only if all is set or a status is
// asked for. A queue or an array that is not there is the server's error
// (404), not an empty list: a mistyped name must not look like nothing to
// do.
func (f *jobFilter) pages(ctx context.Context, c *avxrm.Client, all bool) iter.Seq2[[]listedJob, error] {
	q := url.Values{}
	for k, v := range map[string]string{"queue_id": f.queue, "status": f.status, "owner": f.owner, "array_id": f.array} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for _, l := range f.labels {
		q.Add("label", l)
	}
	return func(yield func([]listedJob, error) bool) {
		for _, p := range []struct{ ref, path string }{{f.queue, "/queues/"}, {f.array, "/job-arrays/"}} {
			if p.ref == "" {
				continue
			}
			if _, err := c.Do(ctx, http.MethodGet, p.path+avxrm.PathSegment(p.ref), nil, nil); err != nil {
				yield(nil, err)
				return
			}
		}
		if all || f.status != "" {
			for page, err := range listedPages(c.ListPages(ctx, "/jobs", q)) {
				if !yield(page, err) || err != nil {
					return
				}
			}
			return
		}
		// The jobs that have not ended, a status at a time: the server
		// reads those by index, where a list of every job reads them all.
		// Each status's list is in the order of ids: merged, they are too.
		lists := make([]iter.Seq2[[]listedJob, error], len(activeStatuses))
		for i, status := range activeStatuses {
			q := maps.Clone(q)
			q.Set("status", string(status))
			lists[i] = listedPages(c.ListPages(ctx, "/jobs", q))
		}
		for page, err := range mergeByID(lists) {
			if !yield(page, err) || err != nil {
				return
			}
		}
	}
}

// mergeByID merges lists, each of jobs in the order of their ids, into one
// in that order, yielded in batches of about a page: once it has as many
// jobs placed as the largest page read, it yields them before it reads the
// next page of any list, so that it holds a page of each list and about a
// page it has not yielded yet. A job in two lists (its status changed
// between their reads) is yielded once, as the later of those lists has
// it: the lists are of statuses in the order a job moves through them. A
// job that has ended is left out.
func mergeByID(lists []iter.Seq2[[]listedJob, error]) iter.Seq2[[]listedJob, error] {
	return func(yield func([]listedJob, error) bool) {
		type list struct {
			next func() ([]listedJob, error, bool)
			page []listedJob // what is left of its current page
			done bool
		}
		ls := make([]*list, len(lists))
		for i, seq := range lists {
			next, stop := iter.Pull2(seq)
			defer stop()
			ls[i] = &list{next: next}
		}
		var out []listedJob
		size := 0 // the largest page read
		for {
			for _, l := range ls {
				for !l.done && len(l.page) == 0 {
					if len(out) > 0 && len(out) >= size {
						if !yield(out, nil) {
							return
						}
						out = nil
					}
					page, err, ok := l.next()
					switch {
					case !ok:
						l.done = true
					case err != nil:
						yield(nil, err)
						return
					default:
						l.page, size = page, max(size, len(page))
					}
				}
			}
			first, found := "", false
			for _, l := range ls {
				if len(l.page) > 0 && (!found || deref(l.page[0].job.Id) < first) {
					first, found = deref(l.page[0].job.Id), true
				}
			}
			if !found {
				if len(out) > 0 {
					yield(out, nil)
				}
				return
			}
			var j listedJob
			for _, l := range ls {
				if len(l.page) > 0 && deref(l.page[0].job.Id) == first {
					j, l.page = l.page[0], l.page[1:]
				}
			}
			if !avxrm.JobFinal(&j.job) {
				out = append(out, j)
			}
		}
	}
}

// activeStatuses are the statuses of a job that has not ended, in the
// order a job moves through them.
var activeStatuses = []api.JobStatus{api.JobStatusSubmitted, api.JobStatusPending, api.JobStatusAdmitted, api.JobStatusRunning}

// listedPages decodes the items of each page of a job list.
func listedPages(pages iter.Seq2[[]json.RawMessage, error]) iter.Seq2[[]listedJob, error] {
	return func(yield func([]listedJob, error) bool) {
		for page, err := range pages {
			if err != nil {
				yield(nil, err)
				return
			}
			jobs := make([]listedJob, len(page))
			for i, raw := range page {
				jobs[i].raw = raw
				if err := json.Unmarshal(raw, &jobs[i].job); err != nil {
					yield(nil, err)
					return
				}
			}
			if !yield(jobs, nil) {
				return
			}
		}
	}
}

// raws are the jobs of each page as the server sent them.
func raws(pages iter.Seq2[[]listedJob, error]) iter.Seq2[[]json.RawMessage, error] {
	return func(yield func([]json.RawMessage, error) bool) {
		for page, err := range pages {
			items := make([]json.RawMessage, len(page))
			for i, l := range page {
				items[i] = l.raw
			}
			if !yield(items, err) || err != nil {
				return
			}
		}
	}
}

// bulk is a request made of each job a command names or selects.
type bulk struct {
	use, short     string
	noun           string // what it acts on, plural: "jobs" unless set
	method, suffix string
	done           string // printed after each job's id
	// activeOnly: the filters select only jobs that have not ended (a
	// cancel); else jobs of every status.
	activeOnly bool
	// run, if set, is what is done to each job instead of the request;
	// it returns what it did.
	run     func(ctx context.Context, c *avxrm.Client, id string) (result, error)
	long    string // more for --help
	example string
	aliases []string
}

// activeStatusNames are the statuses of a job that has not ended.
func activeStatusNames() []string {
	names := make([]string, len(activeStatuses))
	for i, s := range activeStatuses {
		names[i] = string(s)
	}
	return names
}

// bulkParallel is how many of a bulk command's requests are in flight.
const bulkParallel = 8

// bulkAction is the command of b: it takes job ids, or filters that select
// the jobs (never both, and not neither: nothing is done to every job for
// want of a filter), makes the request of each, 8 at a time, prints a line
// for each job and fails, after trying every one, if any request did.
func bulkAction(g *globals, b bulk) *cobra.Command {
	var f jobFilter
	selects := "every job"
	if b.activeOnly {
		selects = "every job that has not ended"
	}
	cmd := &cobra.Command{
		Use:     b.use + " [<job>…] [--queue <queue>] [--status …] [--label k=v] [--owner …] [--array arr-…]",
		Aliases: b.aliases,
		Short:   b.short,
		Long: b.short + ".\n\n" + b.long + "Name the jobs, or select them with filters: " + selects + " that every filter given\n" +
			"matches, as 'avxrm jobs ls' lists them. Each job's request is made (8 at a time) and a line\n" +
			"printed for it as it is done, in the order the jobs are named or listed; the command fails, after\n" +
			"trying every job, if any request did. Ctrl-C stops it (exit 130): no further request is made,\n" +
			"and stderr says how many jobs were done and how many not tried (or cut off in flight); run it again for the rest.",
		Example: cmp.Or(b.example, "  avxrm jobs "+b.use+" job-01J…\n  avxrm jobs "+b.use+" job-01J… job-01K…\n"+
			"  avxrm jobs "+b.use+" --queue Default --label campaign=night-7"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd, args); err != nil {
				return err
			}
			if b.activeOnly && slices.Contains(finalStatuses, f.status) {
				return fmt.Errorf("--status %s: a %s job has ended, and 'jobs %s' acts on jobs that have not: give --status %s, or none for all of them",
					f.status, f.status, b.use, strings.Join(activeStatusNames(), ", "))
			}
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			ids, err := f.selected(cmd.Context(), cmd, c, args, !b.activeOnly)
			if err != nil || len(ids) == 0 {
				return err
			}
			return b.each(cmd, g, c, ids)
		},
	}
	f.flags(cmd, "select")
	return cmd
}

// each makes b's request for every id, bulkParallel at a time, printing
// one line per job in the order given as soon as it and those before it
// are done (a command over 20,000 jobs shows its progress, and what it did
// before a Ctrl-C); with -o json|yaml, a list of each job's result or error
// at the end instead. Once the command's context ends (Ctrl-C) no further
// request is made, and the jobs not tried are counted on stderr, not each
// reported as failed: running the command again does the rest.
func (b bulk) each(cmd *cobra.Command, g *globals, c *avxrm.Client, ids []string) error {
	ctx := cmd.Context()
	errs, done := make([]error, len(ids)), make([]result, len(ids))
	run := b.run
	if run == nil {
		run = func(ctx context.Context, c *avxrm.Client, id string) (result, error) {
			_, err := c.Do(ctx, b.method, "/jobs/"+avxrm.PathSegment(id)+b.suffix, nil, nil)
			return result{Result: b.done}, err
		}
	}
	var (
		mu      sync.Mutex
		ended   = make([]bool, len(ids))
		next    int // the first job whose line is not printed yet
		failed  int
		skipped int // not tried, or cut off in flight (the server may have done it): interrupted
	)
	// cut reports whether job i's request was not made or cut short by
	// Ctrl-C: neither failed nor done.
	cut := func(i int) bool { return errs[i] != nil && ctx.Err() != nil && errors.Is(errs[i], context.Canceled) }
	// report prints the lines of the jobs done in order from next on; mu held.
	report := func() {
		for ; next < len(ids) && ended[next]; next++ {
			i := next
			switch {
			case cut(i):
				skipped++
			case errs[i] != nil:
				failed++
				if len(ids) > 1 {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", ids[i], message(errs[i]))
				}
			case !g.structured():
				fmt.Fprintln(cmd.OutOrStdout(), done[i].line())
			}
		}
	}
	var eg errgroup.Group
	eg.SetLimit(bulkParallel)
	for i, id := range ids {
		if ctx.Err() != nil {
			mu.Lock()
			errs[i], ended[i] = ctx.Err(), true
			mu.Unlock()
			continue
		}
		eg.Go(func() error {
			r, err := run(ctx, c, id)
			r.ID = id
			if err != nil {
				r = result{ID: id, Error: err.Error()}
			}
			mu.Lock()
			defer mu.Unlock()
			done[i], errs[i], ended[i] = r, err, true
			report()
			return nil
		})
	}
	_ = eg.Wait() // each job's error is in errs
	report()
	if g.structured() {
		known := []result{} // what was done: with -o json after a Ctrl-C too
		for i, r := range done {
			if !cut(i) {
				known = append(known, r)
			}
		}
		if err := printItem(cmd.OutOrStdout(), g.output, known); err != nil {
			return err
		}
	}
	if skipped > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "avxrm: interrupted: %d of %d %s done, %d failed, %d not tried or cut off in flight; run the command again for the rest\n",
			len(ids)-skipped-failed, len(ids), cmp.Or(b.noun, "jobs"), failed, skipped)
		return ctx.Err()
	}
	if len(ids) == 1 && errs[0] != nil {
		return errs[0] // one job: its error is the command's
	}
	if failed > 0 {
		return &exitError{code: ExitFailed, msg: fmt.Sprintf("%s: %d of %d %s failed", b.use, failed, len(ids), cmp.Or(b.noun, "jobs"))}
	}
	return nil
}

// resubmitFields are the fields of a job that its submission gave, which a
// resubmission sends again.
var resubmitFields = []string{"queue_id", "worker_instances", "environment_variables", "command", "args",
	"priority", "labels", "max_run_seconds", "max_retries", "retry_on", "depends_on"}

// resubmittedFrom is the label a resubmission gives its new job: the old
// job's id. It tells where a job came from, and makes a resubmission run
// twice (a command run again after an interruption, a campaign's script)
// submit each job once.
const resubmittedFrom = "rm.avxrm.io/resubmitted-from"

// resubmit submits a new job as job id was submitted: its queue,
// application, workers, variables, command and args, priority, labels,
// limits, retries and dependencies, and its name unless that was its id;
// labelled resubmittedFrom id. A job already resubmitted so is not again:
// its resubmission is named.
func resubmit(ctx context.Context, c *avxrm.Client, id string) (result, error) {
	var j map[string]any
	if _, err := c.Do(ctx, http.MethodGet, "/jobs/"+avxrm.PathSegment(id), nil, &j); err != nil {
		return result{}, err
	}
	var earlier struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	// A resubmission comes after the job it reruns (ids are time-ordered):
	// the list starts there, so that on the embedded store it reads the
	// jobs made since, not the whole history, for each job resubmitted.
	q := url.Values{"label": {resubmittedFrom + "=" + id}, "limit": {"1"}, "cursor": {id}}
	if _, err := c.Do(ctx, http.MethodGet, "/jobs?"+q.Encode(), nil, &earlier); err != nil {
		return result{}, err
	}
	if len(earlier.Items) > 0 {
		return result{Result: "already resubmitted", NewID: earlier.Items[0].ID}, nil
	}
	body := map[string]any{}
	for _, k := range resubmitFields {
		if v, ok := j[k]; ok && v != nil {
			body[k] = v
		}
	}
	labels := map[string]any{}
	if old, ok := body["labels"].(map[string]any); ok {
		maps.Copy(labels, old)
	}
	labels[resubmittedFrom] = id
	body["labels"] = labels
	if name, _ := j["name"].(string); name != "" && name != id {
		body["name"] = name
	}
	app, _ := j["application"].(map[string]any)
	if appID, _ := app["id"].(string); appID != "" {
		body["application"] = map[string]any{"id": appID}
	} else { // an inline application
		inline := map[string]any{}
		for _, k := range []string{"name", "version", "image", "environment_variables"} {
			if v, ok := app[k]; ok && v != nil {
				inline[k] = v
			}
		}
		body["application"] = inline
	}
	var out struct {
		ID string `json:"id"`
	}
	if _, err := c.Do(ctx, http.MethodPost, "/jobs", body, &out); err != nil {
		return result{}, err
	}
	r := result{Result: "resubmitted", NewID: out.ID}
	if arr, _ := j["array_id"].(string); arr != "" {
		// The API makes an array's jobs with the array only.
		r.Result = "resubmitted outside its array " + arr
	}
	return r, nil
}
