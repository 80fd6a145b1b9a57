package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// AppRuntimeConfig says how an application runs on one queue: it overrides
// the application's image, command and environment for the jobs of that
// queue. There is at most one per (queue, application).
type AppRuntimeConfig struct {
	events.Meta          `bson:",inline"`
	QueueID              string                 `json:"queue_id" bson:"queue_id" readOnly:"true" doc:"from the path, resolved to the queue's id"`
	ApplicationID        string                 `json:"application_id" bson:"application_id" readOnly:"true" doc:"from the path, resolved to the application's id"`
	Image                string                 `json:"image" bson:"image"`
	WorkingDirectory     string                 `json:"working_directory" bson:"working_directory"`
	Command              []string               `json:"command,omitempty" bson:"command,omitempty"`
	Args                 []string               `json:"args,omitempty" bson:"args,omitempty"`
	EnvironmentVariables map[string]string      `json:"environment_variables,omitempty" bson:"environment_variables,omitempty"`
	ResourceLimits       *events.ResourceLimits `json:"resource_limits,omitempty" bson:"resource_limits,omitempty"`
}

// AppRuntimeConfigBody is what a client sends to create or replace an app-runtime-config.
type AppRuntimeConfigBody struct {
	Image                string                 `json:"image" minLength:"1" maxLength:"512" pattern:"^[A-Za-z0-9\\[][A-Za-z0-9._/:@+\\[\\]-]*$" doc:"container image reference, e.g. registry/path:tag. The docker and kubernetes drivers run it; the local driver ignores it and runs command + args in working_directory as a process on the host (a program such as /bin/sh goes in command). Required even for the local driver."`
	WorkingDirectory     string                 `json:"working_directory" minLength:"1" maxLength:"1024" doc:"absolute path"`
	Command              []string               `json:"command,omitempty" maxItems:"256"`
	Args                 []string               `json:"args,omitempty" maxItems:"1024"`
	EnvironmentVariables map[string]string      `json:"environment_variables,omitempty"`
	ResourceLimits       *events.ResourceLimits `json:"resource_limits,omitempty"`
}

func arcKind(s *Server) store.Kind[*AppRuntimeConfig] {
	return store.Kind[*AppRuntimeConfig]{S: s.opts.Store, Coll: store.AppRuntimeConfigs, Name: "app-runtime-config", IDPrefix: "arc"}
}

type ARCPathParam struct {
	QueueID string `path:"queue_id" maxLength:"63" doc:"the queue's id or name"`
	AppID   string `path:"app_id" maxLength:"127" doc:"the application's id, or name:version, or its name when only one version exists"`
}

func (p ARCPathParam) ref() string { return p.QueueID + "/" + p.AppID }

type (
	createARCInput struct {
		ARCPathParam
		idempotencyParam
		Body AppRuntimeConfigBody
	}
	getARCInput     struct{ ARCPathParam }
	replaceARCInput struct {
		ARCPathParam
		IfMatchParam
		Body AppRuntimeConfigBody
	}
	patchARCInput struct {
		ARCPathParam
		IfMatchParam
		MergePatchBody
	}
	deleteARCInput struct {
		ARCPathParam
		IfMatchParam
	}
	listARCInput struct {
		ListParams
		QueueID       string `query:"queue_id" maxLength:"63" doc:"only the configs of this queue (id or name)"`
		ApplicationID string `query:"application_id" maxLength:"127" doc:"only the configs of this application: its id, or name:version, or its name when only one version exists"`
	}
)

type arcOutput = resourceOutput[*AppRuntimeConfig]

func arcLocation(a *AppRuntimeConfig) string {
	return BasePath + "/app-runtime-config/" + a.QueueID + "/application/" + a.ApplicationID
}

// arcRef names app-runtime-config id for a refused delete of its queue or
// application, with the path that reads and deletes it: the API reaches an
// app-runtime-config by its queue and application, not by its id.
func (s *Server) arcRef(ctx context.Context, id string) string {
	l, err := arcKind(s).FindOne(ctx, bson.D{{Key: "_id", Value: id}}, id)
	if err != nil {
		return "app-runtime-config " + id
	}
	return "app-runtime-config " + id + " (" + arcLocation(l.Res) + ")"
}

func (s *Server) arcCrud() *crud[*AppRuntimeConfig, AppRuntimeConfigBody, *AppRuntimeConfig] {
	return &crud[*AppRuntimeConfig, AppRuntimeConfigBody, *AppRuntimeConfig]{
		s: s, store: arcKind(s), kind: events.KindAppRuntimeConfig,
		location: arcLocation,
		named: func(a *AppRuntimeConfig) string {
			return fmt.Sprintf("an app-runtime-config of application %s on queue %s", a.ApplicationID, a.QueueID)
		},
		pathNamed: true,
		lookup: func(ctx context.Context, ref string) (store.Loaded[*AppRuntimeConfig], error) {
			qid, aid, err := s.arcParents(ctx, ref)
			if err != nil {
				return store.Loaded[*AppRuntimeConfig]{}, err
			}
			l, err := arcKind(s).FindOne(ctx, bson.D{{Key: "queue_id", Value: qid}, {Key: "application_id", Value: aid}}, aid)
			if errors.Is(err, problem.ErrNotFound) {
				// Not `app-runtime-config "of queue …" not found`.
				err = fmt.Errorf("app-runtime-config of application %s on queue %s: %w", aid, qid, problem.ErrNotFound)
			}
			return l, err
		},
		build: func(ctx context.Context, b *AppRuntimeConfigBody, prev *AppRuntimeConfig) (*AppRuntimeConfig, error) {
			errs := validateEnv("environment_variables", b.EnvironmentVariables)
			errs = append(errs, validateImage("image", b.Image)...)
			if prev != nil { // a create checks its queue's runtime before
				fe, err := s.arcImageRefused(ctx, prev.QueueID, b.Image)
				if err != nil {
					return nil, err
				}
				errs = append(errs, fe...)
			}
			errs = append(errs, validateCommand("command", b.Command)...)
			errs = append(errs, validateArgs("args", b.Args)...)
			errs = append(errs, validateLimits("resource_limits", b.ResourceLimits)...)
			if !path.IsAbs(b.WorkingDirectory) || path.Clean(b.WorkingDirectory) != b.WorkingDirectory {
				errs = append(errs, problem.Field("working_directory", "must be an absolute, clean path"))
			}
			if len(errs) > 0 {
				return nil, problem.Invalid(errs...)
			}
			a := &AppRuntimeConfig{Image: b.Image, WorkingDirectory: b.WorkingDirectory, Command: b.Command, Args: b.Args,
				EnvironmentVariables: b.EnvironmentVariables, ResourceLimits: b.ResourceLimits}
			if prev != nil {
				a.QueueID, a.ApplicationID = prev.QueueID, prev.ApplicationID
			}
			return a, nil
		},
		writable: func(a *AppRuntimeConfig) *AppRuntimeConfigBody {
			return &AppRuntimeConfigBody{Image: a.Image, WorkingDirectory: a.WorkingDirectory, Command: a.Command, Args: a.Args,
				EnvironmentVariables: a.EnvironmentVariables, ResourceLimits: a.ResourceLimits}
		},
		present: func(_ context.Context, a *AppRuntimeConfig) (*AppRuntimeConfig, error) { return a, nil },
		queueOf: func(a *AppRuntimeConfig) string { return a.QueueID },
	}
}

// arcImageRefused refuses the image of an app-runtime-config on queue
// queueID that the queue's runtime cannot run (imageRefusedOn).
func (s *Server) arcImageRefused(ctx context.Context, queueID, image string) ([]*problem.FieldError, error) {
	l, err := s.queues.Get(ctx, queueID)
	if err != nil {
		return nil, fmt.Errorf("look up queue %s: %w", queueID, err)
	}
	msg, err := s.imageRefusedOn(ctx, l.Res, image)
	if msg == "" || err != nil {
		return nil, err
	}
	return []*problem.FieldError{problem.Field("image", "%s", msg)}, nil
}

// arcParents resolves the queue and application of an app-runtime-config
// path; either unknown is a 404 naming the parameter.
func (s *Server) arcParents(ctx context.Context, ref string) (queueID, appID string, err error) {
	qref, aref, _ := strings.Cut(ref, "/")
	l, err := s.queues.Get(ctx, qref)
	if isNotFound(err) {
		return "", "", problem.New(http.StatusNotFound, fmt.Sprintf("no queue %q", qref), problem.Field("queue_id", "no queue %q", qref))
	}
	if err != nil {
		return "", "", err
	}
	a, err := s.getApplication(ctx, aref)
	if isNotFound(err) {
		return "", "", problem.New(http.StatusNotFound, fmt.Sprintf("no application %q", aref), problem.Field("app_id", "no application %q", aref))
	}
	if err != nil {
		return "", "", err
	}
	return l.Res.ID, a.Res.ID, nil
}

func (s *Server) registerAppRuntimeConfigs() {
	c := s.arcCrud()
	tag := []string{"App-runtime-configs"}
	path, item := BasePath+"/app-runtime-config", BasePath+"/app-runtime-config/{queue_id}/application/{app_id}"
	huma.Register(s.API, s.op("create-app-runtime-config", http.MethodPost, item,
		"Create the app-runtime-config of an application on a queue", tag,
		http.StatusCreated, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *createARCInput) (*arcOutput, error) {
			qid, aid, err := s.arcParents(ctx, in.ref())
			if err != nil {
				return nil, err
			}
			if fe, err := s.arcImageRefused(ctx, qid, in.Body.Image); err != nil {
				return nil, err
			} else if fe != nil {
				return nil, problem.Invalid(fe...)
			}
			return c.create(ctx, &in.Body, func(a *AppRuntimeConfig) { a.QueueID, a.ApplicationID = qid, aid })
		})
	huma.Register(s.API, s.op("list-app-runtime-configs", http.MethodGet, path, "List app-runtime-configs", tag, 0),
		func(ctx context.Context, in *listARCInput) (*listOutput[*AppRuntimeConfig], error) {
			f := bson.D{}
			if in.QueueID != "" {
				id := in.QueueID
				if l, err := s.queues.Get(ctx, id); err == nil {
					id = l.Res.ID
				}
				f = append(f, bson.E{Key: "queue_id", Value: id})
			}
			if in.ApplicationID != "" {
				// A name of several versions names none of them: a 422
				// saying so, not a list that looks empty.
				id := in.ApplicationID
				l, err := s.getApplication(ctx, id)
				switch {
				case err == nil:
					id = l.Res.ID
				case !isNotFound(err):
					var p *problem.Problem
					if asProblem(err, &p) && len(p.Errors) == 1 {
						return nil, problem.Invalid(problem.Field("application_id", "%s", p.Errors[0].Message))
					}
					return nil, err
				}
				f = append(f, bson.E{Key: "application_id", Value: id})
			}
			return c.list(ctx, f, in.ListParams)
		})
	huma.Register(s.API, s.op("get-app-runtime-config", http.MethodGet, item,
		"Get the app-runtime-config of an application on a queue", tag, 0, http.StatusNotFound),
		func(ctx context.Context, in *getARCInput) (*arcOutput, error) { return c.read(ctx, in.ref()) })
	huma.Register(s.API, s.op("replace-app-runtime-config", http.MethodPut, item, "Replace an app-runtime-config", tag, 0,
		http.StatusNotFound, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *replaceARCInput) (*arcOutput, error) {
			return c.replace(ctx, in.ref(), in.IfMatch, &in.Body)
		})
	huma.Register(s.API, s.op("patch-app-runtime-config", http.MethodPatch, item,
		"Update an app-runtime-config with a JSON merge patch", tag, 0,
		http.StatusNotFound, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *patchARCInput) (*arcOutput, error) {
			return c.patch(ctx, in.ref(), in.IfMatch, in.MergePatchBody)
		})
	documentMergePatch[AppRuntimeConfigBody](s, item)
	huma.Register(s.API, s.op("delete-app-runtime-config", http.MethodDelete, item, "Delete an app-runtime-config", tag,
		http.StatusNoContent, http.StatusNotFound, http.StatusPreconditionFailed),
		func(ctx context.Context, in *deleteARCInput) (*struct{}, error) {
			return nil, c.remove(ctx, in.ref(), in.IfMatch)
		})
}

// AppRuntimeConfigFor returns the app-runtime-config of (queueID,
// applicationID), both ids, or an error wrapping problem.ErrNotFound.
func (s *Server) AppRuntimeConfigFor(ctx context.Context, queueID, applicationID string) (*AppRuntimeConfig, error) {
	l, err := arcKind(s).FindOne(ctx, bson.D{{Key: "queue_id", Value: queueID}, {Key: "application_id", Value: applicationID}},
		queueID+"/"+applicationID)
	return l.Res, err
}
