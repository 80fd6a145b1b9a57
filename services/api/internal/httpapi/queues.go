package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
)

// NamePattern is the rule for every resource name.
const NamePattern = `^[A-Za-z0-9][A-Za-z0-9._-]*$`

// QueueBody is what a client sends to create or replace a queue.
type QueueBody struct {
	Name                          string                  `json:"name" minLength:"1" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"unique; letters, digits, -, _, ., starting with a letter or digit"`
	Description                   string                  `json:"description,omitempty" maxLength:"1024"`
	PluginID                      string                  `json:"plugin_id,omitempty" maxLength:"63" doc:"id or name of a plugin; the default plugin otherwise"`
	MaximumAllowedWorkerInstances *int                    `json:"maximum_allowed_worker_instances,omitempty" minimum:"0" maximum:"100000" nullable:"true" doc:"null or absent: unlimited; 0 admits nothing"`
	ResourceLimits                *events.ResourceLimits  `json:"resource_limits,omitempty"`
	Storages                      []events.Storage        `json:"storages,omitempty" maxItems:"64"`
	EnvironmentVariables          map[string]string       `json:"environment_variables,omitempty"`
	Attributes                    *events.QueueAttributes `json:"attributes,omitempty"`
	Scheduling                    *events.QueueScheduling `json:"scheduling,omitempty"`
}

func (b *QueueBody) validate() []*problem.FieldError {
	errs := validateLimits("resource_limits", b.ResourceLimits)
	errs = append(errs, validateStorages("storages", b.Storages)...)
	errs = append(errs, validateEnv("environment_variables", b.EnvironmentVariables)...)
	errs = append(errs, validateAttributes("attributes", b.Attributes)...)
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
	q.Scheduling = events.QueueScheduling{}
	if b.Scheduling != nil {
		q.Scheduling = *b.Scheduling
	}
	if q.Scheduling.Backfill == nil {
		yes := true
		q.Scheduling.Backfill = &yes
	}
}

type createQueueInput struct {
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"the same key with the same body returns the original response"`
	Body           QueueBody
}

type queueRef struct {
	QueueID string `path:"queue_id" maxLength:"63" doc:"the queue's id or name"`
}

type queueOutput struct {
	Location string `header:"Location"`
	ETag     string `header:"ETag"`
	Body     *events.Queue
}

func (s *Server) registerQueues() {
	huma.Register(s.API, huma.Operation{
		OperationID: "create-queue", Method: http.MethodPost, Path: BasePath + "/queues",
		Summary: "Create a queue", Tags: []string{"Queues"}, DefaultStatus: http.StatusCreated,
		Errors: []int{http.StatusBadRequest, http.StatusConflict, http.StatusUnprocessableEntity},
	}, s.createQueue)
	huma.Register(s.API, huma.Operation{
		OperationID: "get-queue", Method: http.MethodGet, Path: BasePath + "/queues/{queue_id}",
		Summary: "Get a queue by id or name", Tags: []string{"Queues"},
		Errors: []int{http.StatusNotFound},
	}, s.getQueue)
}

func (s *Server) createQueue(ctx context.Context, in *createQueueInput) (*queueOutput, error) {
	if errs := in.Body.validate(); len(errs) > 0 {
		return nil, problem.Invalid(errs...)
	}
	if in.Body.PluginID != "" {
		if err := s.pluginExists(ctx, in.Body.PluginID); err != nil {
			return nil, err
		}
	}
	now := s.opts.Now().UTC().Truncate(timePrecision)
	q := &events.Queue{Meta: events.Meta{ID: events.NewID("q"), CreatedAt: now, UpdatedAt: now, Version: 1}}
	in.Body.apply(q)
	q.Usage = &events.QueueUsage{}
	ev, err := events.New(events.TypeQueueCreated, s.opts.Source, q.ID, q.ID, q)
	if err != nil {
		return nil, err
	}
	if err := s.queues.Insert(ctx, q, ev); err != nil {
		return nil, err
	}
	return &queueOutput{Location: BasePath + "/queues/" + q.ID, ETag: etag(q.Version), Body: q}, nil
}

func (s *Server) getQueue(ctx context.Context, in *queueRef) (*queueOutput, error) {
	l, err := s.queues.Get(ctx, in.QueueID)
	if err != nil {
		return nil, err
	}
	q := l.Res
	if err := s.fillUsage(ctx, q); err != nil {
		return nil, err
	}
	return &queueOutput{ETag: etag(q.Version), Body: q}, nil
}

// pluginExists checks a reference to a plugin by id or name.
func (s *Server) pluginExists(ctx context.Context, ref string) error {
	plugins := pluginKind(s)
	if _, err := plugins.Get(ctx, ref); err != nil {
		if problem.From(err).Status == http.StatusNotFound {
			return problem.Invalid(problem.Field("plugin_id", "no plugin %q", ref))
		}
		return fmt.Errorf("look up plugin: %w", err)
	}
	return nil
}

// EnsureBuiltinQueues creates simulation-controller-queue and
// post-controller-queue (unlimited) unless they exist. Several API replicas
// may race here; the unique name index lets exactly one insert win.
func (s *Server) EnsureBuiltinQueues(ctx context.Context) error {
	for _, name := range []string{events.ControllerQueue, events.PostControllerQueue} {
		if _, err := s.queues.Get(ctx, name); err == nil {
			continue
		}
		b := QueueBody{Name: name, Description: "built-in"}
		now := s.opts.Now().UTC().Truncate(timePrecision)
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
