package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/spf13/cobra"
)

// whoamiCommand prints who the token stands for and what it may do.
func whoamiCommand(g *globals) *cobra.Command {
	var queue string
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Print who the server takes you for, your access, and what you may do on each queue",
		Long: "Print who the token avxrm sends stands for, as the server sees it (GET /whoami): the user, roles\n" +
			"and groups, the access they give (admin, user, viewer or none), when the token ends, and on\n" +
			"which queues you may read jobs and submit. The first thing to ask after a 403. With --queue,\n" +
			"only that queue. Inside a job's instance it names the job whose RM_JOB_TOKEN it sends.",
		Example: "  avxrm whoami\n  avxrm whoami --queue Default\n  avxrm whoami -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			w, err := c.Whoami(cmd.Context(), queue)
			if api := (*avxrm.Error)(nil); errors.As(err, &api) && routeNotFound(api) && queue == "" && !hasPath(c.Server()) {
				return fmt.Errorf("the server at %s does not answer GET /whoami (404): it is older than that route", c.Server())
			}
			if err != nil {
				return err
			}
			if g.output != "table" {
				return printItem(cmd.OutOrStdout(), g.output, w)
			}
			return printWhoami(cmd.OutOrStdout(), w, c.Server(), time.Now())
		},
	}
	cmd.Flags().StringVar(&queue, "queue", "", "only this queue (its name or id)")
	return cmd
}

// printWhoami writes w as a few lines and a table of the queues.
func printWhoami(out io.Writer, w *api.Whoami, server string, now time.Time) error {
	switch w.AuthenticatedBy {
	case api.WhoamiAuthenticatedByNone:
		fmt.Fprintf(out, "Auth is off at %s: every request acts as an administrator.\n", server)
	case api.WhoamiAuthenticatedByJobToken:
		fmt.Fprintf(out, "Job:     %s (its RM_JOB_TOKEN: its artifacts and logs only)\n", deref(w.JobId))
	default:
		user := w.Username
		if w.Subject != w.Username {
			user += " (subject " + w.Subject + ")"
		}
		fmt.Fprintf(out, "User:    %s\n", user)
		fmt.Fprintf(out, "Access:  %s (roles %s; groups %s)\n", w.Access, listOrNone(avxrm.Values(w.Roles)), listOrNone(avxrm.Values(w.Groups)))
	}
	if exp, err := w.ExpiresAt.Get(); err == nil {
		left := "ended"
		if d := exp.Sub(now); d > 0 {
			left = "in " + shortDuration(d)
		}
		fmt.Fprintf(out, "Token:   ends %s (%s)\n", exp.UTC().Format(time.RFC3339), left)
	}
	queues := avxrm.Values(w.Queues)
	if w.AuthenticatedBy == api.WhoamiAuthenticatedByJobToken {
		return nil
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tREAD JOBS\tSUBMIT")
	for _, q := range queues {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", q.Name, yesNo(q.Read), yesNo(q.Submit))
	}
	return tw.Flush()
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
