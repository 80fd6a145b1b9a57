package cli

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

// waitParallel bounds the event streams a wait for many jobs holds open.
const waitParallel = 32

// waitCommand waits for jobs submitted earlier, as submit --wait does for
// the one it submits.
func waitCommand(g *globals) *cobra.Command {
	var f jobFilter
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait [<job>…] [--queue <queue>] [--status …] [--label k=v] [--owner …] [--array arr-…]",
		Short: "Wait until jobs have ended; the exit code says how they ended",
		Long: "Wait until jobs have ended, driven by the event stream (no polling), and say how each ended.\n\n" +
			"One job is followed as 'submit --wait' follows it: a live status line, then exit 0 if it\n" +
			"succeeded, 1 if it failed (with why) and 3 if it was cancelled. Several jobs, named or\n" +
			"selected with the filters of 'avxrm jobs ls' (those that have ended too), print a line\n" +
			"each as it ends; the exit code is 1 if any failed, else 3 if any was cancelled, else 0.\n" +
			"--timeout gives up after that long (exit 1, naming the jobs still running); Ctrl-C\n" +
			"stops waiting with exit 130 (the jobs go on). The event streams' connections are handled as\n" +
			"'avxrm events' handles its one (see its help): a first connection that fails ends the wait,\n" +
			"a lost one is said once on stderr however many jobs it follows, and so is its return.",
		Example: "  avxrm jobs wait job-01J…\n  avxrm jobs wait job-01J… job-01K… --timeout 2h\n" +
			"  avxrm jobs wait --label campaign=night-7",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd, args); err != nil {
				return err
			}
			ctx, cancel, err := withTimeout(cmd, timeout)
			if err != nil {
				return err
			}
			defer cancel()
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			ids, err := f.selected(ctx, cmd, c, args, true)
			if err != nil || len(ids) == 0 {
				return err
			}
			if len(ids) == 1 {
				return timedOut(ctx, cmd, "job "+ids[0], "it has not ended", followJob(ctx, cmd, g, c, ids[0]))
			}
			return waitAll(ctx, cmd, g, c, ids)
		},
	}
	f.flags(cmd, "select")
	timeoutFlag(cmd, &timeout)
	return cmd
}

// timeoutFlag gives a command that waits --timeout, which withTimeout reads.
func timeoutFlag(cmd *cobra.Command, timeout *time.Duration) {
	cmd.Flags().DurationVar(timeout, "timeout", 0, "give up after this long, e.g. 2h (0: wait as long as it takes)")
}

// withTimeout is the context of a command that waits at most timeout (0:
// as long as it takes); a negative timeout is refused.
func withTimeout(cmd *cobra.Command, timeout time.Duration) (context.Context, context.CancelFunc, error) {
	if timeout < 0 {
		return nil, nil, fmt.Errorf("--timeout %s: want a duration of 0 (wait as long as it takes) or more", timeout)
	}
	if timeout == 0 {
		return cmd.Context(), func() {}, nil
	}
	ctx, cancel := context.WithTimeoutCause(cmd.Context(), timeout, fmt.Errorf("timed out after %s", timeout))
	return ctx, cancel, nil
}

// timedOut is the error of a wait for what (a job, an array, an export)
// in ctx that ended with err: when its --timeout passed (not Ctrl-C),
// exit 1 saying so, and how it still is (still: "it has not ended");
// else err.
func timedOut(ctx context.Context, cmd *cobra.Command, what, still string, err error) error {
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && cmd.Context().Err() == nil {
		return fmt.Errorf("%s: %w; %s", what, cause, still)
	}
	return err
}

// waitAll waits for every job of ids, waitParallel at a time, printing a
// line for each as it ends, and turns how they ended into the exit code.
// With -o json|yaml the lines go to stderr and stdout gets the list of the
// jobs that ended, as they ended, in the order of ids.
func waitAll(waitCtx context.Context, cmd *cobra.Command, g *globals, c *avxrm.Client, ids []string) error {
	// The streams' connections are told of on stderr as one, as a wait for
	// one job does; a stream whose first connection fails ends the wait.
	ctx, stop := context.WithCancelCause(waitCtx)
	defer stop(nil)
	report := newStreamReport(cmd.ErrOrStderr(), c.Server(), stop)
	var mu sync.Mutex
	jobs := make([]*api.Job, len(ids))
	ended := map[string]int{} // by status; "error": the job could not be read
	var open []string
	var eg errgroup.Group
	eg.SetLimit(waitParallel)
	for i, id := range ids {
		eg.Go(func() error {
			var o avxrm.WatchOptions
			report.watch(&o)
			j, err := c.WaitJobWatching(ctx, id, o)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && ctx.Err() != nil:
				open = append(open, id)
			case err != nil:
				ended["error"]++
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", id, err)
			default:
				jobs[i] = j
				status := string(*j.Status)
				ended[status]++
				line := id + " " + status
				if r := reason(j); r != "" && status != "succeeded" {
					line += ": " + r
				}
				fmt.Fprintln(g.progress(cmd), line)
			}
			return nil
		})
	}
	_ = eg.Wait() // each job's end is in ended, open and jobs
	if g.structured() {
		ended := []*api.Job{}
		for _, j := range jobs {
			if j != nil {
				ended = append(ended, j)
			}
		}
		if err := printItem(cmd.OutOrStdout(), g.output, ended); err != nil {
			return err
		}
	}
	if len(open) > 0 {
		if cmd.Context().Err() != nil {
			return cmd.Context().Err()
		}
		why := context.Cause(ctx)
		if first := firstConnectionError(waitCtx, ctx); first != nil {
			why = fmt.Errorf("the event stream: %w", first)
		}
		return &exitError{code: ExitFailed, msg: fmt.Sprintf("%v: %d of %d jobs have not ended: %s", why, len(open), len(ids), strings.Join(open, " "))}
	}
	summary := fmt.Sprintf("%d jobs: %d succeeded, %d failed, %d cancelled", len(ids), ended["succeeded"], ended["failed"], ended["cancelled"])
	if n := ended["error"]; n > 0 {
		summary += fmt.Sprintf(", %d not read", n)
	}
	switch {
	case ended["failed"]+ended["error"] > 0:
		return &exitError{code: ExitFailed, msg: summary}
	case ended["cancelled"] > 0:
		return &exitError{code: ExitCancelled, msg: summary}
	}
	fmt.Fprintln(cmd.ErrOrStderr(), summary)
	return nil
}
