package launch

import (
	"context"
	"errors"
	"fmt"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// Runtimes that should not keep ended instances (driver.Reaper: the
// kubernetes driver's pods) have them removed as soon as the job record
// holds how they ended, and a job's final status waits until its
// instances there are gone: its leases are released, and the next job's
// instances created, only then. After a restart nothing is lost: an
// instance is reaped only once its end is stored, and one that is gone
// with its end stored is simply no longer observed.

// recordedEnds returns the controller and workers of j whose end the job
// record holds as read, before a round applies what the drivers report.
func recordedEnds(j *events.Job) map[driver.Ref]bool {
	out := map[driver.Ref]bool{}
	for _, in := range j.Instances {
		if ref := refOf(j.ID, in); isMain(ref) && isFinalInstance(in.Status) {
			out[ref] = true
		}
	}
	return out
}

// reapEnded asks the drivers that remove ended instances to remove those
// of obs whose end is recorded: the workers first, the controller once
// none of its driver's workers is left (a garbage collector would delete
// them with their owner). It reports whether a controller or worker is
// still there on such a driver.
func (s *Service) reapEnded(ctx context.Context, obs map[driver.Ref]observed, recorded map[driver.Ref]bool) (remain bool, err error) {
	workersOn := map[*pooled]bool{}
	for ref, o := range obs {
		if _, ok := o.pd.d.(driver.Reaper); ok && ref.Role == driver.RoleWorker {
			workersOn[o.pd] = true
		}
	}
	var todo []observed
	for ref, o := range obs {
		if _, ok := o.pd.d.(driver.Reaper); !ok || !isMain(ref) {
			continue
		}
		remain = true
		if recorded[ref] && (ref.Role == driver.RoleWorker || !workersOn[o.pd]) {
			todo = append(todo, o)
		}
	}
	errs := make([]error, len(todo))
	parallel(s.cfg.StartParallelism, len(todo), func(i int) {
		if err := todo[i].pd.reap(ctx, todo[i].st.Ref); err != nil {
			errs[i] = fmt.Errorf("remove ended %s: %w", todo[i].st.Ref, err)
		}
	})
	return remain, errors.Join(errs...)
}
