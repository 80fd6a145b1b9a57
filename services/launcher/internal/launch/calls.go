package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// callBounds bound the launcher's calls to a driver that exists. A
// runtime that hangs after its driver was made (a Docker daemon stuck, a
// socket that accepts and never answers, an API server that does not
// reply) held the worker that called it for good, and once every worker
// was so held, every job on every plugin waited. A call past its bound
// fails as the runtime being unavailable (driver.ErrUnavailable): a start
// is trouble the job retries with its back-off, its Started condition
// saying RuntimeUnavailable and what the runtime did not answer; any other
// call fails the round, which is tried again with the work queue's
// back-off.
type callBounds struct {
	// start covers a start's wait for its turn among the driver's other
	// starts (docker: startSlots at a time) and the creation of its
	// container or pod. A pull of an image the engine has not goes on
	// without the start (docker), whose next try waits for it again; the
	// queue's start timeout bounds them all.
	start time.Duration
	// stop covers a stop's grace period (10 s by default) and the end of
	// the instance after it.
	stop time.Duration
	// cleanup covers the removal of a job's containers one by one; a
	// cleanup cut short removed some, and its retry removes the rest.
	cleanup time.Duration
	// reap covers the removal of one ended instance.
	reap time.Duration
	// logs covers the opening of a log, and, apart, finding the driver of
	// the log's instance (reading its job or deployment, making the
	// driver); the API waits 10 s for the launcher's answer
	// (services/api/internal/httpapi/logs.go), so that a store or runtime
	// that does not answer gets the launcher's reason, not the API's.
	logs time.Duration
}

var defaultBounds = callBounds{start: 2 * time.Minute, stop: time.Minute, cleanup: 2 * time.Minute, reap: time.Minute, logs: 4 * time.Second}

// errNoAnswer is the cause of a driver call's context ended by its bound.
var errNoAnswer = errors.New("no answer in time")

// noAnswer returns err, the failure of a driver call, marked
// driver.ErrUnavailable if the bound on the call's context cctx ended it:
// not its caller's context, nor the driver for a reason of its own (docker:
// a pull still under way, which the next start waits for again).
func (pd *pooled) noAnswer(cctx context.Context, what string, limit time.Duration, err error) error {
	ended := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errNoAnswer)
	if err == nil || context.Cause(cctx) != errNoAnswer || !ended {
		return err
	}
	return driver.Mark(driver.ErrUnavailable, fmt.Errorf("the %s runtime of %s did not answer %s within %s: %w", pd.plugin.Type, pd.plugins(), what, limit, err))
}

// bounded calls f with ctx bounded by limit (callBounds).
func (pd *pooled) bounded(ctx context.Context, what string, limit time.Duration, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeoutCause(ctx, limit, errNoAnswer)
	defer cancel()
	return pd.noAnswer(cctx, what, limit, f(cctx))
}

// start starts s on the driver.
func (pd *pooled) start(ctx context.Context, s driver.Spec) error {
	return pd.bounded(ctx, "the start of "+s.Ref.String(), pd.bounds.start, func(ctx context.Context) error { return pd.d.Start(ctx, s) })
}

// stop stops ref.
func (pd *pooled) stop(ctx context.Context, ref driver.Ref) error {
	return pd.bounded(ctx, "the stop of "+ref.String(), pd.bounds.stop, func(ctx context.Context) error { return pd.d.Stop(ctx, ref) })
}

// cleanup removes everything of job id.
func (pd *pooled) cleanup(ctx context.Context, id string) error {
	return pd.bounded(ctx, "the cleanup of "+id, pd.bounds.cleanup, func(ctx context.Context) error { return pd.d.Cleanup(ctx, id) })
}

// purge removes everything of job id, what the cleanup keeps too, if the
// driver keeps anything (driver.Purger); else it is the cleanup.
func (pd *pooled) purge(ctx context.Context, id string) error {
	p, ok := pd.d.(driver.Purger)
	if !ok {
		return pd.cleanup(ctx, id)
	}
	return pd.bounded(ctx, "the removal of "+id, pd.bounds.cleanup, func(ctx context.Context) error { return p.Purge(ctx, id) })
}

// reap removes the ended instance ref; the driver is a driver.Reaper.
func (pd *pooled) reap(ctx context.Context, ref driver.Ref) error {
	return pd.bounded(ctx, "the removal of "+ref.String(), pd.bounds.reap, func(ctx context.Context) error { return pd.d.(driver.Reaper).Reap(ctx, ref) })
}

// logs opens the log of ref within its bound; reading it is bounded by
// ctx alone (a log may be long), and closing it ends its context.
func (pd *pooled) logs(ctx context.Context, ref driver.Ref) (io.ReadCloser, error) {
	cctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(pd.bounds.logs, func() { cancel(errNoAnswer) })
	rc, err := pd.d.Logs(cctx, ref)
	if !t.Stop() && err == nil { // opened as the bound passed: cut off
		rc.Close()
		err = errNoAnswer
	}
	if err != nil {
		cancel(nil)
		return nil, pd.noAnswer(cctx, "the opening of the log of "+ref.String(), pd.bounds.logs, err)
	}
	end := func() { cancel(nil) }
	if rs, ok := rc.(io.ReadSeekCloser); ok { // readLogs seeks local logs
		return &seekingLog{ReadSeekCloser: rs, end: end}, nil
	}
	return &openLog{ReadCloser: rc, end: end}, nil
}

// openLog is a log whose Close ends the context it was opened with.
type openLog struct {
	io.ReadCloser
	end func()
}

func (l *openLog) Close() error {
	defer l.end()
	return l.ReadCloser.Close()
}

// seekingLog is a seekable log whose Close ends the context it was opened
// with.
type seekingLog struct {
	io.ReadSeekCloser
	end func()
}

func (l *seekingLog) Close() error {
	defer l.end()
	return l.ReadSeekCloser.Close()
}
