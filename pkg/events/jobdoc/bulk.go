package jobdoc

import (
	"context"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
)

// CreateMany stores new jobs, each with the events of types, many per
// write (outbox.InsertMany): what Create does for each, without a round
// trip per job. An error may leave the first jobs stored; it says how many.
func (s *Store) CreateMany(ctx context.Context, jobs []*events.Job, types ...string) error {
	docs := make([]outbox.NewDoc, len(jobs))
	for i, j := range jobs {
		d, err := s.newDoc(j, types)
		if err != nil {
			return err
		}
		docs[i] = d
	}
	return s.ob.InsertMany(ctx, s.jobs, docs)
}

// newDoc prepares new job j as stored, with the events of types.
func (s *Store) newDoc(j *events.Job, types []string) (outbox.NewDoc, error) {
	if j.InstanceCounts == nil {
		j.InstanceCounts = events.InstanceCounts{}
	}
	j.Warnings = Warnings(j)
	evs, err := s.eventsOf(j, types)
	if err != nil {
		return outbox.NewDoc{}, err
	}
	return outbox.NewDoc{ID: j.ID, Doc: j, Events: evs}, nil
}
