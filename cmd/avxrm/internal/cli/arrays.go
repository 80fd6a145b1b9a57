package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/spf13/cobra"
)

// arraysCommand lists, shows, follows and cancels job arrays (submit
// --array makes them).
func arraysCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "arrays", Aliases: []string{"array"}, Short: "List, show, follow and cancel job arrays (submit --array makes them)",
		Example: "  avxrm arrays ls\n  avxrm arrays get arr-01J…\n  avxrm arrays wait arr-01J…\n  avxrm arrays cancel arr-01J…"}
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List job arrays", Args: cobra.NoArgs,
		Example: "  avxrm arrays ls\n  avxrm arrays ls -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			pages := c.ListPages(cmd.Context(), "/job-arrays", nil)
			if g.output == "table" {
				pages = pagesWithNames(cmd.Context(), c, pages, []string{"queue_id"})
			}
			return printPages(cmd.OutOrStdout(), g.output, arrayCols, pages, nil)
		},
	}
	get := &cobra.Command{
		Use: "get <array>", Short: "Show a job array with how many of its jobs have each status", Args: cobra.ExactArgs(1),
		Example: "  avxrm arrays get arr-01J… -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			var v json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/job-arrays/"+avxrm.PathSegment(args[0]), nil, &v); err != nil {
				return err
			}
			if g.table(cmd) {
				items, err := withNames(cmd.Context(), c, []json.RawMessage{v}, []string{"queue_id"})
				if err != nil {
					return err
				}
				v = items[0]
			}
			return g.printOne(cmd, v, arrayCols)
		},
	}
	var timeout time.Duration
	wait := &cobra.Command{
		Use: "wait <array>", Short: "Follow a job array's counts until every job has ended; the exit code says how they ended",
		Long: "Follow a job array's counts, read every second, until every job it has has ended (a deleted\n" +
			"job is counted as deleted, not waited for). The exit code\n" +
			"says how they ended: 0 if all succeeded, 1 if any failed (naming their indexes, the first\n" +
			"one's failure with its last lines of output, and the command that runs them again), else 3 if\n" +
			"any was cancelled; 130 when Ctrl-C stops the following (the jobs go on). --timeout gives up\n" +
			"after that long (exit 1; the jobs go on). A connection lost\n" +
			"after the first read is said on stderr and the counts read again once the server is back.",
		Args: cobra.ExactArgs(1), Example: "  avxrm arrays wait arr-01J…\n  avxrm arrays wait arr-01J… --timeout 8h",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, err := withTimeout(cmd, timeout)
			if err != nil {
				return err
			}
			defer cancel()
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			return timedOut(ctx, cmd, "array "+args[0], "not all of its jobs have ended", followArrayPrinting(ctx, cmd, g, c, args[0]))
		},
	}
	timeoutFlag(wait, &timeout)
	cancel := &cobra.Command{
		Use: "cancel <array>", Short: "Cancel every job of a job array that has not ended", Args: cobra.ExactArgs(1),
		Example: "  avxrm arrays cancel arr-01J…",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			if _, err := c.Do(cmd.Context(), http.MethodPost, "/job-arrays/"+avxrm.PathSegment(args[0])+"/cancel", nil, nil); err != nil {
				return err
			}
			return printResult(cmd, g, result{ID: args[0], Result: "cancel requested"})
		},
	}
	cmd.AddCommand(ls, get, wait, cancel)
	return cmd
}

var arrayCols = []column{{"NAME", givenName}, {"ID", field("id")}, {"QUEUE", field("queue_id")}, {"JOBS", field("count")},
	{"MAX PARALLEL", field("max_parallel")}, {"STATUS", func(m map[string]any) string {
		counts := map[string]int64{}
		if cm, ok := m["counts"].(map[string]any); ok {
			for k, v := range cm {
				if n, ok := v.(float64); ok {
					counts[k] = int64(n)
				}
			}
		}
		return countsText(counts)
	}}, {"AGE", age("created_at")}}

// submitArray submits count jobs of body as one job array and prints its
// id; with wait it follows the array's counts until every job has ended.
func submitArray(cmd *cobra.Command, g *globals, c *avxrm.Client, body api.JobBody, count, maxParallel int, wait bool) error {
	if count < 1 {
		return fmt.Errorf("--array %d: want the number of jobs, at least 1", count)
	}
	a := api.JobArrayBody{Job: body, Count: int64(count)}
	if maxParallel != 0 {
		a.MaxParallel = ptr(int64(maxParallel))
	}
	arr, err := c.CreateJobArray(cmd.Context(), a)
	if err != nil {
		return err
	}
	if !wait {
		return printSubmitted(cmd.OutOrStdout(), g, arr, *arr.Id)
	}
	if !g.structured() {
		fmt.Fprintln(cmd.OutOrStdout(), *arr.Id)
	}
	err = followArrayPrinting(cmd.Context(), cmd, g, c, *arr.Id)
	stoppedFollowing(cmd, "array "+*arr.Id, "arrays cancel "+*arr.Id, "arrays wait "+*arr.Id)
	return err
}

// followArrayPrinting follows the array until all of its jobs have ended,
// its counts on g.progress; with -o json|yaml it then prints the array as
// it ended. Its error is followArray's, which says how the jobs ended.
func followArrayPrinting(ctx context.Context, cmd *cobra.Command, g *globals, c *avxrm.Client, id string) error {
	last, err := followArray(ctx, c, id, g.progress(cmd), cmd.ErrOrStderr(), time.Second)
	if last != nil && last.Counts != nil && (*last.Counts)["failed"] > 0 && ctx.Err() == nil {
		printFirstFailure(ctx, c, id, cmd.ErrOrStderr())
	}
	if !g.structured() || last == nil {
		return err
	}
	if perr := printItem(cmd.OutOrStdout(), g.output, last); perr != nil {
		return perr
	}
	return err
}

// printSubmitted prints what was submitted: all of v with -o json|yaml,
// else its id.
func printSubmitted(out io.Writer, g *globals, v any, id string) error {
	if g.output != "table" {
		return printItem(out, g.output, v)
	}
	_, err := fmt.Fprintln(out, id)
	return err
}

// followArray shows an array's counts, read every interval, until all of
// its jobs have ended; the exit code says whether any failed (1) or was
// cancelled (3). It returns the array as it was last read (nil if never).
// A connection lost meanwhile is said on errw and read again until the
// server is back (reconnects).
func followArray(ctx context.Context, c *avxrm.Client, id string, out, errw io.Writer, interval time.Duration) (*api.JobArray, error) {
	live := newLiveLine(out)
	defer live.done()
	var last *api.JobArray
	rc := newReconnects(errw, c.Server())
	for {
		a, err := c.GetJobArray(ctx, id)
		if err != nil {
			if rc.again(ctx, err) {
				continue
			}
			return last, err
		}
		rc.answered()
		last = a
		counts := map[string]int64{}
		if a.Counts != nil {
			counts = *a.Counts
		}
		live.show(arrayLine(id, counts, deref64(a.Count)))
		// The array's jobs are all created with it, and a deleted job is
		// in no count: the array has ended once none of the jobs that are
		// left is in a status that is not final.
		if avxrm.JobArrayFinal(a) {
			live.done()
			switch {
			case counts["failed"] > 0:
				failed, _ := a.FailedIndexes.Get()
				return a, &exitError{code: ExitFailed, msg: fmt.Sprintf("array %s: %d of %d jobs failed (indexes %s); run them again with: avxrm jobs resubmit --array %s --status failed",
					id, counts["failed"], deref64(a.Count), joinInts(failed, 10), id)}
			case counts["cancelled"] > 0:
				return a, &exitError{code: ExitCancelled, msg: fmt.Sprintf("array %s: %d of %d jobs were cancelled", id, counts["cancelled"], deref64(a.Count))}
			}
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// printFirstFailure tells on w how the failed job of the array with the
// lowest index failed, with its failing instance's last lines; nothing if
// it cannot be read.
func printFirstFailure(ctx context.Context, c *avxrm.Client, id string, w io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var list struct {
		Items []api.Job `json:"items"`
	}
	q := url.Values{"array_id": {id}, "status": {"failed"}, "limit": {"1000"}}
	if _, err := c.Do(ctx, http.MethodGet, "/jobs?"+q.Encode(), nil, &list); err != nil || len(list.Items) == 0 {
		return
	}
	first := slices.MinFunc(list.Items, func(a, b api.Job) int { return cmp.Compare(deref64(a.ArrayIndex), deref64(b.ArrayIndex)) })
	j, err := c.GetJob(ctx, *first.Id)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "First failure: index %d, job %s: %s\n", deref64(j.ArrayIndex), *j.Id, reason(j))
	printFailedTail(ctx, c, j, w)
}

// finalStatuses are the statuses of a job that has ended.
var finalStatuses = []string{"succeeded", "failed", "cancelled"}

// arrayLine is one line about an array: how many of its jobs have each
// status, and how many were deleted (are in no count).
func arrayLine(id string, counts map[string]int64, count int64) string {
	line := fmt.Sprintf("%s %d jobs: %s", id, count, countsText(counts))
	if gone := count - countsSum(counts); gone > 0 {
		if countsSum(counts) > 0 {
			line += ", "
		}
		line += fmt.Sprintf("%d deleted", gone)
	}
	return line
}

// countsSum is how many jobs the counts count.
func countsSum(counts map[string]int64) int64 {
	var n int64
	for _, c := range counts {
		n += c
	}
	return n
}

// countsText says how many jobs have each status, in the order a job goes
// through them: "3 pending, 2 running, 5 succeeded".
func countsText(counts map[string]int64) string {
	var parts []string
	for _, s := range []string{"submitted", "pending", "admitted", "running", "succeeded", "failed", "cancelled"} {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	return strings.Join(parts, ", ")
}

// joinInts lists at most limit of xs, then how many more there are.
func joinInts(xs []int64, limit int) string {
	var b strings.Builder
	for i, x := range xs {
		if i == limit {
			fmt.Fprintf(&b, " and %d more", len(xs)-limit)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, x)
	}
	return b.String()
}

func deref64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
