package local_test

import (
	"context"
	"testing"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
)

// TestTimestampsOrdered: an instance that ends at once never reports a
// finished_at before its started_at. Both came from different clocks (the
// launcher's for the start, the exit file's modification time, which the
// kernel takes from a coarse clock, for the end), so a command that exits
// within a few milliseconds was seen finishing before it started.
func TestTimestampsOrdered(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	ch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	job := drivertest.JobID(t)
	for i := range 40 {
		ref := driver.Ref{JobID: job, Role: driver.RoleWorker, Index: i}
		if err := d.Start(ctx, driver.Spec{Ref: ref, Name: ref.Name(), Command: []string{"/bin/true"}}); err != nil {
			t.Fatalf("Start(%s) error = %v", ref, err)
		}
		st := waitFinal(t, ch, ref)
		if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
			t.Errorf("%s: started_at %s, finished_at %s: want started_at <= finished_at",
				ref, st.StartedAt.Format("15:04:05.000000"), st.FinishedAt.Format("15:04:05.000000"))
		}
	}
}
