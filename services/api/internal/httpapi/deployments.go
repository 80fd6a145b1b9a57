package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/jobspec"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Deployment is a long-running set of replicas of an application on a
// queue; each replica holds one lease on that queue. The launcher writes
// its status and starts every replica from its runtime, which the API
// resolves when the deployment is written.
type Deployment struct {
	events.Meta          `bson:",inline"`
	Name                 string            `json:"name" bson:"name"`
	ApplicationID        string            `json:"application_id" bson:"application_id" doc:"resolved to the application's id"`
	QueueID              string            `json:"queue_id" bson:"queue_id" doc:"resolved to the queue's id"`
	Replicas             int               `json:"replicas" bson:"replicas"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty" bson:"environment_variables,omitempty"`
	Status               DeploymentStatus  `json:"status" bson:"status" readOnly:"true"`
	// Runtime is resolved by the API, with the rules of a job (jobspec),
	// on every create, replace and patch; like a job's, it is stored and
	// never in responses or events.
	Runtime events.RuntimeSpec `json:"-" bson:"runtime"`
}

// TransformSchema documents the stored runtime in the OpenAPI document.
func (Deployment) TransformSchema(_ huma.Registry, s *huma.Schema) *huma.Schema {
	s.Description = "A deployment: replicas of an application on a queue. On every create, replace and patch the API " +
		"resolves its runtime (image, command, args, working directory, environment, resource limits) with the rules of a job " +
		"and stores it, read-only and not returned; the launcher starts every replica from it, so a later change to the " +
		"application or its app-runtime-config applies at the deployment's next write. No image: 422 naming application_id."
	return s
}

// DeploymentStatus is what the launcher reports of a deployment.
type DeploymentStatus struct {
	ReadyReplicas int                `json:"ready_replicas" bson:"ready_replicas"`
	Conditions    []events.Condition `json:"conditions" bson:"conditions" nullable:"false"`
	Replicas      []ReplicaStatus    `json:"replicas" bson:"replicas" nullable:"false" doc:"one entry per replica slot, 0 to replicas-1, as the launcher last saw it"`
}

// ReplicaStatus is one replica slot of a deployment, as the launcher
// writes it.
type ReplicaStatus struct {
	Slot         int        `json:"slot" bson:"slot"`
	State        string     `json:"state" bson:"state" enum:"pending,starting,running,restarting,failed" doc:"pending: waiting for its queue's capacity; restarting: the last replica ended and the next waits for its back-off (1 s doubling to 5 min); failed: it cannot be started (the Available condition says why)"`
	Restarts     int        `json:"restarts" bson:"restarts" doc:"how many of the slot's replicas ended and were started again; the current one is generation restarts (GET …/replicas/{slot}/logs reads it)"`
	StartedAt    *time.Time `json:"started_at,omitempty" bson:"started_at,omitempty" doc:"when the running replica started"`
	LastEndedAt  *time.Time `json:"last_ended_at,omitempty" bson:"last_ended_at,omitempty" doc:"when the slot's last replica that ended did"`
	LastExitCode *int       `json:"last_exit_code,omitempty" bson:"last_exit_code,omitempty" doc:"its exit code; absent when it was killed, lost or never started"`
	LastMessage  string     `json:"last_message,omitempty" bson:"last_message,omitempty" doc:"why it ended, e.g. exited with code 1, killed by signal killed"`
}

// DeploymentBody is what a client sends to create or replace a deployment.
type DeploymentBody struct {
	Name                 string            `json:"name" minLength:"1" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"unique; letters, digits, -, _, ., starting with a letter or digit"`
	ApplicationID        string            `json:"application_id" minLength:"1" maxLength:"127" doc:"the application's id, or name:version, or its name when only one version exists"`
	QueueID              string            `json:"queue_id" minLength:"1" maxLength:"63" doc:"the queue's id or name"`
	Replicas             int               `json:"replicas" minimum:"0" maximum:"10000"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty"`
}

func deploymentKind(s *Server) store.Kind[*Deployment] {
	return store.Kind[*Deployment]{S: s.opts.Store, Coll: store.Deployments, Name: "deployment", IDPrefix: "dep"}
}

type DeploymentPathParam struct {
	DeploymentID string `path:"deployment_id" maxLength:"63" doc:"the deployment's id or name"`
}

type (
	createDeploymentInput struct {
		idempotencyParam
		Body DeploymentBody
	}
	getDeploymentInput     struct{ DeploymentPathParam }
	replaceDeploymentInput struct {
		DeploymentPathParam
		IfMatchParam
		Body DeploymentBody
	}
	patchDeploymentInput struct {
		DeploymentPathParam
		IfMatchParam
		MergePatchBody
	}
	deleteDeploymentInput struct {
		DeploymentPathParam
		IfMatchParam
	}
	listDeploymentsInput struct {
		ListParams
		Name          string `query:"name" maxLength:"63" doc:"only the deployment of this name"`
		QueueID       string `query:"queue_id" maxLength:"63" doc:"only deployments on this queue (id or name)"`
		ApplicationID string `query:"application_id" maxLength:"127" doc:"only deployments of this application"`
	}
)

type deploymentOutput = resourceOutput[*Deployment]

func (s *Server) deploymentCrud() *crud[*Deployment, DeploymentBody, *Deployment] {
	return &crud[*Deployment, DeploymentBody, *Deployment]{
		s: s, store: deploymentKind(s), kind: events.KindDeployment,
		location: func(d *Deployment) string { return BasePath + "/deployments/" + d.ID },
		named:    func(d *Deployment) string { return "a deployment named " + d.Name },
		build:    s.buildDeployment,
		writable: func(d *Deployment) *DeploymentBody {
			return &DeploymentBody{Name: d.Name, ApplicationID: d.ApplicationID, QueueID: d.QueueID,
				Replicas: d.Replicas, EnvironmentVariables: d.EnvironmentVariables}
		},
		present: func(_ context.Context, d *Deployment) (*Deployment, error) {
			if d.Status.Conditions == nil {
				d.Status.Conditions = []events.Condition{}
			}
			if d.Status.Replicas == nil {
				d.Status.Replicas = []ReplicaStatus{}
			}
			return d, nil
		},
		queueOf: func(d *Deployment) string { return d.QueueID },
		name:    func(d *Deployment) string { return d.Name },
		eventData: func(d *Deployment) any {
			return deploymentEvent{d, events.DeploymentEventStatus{ReadyReplicas: d.Status.ReadyReplicas, Conditions: d.Status.Conditions}}
		},
	}
}

// deploymentEvent is what a deployment's events carry (events.DeploymentEventStatus).
type deploymentEvent struct {
	*Deployment
	Status events.DeploymentEventStatus `json:"status"`
}

func (s *Server) buildDeployment(ctx context.Context, b *DeploymentBody, prev *Deployment) (*Deployment, error) {
	errs := validateEnv("environment_variables", b.EnvironmentVariables)
	appID, err := s.resolveApplication(ctx, "application_id", b.ApplicationID)
	var fe *problem.FieldError
	if asField(err, &fe) {
		errs = append(errs, fe)
	} else if err != nil {
		return nil, err
	}
	queueID, err := s.resolveQueue(ctx, "queue_id", b.QueueID)
	if asField(err, &fe) {
		errs = append(errs, fe)
	} else if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, problem.Invalid(errs...)
	}
	rt, err := s.deploymentRuntime(ctx, queueID, appID, b.EnvironmentVariables, b.Replicas)
	if err != nil {
		return nil, err
	}
	d := &Deployment{Name: b.Name, ApplicationID: appID, QueueID: queueID, Replicas: b.Replicas,
		EnvironmentVariables: b.EnvironmentVariables, Status: DeploymentStatus{Conditions: []events.Condition{}, Replicas: []ReplicaStatus{}}, Runtime: rt}
	if prev != nil {
		d.Status = prev.Status
	}
	return d, nil
}

// deploymentRuntime resolves the runtime every replica of a deployment on
// queue queueID of application appID starts from: the rules of a job
// (jobspec.Resolve), the deployment's variables in the job's place. No
// image, or an image its queue's runtime cannot start (imageRefusedOn), is
// a 422 naming application_id; so is a lack of command it cannot start
// (nothingToRunOn) while the deployment asks for replicas: scaled to 0, one
// whose replicas all fail for it can be written.
func (s *Server) deploymentRuntime(ctx context.Context, queueID, appID string, env map[string]string, replicas int) (events.RuntimeSpec, error) {
	ql, err := s.queues.Get(ctx, queueID)
	if err != nil {
		return events.RuntimeSpec{}, fmt.Errorf("look up queue %s: %w", queueID, err)
	}
	app, err := s.opts.Store.JobApplication(ctx, appID, "", "")
	if err != nil {
		return events.RuntimeSpec{}, fmt.Errorf("look up application %s: %w", appID, err)
	}
	arc, err := s.findJobRuntimeConfig(ctx, ql.Res, appID)
	if err != nil {
		return events.RuntimeSpec{}, err
	}
	rt, err := jobspec.Resolve(ql.Res, app, arc, jobspec.Submission{Env: env})
	if errors.Is(err, jobspec.ErrNoImage) {
		hint, err := s.imageIgnoredOn(ctx, ql.Res)
		if err != nil {
			return rt, err
		}
		return rt, problem.Invalid(problem.Field("application_id",
			"no image: application %s has none and queue %s has no app-runtime-config that gives one%s", appID, ql.Res.Name, hint))
	}
	if err != nil {
		return rt, err
	}
	msg, err := s.imageRefusedOn(ctx, ql.Res, rt.Image)
	if err == nil && msg == "" && replicas > 0 {
		msg, err = s.nothingToRunOn(ctx, ql.Res, rt)
	}
	if err == nil && msg != "" {
		err = problem.Invalid(problem.Field("application_id", "%s", msg))
	}
	return rt, err
}

func (s *Server) registerDeployments() {
	c := s.deploymentCrud()
	tag := []string{"Deployments"}
	path, item := BasePath+"/deployments", BasePath+"/deployments/{deployment_id}"
	huma.Register(s.API, s.op("create-deployment", http.MethodPost, path, "Create a deployment", tag,
		http.StatusCreated, http.StatusConflict, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *createDeploymentInput) (*deploymentOutput, error) {
			return c.create(ctx, &in.Body, nil)
		})
	huma.Register(s.API, s.op("list-deployments", http.MethodGet, path, "List deployments", tag, 0),
		func(ctx context.Context, in *listDeploymentsInput) (*listOutput[*Deployment], error) {
			f := bson.D{}
			if in.Name != "" {
				f = append(f, bson.E{Key: "name", Value: in.Name})
			}
			if in.QueueID != "" {
				id := in.QueueID
				if l, err := s.queues.Get(ctx, id); err == nil {
					id = l.Res.ID
				}
				f = append(f, bson.E{Key: "queue_id", Value: id})
			}
			if in.ApplicationID != "" {
				id := in.ApplicationID
				if l, err := s.getApplication(ctx, id); err == nil {
					id = l.Res.ID
				}
				f = append(f, bson.E{Key: "application_id", Value: id})
			}
			return c.list(ctx, f, in.ListParams)
		})
	huma.Register(s.API, s.op("get-deployment", http.MethodGet, item, "Get a deployment by id or name", tag, 0, http.StatusNotFound),
		func(ctx context.Context, in *getDeploymentInput) (*deploymentOutput, error) {
			return c.read(ctx, in.DeploymentID)
		})
	huma.Register(s.API, s.op("replace-deployment", http.MethodPut, item, "Replace a deployment", tag, 0,
		http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *replaceDeploymentInput) (*deploymentOutput, error) {
			return c.replace(ctx, in.DeploymentID, in.IfMatch, &in.Body)
		})
	huma.Register(s.API, s.op("patch-deployment", http.MethodPatch, item, "Update a deployment with a JSON merge patch", tag, 0,
		http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *patchDeploymentInput) (*deploymentOutput, error) {
			return c.patch(ctx, in.DeploymentID, in.IfMatch, in.MergePatchBody)
		})
	documentMergePatch[DeploymentBody](s, item)
	huma.Register(s.API, s.op("delete-deployment", http.MethodDelete, item, "Delete a deployment", tag,
		http.StatusNoContent, http.StatusNotFound, http.StatusPreconditionFailed),
		func(ctx context.Context, in *deleteDeploymentInput) (*struct{}, error) {
			return nil, c.remove(ctx, in.DeploymentID, in.IfMatch)
		})
}
