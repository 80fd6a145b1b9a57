package jobdoc

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
)

// storedJobDoc is a running job of 10 workers as the launcher stores it:
// its instances inline, one outbox entry.
func storedJobDoc(tb testing.TB) bson.Raw {
	now := time.Now().UTC().Truncate(time.Millisecond)
	j := events.Job{Name: "sim", QueueID: "q", QueueName: "q", Status: events.JobRunning, WorkerInstances: 10,
		Application: events.JobApplication{Name: "sim", Version: "1"}, AdmittedAt: &now, StartedAt: &now,
		Labels: map[string]string{"campaign": "c1"}, EnvironmentVariables: map[string]string{"A": "1"}}
	j.ID, j.Version, j.CreatedAt, j.UpdatedAt = "01JDEMO", 5, now, now
	for i := range 11 {
		role := events.RoleWorker
		if i == 0 {
			role = events.RoleController
		}
		j.InlineInstances = append(j.InlineInstances, events.Instance{Role: role, Index: i, Status: events.InstanceRunning, StartedAt: &now})
	}
	raw, err := bson.Marshal(storedJob{Job: j, Envelope: outbox.Envelope{Outbox: []outbox.Entry{{}}}})
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

func BenchmarkDecodeRead(b *testing.B) {
	raw := storedJobDoc(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodeRead(raw); err != nil {
			b.Fatal(err)
		}
	}
}
