package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go"
)

// Instance logs live where the instance runs, so the API asks the launcher
// for them over NATS request/reply, chunk by chunk; this works whether the
// launcher runs in the API's process or elsewhere. The protocol (the
// launcher's side is services/launcher/internal/launch/logs.go, described
// in docs/launcher.md):
//
//	request  rm.launcher.logs.<job_id>.<role>.<index>, body {"offset": n, "max": n}
//	reply    headers Rm-Logs-Status (200, 404, 501, 503, 500), Rm-Logs-Eof ("true"
//	         when nothing follows), Rm-Logs-Error; body: the chunk
const (
	logsSubjectPrefix = "rm.launcher.logs"
	logsChunk         = 256 << 10
	logsTimeout       = 10 * time.Second
)

type logsInput struct {
	ID    string `path:"id" maxLength:"63" doc:"the job's id"`
	Role  string `path:"role" enum:"controller,worker,post-controller"`
	Index int    `path:"index" minimum:"0" maximum:"100000"`
	LogsRange
}

// LogsRange is where in a log its answer starts: a reader that follows a
// log asks only for what it has not read yet; one that wants the end asks
// for the last lines.
type LogsRange struct {
	Offset int64 `query:"offset" minimum:"0" doc:"bytes of the log to skip: the answer starts there (empty if the log is not that long yet); a reader following a log passes how much it has read"`
	Tail   int   `query:"tail" minimum:"1" maximum:"100000" doc:"only the last this many lines (instead of offset); the Rm-Log-Offset header says where they start"`
}

// HeaderLogOffset answers where in the log a logs response starts.
const HeaderLogOffset = "Rm-Log-Offset"

// Resolve refuses an offset together with a tail, offset=0 too.
func (r *LogsRange) Resolve(ctx huma.Context) []error {
	if u := ctx.URL(); u.Query().Has("offset") && u.Query().Has("tail") {
		return []error{&huma.ErrorDetail{Location: "query.tail", Message: "give offset or tail, not both", Value: r.Tail}}
	}
	return nil
}

func (s *Server) registerLogs() {
	huma.Register(s.API, huma.Operation{
		OperationID: "get-instance-logs", Method: http.MethodGet, Path: BasePath + "/jobs/{id}/instances/{role}/{index}/logs",
		Summary: "Get the logs of one instance of a job", Tags: []string{"Jobs"},
		Description: "The instance's combined stdout and stderr so far, as the launcher's driver keeps them " +
			"(local processes and Docker containers do; a simulated instance has a synthetic log), from ?offset= bytes on. " +
			"The local driver keeps logs after a cleanup; Docker and Kubernetes remove them with the instance.",
		Responses: map[string]*huma.Response{
			"200": logResponse,
		},
		Errors: []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusNotImplemented, http.StatusServiceUnavailable},
	}, s.instanceLogs)
	huma.Register(s.API, huma.Operation{
		OperationID: "get-replica-logs", Method: http.MethodGet, Path: BasePath + "/deployments/{deployment_id}/replicas/{slot}/logs",
		Summary: "Get the logs of a deployment's replica", Tags: []string{"Deployments"},
		Description: "The combined stdout and stderr so far of the slot's current replica (the generation its status " +
			"counts in restarts: after a restart, the new one's), as the launcher's driver keeps them, from ?offset= bytes on.",
		Responses: map[string]*huma.Response{
			"200": logResponse,
		},
		Errors: []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusNotImplemented, http.StatusServiceUnavailable},
	}, s.replicaLogs)
}

// logResponse is the 200 of both logs routes.
var logResponse = &huma.Response{
	Description: "the log, from Rm-Log-Offset on: the bytes the program wrote, as they are; " +
		"text/plain; charset=utf-8 when they are UTF-8 (decided by the first 256 KiB), else text/plain without a charset",
	Headers: map[string]*huma.Param{HeaderLogOffset: {
		Description: "the offset in bytes of the log at which the body starts: the offset asked for, or where the last tail lines begin; offset + the body's length is where to read on from",
		Schema:      &huma.Schema{Type: "integer", Minimum: ptr(0.0)},
	}},
	Content: map[string]*huma.MediaType{"text/plain": {Schema: &huma.Schema{Type: "string"}}},
}

// logsChunkReply is one answer of the launcher.
type logsChunkReply struct {
	status int
	eof    bool
	data   []byte
	start  int64 // the offset the data starts at
}

// natsDown is the detail of a log read while the API cannot reach NATS,
// through which it asks the launcher.
const natsDown = "the logs cannot be read at the moment: the API has lost its connection to NATS, through which it asks the launcher for them; retry shortly"

// fetchLogs asks the launcher for the chunk of ref's log at offset, or,
// with tail, for the chunk at the start of its last tail lines.
func fetchLogs(ctx context.Context, nc *nats.Conn, subject string, offset int64, tail int) (logsChunkReply, error) {
	// The launcher is asked through NATS: while the API has lost it, a
	// request would wait out logsTimeout in nats.go's reconnect buffer.
	if !nc.IsConnected() {
		return logsChunkReply{}, problem.New(http.StatusServiceUnavailable, natsDown)
	}
	body, _ := json.Marshal(map[string]int64{"offset": offset, "max": logsChunk, "tail": int64(tail)})
	ctx, cancel := context.WithTimeout(ctx, logsTimeout)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return logsChunkReply{}, problem.New(http.StatusServiceUnavailable, "no launcher is reachable to serve logs")
	case err != nil && !nc.IsConnected():
		return logsChunkReply{}, problem.New(http.StatusServiceUnavailable, natsDown)
	case err != nil:
		return logsChunkReply{}, problem.New(http.StatusServiceUnavailable, "the launcher did not answer: "+err.Error())
	}
	st, _ := strconv.Atoi(m.Header.Get("Rm-Logs-Status"))
	r := logsChunkReply{status: st, eof: m.Header.Get("Rm-Logs-Eof") == "true", data: m.Data, start: offset}
	if v := m.Header.Get("Rm-Logs-Offset"); v != "" {
		r.start, _ = strconv.ParseInt(v, 10, 64)
	} else if tail > 0 {
		r.start = 0 // a launcher older than tails answers from the start
	}
	switch {
	case st == http.StatusOK:
		return r, nil
	case st == http.StatusNotFound:
		return r, fmt.Errorf("%s: %w", m.Header.Get("Rm-Logs-Error"), problem.ErrNotFound)
	case st == http.StatusNotImplemented || st == http.StatusBadRequest:
		return r, problem.New(st, m.Header.Get("Rm-Logs-Error"))
	case st == http.StatusServiceUnavailable:
		// The instance's runtime cannot answer now (its driver being
		// made, the runtime unreachable), or the launcher cannot read
		// the store: ask again (Retry-After).
		return r, problem.New(st, "the instance's log cannot be read at the moment (its runtime or the launcher's store cannot be reached); retry shortly: "+m.Header.Get("Rm-Logs-Error"))
	}
	return r, fmt.Errorf("launcher logs: status %d: %s", st, m.Header.Get("Rm-Logs-Error"))
}

func (s *Server) instanceLogs(ctx context.Context, in *logsInput) (*huma.StreamResponse, error) {
	if s.opts.JS == nil {
		return nil, problem.New(http.StatusServiceUnavailable, "NATS is not connected")
	}
	j, err := s.loadJob(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	// A job's workers and its one controller have fixed indexes; each start
	// of a post controller takes the next one, so its index is not checked.
	switch {
	case in.Role == "worker" && in.Index >= j.WorkerInstances:
		has := fmt.Sprintf("the job has %d workers, indexes 0 to %d", j.WorkerInstances, j.WorkerInstances-1)
		if j.WorkerInstances == 1 {
			has = "the job has 1 worker, index 0"
		}
		return nil, problem.New(http.StatusNotFound, fmt.Sprintf("worker %d of job %q not found: %s", in.Index, j.ID, has))
	case in.Role == "controller" && in.Index != 0:
		return nil, problem.New(http.StatusNotFound, fmt.Sprintf("controller %d of job %q not found: a job has one controller, index 0", in.Index, j.ID))
	}
	resp, err := s.streamLogs(ctx, logsSubjectPrefix+"."+j.ID+"."+in.Role+"."+strconv.Itoa(in.Index), in.LogsRange)
	if errors.Is(err, problem.ErrNotFound) {
		if why := noLogYet(j); why != "" {
			return nil, problem.New(http.StatusNotFound, fmt.Sprintf("%s %d of job %q has no log: %s", in.Role, in.Index, j.ID, why))
		}
	}
	return resp, err
}

// noLogYet says why no instance of j has a log when none can have one
// yet, or ever: it waits for admission, its instances are starting, or it
// ended before it was admitted. "" otherwise, and for a job past its first
// attempt, whose earlier attempt's instances may have had one.
func noLogYet(j *events.Job) string {
	switch {
	case j.CurrentAttempt() > 1:
		return ""
	case j.Status == events.JobSubmitted || j.Status == events.JobPending:
		return "the job is " + j.Status + ", so none of its instances has started"
	case j.Status == events.JobAdmitted:
		return "the job is admitted and its instances are starting; ask again once it runs"
	case j.AdmittedAt == nil && events.JobFinal(j.Status):
		return "the job was " + j.Status + " before it was admitted, so no instance ran"
	}
	return ""
}

// streamLogs answers with the log the launcher serves on subject, from
// the range's offset or last lines on: its first chunk decides the status
// and the start, the rest is streamed as it comes.
func (s *Server) streamLogs(ctx context.Context, subject string, from LogsRange) (*huma.StreamResponse, error) {
	nc := s.opts.JS.Conn()
	first, err := fetchLogs(ctx, nc, subject, from.Offset, from.Tail)
	if err != nil {
		return nil, err
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		hctx.SetHeader("Content-Type", logContentType(first))
		// A log that holds HTML is still shown as text, and one with
		// binary bytes is not downloaded instead (MIME Sniffing §7.2).
		hctx.SetHeader("X-Content-Type-Options", "nosniff")
		hctx.SetHeader("Cache-Control", "no-store")
		hctx.SetHeader(HeaderLogOffset, strconv.FormatInt(first.start, 10))
		if first.eof {
			// The whole answer is known: a HEAD says its length too, as
			// the GET does (net/http counts none for a HEAD of nothing).
			hctx.SetHeader("Content-Length", strconv.Itoa(len(first.data)))
		}
		hctx.SetStatus(http.StatusOK)
		w := hctx.BodyWriter()
		ctx, stop := s.streamContext(hctx.Context())
		defer stop()
		chunk, offset := first, first.start
		for {
			if _, err := w.Write(chunk.data); err != nil {
				return
			}
			offset += int64(len(chunk.data))
			if chunk.eof || len(chunk.data) == 0 {
				return
			}
			// The client gets what there is while the launcher is asked
			// for more; a HEAD ends here (head.go), as does a client gone.
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			if ctx.Err() != nil {
				return
			}
			if chunk, err = fetchLogs(ctx, nc, subject, offset, 0); err != nil {
				if ctx.Err() == nil { // else the client left, or the server stops
					s.opts.Logger.Warn("logs cut short", "subject", subject, "offset", offset, "err", err)
				}
				return
			}
		}
	}}, nil
}

// logContentType labels a log answer by its first chunk: a log is the
// bytes its program wrote, which need not be text. UTF-8 ones (a rune cut
// where the chunk ends and more follows still is) are
// "text/plain; charset=utf-8"; others are "text/plain" without a charset,
// so that no client decodes them as UTF-8 on the answer's word, while a
// browser still shows them. The answer is streamed, so the chunks after the
// first (256 KiB) are not looked at before it is labelled.
func logContentType(first logsChunkReply) string {
	if utf8Start(first.data, !first.eof) {
		return "text/plain; charset=utf-8"
	}
	return "text/plain"
}

// utf8Start says whether b is UTF-8, the last rune allowed to be cut short
// when more is to follow.
func utf8Start(b []byte, more bool) bool {
	if utf8.Valid(b) {
		return true
	}
	if !more {
		return false
	}
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			return !utf8.FullRune(b[i:]) && utf8.Valid(b[:i])
		}
	}
	return false
}

type replicaLogsInput struct {
	DeploymentPathParam
	Slot int `path:"slot" minimum:"0" maximum:"9999" doc:"the replica slot, 0 to replicas-1"`
	LogsRange
}

// replicaLogs answers with the log of the current replica of a deployment's
// slot (the generation its status counts in restarts).
func (s *Server) replicaLogs(ctx context.Context, in *replicaLogsInput) (*huma.StreamResponse, error) {
	if s.opts.JS == nil {
		return nil, problem.New(http.StatusServiceUnavailable, "NATS is not connected")
	}
	l, err := deploymentKind(s).Get(ctx, in.DeploymentID)
	if err != nil {
		return nil, err
	}
	d := l.Res
	if in.Slot >= d.Replicas {
		return nil, fmt.Errorf("replica slot %d of deployment %q (it has %d): %w", in.Slot, d.Name, d.Replicas, problem.ErrNotFound)
	}
	gen, state := 0, ""
	for _, r := range d.Status.Replicas {
		if r.Slot == in.Slot {
			gen, state = r.Restarts, r.State
		}
	}
	resp, err := s.streamLogs(ctx, logsSubjectPrefix+"."+d.ID+"-r"+strconv.Itoa(in.Slot)+".replica."+strconv.Itoa(gen), in.LogsRange)
	if errors.Is(err, problem.ErrNotFound) {
		if why := noReplicaLogYet(state); why != "" {
			return nil, problem.New(http.StatusNotFound, fmt.Sprintf("replica %d of deployment %q has no log: %s", in.Slot, d.Name, why))
		}
	}
	return resp, err
}

// noReplicaLogYet says why a replica slot in state has no log yet: it
// waits for its queue's capacity, or is starting. "" otherwise.
func noReplicaLogYet(state string) string {
	switch state {
	case "", "pending":
		return "it is pending, waiting for capacity on the deployment's queue (its Admitted condition says why), so it has not started"
	case "starting":
		return "it is starting; ask again once it runs"
	}
	return ""
}
