package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/avxrm/rm/services/api/internal/store"
	"github.com/danielgtaylor/huma/v2"
	"github.com/distribution/reference"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Applications have a user field "version" (a string such as "1.2.0"; jobs
// name an application by name and version) that collides with the integer
// revision every resource carries as "version". For applications the JSON
// "version" is the application's version, and the revision is
// "resource_version" (what ETag and If-Match use). In MongoDB the revision
// stays in "version", as the outbox requires, and the application's version
// is stored as "app_version".

// ApplicationDoc is an application as stored.
type ApplicationDoc struct {
	events.Meta          `bson:",inline"`
	Name                 string            `bson:"name"`
	AppVersion           string            `bson:"app_version"`
	Description          string            `bson:"description,omitempty"`
	Image                string            `bson:"image,omitempty"`
	Command              []string          `bson:"command,omitempty"`
	Args                 []string          `bson:"args,omitempty"`
	EnvironmentVariables map[string]string `bson:"environment_variables,omitempty"`
}

// Application is an application as the API shows it.
type Application struct {
	ID                   string            `json:"id" readOnly:"true"`
	CreatedAt            time.Time         `json:"created_at" readOnly:"true"`
	UpdatedAt            time.Time         `json:"updated_at" readOnly:"true"`
	ResourceVersion      int64             `json:"resource_version" readOnly:"true" doc:"the revision: +1 on every change; sent as the ETag"`
	Name                 string            `json:"name"`
	Version              string            `json:"version" doc:"the application's version, e.g. 1.2.0"`
	Description          string            `json:"description,omitempty"`
	Image                string            `json:"image,omitempty"`
	Command              []string          `json:"command,omitempty"`
	Args                 []string          `json:"args,omitempty"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty"`
}

// ApplicationBody is what a client sends to create or replace an application.
type ApplicationBody struct {
	Name                 string            `json:"name" minLength:"1" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._-]*$" doc:"letters, digits, -, _, ., starting with a letter or digit"`
	Version              string            `json:"version" minLength:"1" maxLength:"63" pattern:"^[A-Za-z0-9][A-Za-z0-9._+-]*$" doc:"the application's version, e.g. 1.2.0 (not the resource revision)"`
	Description          string            `json:"description,omitempty" maxLength:"1024"`
	Image                string            `json:"image,omitempty" maxLength:"512" pattern:"^[A-Za-z0-9\\[][A-Za-z0-9._/:@+\\[\\]-]*$" doc:"container image reference, e.g. registry/path:tag. The docker and kubernetes drivers run it; the local driver ignores it and runs command + args (in the app-runtime-config's working_directory) as a process on the host, so a program such as /bin/sh goes in command, not here."`
	Command              []string          `json:"command,omitempty" maxItems:"256"`
	Args                 []string          `json:"args,omitempty" maxItems:"1024"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty"`
}

const applicationDoc = "An application: what jobs and deployments run; unique by name and version. " +
	"Note: \"version\" is the application's own version string (e.g. 1.2.0, what jobs reference as {name, version}); " +
	"the resource revision, sent as the ETag and compared with If-Match, is \"resource_version\"."

// TransformSchema documents the version naming in the OpenAPI document.
func (Application) TransformSchema(_ huma.Registry, s *huma.Schema) *huma.Schema {
	s.Description = applicationDoc
	return s
}

// TransformSchema documents the version naming in the OpenAPI document.
func (ApplicationBody) TransformSchema(_ huma.Registry, s *huma.Schema) *huma.Schema {
	s.Description = applicationDoc
	return s
}

func applicationKind(s *Server) store.Kind[*ApplicationDoc] {
	return store.Kind[*ApplicationDoc]{S: s.opts.Store, Coll: store.Applications, Name: "application", IDPrefix: "app"}
}

func presentApplication(a *ApplicationDoc) *Application {
	return &Application{
		ID: a.ID, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, ResourceVersion: a.Version,
		Name: a.Name, Version: a.AppVersion, Description: a.Description, Image: a.Image,
		Command: a.Command, Args: a.Args, EnvironmentVariables: a.EnvironmentVariables,
	}
}

// AppPathParam is an application's reference in a path. Its 127
// characters hold the longest name:version (63, a colon, 63).
type AppPathParam struct {
	AppID string `path:"app_id" maxLength:"127" doc:"the application's id, or name:version, or its name when only one version exists"`
}

type (
	createApplicationInput struct {
		idempotencyParam
		Body ApplicationBody
	}
	getApplicationInput     struct{ AppPathParam }
	replaceApplicationInput struct {
		AppPathParam
		IfMatchParam
		Body ApplicationBody
	}
	patchApplicationInput struct {
		AppPathParam
		IfMatchParam
		MergePatchBody
	}
	deleteApplicationInput struct {
		AppPathParam
		IfMatchParam
	}
	listApplicationsInput struct {
		ListParams
		Name    string `query:"name" maxLength:"63" doc:"only versions of the application of this name"`
		Version string `query:"version" maxLength:"63" doc:"only this version"`
	}
)

type applicationOutput = resourceOutput[*Application]

func (s *Server) applicationCrud() *crud[*ApplicationDoc, ApplicationBody, *Application] {
	return &crud[*ApplicationDoc, ApplicationBody, *Application]{
		s: s, store: applicationKind(s), kind: events.KindApplication,
		location: func(a *ApplicationDoc) string { return BasePath + "/applications/" + a.ID },
		lookup:   s.getApplication,
		build: func(_ context.Context, b *ApplicationBody, _ *ApplicationDoc) (*ApplicationDoc, error) {
			errs := validateEnv("environment_variables", b.EnvironmentVariables)
			errs = append(errs, validateImage("image", b.Image)...)
			errs = append(errs, validateCommand("command", b.Command)...)
			errs = append(errs, validateArgs("args", b.Args)...)
			if len(errs) > 0 {
				return nil, problem.Invalid(errs...)
			}
			return &ApplicationDoc{Name: b.Name, AppVersion: b.Version, Description: b.Description, Image: b.Image,
				Command: b.Command, Args: b.Args, EnvironmentVariables: b.EnvironmentVariables}, nil
		},
		writable: func(a *ApplicationDoc) *ApplicationBody {
			return &ApplicationBody{Name: a.Name, Version: a.AppVersion, Description: a.Description, Image: a.Image,
				Command: a.Command, Args: a.Args, EnvironmentVariables: a.EnvironmentVariables}
		},
		present: func(_ context.Context, a *ApplicationDoc) (*Application, error) { return presentApplication(a), nil },
		queueOf: func(*ApplicationDoc) string { return events.NoQueue },
		named: func(a *ApplicationDoc) string {
			return "an application named " + a.Name + " with version " + a.AppVersion
		},
		name:  func(a *ApplicationDoc) string { return a.Name },
		inUse: s.applicationInUse,
	}
}

func (s *Server) registerApplications() {
	c := s.applicationCrud()
	tag := []string{"Applications"}
	path, item := BasePath+"/applications", BasePath+"/applications/{app_id}"
	huma.Register(s.API, s.op("create-application", http.MethodPost, path, "Register an application", tag,
		http.StatusCreated, http.StatusConflict, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *createApplicationInput) (*applicationOutput, error) {
			return c.create(ctx, &in.Body, nil)
		})
	huma.Register(s.API, s.op("list-applications", http.MethodGet, path, "List applications", tag, 0),
		func(ctx context.Context, in *listApplicationsInput) (*listOutput[*Application], error) {
			f := bson.D{}
			if in.Name != "" {
				f = append(f, bson.E{Key: "name", Value: in.Name})
			}
			if in.Version != "" {
				f = append(f, bson.E{Key: "app_version", Value: in.Version})
			}
			return c.list(ctx, f, in.ListParams)
		})
	huma.Register(s.API, s.op("get-application", http.MethodGet, item, "Get an application", tag, 0, http.StatusNotFound),
		func(ctx context.Context, in *getApplicationInput) (*applicationOutput, error) {
			return c.read(ctx, in.AppID)
		})
	huma.Register(s.API, s.op("replace-application", http.MethodPut, item, "Replace an application", tag, 0,
		http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *replaceApplicationInput) (*applicationOutput, error) {
			return c.replace(ctx, in.AppID, in.IfMatch, &in.Body)
		})
	huma.Register(s.API, s.op("patch-application", http.MethodPatch, item, "Update an application with a JSON merge patch", tag, 0,
		http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity),
		func(ctx context.Context, in *patchApplicationInput) (*applicationOutput, error) {
			return c.patch(ctx, in.AppID, in.IfMatch, in.MergePatchBody)
		})
	documentMergePatch[ApplicationBody](s, item)
	huma.Register(s.API, s.op("delete-application", http.MethodDelete, item,
		"Delete an application no app-runtime-config, deployment or active job uses", tag,
		http.StatusNoContent, http.StatusNotFound, http.StatusConflict, http.StatusPreconditionFailed),
		func(ctx context.Context, in *deleteApplicationInput) (*struct{}, error) {
			return nil, c.remove(ctx, in.AppID, in.IfMatch)
		})
}

// getApplication finds an application by id, by name:version (neither
// holds a colon, ids neither), or by name when exactly one version of that
// name exists (names are unique only with the version).
func (s *Server) getApplication(ctx context.Context, ref string) (store.Loaded[*ApplicationDoc], error) {
	k := applicationKind(s)
	if l, err := k.FindOne(ctx, bson.D{{Key: "_id", Value: ref}}, ref); !isNotFound(err) {
		return l, err
	}
	if name, version, ok := strings.Cut(ref, ":"); ok {
		return k.FindOne(ctx, bson.D{{Key: "name", Value: name}, {Key: "app_version", Value: version}}, ref)
	}
	rs, _, err := k.List(ctx, bson.D{{Key: "name", Value: ref}}, "", 2)
	if err != nil {
		return store.Loaded[*ApplicationDoc]{}, err
	}
	switch len(rs) {
	case 0:
		return store.Loaded[*ApplicationDoc]{}, fmt.Errorf("application %q: %w", ref, problem.ErrNotFound)
	case 1:
		return k.FindOne(ctx, bson.D{{Key: "_id", Value: rs[0].ID}}, ref)
	}
	return store.Loaded[*ApplicationDoc]{}, problem.Invalid(problem.Field("app_id", "application name %q has several versions; name one as %s:<version>, or by its id", ref, ref))
}

// ApplicationByNameVersion finds the application a job names by name and version.
func (s *Server) ApplicationByNameVersion(ctx context.Context, name, version string) (*ApplicationDoc, error) {
	l, err := applicationKind(s).FindOne(ctx, bson.D{{Key: "name", Value: name}, {Key: "app_version", Value: version}}, name+" "+version)
	return l.Res, err
}

// resolveApplication returns the id of the application ref names; unknown
// or ambiguous is a 422 naming field.
func (s *Server) resolveApplication(ctx context.Context, field, ref string) (string, error) {
	l, err := s.getApplication(ctx, ref)
	if isNotFound(err) {
		return "", problem.Field(field, "no application %q", ref)
	}
	var p *problem.Problem
	if asProblem(err, &p) && len(p.Errors) == 1 {
		return "", problem.Field(field, "%s", p.Errors[0].Message)
	}
	if err != nil {
		return "", fmt.Errorf("look up application %q: %w", ref, err)
	}
	return l.Res.ID, nil
}

func asProblem(err error, p **problem.Problem) bool { return errors.As(err, p) }

func (s *Server) applicationInUse(ctx context.Context, a *ApplicationDoc) error {
	what := fmt.Sprintf("application %s %s (%s)", a.Name, a.AppVersion, a.ID)
	if err := s.inUseByRef(ctx, what, store.AppRuntimeConfigs, bson.D{{Key: "application_id", Value: a.ID}}, s.arcRef, deleteThem); err != nil {
		return err
	}
	if err := s.inUseBy(ctx, what, store.Deployments, bson.D{{Key: "application_id", Value: a.ID}}, "deployment", deleteThem); err != nil {
		return err
	}
	return s.inUseBy(ctx, what, store.Jobs, activeJobs(bson.E{Key: "application.id", Value: a.ID}), "active job", endThem)
}

// validateImage refuses an image the docker and kubernetes drivers could
// not run: one their runtimes cannot parse as a reference (the grammar of
// github.com/distribution/reference, which both use: an optional registry
// host[:port], lowercase path components separated by single slashes, an
// optional tag, an optional digest), else the job would fail at its start
// with "invalid reference format". An image id, which docker create takes,
// is a reference too (imageRefusedOn refuses a bare one where the queue
// runs on Kubernetes). The local and simulated drivers ignore the image; the
// values given them ("local", "local/sim:1") are references as well, so the
// rule holds whatever queue runs the application. Empty: no image.
func validateImage(field, image string) []*problem.FieldError {
	if image == "" {
		return nil
	}
	if _, err := reference.ParseAnyReference(image); err != nil {
		return []*problem.FieldError{problem.Field(field, "not an image reference Docker or Kubernetes can run (%v); "+
			"a reference is [host[:port]/]path[:tag][@digest], its path lowercase components separated by single slashes, "+
			"its tag at most 128 letters, digits, _, . and - not starting with . or - (e.g. registry.example/sim:1.2)", err)}
	}
	return nil
}

// imageRefusedOn is why the runtime that runs the jobs of queue q cannot
// run image, or "" when it can (or when validateImage refuses it anyway). Only
// Kubernetes is stricter: the kubelet parses an image as a name
// (reference.ParseNormalizedNamed; pkg/kubelet/images), which refuses a
// bare 64-hex image id such as 'docker images --no-trunc' prints without
// its sha256: prefix, so the container would wait as InvalidImageName
// until the start timeout. Docker's engine creates a container from that
// id. The plugin is the queue's, else the default plugin; with neither the
// launcher runs the queue on its own default driver, which the API does not
// know, and its Kubernetes driver refuses the image at the job's start.
func (s *Server) imageRefusedOn(ctx context.Context, q *events.Queue, image string) (string, error) {
	if _, err := reference.ParseNormalizedNamed(image); err == nil || validateImage("", image) != nil {
		return "", nil
	}
	p, err := s.queuePluginOfType(ctx, q, "kubernetes")
	if err != nil || p == nil {
		return "", err
	}
	return fmt.Sprintf("image %q is a bare image id, which Docker runs but Kubernetes cannot (the kubelet refuses it as InvalidImageName), "+
		"and queue %s runs on %s; give it a name, such as registry.example/sim:1.2 or registry.example/sim@sha256:<digest>",
		image, q.Name, runsOn(p)), nil
}

// nothingToRunOn is why the runtime that runs the jobs of queue q cannot
// start rt, which has no command and no args, or "" when it can: the
// local driver runs command and args as a process and has no image to take
// them from, so every start would fail. Docker and Kubernetes run the
// image's own entrypoint; the simulated driver runs nothing. The plugin is
// found as imageRefusedOn finds it; with none, and the launchers' default
// driver not known here, the local driver refuses the instance at its
// start.
func (s *Server) nothingToRunOn(ctx context.Context, q *events.Queue, rt events.RuntimeSpec) (string, error) {
	if len(rt.Command) > 0 || len(rt.Args) > 0 {
		return "", nil
	}
	p, err := s.queuePluginOfType(ctx, q, "local")
	if err != nil || p == nil {
		return "", err
	}
	return fmt.Sprintf("nothing to run: queue %s runs on %s, which starts command and args as a process "+
		"(it has no image to take them from), and neither the job, the application nor an app-runtime-config of it on the queue gives them",
		q.Name, runsOn(p)), nil
}

// nothingForTheController is why a job of queue q whose runtime rt has no
// command and no args cannot start its controller, or "" when it can: the
// controller runs rt on simulation-controller-queue, through that queue's
// runtime, which may be the local driver when q's is not.
func (s *Server) nothingForTheController(ctx context.Context, q *events.Queue, rt events.RuntimeSpec) (string, error) {
	if len(rt.Command) > 0 || len(rt.Args) > 0 || q.Name == events.ControllerQueue {
		return "", nil
	}
	// The local plugin that runs the controller's queue, or nil (no such
	// queue: the launcher says so at the start).
	local := func(fresh bool) (*Plugin, error) {
		cl, err := s.controllerQueue.get(ctx, s, fresh)
		if err != nil || cl == nil {
			return nil, err
		}
		return s.queuePluginOfType(ctx, cl, "local")
	}
	// As queuePluginOfType does with the plugin's type, a queue read of the
	// last pluginTypeTTL may let a job through; a refusal rests on a
	// fresh read.
	p, err := local(false)
	if err == nil && p != nil {
		p, err = local(true)
	}
	if err != nil || p == nil {
		return "", err
	}
	return fmt.Sprintf("nothing to run for the job's controller: it runs the job's runtime on queue %s, which runs on %s, "+
		"which starts command and args as a process (it has no image to take them from), and neither the job, the application "+
		"nor an app-runtime-config of it on queue %s gives them; give a command, or give queue %s a plugin (plugin_id) that runs the image",
		events.ControllerQueue, runsOn(p), q.Name, events.ControllerQueue), nil
}

// controllerQueueRead is simulation-controller-queue as last read, for
// nothingForTheController.
type controllerQueueRead struct {
	mu sync.Mutex
	q  *events.Queue // nil: there is none
	at time.Time
}

// get returns the queue, read afresh when fresh or when the last read is
// older than pluginTypeTTL; nil if there is none.
func (c *controllerQueueRead) get(ctx context.Context, s *Server, fresh bool) (*events.Queue, error) {
	now := time.Now()
	c.mu.Lock()
	q, at := c.q, c.at
	c.mu.Unlock()
	if !fresh && !at.IsZero() && now.Sub(at) < pluginTypeTTL {
		return q, nil
	}
	l, err := s.queues.Get(ctx, events.ControllerQueue)
	switch {
	case errors.Is(err, problem.ErrNotFound):
		q = nil
	case err != nil:
		return nil, err
	default:
		q = l.Res
	}
	c.mu.Lock()
	c.q, c.at = q, now
	c.mu.Unlock()
	return q, nil
}

// imageIgnoredOn is a hint for a "no image" refusal on queue q: when what
// runs its jobs ignores the image (the local and simulated drivers), that
// any reference does; else "". It reads the plugin afresh, as refusals do.
func (s *Server) imageIgnoredOn(ctx context.Context, q *events.Queue) (string, error) {
	p, err := s.queueRuntime(ctx, q)
	if err != nil {
		return "", err
	}
	if p == nil || (p.Type != "local" && p.Type != "simulated") {
		return "", nil
	}
	return fmt.Sprintf("; %s runs the queue and ignores the image, so any reference does, such as \"local\"", runsOn(p)), nil
}

// runsOn names what runs a queue's jobs: a plugin, or the launchers'
// default driver (a Plugin without a name, from queueRuntime).
func runsOn(p *Plugin) string {
	if p.Name == "" {
		return fmt.Sprintf("the launchers' default driver, %s (it has no plugin and no plugin is the default)", p.Type)
	}
	return fmt.Sprintf("the %s plugin %s", p.Type, p.Name)
}

// pluginTypeTTL is how long queuePluginOfType trusts a plugin's type read
// before, to let a job through.
const pluginTypeTTL = 2 * time.Second

// pluginTypes remembers the type of the plugin each plugin reference ("" for
// the default) had when last read, with the time of that read.
type pluginTypes struct {
	mu    sync.Mutex
	types map[string]pluginTypeRead
	gen   int // forgets so far: a read begun before one is not kept
}

// forget drops every type read, after a plugin was written here.
func (t *pluginTypes) forget() {
	t.mu.Lock()
	clear(t.types)
	t.gen++
	t.mu.Unlock()
}

type pluginTypeRead struct {
	typ string // "" when there was no such plugin and no default driver is known
	at  time.Time
}

// queuePluginOfType returns the plugin that runs the jobs of queue q when it
// is of type typ, else nil, for the checks that refuse what that type
// cannot run; with no plugin, a Plugin of no name when the launchers'
// default driver (Options.DefaultDriver) is of that type. A refusal rests
// on a fresh read; that the plugin is of another type is taken from a read
// of the last pluginTypeTTL, so that submissions to a queue in steady use
// read no plugin (a job let through on an answer that has just turned stale
// fails at its start, as it would have without the check).
func (s *Server) queuePluginOfType(ctx context.Context, q *events.Queue, typ string) (*Plugin, error) {
	now := time.Now()
	s.pluginTypes.mu.Lock()
	last, ok := s.pluginTypes.types[q.PluginID]
	gen := s.pluginTypes.gen
	s.pluginTypes.mu.Unlock()
	if ok && last.typ != typ && now.Sub(last.at) < pluginTypeTTL {
		return nil, nil
	}
	p, err := s.queueRuntime(ctx, q)
	if err != nil {
		return nil, err
	}
	read := pluginTypeRead{at: now}
	if p != nil {
		read.typ = p.Type
	}
	s.pluginTypes.mu.Lock()
	if s.pluginTypes.types == nil {
		s.pluginTypes.types = map[string]pluginTypeRead{}
	}
	if s.pluginTypes.gen == gen {
		s.pluginTypes.types[q.PluginID] = read
	}
	s.pluginTypes.mu.Unlock()
	if p == nil || p.Type != typ {
		return nil, nil
	}
	return p, nil
}

// queueRuntime is what runs the jobs of queue q, read afresh: its plugin
// (queuePlugin), else, with none, a Plugin of no name when the launchers'
// default driver is known (Options.DefaultDriver); nil when neither is.
func (s *Server) queueRuntime(ctx context.Context, q *events.Queue) (*Plugin, error) {
	p, err := s.queuePlugin(ctx, q)
	if p == nil && err == nil && s.opts.DefaultDriver != "" {
		p = &Plugin{Type: s.opts.DefaultDriver}
	}
	return p, err
}

// queuePlugin is the plugin that runs the jobs of queue q: its own, else
// the default plugin; nil when there is neither (the launcher then runs the
// queue on its own default driver, which the API knows only when told,
// Options.DefaultDriver).
func (s *Server) queuePlugin(ctx context.Context, q *events.Queue) (*Plugin, error) {
	kind := pluginKind(s)
	var p store.Loaded[*Plugin]
	var err error
	if q.PluginID != "" {
		p, err = kind.FindOne(ctx, bson.D{{Key: "_id", Value: q.PluginID}}, q.PluginID)
	} else {
		p, err = kind.FindOne(ctx, bson.D{{Key: "is_default", Value: true}}, "default")
	}
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up the plugin of queue %s: %w", q.Name, err)
	}
	return p.Res, nil
}

// validateArgs bounds the strings of a command or argument list and
// refuses NUL bytes, which no process can receive in an argument.
func validateArgs(field string, args []string) []*problem.FieldError {
	var errs []*problem.FieldError
	for i, a := range args {
		if len(a) > 4096 {
			errs = append(errs, problem.Field(field+"["+itoa(i)+"]", "longer than 4096 characters"))
		}
		if strings.ContainsRune(a, 0) {
			errs = append(errs, problem.Field(field+"["+itoa(i)+"]", "contains a NUL byte"))
		}
	}
	return errs
}

// validateCommand is validateArgs for a command, whose first word is the
// program: an empty one cannot be run ("command": [""]).
func validateCommand(field string, cmd []string) []*problem.FieldError {
	errs := validateArgs(field, cmd)
	if len(cmd) > 0 && strings.TrimSpace(cmd[0]) == "" {
		errs = append(errs, problem.Field(field+"[0]", "the program to run: must not be empty"))
	}
	return errs
}
