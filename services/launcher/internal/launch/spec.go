package launch

import (
	"maps"
	"strconv"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// Environment variables the launcher gives every instance (events names
// them, so that the API refuses values for them).
const (
	EnvJobID           = events.EnvJobID
	EnvRole            = events.EnvRole
	EnvInstanceIndex   = events.EnvInstanceIndex
	EnvWorkerInstances = events.EnvWorkerInstances
	EnvAPIURL          = events.EnvAPIURL
	EnvDeploymentID    = events.EnvDeploymentID
	// EnvSimRunSeconds in a job's environment overrides the simulated
	// driver's run_seconds for that job.
	EnvSimRunSeconds = "RM_SIM_RUN_SECONDS"
)

// jobSpec builds the spec of one instance of job j on queue q (the job's
// queue for workers, simulation-controller-queue for the controller,
// post-controller-queue for a post controller).
//
// The environment is the job's resolved runtime environment (the API merged
// queue, application, app-runtime-config and job variables, later winning),
// over q's variables when q is not the job's queue, then the RM_* variables.
// Resources: a worker takes the runtime's (the app-runtime-config's, else
// its queue's at submission), a controller or post controller its own
// queue's, falling back to the runtime's. Storages and attributes come from q.
func jobSpec(j *events.Job, role string, index int, q *events.Queue, apiURL string) driver.Spec {
	env := map[string]string{}
	if q.ID != j.QueueID {
		maps.Copy(env, q.EnvironmentVariables)
	}
	if rt := j.Runtime.EnvironmentVariables; rt != nil {
		maps.Copy(env, rt)
	} else {
		// A job stored without a resolved environment: rebuild what can be.
		if q.ID == j.QueueID {
			maps.Copy(env, q.EnvironmentVariables)
		}
		maps.Copy(env, j.Application.EnvironmentVariables)
		maps.Copy(env, j.EnvironmentVariables)
	}
	env[EnvJobID] = j.ID
	env[EnvRole] = role
	env[EnvInstanceIndex] = strconv.Itoa(index)
	env[EnvWorkerInstances] = strconv.Itoa(j.WorkerInstances)
	if apiURL != "" {
		env[EnvAPIURL] = apiURL
	}
	if t := j.Runtime.JobToken; t != "" {
		env[events.EnvJobToken] = t // minted by the API at submission: artifact uploads and log reads of this job
	}

	limits := j.Runtime.ResourceLimits
	if role != events.RoleWorker && q.ResourceLimits != nil {
		limits = q.ResourceLimits
	}
	if limits == nil {
		limits = q.ResourceLimits
	}
	s := queueSpec(q)
	s.Ref = driver.Ref{JobID: j.ID, Role: driver.Role(role), Index: index}
	s.Image = j.Runtime.Image
	s.Command = j.Runtime.Command
	s.Args = j.Runtime.Args
	s.WorkingDir = j.Runtime.WorkingDirectory
	s.Env = env
	s.Resources = resources(limits)
	if v, ok := env[EnvSimRunSeconds]; ok {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			s.RunSeconds = &f
		}
	}
	return s
}

// queueSpec is the part of a spec that comes from the queue.
func queueSpec(q *events.Queue) driver.Spec {
	s := driver.Spec{Queue: q.ID}
	for _, st := range q.Storages {
		s.Storages = append(s.Storages, driver.Storage{
			Name: st.Name, Type: driver.StorageType(st.Type), Source: st.Source, MountPath: st.MountPath, ReadOnly: st.ReadOnly,
		})
	}
	if a := q.Attributes; a != nil {
		s.NodeSelector = maps.Clone(a.NodeSelector)
		for _, t := range a.Tolerations {
			s.Tolerations = append(s.Tolerations, driver.Toleration{Key: t.Key, Operator: t.Operator, Value: t.Value, Effect: t.Effect})
		}
		s.Labels = maps.Clone(a.Labels)
		s.Annotations = maps.Clone(a.Annotations)
		s.ServiceAccount = a.ServiceAccount
	}
	return s
}

func resources(l *events.ResourceLimits) driver.Resources {
	if l == nil {
		return driver.Resources{}
	}
	return driver.Resources{CPU: l.CPU, Memory: l.Memory, GPU: l.GPU}
}
