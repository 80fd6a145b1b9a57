package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/spf13/cobra"
)

func eventsCommand(g *globals) *cobra.Command {
	var job, queue string
	var types []string
	var after int64
	cmd := &cobra.Command{
		Use:   "events [--job <job>] [--queue <queue>] [--type rm.job.failed]…",
		Short: "Print the raw event stream (CloudEvents) as it comes, resuming after a lost connection",
		Long: "Print events as they come: by default one line each (id, time, type, resource);\n" +
			"with -o json each CloudEvent as one JSON line. --after 0 starts with every stored event.",
		Example: "  avxrm events\n  avxrm events --job job-01J… --after 0\n  avxrm events --type rm.job.failed --type rm.job.succeeded -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			o := avxrm.WatchOptions{JobID: job, QueueID: queue, Types: types}
			if after >= 0 {
				a := uint64(after)
				o.After = &a
			}
			w := cmd.OutOrStdout()
			for e, err := range c.Watch(cmd.Context(), o) {
				if err != nil {
					return err
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
			return nil // the user ended it
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "only this job's events")
	cmd.Flags().StringVar(&queue, "queue", "", "only events of resources on this queue")
	cmd.Flags().StringArrayVar(&types, "type", nil, "only events of this type (repeatable)")
	cmd.Flags().Int64Var(&after, "after", -1, "start after this event id (0: every stored event; default: only new ones)")
	return cmd
}

func watchCommand(g *globals) *cobra.Command {
	var queue string
	cmd := &cobra.Command{
		Use:   "watch [--queue <queue>]",
		Short: "A live table of the jobs that have not ended, redrawn on every job event",
		Long: "On a terminal the table is redrawn in place on every job event; otherwise each change\n" +
			"is printed as one line (id, status, reason).",
		Example: "  avxrm watch\n  avxrm watch --queue Default",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			jobs := map[string]api.Job{}
			q := url.Values{}
			if queue != "" {
				q.Set("queue_id", queue)
			}
			for raw, err := range c.List(ctx, "/jobs", q) {
				if err != nil {
					return err
				}
				var j api.Job
				if err := json.Unmarshal(raw, &j); err == nil && !avxrm.JobFinal(&j) {
					jobs[*j.Id] = j
				}
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
			for e, err := range c.Watch(ctx, avxrm.WatchOptions{QueueID: queue}) {
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
			return nil // the user ended it
		},
	}
	cmd.Flags().StringVar(&queue, "queue", "", "only this queue's jobs")
	return cmd
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
