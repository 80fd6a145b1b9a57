package httpapi

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/problem"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Dependencies (depends_on) are checked at submission: each names a job
// that exists and that the caller may read, at most once, and following
// depends_on from them through the stored jobs never comes back to a job
// on the way (a cycle). A new job's id is new, so it cannot close a cycle
// itself; the walk refuses to build on one that stored records already
// hold. The scheduler does the rest (services/scheduler/deps.go).

// maxDependencyWalk bounds the jobs the cycle check reads for one
// submission; past it the check stops looking.
const maxDependencyWalk = 10000

// depNode is what the check reads of a job.
type depNode struct {
	ID        string                 `bson:"_id"`
	Status    string                 `bson:"status"`
	DependsOn []events.JobDependency `bson:"depends_on"`
	// For readDepNodes' checks, made in Go.
	QueueID string `bson:"queue_id"`
	Owner   *struct {
		Subject string `bson:"subject"`
	} `bson:"owner"`
	Deleted bool `bson:"_deleted"`
}

// validateDependencies returns the field errors of deps that need no
// lookup; field prefixes the field names ("depends_on" or
// "job.depends_on").
func validateDependencies(field string, deps []events.JobDependency) []*problem.FieldError {
	var errs []*problem.FieldError
	seen := map[string]int{}
	for i, d := range deps {
		if j, dup := seen[d.JobID]; dup {
			errs = append(errs, problem.Field(fmt.Sprintf("%s[%d].job_id", field, i), "%s is named already by %s[%d]", d.JobID, field, j))
		}
		seen[d.JobID] = i
	}
	return errs
}

// checkDependencies looks deps up: an unknown (or unreadable) job, or a
// cycle among the jobs they lead to, is a 422 naming field.
func (s *Server) checkDependencies(ctx context.Context, field string, deps []events.JobDependency) error {
	if len(deps) == 0 {
		return nil
	}
	ids := make([]string, len(deps))
	for i, d := range deps {
		ids[i] = d.JobID
	}
	p := auth.From(ctx)
	queues, err := s.readableQueues(ctx, p)
	if err != nil {
		return err
	}
	readable := func(n *depNode) bool { // as readableFilter
		return queues == nil || queues[n.QueueID] || n.Owner != nil && n.Owner.Subject == p.Subject
	}
	first, err := s.readDepNodes(ctx, ids, readable)
	if err != nil {
		return err
	}
	var errs []*problem.FieldError
	for i, id := range ids {
		switch {
		case first[id] != nil:
		case strings.HasPrefix(id, "arr-"):
			// As Slurm's afterok:<array> would: say what to name instead.
			errs = append(errs, problem.Field(fmt.Sprintf("%s[%d].job_id", field, i),
				"no job %q: a job depends on jobs, not on a job array; name each of its jobs, which GET /jobs?array_id=%s lists", id, id))
		default:
			errs = append(errs, problem.Field(fmt.Sprintf("%s[%d].job_id", field, i), "no job %q", id))
		}
	}
	if len(errs) > 0 {
		return problem.Invalid(errs...)
	}
	// Read the graph behind them, a level per query. A final job's own
	// dependencies no longer matter.
	graph := first
	level := ids
	for len(level) > 0 && len(graph) < maxDependencyWalk {
		var next []string
		for _, id := range level {
			n := graph[id]
			if n == nil || events.JobFinal(n.Status) {
				continue
			}
			for _, d := range n.DependsOn {
				if _, ok := graph[d.JobID]; !ok && !slices.Contains(next, d.JobID) {
					next = append(next, d.JobID)
				}
			}
		}
		if len(next) == 0 {
			break
		}
		more, err := s.readDepNodes(ctx, next, nil)
		if err != nil {
			return err
		}
		for _, id := range next {
			graph[id] = more[id] // nil: gone, a dead end
		}
		level = next
	}
	if cycle := findCycle(graph, ids); cycle != nil {
		return problem.Invalid(problem.Field(field, "the jobs it names depend on each other in a cycle: %s", strings.Join(cycle, " → ")))
	}
	return nil
}

// readDepNodes reads those of the jobs ids that exist and that keep
// accepts (nil: every one). The find is by _id alone, which the embedded store answers from
// its _id index; with a condition beside it, FerretDB read every job for
// each submission that names a dependency. So the jobs' tombstones and
// keep are checked here.
func (s *Server) readDepNodes(ctx context.Context, ids []string, keep func(*depNode) bool) (map[string]*depNode, error) {
	f := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}
	fields := bson.D{}
	for _, k := range []string{"status", "depends_on", "queue_id", "owner", outbox.DeletedField} {
		fields = append(fields, bson.E{Key: k, Value: 1})
	}
	cur, err := s.jobs.Jobs().Find(ctx, f, options.Find().SetProjection(fields))
	if err != nil {
		return nil, fmt.Errorf("look up dependencies: %w", err)
	}
	var nodes []*depNode
	if err := cur.All(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("look up dependencies: %w", err)
	}
	out := make(map[string]*depNode, len(nodes))
	for _, n := range nodes {
		if !n.Deleted && (keep == nil || keep(n)) {
			out[n.ID] = n
		}
	}
	return out, nil
}

// findCycle returns a cycle of graph reachable from roots (first job
// repeated at the end), nil if there is none.
func findCycle(graph map[string]*depNode, roots []string) []string {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(id string) []string
	visit = func(id string) []string {
		switch state[id] {
		case onPath:
			i := slices.Index(path, id)
			return append(slices.Clone(path[i:]), id)
		case done:
			return nil
		}
		state[id] = onPath
		path = append(path, id)
		if n := graph[id]; n != nil && !events.JobFinal(n.Status) {
			for _, d := range n.DependsOn {
				if _, known := graph[d.JobID]; !known {
					continue
				}
				if c := visit(d.JobID); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[id] = done
		return nil
	}
	for _, r := range roots {
		if c := visit(r); c != nil {
			return c
		}
	}
	return nil
}
