package ui

import (
	"cmp"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
)

// The view decodes the API's JSON into types of its own that hold only what
// the pages show. Fields the API adds later (queue_position, owner,
// instance_counts, …) are shown when present and ignored when not.

type queueUsage struct {
	Allocated      int `json:"allocated_worker_instances"`
	RunningJobs    int `json:"running_jobs"`
	PendingJobs    int `json:"pending_jobs"`
	PendingWorkers int `json:"pending_worker_instances"`
}

type queueView struct {
	ID          string      `json:"id" bson:"_id"`
	Name        string      `json:"name" bson:"name"`
	Description string      `json:"description" bson:"description"`
	PluginID    string      `json:"plugin_id" bson:"plugin_id"`
	Limit       *int        `json:"maximum_allowed_worker_instances" bson:"maximum_allowed_worker_instances"`
	BuiltIn     bool        `json:"built_in" bson:"built_in"`
	Version     int64       `json:"version" bson:"version"`
	Usage       *queueUsage `json:"usage" bson:"-"`

	Plugin string `json:"-"` // the plugin's name and type, filled in by the page
}

// Used is the usage, never nil.
func (q *queueView) Used() queueUsage {
	if q.Usage == nil {
		return queueUsage{}
	}
	return *q.Usage
}

// Free is how many workers the queue can still admit; -1 for unlimited.
func (q *queueView) Free() int {
	if q.Limit == nil {
		return -1
	}
	return max(0, *q.Limit-q.Used().Allocated)
}

// Fill is the usage bar's width in percent.
func (q *queueView) Fill() int {
	if q.Limit == nil {
		return 0 // nothing to measure against
	}
	return pct(q.Used().Allocated, *q.Limit)
}

// UsageText says "10 of 10 workers", "3 of unlimited".
func (q *queueView) UsageText() string {
	if q.Limit == nil {
		return fmt.Sprintf("%d in use, no limit", q.Used().Allocated)
	}
	return fmt.Sprintf("%d / %d", q.Used().Allocated, *q.Limit)
}

// Level names the bar's state for its colour: ok, busy (≥ 80 %), full, closed (limit 0), unlimited.
func (q *queueView) Level() string {
	switch {
	case q.Limit == nil:
		return "unlimited"
	case *q.Limit == 0:
		return "closed"
	case q.Used().Allocated >= *q.Limit:
		return "full"
	case q.Fill() >= 80:
		return "busy"
	}
	return "ok"
}

type condition struct {
	Type               string    `json:"type" bson:"type"`
	Status             string    `json:"status" bson:"status"`
	Reason             string    `json:"reason" bson:"reason"`
	Message            string    `json:"message" bson:"message"`
	LastTransitionTime time.Time `json:"last_transition_time" bson:"last_transition_time"`
}

type instance struct {
	Role       string     `json:"role" bson:"role"`
	Index      int        `json:"index" bson:"index"`
	Status     string     `json:"status" bson:"status"`
	ExitCode   *int       `json:"exit_code" bson:"exit_code"`
	Message    string     `json:"message" bson:"message"`
	StartedAt  *time.Time `json:"started_at" bson:"started_at"`
	FinishedAt *time.Time `json:"finished_at" bson:"finished_at"`
}

type owner struct {
	Subject  string `json:"subject" bson:"subject"`
	Username string `json:"username" bson:"username"`
}

func (o *owner) String() string {
	if o == nil {
		return ""
	}
	return cmp.Or(o.Username, o.Subject)
}

type postController struct {
	Status      string     `json:"status" bson:"status"`
	RequestedAt time.Time  `json:"requested_at" bson:"requested_at"`
	StartedAt   *time.Time `json:"started_at" bson:"started_at"`
	StoppedAt   *time.Time `json:"stopped_at" bson:"stopped_at"`
}

type jobView struct {
	ID                 string                    `json:"id" bson:"_id"`
	Name               string                    `json:"name" bson:"name"`
	QueueID            string                    `json:"queue_id" bson:"queue_id"`
	QueueName          string                    `json:"queue_name" bson:"queue_name"`
	Status             string                    `json:"status" bson:"status"`
	WorkerInstances    int                       `json:"worker_instances" bson:"worker_instances"`
	Priority           int                       `json:"priority" bson:"priority"`
	Labels             events.Labels             `json:"labels" bson:"labels"`
	Owner              *owner                    `json:"owner" bson:"owner"`
	Conditions         []condition               `json:"conditions" bson:"conditions"`
	Warnings           []string                  `json:"warnings" bson:"warnings"`
	Instances          []instance                `json:"instances" bson:"instances"`
	InstancesTruncated bool                      `json:"instances_truncated" bson:"instances_truncated"`
	InstanceCounts     map[string]map[string]int `json:"instance_counts" bson:"instance_counts"`
	PostController     *postController           `json:"post_controller" bson:"post_controller"`
	SubmittedAt        time.Time                 `json:"submitted_at" bson:"submitted_at"`
	AdmittedAt         *time.Time                `json:"admitted_at" bson:"admitted_at"`
	StartedAt          *time.Time                `json:"started_at" bson:"started_at"`
	FinishedAt         *time.Time                `json:"finished_at" bson:"finished_at"`
	CleanedAt          *time.Time                `json:"cleaned_at" bson:"cleaned_at"`
	CancelRequested    bool                      `json:"cancel_requested" bson:"cancel_requested"`
	CleanupRequested   bool                      `json:"cleanup_requested" bson:"cleanup_requested"`
	QueuePosition      *int                      `json:"queue_position" bson:"queue_position"`
	EstimatedStartAt   *time.Time                `json:"estimated_start_at" bson:"estimated_start_at"`
	EstimateBasis      string                    `json:"estimate_basis" bson:"estimate_basis"`
	Attempt            int                       `json:"attempt" bson:"attempt"`
	Attempts           []events.JobAttempt       `json:"attempts" bson:"attempts"`
	ArrayID            string                    `json:"array_id" bson:"array_id"`
	ArrayIndex         *int                      `json:"array_index" bson:"array_index"`
	Version            int64                     `json:"version" bson:"version"`
}

// arrayView is a job array as GET /job-arrays/{id} gives it.
type arrayView struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"`
	QueueID         string         `json:"queue_id"`
	Count           int            `json:"count"`
	MaxParallel     int            `json:"max_parallel"`
	Counts          map[string]int `json:"counts"`
	FailedIndexes   []int          `json:"failed_indexes"`
	CancelRequested bool           `json:"cancel_requested"`
	Owner           *owner         `json:"owner"`
	CreatedAt       time.Time      `json:"created_at"`
}

// Ended is how many of the array's jobs have ended.
func (a *arrayView) Ended() int {
	return a.Counts["succeeded"] + a.Counts["failed"] + a.Counts["cancelled"]
}

// Final says whether every job of the array that exists has ended (a
// deleted job counts in no status), as POST /job-arrays/{id}/cancel sees
// it: it refuses such an array with 409.
func (a *arrayView) Final() bool { return events.AllFinal(a.Counts) }

// statusShare is one status of an array's jobs: how many, and their share
// of the array in percent (a bar's width).
type statusShare struct {
	Status string
	N      int
	Pct    float64
}

// Shares are the array's jobs by status, in the order a job goes through them.
func (a *arrayView) Shares() []statusShare {
	var out []statusShare
	for _, s := range jobStatuses {
		if n := a.Counts[s]; n > 0 {
			out = append(out, statusShare{s, n, 100 * float64(n) / float64(max(a.Count, 1))})
		}
	}
	return out
}

// Final says whether the job has ended.
func (j *jobView) Final() bool {
	return j.Status == "succeeded" || j.Status == "failed" || j.Status == "cancelled"
}

// Waiting says whether the job waits for admission.
func (j *jobView) Waiting() bool { return j.Status == "submitted" || j.Status == "pending" }

// Condition returns the condition of a type, nil if none.
func (j *jobView) Condition(typ string) *condition {
	for i := range j.Conditions {
		if j.Conditions[i].Type == typ {
			return &j.Conditions[i]
		}
	}
	return nil
}

// WaitReason is why a waiting job is not admitted, nil if it does not say.
func (j *jobView) WaitReason() *condition {
	if c := j.Condition("Admitted"); c != nil && c.Status != "True" {
		return c
	}
	return nil
}

type artifactView struct {
	Kind        string    `json:"kind"`
	SampleID    string    `json:"sample_id"`
	Declaration string    `json:"declaration"`
	Path        string    `json:"path"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	CreatedAt   time.Time `json:"created_at"`
}

// Base is the file's name without its directories.
func (a artifactView) Base() string { return a.Path[strings.LastIndex(a.Path, "/")+1:] }

// Href is where the API serves the artifact's bytes (its upload's URL).
func (a artifactView) Href(jobID string) string {
	segs := strings.Split(a.Path, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	p := apiBase + "/jobs/" + url.PathEscape(jobID) + "/artifacts/"
	if a.Kind == "scenario" {
		return p + "scenarios/" + url.PathEscape(a.SampleID) + "/" + strings.Join(segs, "/")
	}
	p += "assets/" + strings.Join(segs, "/")
	if a.Declaration != "" {
		p += "?declaration=" + url.QueryEscape(a.Declaration)
	}
	return p
}

type pluginView struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	IsDefault bool   `json:"is_default"`
}

func pct(n, of int) int {
	if of <= 0 {
		if n > 0 {
			return 100
		}
		return 0
	}
	return min(100, n*100/of)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// fmtDuration is a short human duration: 850ms, 12s, 4m05s, 3h12m, 2d4h.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// fmtTime is a UTC time to the second, as people read logs.
func fmtTime(t any) string {
	switch v := t.(type) {
	case time.Time:
		if v.IsZero() {
			return "—"
		}
		return v.UTC().Format("2006-01-02 15:04:05Z")
	case *time.Time:
		if v == nil {
			return "—"
		}
		return fmtTime(*v)
	}
	return ""
}

// ago is the age of t: "12s", "4m05s".
func (u *UI) ago(t any) string {
	switch v := t.(type) {
	case time.Time:
		if v.IsZero() {
			return "—"
		}
		d := u.opts.Now().Sub(v)
		if d < time.Minute {
			return fmt.Sprintf("%ds", max(0, int(d.Seconds())))
		}
		return fmtDuration(d)
	case *time.Time:
		if v == nil {
			return "—"
		}
		return u.ago(*v)
	}
	return ""
}

// deploymentView is a deployment as GET /deployments/{id} gives it.
type deploymentView struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	ApplicationID string `json:"application_id"`
	QueueID       string `json:"queue_id"`
	Replicas      int    `json:"replicas"`
	Status        struct {
		ReadyReplicas int           `json:"ready_replicas"`
		Conditions    []condition   `json:"conditions"`
		Replicas      []replicaView `json:"replicas"`
	} `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// replicaView is one replica slot of a deployment, as the launcher wrote it.
type replicaView struct {
	Slot         int        `json:"slot"`
	State        string     `json:"state"`
	Restarts     int        `json:"restarts"`
	StartedAt    *time.Time `json:"started_at"`
	LastEndedAt  *time.Time `json:"last_ended_at"`
	LastExitCode *int       `json:"last_exit_code"`
	LastMessage  string     `json:"last_message"`
}

// Restarts is how often the deployment's replicas were started again.
func (d *deploymentView) Restarts() int {
	n := 0
	for _, r := range d.Status.Replicas {
		n += r.Restarts
	}
	return n
}

// Condition returns the condition of type typ, nil if none.
func (d *deploymentView) Condition(typ string) *condition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == typ {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}
