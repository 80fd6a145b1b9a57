package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/spf13/cobra"
)

var replicaCols = []column{{"SLOT", field("slot")}, {"STATE", field("state")}, {"RESTARTS", field("restarts")},
	{"STARTED", timeAt("started_at", "", shortAgo)}, {"LAST END", lastEnd}}

// lastEnd says how the slot's last replica that ended did.
func lastEnd(m map[string]any) string {
	msg := text(m["last_message"])
	if msg == "" {
		return ""
	}
	if at := timeAt("last_ended_at", "", shortAgo)(m); at != "" {
		msg += " (" + at + ")"
	}
	return msg
}

func shortAgo(t time.Time) string { return shortDuration(time.Since(t)) + " ago" }

// replicasCommand lists a deployment's replica slots as its status has them.
func replicasCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "replicas <id|name>", Short: "List a deployment's replicas: state, restarts, how the last one ended",
		Args:    cobra.ExactArgs(1),
		Example: "  avxrm deployments replicas viz\n  avxrm deployments replicas viz -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			d, err := getDeployment(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			return printItems(cmd.OutOrStdout(), g.output, d.Status.Replicas, replicaCols)
		},
	}
}

type deploymentView struct {
	Status struct {
		Replicas []json.RawMessage `json:"replicas"`
	} `json:"status"`
}

func getDeployment(ctx context.Context, c *avxrm.Client, ref string) (*deploymentView, error) {
	var d deploymentView
	if _, err := c.Do(ctx, http.MethodGet, "/deployments/"+avxrm.PathSegment(ref), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// restartsOf returns the restarts of slot in d, -1 if d does not list it.
func restartsOf(d *deploymentView, slot int) int {
	for _, raw := range d.Status.Replicas {
		var r struct{ Slot, Restarts int }
		if json.Unmarshal(raw, &r) == nil && r.Slot == slot {
			return r.Restarts
		}
	}
	return -1
}

func replicaLogsCommand(g *globals) *cobra.Command {
	var slot, tail int
	var follow bool
	cmd := &cobra.Command{
		Use:     "logs <id|name> [--replica 0] [--tail N] [-f]",
		Short:   "Print a replica's output; -f follows it, and its successors when it restarts, until interrupted",
		Args:    cobra.ExactArgs(1),
		Example: "  avxrm deployments logs viz\n  avxrm deployments logs viz --replica 1 -f\n  avxrm deployments logs viz --tail 0 -f   # only what it writes from now on",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			lines, err := tailLines(cmd, tail)
			if err != nil {
				return err
			}
			if slot < 0 {
				return fmt.Errorf("--replica %d: want a replica slot, 0 or more", slot)
			}
			return printReplicaLogs(cmd.Context(), c, args[0], slot, lines, follow, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	refuseFormat(cmd, g, "the replica's output is printed as the program wrote it")
	cmd.Flags().IntVar(&slot, "replica", 0, "the replica slot, 0 to replicas-1")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output, and the next replica's after a restart; a lost connection is said on stderr and read again")
	cmd.Flags().IntVar(&tail, "tail", 0, "only the last N lines of the current replica's output (then, with -f, what follows) (0: none, so with -f only what is written from now on; default: all of it)")
	return cmd
}

// printReplicaLogs prints the log of the slot's current replica; following,
// until interrupted, and when the slot's restarts change it says so and
// prints the new replica's log.
func printReplicaLogs(ctx context.Context, c *avxrm.Client, dep string, slot, tail int, follow bool, w, notes io.Writer) error {
	path := fmt.Sprintf("/deployments/%s/replicas/%d/logs", avxrm.PathSegment(dep), slot)
	gen := -1
	return followLog(ctx, c, path, tail, follow, w, notes, func() (bool, bool, error) {
		d, err := getDeployment(ctx, c, dep)
		if err != nil {
			return false, false, err
		}
		g := restartsOf(d, slot)
		restarted := gen >= 0 && g != gen
		if restarted {
			fmt.Fprintf(notes, "avxrm: replica %d restarted (restarts: %d); the new one's output follows\n", slot, g)
		}
		gen = g
		return false, restarted, nil
	})
}
