package avxrm

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/avxrm/rm/sdk/go/avxrm/api"
)

// LogOptions selects the part of a log to read; the zero value reads all
// of it.
type LogOptions struct {
	// Offset skips that many bytes of the log: a reader that follows a log
	// passes the End of what it read last, so a long log is not sent again.
	// Past the log's end the answer is empty.
	Offset int64
	// Tail, above 0, reads only the log's last Tail lines (1..100000), not
	// with Offset.
	Tail int
}

// Log is what a read of a log gave.
type Log struct {
	// Data is the log's bytes exactly as the program wrote them, which
	// need not be UTF-8.
	Data []byte
	// Offset is where in the log Data starts (the answer's Rm-Log-Offset:
	// with Tail, where the last lines begin).
	Offset int64
}

// End is where in the log Data ends: the LogOptions.Offset that reads on
// from there.
func (l Log) End() int64 { return l.Offset + int64(len(l.Data)) }

// InstanceLog reads the combined stdout and stderr so far of one instance
// of a job (GET /jobs/{id}/instances/{role}/{index}/logs): role controller,
// worker or post-controller (an api.Instance's Role and Index name it). An
// instance with no log yet (its job waits, its instances are starting) is
// ErrNotFound, as is an index beyond the job's instances; a driver that
// keeps no logs answers 501; a runtime out of reach for the moment
// ErrUnavailable (after the client's retries). To follow a log, read again
// from the End of the last read until the instance has ended (its
// FinishedAt, or JobFinal of its job).
func (c *Client) InstanceLog(ctx context.Context, jobID string, role api.InstanceRole, index int64, o LogOptions) (Log, error) {
	switch {
	case jobID == "":
		return Log{}, fmt.Errorf("job id: empty")
	case role == "":
		return Log{}, fmt.Errorf("instance role: empty")
	}
	p := &api.GetInstanceLogsParams{}
	if o.Offset != 0 {
		p.Offset = &o.Offset
	}
	if o.Tail != 0 {
		tail := int64(o.Tail)
		p.Tail = &tail
	}
	path := fmt.Sprintf("/jobs/%s/instances/%s/%d/logs", PathSegment(jobID), PathSegment(string(role)), index)
	r, err := c.API.GetInstanceLogsWithResponse(ctx, jobID, api.GetInstanceLogsParamsRole(role), index, p, c.atPath(path))
	if err != nil {
		return Log{}, err
	}
	if err := CheckResponse(r.HTTPResponse, r.Body); err != nil {
		return Log{}, err
	}
	if r.StatusCode() != http.StatusOK {
		return Log{}, fmt.Errorf("GET %s: unexpected answer %d", path, r.StatusCode())
	}
	if e := newError(r.HTTPResponse); e.ContentType == "text/html" {
		e.notAPI = true // the API answers no log with a web page: another server's
		return Log{}, e
	}
	l := Log{Data: r.Body, Offset: o.Offset}
	if o.Tail > 0 {
		l.Offset = 0 // a server older than tails sends the whole log
	}
	if at, err := strconv.ParseInt(r.HTTPResponse.Header.Get("Rm-Log-Offset"), 10, 64); err == nil {
		l.Offset = at
	}
	return l, nil
}
