package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/spf13/cobra"
)

func eventsCommand(g *globals) *cobra.Command {
	var job, queue string
	var types []string
	var after eventID
	cmd := &cobra.Command{
		Use:   "events [--job <job>] [--queue <queue>] [--type rm.job.failed]…",
		Short: "Print the raw event stream (CloudEvents) as it comes, resuming after a lost connection",
		Long: "Print events as they come: by default one line each (id, time, type, resource);\n" +
			"with -o json each CloudEvent as one JSON line. --after 0 starts with every stored event.\n\n" +
			reconnectHelp,
		Example: "  avxrm events\n  avxrm events --job job-01J… --after 0\n  avxrm events --type rm.job.failed --type rm.job.succeeded -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			if job != "" { // the stream of a job that is not there would wait for nothing, silently
				if _, err := c.Do(cmd.Context(), http.MethodGet, "/jobs/"+avxrm.PathSegment(job), nil, nil); isNotFound(err) && after.id != nil {
					// A deleted job's events stay in the stream: replay them.
					fmt.Fprintf(cmd.ErrOrStderr(), "avxrm: no job %q now (deleted, or a mistyped id); printing its stored events after %d, if any\n", job, *after.id)
				} else if isNotFound(err) {
					return fmt.Errorf("--job: %w; for a deleted job's stored events add --after 0", err)
				} else if err != nil {
					return err
				}
			}
			o := avxrm.WatchOptions{JobID: job, QueueID: queue, Types: types, After: after.id}
			w := cmd.OutOrStdout()
			ctx, stop := context.WithCancelCause(cmd.Context())
			defer stop(nil)
			newStreamReport(cmd.ErrOrStderr(), c.Server(), stop).watch(&o)
			for e, err := range c.Watch(ctx, o) {
				if err != nil {
					return eventsError(err, after)
				}
				switch g.output {
				case "json":
					raw, _ := json.Marshal(e.CloudEvent)
					fmt.Fprintf(w, "%s\n", raw)
				case "yaml":
					fmt.Fprintln(w, "---")
					if err := writeYAML(w, e.CloudEvent); err != nil {
						return err
					}
				default:
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", e.ID, e.CloudEvent.Time.Format(time.RFC3339), e.Type, e.CloudEvent.Subject)
				}
			}
			return eventsError(firstConnectionError(cmd.Context(), ctx), after)
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "only this job's events (and its scenario exports')")
	cmd.Flags().StringVar(&queue, "queue", "", "only events of resources on this queue")
	cmd.Flags().StringArrayVar(&types, "type", nil, "only events of this type (repeatable)")
	cmd.Flags().Var(&after, "after", "start after this event `id` (0: every stored event; default: only new ones)")
	return cmd
}

// eventID is the value of --after: an event id, nil when not given.
type eventID struct{ id *uint64 }

func (e *eventID) String() string {
	if e.id == nil {
		return ""
	}
	return strconv.FormatUint(*e.id, 10)
}

func (e *eventID) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return err
	}
	e.id = &n
	return nil
}

// Type is what flagError names in its error: a whole number ≥ 0.
func (e *eventID) Type() string { return "uint" }

// eventsError is err of 'avxrm events' in the words of its flags: the
// query's fields by the flags that gave them, a Last-Event-ID beyond the
// stream's end as --after.
func eventsError(err error, after eventID) error {
	if e := apiError(err, http.StatusRequestedRangeNotSatisfiable); e != nil && after.id != nil {
		last := ""
		if m := lastEvent.FindStringSubmatch(deref(e.Problem.Detail)); m != nil {
			last = " (" + m[1] + ")"
		}
		return withDetail(e, fmt.Sprintf("--after %d is beyond the last event of the stream%s: give a lower id, 0 for every stored event, or leave --after out for new events only",
			*after.id, last))
	}
	return flagErrors(err, paramFlags(map[string]string{"job_id": "job", "queue_id": "queue", "type": "type"}))
}

var lastEvent = regexp.MustCompile(`the last event of the stream \((\d+)\)`)

func watchCommand(g *globals) *cobra.Command {
	var queue string
	cmd := &cobra.Command{
		Use:   "watch [--queue <queue>]",
		Short: "A live table of the jobs that have not ended, redrawn on every job event",
		Long: "On a terminal the table is redrawn in place on every job event; otherwise each change\n" +
			"is printed as one line (id, status, reason).\n\n" + reconnectHelp,
		Example: "  avxrm watch\n  avxrm watch --queue Default",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.structured() {
				return errors.New("watch is a live view; for JSON or YAML use 'avxrm events -o json'")
			}
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			ctx, stop := context.WithCancelCause(cmd.Context())
			defer stop(nil)
			o := avxrm.WatchOptions{QueueID: queue}
			newStreamReport(cmd.ErrOrStderr(), c.Server(), stop).watch(&o)
			jobs := map[string]api.Job{}
			for l, err := range (&jobFilter{queue: queue}).list(ctx, c, false) { // the jobs that have not ended
				if err != nil {
					return err
				}
				jobs[*l.job.Id] = l.job
			}
			live := newLiveLine(cmd.OutOrStdout())
			draw := func() {
				if live.tty {
					fmt.Fprint(live.w, "\x1b[H\x1b[2J")
					drawJobs(live.w, jobs)
				}
			}
			if !live.tty {
				for _, j := range sortedJobs(jobs) {
					live.show(statusLine(&j))
				}
			}
			draw()
			for e, err := range c.Watch(ctx, o) {
				if err != nil {
					return err
				}
				if !strings.HasPrefix(e.Type, "rm.job.") {
					continue
				}
				j, err := e.Job()
				if err != nil || j.Id == nil {
					continue
				}
				if old, ok := jobs[*j.Id]; ok && old.Version != nil && j.Version != nil && *old.Version >= *j.Version {
					continue
				}
				jobs[*j.Id] = *j
				if !live.tty {
					live.show(statusLine(j))
				}
				draw()
				if avxrm.JobFinal(j) || e.Type == "rm.job.deleted" {
					delete(jobs, *j.Id)
				}
			}
			return firstConnectionError(cmd.Context(), ctx)
		},
	}
	cmd.Flags().StringVar(&queue, "queue", "", "only this queue's jobs")
	return cmd
}

// reconnectHelp says what events and watch do when the stream's
// connection fails: as 'kubectl get -w' and 'nats sub' do.
const reconnectHelp = "If the first connection to the server fails, the command ends at once with exit code 1.\n" +
	"A connection lost later is reopened, resuming after the last event printed (none is lost or\n" +
	"repeated); stderr says so, again every minute while the server cannot be reached, and once it is\n" +
	"back. Ctrl-C ends the command (exit code 130)."

// streamReport tells the user of the event streams of one command (a
// wait for many jobs holds one per job): it ends the command (stop) when a
// stream's first connection fails, and says on w when a connection is lost
// (once, however many streams lose it), every minute while one stays lost,
// and when every stream has it back.
type streamReport struct {
	w      io.Writer
	server string
	stop   context.CancelCauseFunc
	now    func() time.Time

	mu   sync.Mutex
	down int       // streams whose connection is lost
	lost time.Time // when the first of them lost it; zero while none has
	said time.Time // when w was last told that it is lost
}

func newStreamReport(w io.Writer, server string, stop context.CancelCauseFunc) *streamReport {
	return &streamReport{w: w, server: server, stop: stop, now: time.Now}
}

// watch makes o's callbacks report to r, as one more stream of those r
// tells of; o then serves one Watch (or FollowJob) at a time.
func (r *streamReport) watch(o *avxrm.WatchOptions) {
	var connected, down bool // this stream's
	o.OnConnect = func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		connected = true
		if !down {
			return
		}
		down = false
		if r.down--; r.down == 0 {
			fmt.Fprintf(r.w, "avxrm: reconnected to %s\n", r.server)
			r.lost = time.Time{}
		}
	}
	o.OnDisconnect = func(err error, _ int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		now := r.now()
		switch {
		case !connected:
			r.stop(err)
		case !down:
			down = true
			if r.down++; r.down == 1 {
				r.lost, r.said = now, now
				fmt.Fprintf(r.w, "avxrm: lost the connection to %s (%s); reconnecting\n", r.server, shortReason(err))
			}
		case now.Sub(r.said) >= time.Minute:
			r.said = now
			fmt.Fprintf(r.w, "avxrm: still cannot reach %s after %s (%s); reconnecting\n", r.server,
				shortDuration(now.Sub(r.lost)), shortReason(err))
		}
	}
}

// reconnects keeps a command that reads again and again (logs -f, arrays
// wait) going through a lost connection, told of on stderr as the event
// streams' are (streamReport): a failure of the first read ends it, a
// later one is read again after a backoff, until the server answers.
type reconnects struct {
	o       avxrm.WatchOptions
	first   error // the first read's failure
	attempt int
}

func newReconnects(errw io.Writer, server string) *reconnects {
	r := &reconnects{}
	newStreamReport(errw, server, func(err error) { r.first = err }).watch(&r.o)
	return r
}

// answered tells r that a read was answered.
func (r *reconnects) answered() {
	r.o.OnConnect()
	r.attempt = 0
}

// again says whether the read that failed with err is to be made again:
// err is a lost connection after the first read, and the backoff has passed.
func (r *reconnects) again(ctx context.Context, err error) bool {
	if !avxrm.Unreachable(err) || ctx.Err() != nil {
		return false
	}
	r.o.OnDisconnect(err, r.attempt)
	if r.first != nil || avxrm.Sleep(ctx, avxrm.DefaultBackoff.Wait(r.attempt)) != nil {
		return false
	}
	r.attempt++
	return true
}

// shortReason is why a connection failed, without the request's URL.
func shortReason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err.Error()
	}
	if errors.Is(err, io.EOF) {
		return "the server ended the stream"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// firstConnectionError is why the stream of ctx, derived from the
// command's, ended: the first connection's failure, or nil when the user
// ended it.
func firstConnectionError(cmdCtx, ctx context.Context) error {
	if cmdCtx.Err() == nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

func sortedJobs(jobs map[string]api.Job) []api.Job {
	out := make([]api.Job, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b api.Job) int { return strings.Compare(*a.Id, *b.Id) })
	return out
}

func drawJobs(w io.Writer, jobs map[string]api.Job) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tQUEUE\tSTATUS\tWORKERS\tREASON")
	for _, j := range sortedJobs(jobs) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", *j.Id, j.Name, deref(j.QueueName), deref((*string)(j.Status)), j.WorkerInstances, reason(&j))
	}
	_ = tw.Flush()
}
