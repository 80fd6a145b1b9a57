// Package jobspec holds the submission rules of a job: how the queue, the
// registered application, the app-runtime-config of (queue, application)
// and the job itself resolve into the runtime spec every instance starts
// from (docs/API.md, Jobs). It is pure: it imports neither MongoDB nor
// NATS; the API looks the documents up and passes them in.
package jobspec

import (
	"errors"
	"maps"

	"github.com/avxrm/rm/pkg/events"
)

// Application is what a job needs of a registered application.
type Application struct {
	ID                   string            `bson:"_id"`
	Name                 string            `bson:"name"`
	Version              string            `bson:"app_version"` // "version" is the outbox's revision
	Image                string            `bson:"image"`
	Command              []string          `bson:"command"`
	Args                 []string          `bson:"args"`
	EnvironmentVariables map[string]string `bson:"environment_variables"`
}

// RuntimeConfig is what a job needs of the app-runtime-config of its queue
// and application.
type RuntimeConfig struct {
	Image                string                 `bson:"image"`
	WorkingDirectory     string                 `bson:"working_directory"`
	Command              []string               `bson:"command"`
	Args                 []string               `bson:"args"`
	EnvironmentVariables map[string]string      `bson:"environment_variables"`
	ResourceLimits       *events.ResourceLimits `bson:"resource_limits"`
}

// Submission is what the job itself says.
type Submission struct {
	InlineImage string            // application.image
	AppEnv      map[string]string // application.environment_variables
	Env         map[string]string // environment_variables
	Command     []string          // command: replaces the runtime's command and args
	Args        []string          // args: replaces the runtime's args
}

// ErrNoImage: nothing gives the job an image.
var ErrNoImage = errors.New("jobspec: no image")

// Resolve returns the runtime spec of a job submitted to q with sub, of the
// registered application app (nil for an inline one) whose
// app-runtime-config on q is arc (nil if none). The image is arc's, else
// the inline one, else the application's; command and args the
// application's unless arc gives them; environment variables queue, then
// application, then inline application, then arc, then job (later wins);
// resource limits arc's, else the queue's. The job's own command and args
// override all of that, as a Kubernetes container's do an image's: a
// command replaces the command and the args (the job's args, if any, go
// with it), args alone replace the args. ErrNoImage when none has an image.
func Resolve(q *events.Queue, app *Application, arc *RuntimeConfig, sub Submission) (events.RuntimeSpec, error) {
	rt := events.RuntimeSpec{ResourceLimits: q.ResourceLimits}
	switch {
	case arc != nil && arc.Image != "":
		rt.Image = arc.Image
	case sub.InlineImage != "":
		rt.Image = sub.InlineImage
	case app != nil:
		rt.Image = app.Image
	}
	if rt.Image == "" {
		return rt, ErrNoImage
	}
	env := map[string]string{}
	maps.Copy(env, q.EnvironmentVariables)
	if app != nil {
		rt.Command, rt.Args = app.Command, app.Args
		maps.Copy(env, app.EnvironmentVariables)
	}
	maps.Copy(env, sub.AppEnv)
	if arc != nil {
		maps.Copy(env, arc.EnvironmentVariables)
		rt.WorkingDirectory = arc.WorkingDirectory
		if len(arc.Command) > 0 {
			rt.Command = arc.Command
		}
		if len(arc.Args) > 0 {
			rt.Args = arc.Args
		}
		if arc.ResourceLimits != nil {
			rt.ResourceLimits = arc.ResourceLimits
		}
	}
	maps.Copy(env, sub.Env)
	overrideCommand(&rt, sub)
	if len(env) > 0 {
		rt.EnvironmentVariables = env
	}
	return rt, nil
}

// overrideCommand applies the job's command and args to rt.
func overrideCommand(rt *events.RuntimeSpec, sub Submission) {
	if len(sub.Command) > 0 {
		rt.Command, rt.Args = sub.Command, sub.Args
	} else if len(sub.Args) > 0 {
		rt.Args = sub.Args
	}
}
