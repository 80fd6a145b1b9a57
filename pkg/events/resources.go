package events

import "time"

// The resources as the API returns them and as events carry them. MongoDB
// documents have the same shape (id stored as _id), so any service can announce
// a change to a document without knowing the API.

// Meta is carried by every resource.
type Meta struct {
	ID        string    `json:"id" bson:"_id" readOnly:"true"`
	CreatedAt time.Time `json:"created_at" bson:"created_at" readOnly:"true"`
	UpdatedAt time.Time `json:"updated_at" bson:"updated_at" readOnly:"true"`
	Version   int64     `json:"version" bson:"version" readOnly:"true" doc:"+1 on every change; sent as the ETag"`
}

// Names of the queues that exist from the start.
const (
	ControllerQueue     = "simulation-controller-queue"
	PostControllerQueue = "post-controller-queue"
)

// ResourceLimits apply to each instance.
type ResourceLimits struct {
	CPU    string `json:"cpu,omitempty" bson:"cpu,omitempty" maxLength:"32" doc:"Kubernetes quantity, e.g. 500m or 2"`
	Memory string `json:"memory,omitempty" bson:"memory,omitempty" maxLength:"32" doc:"Kubernetes quantity, e.g. 4Gi"`
	GPU    int    `json:"gpu,omitempty" bson:"gpu,omitempty" minimum:"0" maximum:"64"`
}

// Storage is a volume mounted into every instance of a queue.
type Storage struct {
	Name      string `json:"name" bson:"name" minLength:"1" maxLength:"63"`
	Type      string `json:"type" bson:"type" enum:"pvc,host_path,empty_dir,nfs"`
	Source    string `json:"source,omitempty" bson:"source,omitempty" maxLength:"1024" doc:"claim name, host path or server:/path"`
	MountPath string `json:"mount_path" bson:"mount_path" minLength:"1" maxLength:"1024"`
	ReadOnly  bool   `json:"read_only,omitempty" bson:"read_only,omitempty"`
}

// Toleration as in Kubernetes.
type Toleration struct {
	Key      string `json:"key,omitempty" bson:"key,omitempty" maxLength:"253"`
	Operator string `json:"operator,omitempty" bson:"operator,omitempty" enum:"Equal,Exists"`
	Value    string `json:"value,omitempty" bson:"value,omitempty" maxLength:"63"`
	Effect   string `json:"effect,omitempty" bson:"effect,omitempty" enum:"NoSchedule,PreferNoSchedule,NoExecute"`
}

// QueueAttributes are passed to the runtime for every instance of the queue.
type QueueAttributes struct {
	NodeSelector   Labels       `json:"node_selector,omitempty" bson:"node_selector,omitempty"`
	Tolerations    []Toleration `json:"tolerations,omitempty" bson:"tolerations,omitempty" maxItems:"64"`
	Labels         Labels       `json:"labels,omitempty" bson:"labels,omitempty"`
	Annotations    Labels       `json:"annotations,omitempty" bson:"annotations,omitempty"`
	ServiceAccount string       `json:"service_account,omitempty" bson:"service_account,omitempty" maxLength:"253"`
}

// QueueScheduling tunes admission on the queue.
type QueueScheduling struct {
	Backfill             *bool `json:"backfill,omitempty" bson:"backfill,omitempty" doc:"a job that fits may go before a larger one that does not; default true"`
	StarvationSeconds    *int  `json:"starvation_seconds,omitempty" bson:"starvation_seconds,omitempty" minimum:"0" maximum:"31536000" doc:"a job pending longer stops backfill on the queue until it is admitted; null or absent: 300 on a worker queue, none on the built-in controller queues; 0 = never (the guard off)"`
	DefaultMaxRunSeconds *int  `json:"default_max_run_seconds,omitempty" bson:"default_max_run_seconds,omitempty" minimum:"1" maximum:"31536000" doc:"wall-clock limit of the jobs on the queue that set no max_run_seconds; null: none"`
	// StartTimeoutSeconds: an admitted job whose instances have not all
	// started after this long fails; nil: DefaultStartTimeoutSeconds.
	StartTimeoutSeconds *int `json:"start_timeout_seconds,omitempty" bson:"start_timeout_seconds,omitempty" minimum:"1" maximum:"31536000" doc:"an admitted job whose instances cannot all start fails after this long; default 600"`
}

// DefaultStarvationSeconds is the starvation guard of a queue that sets
// none: a job pending longer pauses backfill until it is admitted, so that a
// big gang is not starved by a stream of smaller jobs. 0 turns it off.
const DefaultStarvationSeconds = 300

// Starvation is the queue's starvation limit: its starvation_seconds, else
// DefaultStarvationSeconds; 0 means no guard.
func (s QueueScheduling) Starvation() time.Duration {
	secs := DefaultStarvationSeconds
	if s.StarvationSeconds != nil {
		secs = *s.StarvationSeconds
	}
	return time.Duration(secs) * time.Second
}

// DefaultStartTimeoutSeconds is a queue's start timeout when it sets none.
const DefaultStartTimeoutSeconds = 600

// QueueUsage is computed when a queue is read.
type QueueUsage struct {
	AllocatedWorkerInstances int `json:"allocated_worker_instances"`
	RunningJobs              int `json:"running_jobs"`
	PendingJobs              int `json:"pending_jobs"`
	PendingWorkerInstances   int `json:"pending_worker_instances"`
}

// Queue limits the concurrent instances of the jobs on it.
type Queue struct {
	Meta                          `bson:",inline"`
	Name                          string            `json:"name" bson:"name"`
	Description                   string            `json:"description,omitempty" bson:"description,omitempty"`
	PluginID                      string            `json:"plugin_id,omitempty" bson:"plugin_id,omitempty"`
	MaximumAllowedWorkerInstances *int              `json:"maximum_allowed_worker_instances" bson:"maximum_allowed_worker_instances" doc:"null: unlimited; 0: admits nothing"`
	ResourceLimits                *ResourceLimits   `json:"resource_limits,omitempty" bson:"resource_limits,omitempty"`
	Storages                      []Storage         `json:"storages,omitempty" bson:"storages,omitempty"`
	EnvironmentVariables          map[string]string `json:"environment_variables,omitempty" bson:"environment_variables,omitempty"`
	Attributes                    *QueueAttributes  `json:"attributes,omitempty" bson:"attributes,omitempty"`
	Scheduling                    QueueScheduling   `json:"scheduling" bson:"scheduling"`
	Access                        *QueueAccess      `json:"access,omitempty" bson:"access,omitempty"`
	BuiltIn                       bool              `json:"built_in,omitempty" bson:"built_in,omitempty" readOnly:"true" doc:"simulation-controller-queue and post-controller-queue: can be updated, not deleted"`
	Usage                         *QueueUsage       `json:"usage,omitempty" bson:"-" readOnly:"true"`
}

// QueueAccess says who may submit to a queue and read its jobs. Entries are
// "role:<name>", "group:<name>" or "user:<name>"; rm-admin always may.
type QueueAccess struct {
	Submit []string `json:"submit,omitempty" bson:"submit,omitempty" maxItems:"256" doc:"absent: every rm-user may submit"`
	Read   []string `json:"read,omitempty" bson:"read,omitempty" maxItems:"256" doc:"absent: every role may read the queue's jobs"`
}

// GetMeta gives stores generic access to the common fields of any resource.
func (m *Meta) GetMeta() *Meta { return m }

// DeploymentEventStatus is the status a deployment's events carry: its
// ready replicas and conditions, without the per-replica list, which grows
// with the replicas (up to 10,000), so that every event stays small, as a
// job's events carry no instances. The API and the launcher, which both
// write deployments, put it in place of the stored status.
type DeploymentEventStatus struct {
	ReadyReplicas int         `json:"ready_replicas"`
	Conditions    []Condition `json:"conditions"`
}
