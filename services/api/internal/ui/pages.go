package ui

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// pluginNames maps plugin ids to "name (type)"; the default plugin's is under "".
func (u *UI) pluginNames(r *http.Request) (map[string]string, error) {
	plugins, err := listAll[pluginView](u, r, apiBase+"/plugins", nil, 10000)
	if err != nil {
		return nil, err
	}
	names := map[string]string{"": "default (local processes)"}
	for _, p := range plugins {
		names[p.ID] = p.Name + " (" + p.Type + ")"
		if p.IsDefault {
			names[""] = p.Name + " (" + p.Type + ", default)"
		}
	}
	return names, nil
}

// access is which jobs the caller may read, as the API's reads decide
// (docs/auth.md): every job (auth off, or an admin), else those of the
// queues whose jobs it may read and its own.
type access struct {
	all     bool
	read    map[string]bool // queue id → the caller may read its jobs
	subject string          // the caller's own jobs, by owner.subject
	viewer  bool            // the caller has a role: it may read queues and their events
}

// job reports whether the caller may read j.
func (a access) job(j *jobView) bool {
	return a.all || a.read[j.QueueID] || a.subject != "" && j.Owner != nil && j.Owner.Subject == a.subject
}

// whoami is what GET /whoami answers that the view uses.
type whoami struct {
	Subject string `json:"subject"`
	Access  string `json:"access"` // admin, user, viewer or none
	Queues  []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Read bool   `json:"read"`
	} `json:"queues"`
}

// queuesAndAccess returns every queue (id and name, no usage) and which
// jobs the caller may read. With a token the API says both (GET /whoami:
// each queue with whether its jobs are readable, by the checks the API's
// reads make; every queue is listed to every role, its jobs are not).
// Without one, auth is off if the API answers a read at all, and every
// job is readable: the queues' ids and names are then read from the
// store, which spares the usage the API computes for each queue (on the
// all-in-one's store that reads every job document, seconds with 10,000
// jobs).
func (u *UI) queuesAndAccess(r *http.Request) ([]*queueView, access, error) {
	if r.Header.Get("Authorization") != "" {
		var who whoami
		if err := u.get(r, apiBase+"/whoami", nil, &who); err != nil {
			return nil, access{}, err
		}
		a := access{all: who.Access == "admin", read: map[string]bool{}, subject: who.Subject, viewer: who.Access != "none"}
		queues := make([]*queueView, 0, len(who.Queues))
		for _, q := range who.Queues {
			queues = append(queues, &queueView{ID: q.ID, Name: q.Name})
			a.read[q.ID] = q.Read
		}
		return queues, a, nil
	}
	if _, err := u.call(r, http.MethodGet, apiBase+"/plugins", url.Values{"limit": {"1"}}); err != nil {
		return nil, access{}, err // 401 when auth is on
	}
	queues, err := u.queueNames(r.Context())
	return queues, access{all: true, viewer: true}, err
}

type queuesData struct {
	Queues []*queueView
}

// fastQueues returns the queues (all, or the one ref names) with their
// usage counted from the job index, when auth is off and the index is
// current; ok is false otherwise, and the caller asks the API. The API
// counts usage from the store, which on the all-in-one's FerretDB reads
// every job document: seconds with 10,000 jobs.
func (u *UI) fastQueues(r *http.Request, ref string) (queues []*queueView, ok bool, err error) {
	if r.Header.Get("Authorization") != "" {
		return nil, false, nil // the API decides what the caller may read
	}
	x := u.current(r.Context())
	if x == nil {
		return nil, false, nil
	}
	// Auth is off if the API answers a read without a token.
	if _, err := u.call(r, http.MethodGet, apiBase+"/plugins", url.Values{"limit": {"1"}}); err != nil {
		return nil, false, err
	}
	queues, err = u.queuesWithUsage(r.Context(), x, ref)
	return queues, err == nil, err
}

func (u *UI) queuesPage(r *http.Request) (*page, error) {
	queues, fast, err := u.fastQueues(r, "")
	if err != nil {
		return nil, err
	}
	source := "index"
	if !fast {
		source = "store"
		if queues, err = listAll[*queueView](u, r, apiBase+"/queues", nil, 10000); err != nil {
			return nil, err
		}
	}
	plugins, err := u.pluginNames(r)
	if err != nil {
		return nil, err
	}
	for _, q := range queues {
		q.Plugin = cmp.Or(plugins[q.PluginID], q.PluginID)
	}
	// The queues people made first, by name; the built-in ones after them.
	slices.SortStableFunc(queues, func(a, b *queueView) int {
		if a.BuiltIn != b.BuiltIn {
			if a.BuiltIn {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return &page{Name: "queues", Title: "Queues", Nav: "queues", Live: "type=" + liveTypes, Data: queuesData{Queues: queues}, Source: source}, nil
}

// jobPageTypes are the events that change a job's page: its own and its
// scenario exports'.
const jobPageTypes = "rm.job.submitted,rm.job.pending,rm.job.admitted,rm.job.running,rm.job.succeeded,rm.job.failed,rm.job.cancel-requested,rm.job.cancelled,rm.job.cleaned,rm.job.retrying,rm.job.updated,rm.job.deleted," +
	"rm.export.requested,rm.export.ready,rm.export.failed,rm.export.deleted"

// liveTypes are the events that change the queue pages.
const liveTypes = "rm.queue.created,rm.queue.updated,rm.queue.deleted,rm.job.submitted,rm.job.pending,rm.job.admitted,rm.job.running,rm.job.succeeded,rm.job.failed,rm.job.cancelled,rm.job.cleaned,rm.job.deleted,rm.job.updated"

// pendingRow is a waiting job with what the page says about it.
type pendingRow struct {
	*jobView
	Position int    // 1-based queue_position, as the API gives it
	Needs    string // "needs 8 workers, 0 free of 10"
}

type queueData struct {
	Queue   *queueView
	Running []*jobView
	Pending []pendingRow
	// Deployments on the queue: their replicas hold its capacity too.
	Deployments []*deploymentView
	// NRunning and NPending count them all; the lists hold the first
	// maxListed (the pending ones in admission order).
	NRunning, NPending int
}

// maxListed bounds the jobs a queue page lists in each section; the jobs
// page lists the rest.
const maxListed = 100

func (u *UI) queuePage(r *http.Request, ref string) (*page, error) {
	if ref == "" || strings.Contains(ref, "/") {
		return nil, notFound("queue", ref)
	}
	var q queueView
	if qs, fast, err := u.fastQueues(r, ref); err != nil {
		return nil, err
	} else if fast && len(qs) == 1 {
		q = *qs[0]
	} else if err := u.getRef(r, "/queues", "queue", ref, &q); err != nil {
		return nil, err
	}
	plugins, err := u.pluginNames(r)
	if err != nil {
		return nil, err
	}
	q.Plugin = cmp.Or(plugins[q.PluginID], q.PluginID)
	d := queueData{Queue: &q}
	list := func(status string) ([]*jobView, error) {
		return listAll[*jobView](u, r, apiBase+"/queues/"+q.ID+"/jobs", url.Values{"status": {status}}, 10*maxListed)
	}
	var waiting []*jobView
	source := "store"
	if x := u.current(r.Context()); x != nil {
		acc := access{all: true} // no token: the reads above found auth off
		if r.Header.Get("Authorization") != "" {
			if _, acc, err = u.queuesAndAccess(r); err != nil {
				return nil, err
			}
		}
		waiting, d.Running, d.NPending, d.NRunning = x.active(q.ID, maxListed, acc.job)
		source = "index"
	} else {
		// One list per status, in the order a job goes through them: a job
		// that moves on between two calls is then seen twice rather than
		// missed, and its later sighting wins.
		latest := map[string]*jobView{}
		for _, st := range []string{"submitted", "pending", "admitted", "running"} {
			jobs, err := list(st)
			if err != nil {
				return nil, err
			}
			for _, j := range jobs {
				latest[j.ID] = j
			}
		}
		for _, j := range latest {
			if j.Waiting() {
				waiting = append(waiting, j)
			} else {
				d.Running = append(d.Running, j)
			}
		}
	}
	slices.SortFunc(d.Running, func(a, b *jobView) int { return strings.Compare(a.ID, b.ID) })
	// The scheduler's order, positions and estimates, from its snapshot.
	waiting = u.placeWaiting(r.Context(), q.ID, waiting)
	if d.NPending == 0 && d.NRunning == 0 { // read from the routes
		d.NPending, d.NRunning = len(waiting), len(d.Running)
		d.Running = d.Running[:min(len(d.Running), maxListed)]
	}
	waiting = waiting[:min(len(waiting), maxListed)]
	free := q.Free()
	for _, j := range waiting {
		row := pendingRow{jobView: j, Position: *j.QueuePosition}
		switch {
		case q.Limit == nil:
			row.Needs = "needs " + plural(j.WorkerInstances, "worker", "workers") + ", no limit on this queue"
		default:
			row.Needs = "needs " + plural(j.WorkerInstances, "worker", "workers") + ", " + strconv.Itoa(free) + " free of " + strconv.Itoa(*q.Limit)
		}
		d.Pending = append(d.Pending, row)
	}
	if d.Deployments, err = listAll[*deploymentView](u, r, apiBase+"/deployments", url.Values{"queue_id": {q.ID}}, maxListed); err != nil {
		return nil, err
	}
	return &page{Name: "queue", Title: "Queue " + q.Name, Nav: "queues", Live: "queue_id=" + url.QueryEscape(q.ID), Data: d, Source: source}, nil
}

type deploymentData struct {
	Deployment *deploymentView
	Queue, App string // names, else ids
	// The log of one replica slot (?log=<slot>, default 0): its tail, or
	// why it could not be read.
	LogSlot  int
	Log      string
	LogCut   bool
	LogError string
}

// deploymentPage shows a deployment: its replicas (state, restarts, how
// the last one ended) and the log of one of them.
func (u *UI) deploymentPage(r *http.Request, ref string) (*page, error) {
	var dep deploymentView
	if err := u.getRef(r, "/deployments", "deployment", ref, &dep); err != nil {
		return nil, err
	}
	d := deploymentData{Deployment: &dep, Queue: u.queueName(r, dep.QueueID), App: dep.ApplicationID}
	var app struct{ Name, Version string }
	if err := u.get(r, apiBase+"/applications/"+url.PathEscape(dep.ApplicationID), nil, &app); err == nil {
		d.App = app.Name + " " + app.Version
	}
	if v := r.URL.Query().Get("log"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case dep.Replicas == 0:
			return nil, badQuery(fieldError{"log", "this deployment has no replica slots (replicas 0)"})
		case err != nil || n < 0 || n >= dep.Replicas:
			return nil, badQuery(fieldError{"log", fmt.Sprintf("must be a replica slot of this deployment, 0 to %d", dep.Replicas-1)})
		}
		d.LogSlot = n
	}
	if dep.Replicas > 0 {
		raw, err := u.call(r, http.MethodGet, apiBase+"/deployments/"+dep.ID+"/replicas/"+strconv.Itoa(d.LogSlot)+"/logs"+logTailQuery, nil)
		if err != nil {
			d.LogError = err.(*pageError).Detail
		} else {
			d.Log, d.LogCut = logTail(raw)
		}
	}
	return &page{Name: "deployment", Title: "Deployment " + dep.Name, Nav: "queues",
		Live: "queue_id=" + url.QueryEscape(dep.QueueID) + "&type=rm.deployment.updated,rm.deployment.deleted", Data: d}, nil
}

// getRef reads the resource a page's path names (ref, from the decoded
// path: decoding it again made "%25" an empty name) from
// the API's collection into out: "No such <what>" for a ref that is empty
// or holds a slash.
func (u *UI) getRef(r *http.Request, collection, what, ref string, out any) error {
	if ref == "" || strings.Contains(ref, "/") {
		return notFound(what, ref)
	}
	err := u.get(r, apiBase+collection+"/"+url.PathEscape(ref), nil, out)
	if pe := (*pageError)(nil); errors.As(err, &pe) && pe.Status == http.StatusNotFound {
		pe.Title = "No such " + what // as for a ref that cannot be one
	}
	return err
}

// notFound is the page of a what named ref that there is not, worded as
// the API words it.
func notFound(what, ref string) *pageError {
	return &pageError{Status: http.StatusNotFound, Title: "No such " + what, Detail: fmt.Sprintf("%s %q not found", what, ref)}
}

// queueName is the name of queue id, or id if it cannot be read.
func (u *UI) queueName(r *http.Request, id string) string {
	var q queueView
	if err := u.get(r, apiBase+"/queues/"+url.PathEscape(id), nil, &q); err == nil {
		return q.Name
	}
	return id
}

// maxFailedShown bounds the failed indexes an array's page lists.
const maxFailedShown = 100

type arrayData struct {
	Array  *arrayView
	Queue  string      // its name, else its id
	Failed []failedJob // the first maxFailedShown failed indexes
	Jobs   string      // the jobs table's URL, filtered to the array's jobs
}

// failedJob is a failed index of an array and the page of its job.
type failedJob struct {
	Index int
	Href  string
}

// arrayPage shows a job array: its jobs by status, the failed indexes,
// a link to its jobs and a cancel button.
func (u *UI) arrayPage(r *http.Request, id string) (*page, error) {
	var a arrayView
	err := u.getRef(r, "/job-arrays", "job array", id, &a)
	if err != nil {
		return nil, err
	}
	d := arrayData{Array: &a, Queue: u.queueName(r, a.QueueID), Jobs: withQuery(Path+"/jobs", "array", a.ID)}
	if d.Failed, err = u.failedJobs(r, &a); err != nil {
		return nil, err
	}
	live := "queue_id=" + url.QueryEscape(a.QueueID) + "&type=rm.job.admitted,rm.job.running,rm.job.succeeded,rm.job.failed,rm.job.cancelled"
	if a.Final() {
		live = "-"
	}
	return &page{Name: "array", Title: "Job array " + a.Name, Nav: "jobs", Live: live, Data: d}, nil
}

// failedJobs links the first maxFailedShown failed indexes of an array to
// their jobs' pages. A name search cannot stand in for the link: "sweep-1"
// is in the names of sweep-10 to sweep-19 too. The array's jobs are listed
// in index order (their ids are), so one page of its failed jobs holds the
// first failed indexes; an index whose job is not on it (it failed since
// the array was read) links to the array's failed jobs.
func (u *UI) failedJobs(r *http.Request, a *arrayView) ([]failedJob, error) {
	shown := a.FailedIndexes[:min(len(a.FailedIndexes), maxFailedShown)]
	if len(shown) == 0 {
		return nil, nil
	}
	var page struct {
		Items []*jobView `json:"items"`
	}
	q := url.Values{"array_id": {a.ID}, "status": {"failed"}, "limit": {strconv.Itoa(maxFailedShown)}}
	if err := u.get(r, apiBase+"/jobs", q, &page); err != nil {
		return nil, err
	}
	ids := map[int]string{}
	for _, j := range page.Items {
		if j.ArrayIndex != nil {
			ids[*j.ArrayIndex] = j.ID
		}
	}
	out := make([]failedJob, 0, len(shown))
	for _, i := range shown {
		href := withQuery(Path+"/jobs", "array", a.ID, "status", "failed")
		if id, ok := ids[i]; ok {
			href = Path + "/jobs/" + id
		}
		out = append(out, failedJob{Index: i, Href: href})
	}
	return out, nil
}

// jobsQuery is the jobs table's filter, read from the page's query.
type jobsQuery struct {
	Queue, Status, Label, Owner, Name string
	Array                             string // a job array's id
	Cursor                            string
	Limit                             int
}

var (
	jobStatuses = []string{"submitted", "pending", "admitted", "running", "succeeded", "failed", "cancelled"}
	labelRe     = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,252}[A-Za-z0-9])?=.{0,63}$`)
	jobIDRe     = regexp.MustCompile(`^job-[A-Za-z0-9_-]{1,80}$`)
)

func parseJobsQuery(q url.Values) (jobsQuery, error) {
	f := jobsQuery{Queue: q.Get("queue"), Status: q.Get("status"), Label: q.Get("label"), Owner: q.Get("owner"),
		Name: q.Get("q"), Array: q.Get("array"), Cursor: q.Get("cursor"), Limit: 50}
	var errs []fieldError
	if f.Status != "" && !slices.Contains(jobStatuses, f.Status) {
		errs = append(errs, fieldError{"status", "must be one of " + strings.Join(jobStatuses, ", ")})
	}
	if f.Label != "" && !labelRe.MatchString(f.Label) {
		errs = append(errs, fieldError{"label", "must be key=value with a label key"})
	}
	if f.Cursor != "" && !jobIDRe.MatchString(f.Cursor) {
		errs = append(errs, fieldError{"cursor", "not a cursor of this list"})
	}
	if len(f.Queue) > 63 {
		errs = append(errs, fieldError{"queue", "at most 63 characters"})
	}
	if len(f.Owner) > 256 {
		errs = append(errs, fieldError{"owner", "at most 256 characters"})
	}
	if len(f.Name) > 63 {
		errs = append(errs, fieldError{"q", "at most 63 characters"})
	}
	if len(f.Array) > 63 {
		errs = append(errs, fieldError{"array", "at most 63 characters"})
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			errs = append(errs, fieldError{"limit", "must be a whole number from 1 to 500"})
		}
		f.Limit = n
	}
	if len(errs) > 0 {
		return f, badQuery(errs...)
	}
	return f, nil
}

type jobsData struct {
	Filter   jobsQuery
	Statuses []string
	Queues   []*queueView
	Jobs     []*jobView
	Next     string // the next page's URL, "" on the last
	First    string // the first page's URL, "" on the first
}

func (u *UI) jobsPage(r *http.Request) (*page, error) {
	f, err := parseJobsQuery(r.URL.Query())
	if err != nil {
		return nil, err
	}
	// The queue filter picks among every queue; what the caller may read
	// bounds the rows.
	queues, acc, err := u.queuesAndAccess(r)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(queues, func(a, b *queueView) int { return strings.Compare(a.Name, b.Name) })
	ids := make([]string, 0, len(queues))
	for _, q := range queues {
		if f.Queue == "" || f.Queue == q.ID || f.Queue == q.Name {
			ids = append(ids, q.ID)
		}
	}
	if f.Queue != "" && len(ids) == 0 {
		return nil, badQuery(fieldError{"queue", "no queue " + strconv.Quote(f.Queue)})
	}
	var rows []*jobView
	var more bool
	source := "store"
	if x := u.current(r.Context()); x != nil {
		selected := map[string]bool{}
		for _, id := range ids {
			selected[id] = true
		}
		rows, more = x.page(f, selected, acc)
		source = "index"
	} else if rows, more, err = u.jobRows(r.Context(), f, ids, acc); err != nil {
		return nil, err
	}
	if f.Array != "" && len(rows) == 0 {
		// As a queue that does not exist: a typo, not an empty array. Asked
		// only when no job of it is listed: reading the array counts its
		// jobs, seconds for an array of 20,000 on a busy embedded store,
		// and a job listed shows the array is there (and readable: its
		// jobs are read as it is, by its queue or its owner).
		var a arrayView
		var pe *pageError
		if err := u.getRef(r, "/job-arrays", "job array", f.Array, &a); errors.As(err, &pe) && pe.Status == http.StatusNotFound {
			return nil, badQuery(fieldError{"array", "no job array " + strconv.Quote(f.Array)})
		} else if err != nil {
			return nil, err
		}
	}
	d := jobsData{Filter: f, Statuses: jobStatuses, Queues: queues, Jobs: rows}
	kv := []string{"queue", f.Queue, "status", f.Status, "label", f.Label, "owner", f.Owner, "q", f.Name, "array", f.Array}
	if f.Limit != 50 {
		kv = append(kv, "limit", strconv.Itoa(f.Limit))
	}
	if more {
		d.Next = withQuery(Path+"/jobs", append(kv, "cursor", rows[len(rows)-1].ID)...)
	}
	if f.Cursor != "" {
		d.First = withQuery(Path+"/jobs", kv...)
	}
	live := "type=rm.job.submitted,rm.job.pending,rm.job.admitted,rm.job.running,rm.job.succeeded,rm.job.failed,rm.job.cancelled,rm.job.deleted"
	if f.Cursor != "" {
		live = "-" // a later page would shift under the reader
	}
	return &page{Name: "jobs", Title: "Jobs", Nav: "jobs", Live: live, Data: d, Source: source}, nil
}

// step is one stage of a job's timeline.
type step struct {
	Name    string
	At      *time.Time
	For     string // how long the stage lasted, or has lasted so far
	Current bool
	Reached bool
	Note    string
}

type instanceGroup struct {
	Role   string
	Counts []statusCount
	Total  int
}

type statusCount struct {
	Status string
	N      int
}

type jobData struct {
	Job       *jobView
	Queue     string
	Timeline  []step
	Groups    []instanceGroup
	Instances []instance // the page of instances shown
	IPage     int        // its number, for reading only: pages follow cursors
	IPages    int
	IStatus   string
	INext     string // the cursor of the next page, "" on the last
	LogRef    string // role/index of the instance whose log is shown
	LogFailed bool   // LogRef is the instance whose failure failed the job, shown unasked
	LogChoice []string
	Log       string
	LogCut    bool
	LogError  string
	Artifacts []artifactView
	ArtMore   bool
	Exports   []exportRow
}

// instancesPerPage is how many instances the job page lists at once.
const instancesPerPage = 50

// logTailBytes is how much of a log the job page shows, at most
// logTailLines lines of it.
const (
	logTailBytes = 16 << 10
	logTailLines = 400
)

// logTailQuery asks the logs routes for one line more than a page shows,
// so that the launcher reads (and the API sends) no more of a long log than
// that, and the extra line tells that there was more.
var logTailQuery = "?tail=" + strconv.Itoa(logTailLines+1)

// logTail is the part of raw (the answer to logTailQuery) a page shows, and
// whether the log had more. A log is bytes: what is not UTF-8 in it is shown
// as U+FFFD, as the page is UTF-8.
func logTail(raw []byte) (string, bool) {
	lines := bytes.Count(raw, []byte("\n"))
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		lines++
	}
	cut := false
	if lines > logTailLines {
		raw, cut = raw[bytes.IndexByte(raw, '\n')+1:], true
	}
	s, cutBytes := tail(raw, logTailBytes)
	return strings.ToValidUTF8(s, "\uFFFD"), cut || cutBytes
}

func (u *UI) jobPage(r *http.Request, id string) (*page, error) {
	if !jobIDRe.MatchString(id) {
		return nil, notFound("job", id)
	}
	var j jobView
	if err := u.getRef(r, "/jobs", "job", id, &j); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	d := jobData{Job: &j, Queue: cmp.Or(j.QueueName, j.QueueID), IStatus: q.Get("istatus")}
	var errs []fieldError
	d.IPage = 1
	if s := q.Get("ipage"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100000 {
			errs = append(errs, fieldError{"ipage", "must be a page number from 1"})
		}
		d.IPage = n
	}
	if d.IStatus != "" && !slices.Contains([]string{"pending", "running", "succeeded", "failed", "stopped"}, d.IStatus) {
		errs = append(errs, fieldError{"istatus", "must be pending, running, succeeded, failed or stopped"})
	}
	d.LogRef = q.Get("log")
	if d.LogRef != "" && !regexp.MustCompile(`^(controller|worker|post-controller)/[0-9]{1,6}$`).MatchString(d.LogRef) {
		errs = append(errs, fieldError{"log", "must be role/index, e.g. worker/0"})
	}
	if len(errs) > 0 {
		return nil, badQuery(errs...)
	}

	d.Timeline = u.timeline(r, &j)
	d.Groups = groupInstances(&j)
	if err := u.instancePage(r, &j, &d, q.Get("icursor")); err != nil {
		return nil, err
	}

	// The log tail: the chosen instance, else the one whose failure
	// failed the job, else the first worker.
	for _, in := range j.Instances {
		if in.StartedAt != nil && len(d.LogChoice) < 200 {
			d.LogChoice = append(d.LogChoice, in.Role+"/"+strconv.Itoa(in.Index))
		}
	}
	if d.LogRef == "" && (j.StartedAt != nil || len(d.LogChoice) > 0) {
		d.LogRef = "worker/0"
		if in := firstFailed(j.Instances); in != nil && j.Status == "failed" {
			d.LogRef, d.LogFailed = in.Role+"/"+strconv.Itoa(in.Index), true
		}
	}
	if d.LogRef != "" {
		if !slices.Contains(d.LogChoice, d.LogRef) {
			d.LogChoice = append([]string{d.LogRef}, d.LogChoice...)
		}
		raw, err := u.call(r, http.MethodGet, apiBase+"/jobs/"+j.ID+"/instances/"+d.LogRef+"/logs"+logTailQuery, nil)
		if err != nil {
			d.LogError = err.(*pageError).Detail
		} else {
			d.Log, d.LogCut = logTail(raw)
		}
	}

	var arts struct {
		Items      []artifactView `json:"items"`
		NextCursor string         `json:"next_cursor"`
	}
	if err := u.get(r, apiBase+"/jobs/"+j.ID+"/artifacts", url.Values{"limit": {"100"}}, &arts); err != nil {
		return nil, err
	}
	d.Artifacts, d.ArtMore = arts.Items, arts.NextCursor != ""
	exports, err := u.exportsOf(r.Context(), j.ID)
	if err != nil {
		return nil, err
	}
	d.Exports = exports
	// The job's events and those of its scenario exports, which the
	// stream's job_id selects both.
	return &page{Name: "job", Title: "Job " + cmp.Or(j.Name, j.ID), Nav: "jobs",
		Live: "job_id=" + url.QueryEscape(j.ID) + "&type=" + jobPageTypes, Data: d}, nil
}

// firstFailed is the instance whose failure failed the job: of those that
// failed, the one that ended first (the earlier in the list when several
// ended at once); nil if none failed.
func firstFailed(ins []instance) *instance {
	var first *instance
	for i := range ins {
		in := &ins[i]
		if in.Status == "failed" && in.FinishedAt != nil && (first == nil || in.FinishedAt.Before(*first.FinishedAt)) {
			first = in
		}
	}
	return first
}

// instancePage reads the page of the job's instances after cursor through
// GET /jobs/{id}/instances, so that every instance of a job is listed, also
// beyond the 1,000 the job itself carries; the number of pages comes from
// the counts.
func (u *UI) instancePage(r *http.Request, j *jobView, d *jobData, cursor string) error {
	q := url.Values{"limit": {strconv.Itoa(instancesPerPage)}}
	if d.IStatus != "" {
		q.Set("status", d.IStatus)
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var page struct {
		Items      []instance `json:"items"`
		NextCursor string     `json:"next_cursor"`
	}
	if err := u.get(r, apiBase+"/jobs/"+url.PathEscape(j.ID)+"/instances", q, &page); err != nil {
		var pe *pageError
		if cursor != "" && errors.As(err, &pe) && (pe.Status == http.StatusBadRequest || pe.Status == http.StatusUnprocessableEntity) {
			return badQuery(fieldError{"icursor", "not a cursor of this job's instances"})
		}
		return err
	}
	if cursor == "" {
		d.IPage = 1
	}
	total := 0
	for _, g := range d.Groups {
		for _, c := range g.Counts {
			if d.IStatus == "" || c.Status == d.IStatus {
				total += c.N
			}
		}
	}
	d.Instances, d.INext = page.Items, page.NextCursor
	d.IPages = max(d.IPage, (total+instancesPerPage-1)/instancesPerPage)
	if d.INext != "" {
		d.IPages = max(d.IPages, d.IPage+1)
	}
	return nil
}

// groupInstances counts instances per role and status: from instance_counts
// when the API gives them (large jobs list at most 1,000), else from the list.
func groupInstances(j *jobView) []instanceGroup {
	counts := j.InstanceCounts
	if len(counts) == 0 {
		counts = map[string]map[string]int{}
		for _, in := range j.Instances {
			if counts[in.Role] == nil {
				counts[in.Role] = map[string]int{}
			}
			counts[in.Role][in.Status]++
		}
	}
	var out []instanceGroup
	for _, role := range []string{"controller", "worker", "post-controller"} {
		byStatus, ok := counts[role]
		if !ok {
			continue
		}
		g := instanceGroup{Role: role}
		for _, st := range []string{"pending", "running", "succeeded", "failed", "stopped"} {
			if n := byStatus[st]; n > 0 {
				g.Counts = append(g.Counts, statusCount{st, n})
				g.Total += n
			}
		}
		for st, n := range byStatus { // statuses this view does not know yet
			if !slices.Contains([]string{"pending", "running", "succeeded", "failed", "stopped"}, st) && n > 0 {
				g.Counts = append(g.Counts, statusCount{st, n})
				g.Total += n
			}
		}
		out = append(out, g)
	}
	return out
}

// notRunningNote says why a job that ended has no running step: it never
// started an instance, or it ended before every instance was running (the
// job is running once all are), as a job whose first instances fail at
// once does.
func notRunningNote(j *jobView) string {
	for _, in := range j.Instances {
		if in.StartedAt != nil || in.Status == "running" || in.Status == "succeeded" || in.Status == "failed" {
			return "ended before every instance was running"
		}
	}
	for _, byStatus := range j.InstanceCounts {
		if byStatus["running"]+byStatus["succeeded"]+byStatus["failed"] > 0 {
			return "ended before every instance was running"
		}
	}
	return "never ran"
}

// timeline is submitted → pending → admitted → running → final, with the
// time each was reached (from the job's events, else its record) and how
// long it lasted.
func (u *UI) timeline(r *http.Request, j *jobView) []step {
	seen := u.jobEventTimes(r.Context(), j.ID)
	at := func(typ string, fallback *time.Time) *time.Time {
		if t, ok := seen[typ]; ok {
			return &t
		}
		return fallback
	}
	submitted := j.SubmittedAt
	final := "finished"
	if j.Final() {
		final = j.Status
	}
	steps := []step{
		{Name: "submitted", At: at("submitted", &submitted)},
		{Name: "pending", At: at("pending", nil)},
		{Name: "admitted", At: at("admitted", j.AdmittedAt)},
		{Name: "running", At: at("running", j.StartedAt)},
		{Name: final, At: at(final, j.FinishedAt)},
	}
	if steps[1].At == nil {
		steps[1].Note = "admitted at once"
		if j.Waiting() {
			steps[1].Note = ""
		}
	}
	if c := j.WaitReason(); c != nil && j.Waiting() {
		steps[1].Note = c.Reason + ": " + c.Message
		if steps[1].At == nil && !c.LastTransitionTime.IsZero() {
			t := c.LastTransitionTime
			steps[1].At = &t
		}
	}
	if j.Final() && j.StartedAt == nil {
		steps[3].Note = notRunningNote(j)
	}
	last := -1
	for i := range steps {
		if steps[i].At != nil {
			steps[i].Reached = true
			last = i
		}
	}
	for i := range steps {
		if !steps[i].Reached {
			continue
		}
		next := -1
		for k := i + 1; k < len(steps); k++ {
			if steps[k].Reached {
				next = k
				break
			}
		}
		switch {
		case next >= 0:
			steps[i].For = fmtDuration(steps[next].At.Sub(*steps[i].At))
		case i == last && !j.Final():
			steps[i].Current = true
			steps[i].For = fmtDuration(u.opts.Now().Sub(*steps[i].At).Truncate(time.Second)) + " so far"
		}
	}
	return steps
}

type eventsData struct {
	Events []eventRow
	// QueueNames is the queues' names by id, as JSON, for the
	// rows the page adds live: a deployment's or an export's event names
	// its queue by id alone.
	QueueNames string
}

func (u *UI) eventsPage(r *http.Request) (*page, error) {
	queues, acc, err := u.queuesAndAccess(r)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, q := range queues {
		names[q.ID] = q.Name
	}
	rows, err := u.recentEvents(r.Context(), 50, names, acc)
	if err != nil {
		return nil, err
	}
	namesJSON, err := json.Marshal(names)
	if err != nil {
		return nil, err
	}
	return &page{Name: "events", Title: "Events", Nav: "events", Live: "", Data: eventsData{Events: rows, QueueNames: string(namesJSON)}}, nil
}
