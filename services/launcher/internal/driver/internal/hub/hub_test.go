package hub

import (
	"context"
	"testing"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// TestSlowReaderLosesNothing publishes far more than any buffer while the
// reader is not reading, then checks order and completeness.
func TestSlowReaderLosesNothing(t *testing.T) {
	var h Hub
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := h.Subscribe(ctx, []driver.Status{{Ref: driver.Ref{JobID: "initial"}}})
	const n = 5000
	for i := range n {
		h.Publish(driver.Status{Ref: driver.Ref{JobID: "j", Index: i}})
	}
	if st := <-ch; st.JobID != "initial" {
		t.Fatalf("first status %+v, want the initial one", st)
	}
	for i := range n {
		select {
		case st := <-ch:
			if st.Index != i {
				t.Fatalf("status #%d has index %d", i, st.Index)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("status #%d never came", i)
		}
	}
	h.Close()
	if _, open := <-ch; open {
		t.Error("channel open after Close")
	}
	if _, open := <-h.Subscribe(ctx, nil); open {
		t.Error("Subscribe after Close gave an open channel")
	}
}

func TestTrackerFinalStands(t *testing.T) {
	var tr Tracker
	ch := tr.Subscribe(context.Background())
	ref := driver.Ref{JobID: "j"}
	zero, one := 0, 1
	tr.Update(driver.Status{Ref: ref, State: driver.Running})
	tr.Update(driver.Status{Ref: ref, State: driver.Running}) // repeat: dropped
	tr.Update(driver.Status{Ref: ref, State: driver.Succeeded, ExitCode: &zero})
	tr.Update(driver.Status{Ref: ref, State: driver.Failed, ExitCode: &one}) // late: dropped
	tr.Update(driver.Status{Ref: ref, State: driver.Running})                // late: dropped
	tr.Gone(ref, "removed")                                                  // ended already: nothing
	other := driver.Ref{JobID: "k"}
	tr.Update(driver.Status{Ref: other, State: driver.Running})
	tr.Gone(other, "removed")
	want := []driver.State{driver.Running, driver.Succeeded, driver.Running, driver.Failed}
	for i, w := range want {
		if st := <-ch; st.State != w {
			t.Fatalf("status #%d = %+v, want %s", i, st, w)
		}
	}
	if len(tr.Known()) != 0 {
		t.Errorf("Known() = %v, want nothing after both are gone", tr.Known())
	}
	tr.Close()
}

func TestTrackerRemove(t *testing.T) {
	var tr Tracker
	ch := tr.Subscribe(context.Background())
	ended, running := driver.Ref{JobID: "j"}, driver.Ref{JobID: "k"}
	two := 2
	tr.Update(driver.Status{Ref: ended, State: driver.Failed, ExitCode: &two})
	tr.Update(driver.Status{Ref: running, State: driver.Running})
	tr.Remove(ended, "pod deleted")   // ended: its final status again, Removed
	tr.Remove(running, "pod deleted") // had not ended: Failed, as Gone
	tr.Remove(ended, "pod deleted")   // forgotten: nothing
	want := []driver.Status{
		{Ref: ended, State: driver.Failed, ExitCode: &two},
		{Ref: running, State: driver.Running},
		{Ref: ended, State: driver.Failed, ExitCode: &two, Removed: true},
		{Ref: running, State: driver.Failed, Message: "pod deleted"},
	}
	for i, w := range want {
		st := <-ch
		if st.Ref != w.Ref || st.State != w.State || st.Removed != w.Removed || st.Message != w.Message || !codeEq(st.ExitCode, w.ExitCode) {
			t.Fatalf("status #%d = %+v, want %+v", i, st, w)
		}
	}
	select {
	case st := <-ch:
		t.Errorf("unexpected status %+v", st)
	case <-time.After(50 * time.Millisecond):
	}
	if len(tr.Known()) != 0 {
		t.Errorf("Known() = %v, want nothing", tr.Known())
	}
	tr.Close()
}
