package httpapi

import (
	"context"

	"github.com/avxrm/rm/pkg/events"
)

// fillUsage sets the read-only usage of q. Until jobs exist it is all zeros;
// the jobs work computes it from live leases and jobs.
func (s *Server) fillUsage(_ context.Context, q *events.Queue) error {
	q.Usage = &events.QueueUsage{}
	return nil
}
