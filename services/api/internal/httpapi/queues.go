package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"regexp"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// NamePattern is the rule for every resource name.
const NamePattern = `^[A-Za-z0-9][A-Za-z0-9._-]*$`

// QueueBody is what a client sends to create or replace a queue.
type QueueBody struct {
	Name                          string                  `json:"name" minLength:"1" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"unique; letters, digits, -, _, ., starting with a letter or digit"`
	Description                   string                  `json:"description,omitempty" maxLength:"1024"`
	PluginID                      string                  `json:"plugin_id,omitempty" maxLength:"63" doc:"id or name of a plugin (stored as its id); the default plugin otherwise"`
	MaximumAllowedWorkerInstances *int                    `json:"maximum_allowed_worker_instances,omitempty" minimum:"0" maximum:"100000" nullable:"true" doc:"null or absent: unlimited; 0 admits nothing"`
	ResourceLimits                *events.ResourceLimits  `json:"resource_limits,omitempty"`
	Storages                      []events.Storage        `json:"storages,omitempty" maxItems:"64"`
	EnvironmentVariables          map[string]string       `json:"environment_variables,omitempty"`
	Attributes                    *events.QueueAttributes `json:"attributes,omitempty"`
	Scheduling                    *events.QueueScheduling `json:"scheduling,omitempty"`
	Access                        *events.QueueAccess     `json:"access,omitempty"`
}

func (b *QueueBody) validate() []*problem.FieldError {
	errs := validateLimits("resource_limits", b.ResourceLimits)
	errs = append(errs, validateStorages("storages", b.Storages)...)
	errs = append(errs, validateEnv("environment_variables", b.EnvironmentVariables)...)
	errs = append(errs, validateAttributes("attributes", b.Attributes)...)
	errs = append(errs, validateAccess("access", b.Access)...)
	return errs
}

// apply copies the client's fields onto q.
func (b *QueueBody) apply(q *events.Queue) {
	q.Name = b.Name
	q.Description = b.Description
	q.PluginID = b.PluginID
	q.MaximumAllowedWorkerInstances = b.MaximumAllowedWorkerInstances
	q.ResourceLimits = b.ResourceLimits
	q.Storages = b.Storages
	q.EnvironmentVariables = b.EnvironmentVariables
	q.Attributes = b.Attributes
	q.Access = b.Access
	q.Scheduling = events.QueueScheduling{}
	if b.Scheduling != nil {
		q.Scheduling = *b.Scheduling
	}
	if q.Scheduling.Backfill == nil {
		yes := true
		q.Scheduling.Backfill = &yes
	}
}

// queueBodyOf is the writable view of q.
func queueBodyOf(q *events.Queue) *QueueBody {
	sch := q.Scheduling
	return &QueueBody{
		Name: q.Name, Description: q.Description, PluginID: q.PluginID,
		MaximumAllowedWorkerInstances: q.MaximumAllowedWorkerInstances,
		ResourceLimits:                q.ResourceLimits, Storages: q.Storages,
		EnvironmentVariables: q.EnvironmentVariables, Attributes: q.Attributes, Scheduling: &sch, Access: q.Access,
	}
}

type QueuePathParam struct {
	QueueID string `path:"queue_id" maxLength:"63" doc:"the queue's id or name"`
}

type (
	createQueueInput struct {
		idempotencyParam
		Body QueueBody
	}
	getQueueInput     struct{ QueuePathParam }
	replaceQueueInput struct {
		QueuePathParam
		IfMatchParam
		Body QueueBody
	}
	patchQueueInput struct {
		QueuePathParam
		IfMatchParam
		MergePatchBody
	}
	deleteQueueInput struct {
		QueuePathParam
		IfMatchParam
	}
	listQueuesInput struct {
		ListParams
		Name     string `query:"name" maxLength:"63" doc:"only the queue of this name"`
		PluginID string `query:"plugin_id" maxLength:"63" doc:"only queues on this plugin (id or name)"`
	}
)

type queueOutput = resourceOutput[*events.Queue]

func (s *Server) queueCrud() *crud[*events.Queue, QueueBody, *events.Queue] {
	return &crud[*events.Queue, QueueBody, *events.Queue]{
		s: s, store: s.queues, kind: events.KindQueue,
		location: func(q *events.Queue) string { return BasePath + "/queues/" + q.ID },
		build:    s.buildQueue,
		writable: queueBodyOf,
		present: func(ctx context.Context, q *events.Queue) (*events.Queue, error) {
			return q, s.fillUsage(ctx, q)
		},
		queueOf: func(q *events.Queue) string { return q.ID },
		named:   func(q *events.Queue) string { return "a queue named " + q.Name },
		name:    func(q *events.Queue) string { return q.Name },
		inUse:   s.queueInUse,
	}
}

func (s *Server) registerQueues() {
	c := s.queueCrud()
	tag := []string{"Queues"}
	path, item := BasePath+"/queues", BasePath+"/queues/{queue_id}"
	huma.Register(s.API, s.op("create-queue", http.MethodPost, path, "Create a queue", tag,
		http.StatusCreated, http.StatusConflict, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *createQueueInput) (*queueOutput, error) {
			return c.create(ctx, &in.Body, nil)
		})
	huma.Register(s.API, s.op("list-queues", http.MethodGet, path, "List queues", tag, 0),
		func(ctx context.Context, in *listQueuesInput) (*listOutput[*events.Queue], error) {
			f := bson.D{}
			if in.Name != "" {
				f = append(f, bson.E{Key: "name", Value: in.Name})
			}
			if in.PluginID != "" {
				f = append(f, bson.E{Key: "plugin_id", Value: s.pluginIDOf(ctx, in.PluginID)})
			}
			return c.list(ctx, f, in.ListParams)
		})
	huma.Register(s.API, s.op("get-queue", http.MethodGet, item, "Get a queue by id or name", tag, 0, http.StatusNotFound),
		func(ctx context.Context, in *getQueueInput) (*queueOutput, error) { return c.read(ctx, in.QueueID) })
	huma.Register(s.API, s.op("replace-queue", http.MethodPut, item, "Replace a queue", tag, 0,
		http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *replaceQueueInput) (*queueOutput, error) {
			return c.replace(ctx, in.QueueID, in.IfMatch, &in.Body)
		})
	huma.Register(s.API, s.op("patch-queue", http.MethodPatch, item, "Update a queue with a JSON merge patch", tag, 0,
		http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *patchQueueInput) (*queueOutput, error) {
			return c.patch(ctx, in.QueueID, in.IfMatch, in.MergePatchBody)
		})
	documentMergePatch[QueueBody](s, item)
	huma.Register(s.API, s.op("delete-queue", http.MethodDelete, item,
		"Delete a queue (not a built-in one, nor one in use by active jobs, app-runtime-configs or deployments)", tag,
		http.StatusNoContent, http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed),
		func(ctx context.Context, in *deleteQueueInput) (*struct{}, error) {
			return nil, c.remove(ctx, in.QueueID, in.IfMatch)
		})
}

// buildQueue validates b and returns the queue it describes, keeping what
// the client does not write (built-in) from prev.
func (s *Server) buildQueue(ctx context.Context, b *QueueBody, prev *events.Queue) (*events.Queue, error) {
	errs := b.validate()
	if prev != nil && prev.BuiltIn && b.Name != prev.Name {
		errs = append(errs, problem.Field("name", "the built-in queue %s cannot be renamed", prev.Name))
	}
	if b.PluginID != "" {
		id, err := s.resolvePlugin(ctx, "plugin_id", b.PluginID)
		if err != nil {
			var fe *problem.FieldError
			if !asField(err, &fe) {
				return nil, err
			}
			errs = append(errs, fe)
		}
		b.PluginID = id
	}
	if len(errs) > 0 {
		return nil, problem.Invalid(errs...)
	}
	q := &events.Queue{}
	if prev != nil {
		q.BuiltIn = prev.BuiltIn
	}
	b.apply(q)
	q.Usage = &events.QueueUsage{}
	return q, nil
}

// queueInUse refuses to delete built-in queues and queues that active jobs,
// app-runtime-configs or deployments still use.
func (s *Server) queueInUse(ctx context.Context, q *events.Queue) error {
	what := fmt.Sprintf("queue %s (%s)", q.Name, q.ID)
	if q.BuiltIn {
		return fmt.Errorf("%s is built in and cannot be deleted: %w", what, problem.ErrConflict)
	}
	if err := s.inUseBy(ctx, what, store.Jobs, activeJobs(bson.E{Key: "queue_id", Value: q.ID}), "active job", endThem); err != nil {
		return err
	}
	if err := s.inUseByRef(ctx, what, store.AppRuntimeConfigs, bson.D{{Key: "queue_id", Value: q.ID}}, s.arcRef, deleteThem); err != nil {
		return err
	}
	return s.inUseBy(ctx, what, store.Deployments, bson.D{{Key: "queue_id", Value: q.ID}}, "deployment", deleteThem)
}

// queueRef names the queue of id by its name too, for messages.
func (s *Server) queueRef(ctx context.Context, id string) string {
	l, err := s.queues.Get(ctx, id)
	if err != nil {
		return "queue " + id
	}
	return fmt.Sprintf("queue %s (%s)", l.Res.Name, id)
}

// activeJobs filters the jobs matching e whose status is not final.
func activeJobs(e bson.E) bson.D {
	return bson.D{e, {Key: "status", Value: bson.D{{Key: "$nin", Value: bson.A{events.JobSucceeded, events.JobFailed, events.JobCancelled}}}}}
}

// resolveQueue returns the id of the queue ref (id or name) names; an
// unknown queue is a 422 naming field.
func (s *Server) resolveQueue(ctx context.Context, field, ref string) (string, error) {
	l, err := s.queues.Get(ctx, ref)
	if isNotFound(err) {
		return "", problem.Field(field, "no queue %q", ref)
	}
	if err != nil {
		return "", fmt.Errorf("look up queue %q: %w", ref, err)
	}
	return l.Res.ID, nil
}

// filterQueue returns the queue id the event stream filters by for ref (an
// id or a name): the queue's id while it exists, else ref itself if it has
// the shape of a queue id, for a deleted queue's events outlive it. Any
// other unknown ref is a 422 naming field: a misspelt name must not look
// like a queue without events.
func (s *Server) filterQueue(ctx context.Context, field, ref string) (string, error) {
	l, err := s.queues.Get(ctx, ref)
	switch {
	case err == nil:
		return l.Res.ID, nil
	case !isNotFound(err):
		return "", fmt.Errorf("look up queue %q: %w", ref, err)
	case queueID.MatchString(ref):
		return ref, nil
	}
	return "", problem.Field(field, "no queue %q", ref)
}

// queueID is the shape of a queue's id: q- and a ULID (events.NewID).
var queueID = regexp.MustCompile(`^q-[0-9A-HJKMNP-TV-Z]{26}$`)

// EnsureBuiltinQueues creates simulation-controller-queue and
// post-controller-queue (unlimited) unless they exist. Several API replicas
// may race here; the unique name index lets exactly one insert win.
func (s *Server) EnsureBuiltinQueues(ctx context.Context) error {
	for _, name := range []string{events.ControllerQueue, events.PostControllerQueue} {
		if _, err := s.queues.Get(ctx, name); err == nil {
			continue
		} else if !isNotFound(err) {
			return fmt.Errorf("look up built-in queue %s: %w", name, err)
		}
		b := QueueBody{Name: name, Description: "built-in"}
		now := s.now()
		q := &events.Queue{Meta: events.Meta{ID: events.NewID("q"), CreatedAt: now, UpdatedAt: now, Version: 1}, BuiltIn: true}
		b.apply(q)
		q.Usage = &events.QueueUsage{}
		ev, err := events.New(events.TypeQueueCreated, s.opts.Source, q.ID, q.ID, q)
		if err != nil {
			return err
		}
		if err := s.queues.Insert(ctx, q, ev); err != nil && problem.From(err).Status != http.StatusConflict {
			return fmt.Errorf("create built-in queue %s: %w", name, err)
		}
	}
	return nil
}
