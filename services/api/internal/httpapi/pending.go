package httpapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/jobdoc"
	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Position and start estimate of pending jobs. The scheduler keeps one
// snapshot per queue (events.QueueEstimates, collection
// events.EstimatesCollection); the API joins it into the pending jobs it
// returns, so no job is written for its estimate (docs/scheduling.md).

// waitingStatus: the statuses of a job not admitted yet.
func waitingStatus(status string) bool {
	return status == events.JobSubmitted || status == events.JobPending
}

// queueEstimates reads the snapshot of queue id; none yet is an empty one.
func (s *Server) queueEstimates(ctx context.Context, id string) (map[string]events.JobEstimate, error) {
	return events.ReadQueueEstimates(ctx, s.opts.Store.DB, id)
}

// joinEstimates gives every waiting job of jobs its queue_position,
// estimated_start_at and estimate_basis from its queue's snapshot. A job the
// scheduler has not placed yet (just submitted), or whose snapshot cannot
// be read, gets a null estimate, basis unknown and the position counted
// from the jobs themselves.
func (s *Server) joinEstimates(ctx context.Context, jobs ...*events.Job) {
	byQueue := map[string]map[string]events.JobEstimate{}
	unplaced := map[string][]*events.Job{}
	for _, j := range jobs {
		if !waitingStatus(j.Status) {
			continue
		}
		ests, ok := byQueue[j.QueueID]
		if !ok {
			var err error
			if ests, err = s.queueEstimates(ctx, j.QueueID); err != nil {
				s.opts.Logger.Warn("read start estimates", "queue", j.QueueID, "err", err)
			}
			byQueue[j.QueueID] = ests
		}
		setEstimate(j, ests[j.ID])
		if j.QueuePosition == nil {
			unplaced[j.QueueID] = append(unplaced[j.QueueID], j)
		}
	}
	for queueID, js := range unplaced {
		s.countPositions(ctx, queueID, js)
	}
}

// countPositions gives the jobs js of queue queueID, not in its snapshot
// yet, their places among the queue's waiting jobs in the scheduler's
// order, from one read of that order (waitingOrder, from the index: a
// count per job would read the queue's jobs once per job, and a page of a
// fresh 10,000-job array would take minutes on the embedded store); on
// failure they stay without one.
func (s *Server) countPositions(ctx context.Context, queueID string, js []*events.Job) {
	keys, err := s.waitingOrder(ctx, queueID)
	if err != nil {
		s.opts.Logger.Warn("count the jobs ahead", "queue", queueID, "err", err)
		return
	}
	for _, j := range js {
		// The jobs strictly ahead of j: j itself may have moved on since.
		k := keyOf(j)
		pos := sort.Search(len(keys), func(i int) bool { return compareKeys(keys[i], k) >= 0 }) + 1
		j.QueuePosition = &pos
	}
}

// setEstimate puts e (zero: not placed) on job j.
func setEstimate(j *events.Job, e events.JobEstimate) {
	if e.JobID == "" {
		j.EstimatedStartAt.Set(nil)
		j.EstimateBasis = events.BasisUnknown
		return
	}
	pos := e.Position
	j.QueuePosition = &pos
	j.EstimatedStartAt.Set(e.StartAt)
	j.EstimateBasis = e.Basis
}

// PendingJob is one entry of GET /queues/{queue_id}/pending.
type PendingJob struct {
	ID               string               `json:"id"`
	Name             string               `json:"name"`
	QueuePosition    int                  `json:"queue_position" doc:"1-based, in the order the scheduler considers the queue's pending jobs: priority (higher first), then submission"`
	EstimatedStartAt events.EstimatedTime `json:"estimated_start_at" nullable:"true" format:"date-time" doc:"when the job is expected to be admitted; null when unknown"`
	EstimateBasis    string               `json:"estimate_basis" enum:"free_capacity,max_run_seconds,default_max_run_seconds,median_run_time,unknown" doc:"the least certain run time the estimate rests on"`
	Status           string               `json:"status" enum:"submitted,pending"`
	Reason           string               `json:"reason,omitempty" doc:"of the Admitted condition, e.g. InsufficientWorkerCapacity; absent until the scheduler has looked at the job"`
	Message          string               `json:"message,omitempty"`
	WorkerInstances  int                  `json:"worker_instances" doc:"the workers the job needs on this queue, admitted all at once (plus one controller)"`
	Priority         int                  `json:"priority"`
	SubmittedAt      time.Time            `json:"submitted_at"`
}

// PendingList is a page of a queue's pending jobs, in order.
type PendingList struct {
	Items      []PendingJob `json:"items"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

type listPendingInput struct {
	QueueID string `path:"queue_id" maxLength:"63" doc:"the queue's id or name"`
	Limit   int    `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor  string `query:"cursor" maxLength:"128"`
}

type pendingOutput struct{ Body PendingList }

func (s *Server) registerPending() {
	op := s.op("list-queue-pending", http.MethodGet, BasePath+"/queues/{queue_id}/pending", "List the pending jobs of a queue in order",
		[]string{"Queues", "Jobs"}, http.StatusOK, http.StatusNotFound, http.StatusUnprocessableEntity)
	op.Description = "The jobs not admitted yet, in the order the scheduler considers them (priority, then submission), each with its " +
		"queue_position, estimated_start_at (null when unknown) and estimate_basis, the reason it waits and the workers it needs."
	huma.Register(s.API, op, s.listPending)
}

func (s *Server) listPending(ctx context.Context, in *listPendingInput) (*pendingOutput, error) {
	if err := checkCursor(in.Cursor, "job"); err != nil {
		return nil, err
	}
	q, err := s.queues.Get(ctx, in.QueueID)
	if err != nil {
		return nil, err
	}
	// Every waiting job counts for the positions, as in GET /jobs/{id}; a
	// caller who may not read the queue's jobs is listed its own only.
	p := auth.From(ctx)
	readable, err := s.readableQueues(ctx, p)
	if err != nil {
		return nil, err
	}
	ownOnly := readable != nil && !readable[q.Res.ID]
	// The order from the index of the active jobs (each waiting job's
	// priority and submission, no job read), then the page's jobs: reading
	// every waiting job to order them took 0.9-1.9 s with 10,000 waiting.
	keys, err := s.waitingOrder(ctx, q.Res.ID)
	if err != nil {
		return nil, err
	}
	ests, err := s.queueEstimates(ctx, q.Res.ID)
	if err != nil {
		return nil, err
	}
	from := 0 // the first key after the cursor's job in the order
	if in.Cursor != "" {
		var c events.Job
		err := s.opts.Store.DB.Collection(store.Jobs).FindOne(ctx, bson.D{{Key: "_id", Value: in.Cursor}},
			options.FindOne().SetProjection(bson.D{{Key: "priority", Value: 1}, {Key: "submitted_at", Value: 1}})).Decode(&c)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, checkCursor("foreign", "job")
		}
		if err != nil {
			return nil, err
		}
		c.ID = in.Cursor
		after := keyOf(&c)
		from, _ = slices.BinarySearchFunc(keys, after, func(k, after waitingKey) int {
			if c := compareKeys(k, after); c != 0 {
				return c
			}
			return -1 // the cursor's job itself is before
		})
	}
	limit := cmp.Or(in.Limit, 50)
	out := PendingList{Items: []PendingJob{}}
	for i := from; i < len(keys); {
		// The page's jobs, in a read; a caller listed its own only reads
		// on in steps of 100 until its page is full.
		step := limit + 1 - len(out.Items)
		if ownOnly {
			step = max(step, 100)
		}
		chunk := keys[i:min(len(keys), i+step)]
		ids := make([]string, len(chunk))
		for n, k := range chunk {
			ids[n] = k.id
		}
		docs, err := indexed.FindAll[pendingDoc](ctx, s.active, indexed.Filter{IDs: ids, All: queueJobs(q.Res.ID).All})
		if err != nil {
			return nil, err
		}
		byID := make(map[string]*pendingDoc, len(docs))
		for n := range docs {
			byID[docs[n].ID] = &docs[n]
		}
		for n, k := range chunk {
			j := byID[k.id]
			if j == nil || j.Deleted || !waitingStatus(j.Status) || ownOnly && (j.Owner == nil || j.Owner.Subject != p.Subject) {
				continue // admitted since the order was read, or not the caller's
			}
			if len(out.Items) == limit {
				out.NextCursor = out.Items[len(out.Items)-1].ID
				return &pendingOutput{Body: out}, nil
			}
			item := PendingJob{ID: j.ID, Name: j.Name, QueuePosition: i + n + 1, Status: j.Status, WorkerInstances: j.WorkerInstances,
				Priority: j.Priority, SubmittedAt: j.SubmittedAt, EstimateBasis: events.BasisUnknown}
			item.EstimatedStartAt.Set(nil)
			if e, ok := ests[j.ID]; ok {
				item.EstimatedStartAt.Set(e.StartAt)
				item.EstimateBasis = e.Basis
			}
			if c := jobdoc.FindCondition(&j.Job, jobdoc.CondAdmitted); c != nil {
				item.Reason, item.Message = c.Reason, c.Message
			}
			out.Items = append(out.Items, item)
		}
		i += len(chunk)
	}
	return &pendingOutput{Body: out}, nil
}

// waitingKey is a waiting job's place in the scheduler's order: its
// priority and submission (Unix milliseconds, as the store keeps it).
type waitingKey struct {
	id                  string
	priority, submitted int64
}

// waitingOrder is the waiting jobs of queue queueID in the scheduler's
// order, from two reads of the active jobs' index that read no job
// (indexed.Reader.Values: their priority, their submission). A job that
// ended or was submitted between the two is left out.
func (s *Server) waitingOrder(ctx context.Context, queueID string) ([]waitingKey, error) {
	f := queueJobs(queueID, events.JobSubmitted, events.JobPending)
	priority, err := s.active.Values(ctx, f, "priority")
	if err != nil {
		return nil, fmt.Errorf("read the order of the waiting jobs: %w", err)
	}
	submitted, err := s.active.Values(ctx, f, "submitted_at")
	if err != nil {
		return nil, fmt.Errorf("read the order of the waiting jobs: %w", err)
	}
	keys := make([]waitingKey, 0, len(priority))
	for id, p := range priority {
		if t, ok := submitted[id]; ok {
			keys = append(keys, waitingKey{id: id, priority: p, submitted: t})
		}
	}
	slices.SortFunc(keys, compareKeys)
	return keys, nil
}

// keyOf is job j's waitingKey.
func keyOf(j *events.Job) waitingKey {
	return waitingKey{id: j.ID, priority: int64(j.Priority), submitted: j.SubmittedAt.UnixMilli()}
}

// compareKeys is the scheduler's order of waiting jobs (package admit):
// priority (higher first), submission (older first), id.
func compareKeys(a, b waitingKey) int {
	if c := cmp.Compare(b.priority, a.priority); c != 0 {
		return c
	}
	if c := cmp.Compare(a.submitted, b.submitted); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// pendingDoc is what GET /queues/{queue_id}/pending reads of a job.
type pendingDoc struct {
	events.Job `bson:",inline"`
	Deleted    bool `bson:"_deleted"`
}
