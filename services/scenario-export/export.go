// Package export is the scenario-export service: it builds the zip of a
// scenario export (the artifacts a request selects, streamed from GridFS into
// GridFS, with manifest.json), and removes exports once they expire.
// cmd/rm-scenario-export and the local all-in-one both call Run.
//
// Work is claimed, not assigned: an export is built by whoever moves it from
// pending to building with a conditional single-document write (its version),
// recording a claim owner and a lease deadline that the builder renews while it
// works. A request is therefore never built twice at once, and an export whose
// builder died is taken again once the lease has passed. Two paths lead to a
// claim: the rm.export.requested event, and a periodic sweep of pending
// exports and expired claims, so nothing is lost even without a redelivery.
package export

import (
	"context"
	"errors"
	"fmt"
	"github.com/avxrm/rm/pkg/blob"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/scenario-export/internal/artifacts"
	"github.com/avxrm/rm/services/scenario-export/internal/zipper"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Source is the CloudEvents source of the service's events.
const Source = "/rm/scenario-export"

// maxWarnings bounds an export's warnings (zipper.CaseClashes, then
// zipper.WindowsNames in the room left), the last of each counting those
// not told.
const maxWarnings = 20

// TypeExportDeleted announces that an expired export (and its zip) was removed.
const TypeExportDeleted = events.TypeExportDeleted

// Config of the service. The zero value works.
type Config struct {
	// Durable names the JetStream consumer. If empty, "scenario-export".
	Durable string
	// Lease is how long a claim holds without renewal; a builder renews it
	// every Lease/3. If zero, 1m.
	Lease time.Duration
	// SweepInterval is how often pending exports, expired claims and expired
	// exports are looked for. If zero, 30s.
	SweepInterval time.Duration
	// OrphanInterval is how often blobs nobody refers to are removed. If zero, 10m.
	OrphanInterval time.Duration
	// UploadGrace is how long an unfinished artifact upload may last before its
	// chunks are taken for the leftovers of a crash and removed. If zero, 24h.
	UploadGrace time.Duration
	// Concurrency bounds the builds run at once by this process. If zero, 2.
	Concurrency int
	// MaxAttempts bounds the builds of one export (a build that crashes its
	// process counts); the next claim fails the export. If zero, 5.
	MaxAttempts int
	// Store writes zips uncompressed; by default entries are deflated at BestSpeed.
	Store bool
	// Owner names this process in claims. If empty, host-pid-random.
	Owner string
}

func (c Config) withDefaults() Config {
	if c.Durable == "" {
		c.Durable = "scenario-export"
	}
	if c.Lease <= 0 {
		c.Lease = time.Minute
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 30 * time.Second
	}
	if c.OrphanInterval <= 0 {
		c.OrphanInterval = 10 * time.Minute
	}
	if c.UploadGrace <= 0 {
		c.UploadGrace = 24 * time.Hour
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 2
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.Owner == "" {
		host, _ := os.Hostname()
		c.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), events.NewID("o"))
	}
	return c
}

// Deps are the service's connections, made by the caller.
type Deps struct {
	DB         *mongo.Database     // required
	JS         jetstream.JetStream // required
	Outbox     *outbox.Outbox      // required: publishes the events of writes
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Lookup, on the embedded store, finds a job's artifacts by an index of
	// its own (FerretDB reads every artifact for any filter but {_id}), and
	// lists the blobs for the orphan sweep by the _id index; nil: the
	// filters go to the store (MongoDB's indexes serve them).
	Lookup indexed.Lookup
}

// Service is a prepared export service.
type Service struct {
	cfg   Config
	deps  Deps
	st    *artifacts.Store
	log   *slog.Logger
	slots chan struct{}
	wg    sync.WaitGroup
	// building holds the ids of the exports this process is building, so a
	// sweep never takes over its own claim when a renewal runs late; once a
	// build has started, with its context.CancelCauseFunc, which a deletion
	// of the export calls.
	building sync.Map
	now      func() time.Time
	m        metrics

	afterEntry func(ctx context.Context, exportID string, written int) error
	noRelease  bool
}

type metrics struct {
	builds   *prometheus.CounterVec
	duration prometheus.Histogram
	bytes    prometheus.Counter
}

// New prepares the service: its collections exist when it returns.
func New(ctx context.Context, cfg Config, deps Deps) (*Service, error) {
	if deps.DB == nil || deps.JS == nil || deps.Outbox == nil {
		return nil, errors.New("scenario-export: DB, JS and Outbox are required")
	}
	cfg = cfg.withDefaults()
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	s := &Service{cfg: cfg, deps: deps, st: artifacts.NewStore(deps.DB, deps.Outbox, deps.Lookup), log: deps.Logger,
		slots: make(chan struct{}, cfg.Concurrency), now: time.Now}
	s.m = metrics{
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rm_export_builds_total",
			Help: "Export builds by result: ready, failed, released (given back), lost (claim taken)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rm_export_build_seconds",
			Help: "Duration of successful export builds.", Buckets: prometheus.ExponentialBuckets(0.1, 2, 14)}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "rm_export_zip_bytes_total", Help: "Bytes of the zips built."}),
	}
	if deps.Registerer != nil {
		for _, c := range []prometheus.Collector{s.m.builds, s.m.duration, s.m.bytes} {
			if err := deps.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	if err := s.st.Ensure(ctx); err != nil {
		return nil, err
	}
	deps.Outbox.Register(deps.DB.Collection(artifacts.ExportsColl))
	return s, nil
}

// Collections are the collections the service uses (for FerretDB's _id index).
func Collections() []string { return append([]string(nil), artifacts.Collections...) }

// SetAfterEntry calls f after each zip entry a build writes; an error stops
// the build as a failure of the store would. For tests.
func (s *Service) SetAfterEntry(_ testing.TB, f func(ctx context.Context, exportID string, written int) error) {
	s.afterEntry = f
}

// SetClock replaces the clock of claims, leases, expiry and the orphan
// sweep. Call it while the service is not running. For tests.
func (s *Service) SetClock(_ testing.TB, now func() time.Time) { s.now = now }

// WithoutRelease makes a stop behave like a crash: builds in progress keep
// their claim and leave their partial zip, for the lease and the orphan sweep
// to deal with. For tests.
func (s *Service) WithoutRelease(_ testing.TB) { s.noRelease = true }

// Run consumes rm.export.requested and sweeps until ctx ends, then waits for
// the builds in progress to give their claims back.
//
// Ack policy (see events.Consume): an event other than rm.export.requested,
// an export that is gone, built, failed or claimed by a live builder: Ack.
// Claimed here: Ack once the claim is stored; the build then runs on its own,
// protected by the claim's lease. A store error while claiming: the error goes
// back to Consume, which naks with backoff and dead-letters after MaxDeliver;
// the sweep would find the export anyway. Stopping while waiting for a build
// slot: nak, so another instance gets it.
func (s *Service) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		errc <- events.Consume(ctx, s.deps.JS, events.ConsumerSpec{
			Durable: s.cfg.Durable,
			Filters: []string{events.FilterSubject(events.KindExport, "", "")},
		}, func(_ context.Context, e events.Event) error { return s.handle(ctx, e) }, s.log)
	}()
	sweep := time.NewTicker(s.cfg.SweepInterval)
	defer sweep.Stop()
	orphans := time.NewTicker(s.cfg.OrphanInterval)
	defer orphans.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			err = <-errc
			break loop
		case err = <-errc:
			break loop
		case <-sweep.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("export sweep", "err", err)
			}
		case <-orphans.C:
			if err := s.SweepOrphans(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("orphan sweep", "err", err)
			}
		}
	}
	s.wg.Wait()
	return err
}

// Ready reports whether the service's consumer is attached to the stream.
func (s *Service) Ready(ctx context.Context) error {
	return events.ConsumerAttached(ctx, s.deps.JS, s.cfg.Durable)
}

// Run prepares the service and runs it until ctx ends.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	s, err := New(ctx, cfg, deps)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

func (s *Service) handle(ctx context.Context, e events.Event) error {
	if e.Type == TypeExportDeleted {
		// Deleted (DELETE, expiry, its job's deletion) while built here:
		// stop, rather than build on until a renewal finds the claim gone.
		if v, ok := s.building.Load(e.ResourceID); ok {
			if cancel, ok := v.(context.CancelCauseFunc); ok {
				cancel(errDeleted)
			}
		}
		return nil
	}
	if e.Type != events.TypeExportRequested {
		return nil
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	started, err := s.start(ctx, e.ResourceID)
	if !started {
		<-s.slots
	}
	return err
}

// Sweep claims and builds pending exports and those whose claim expired (as
// many as there are free build slots), and deletes expired exports.
func (s *Service) Sweep(ctx context.Context) error {
	var errs []error
	ids, err := s.st.UnfinishedExports(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range ids {
		if !s.trySlot() {
			break // every slot busy: the next sweep continues
		}
		started, err := s.start(ctx, id)
		if !started {
			<-s.slots
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	expired, err := s.st.ExpiredExports(ctx, s.now())
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range expired {
		if err := s.expire(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) trySlot() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// start claims export id and starts its build in the background; false when
// the export is not there to build (gone, finished, or claimed by a live builder).
func (s *Service) start(ctx context.Context, id string) (bool, error) {
	l, err := s.st.Load(ctx, id)
	if errors.Is(err, artifacts.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	e := l.Export
	if _, mine := s.building.Load(id); mine {
		return false, nil
	}
	switch {
	case e.Status == artifacts.StatusPending:
	case e.Status == artifacts.StatusBuilding && (e.Claim == nil || now.After(e.Claim.Until)):
		s.log.Info("taking over an export whose claim expired", "export", id, "previous_owner", ownerOf(e.Claim))
	default:
		return false, nil
	}
	if !e.ExpiresAt.IsZero() && now.After(e.ExpiresAt) {
		return false, nil // the sweep deletes it
	}
	if e.Attempts >= s.cfg.MaxAttempts {
		return false, s.fail(ctx, l, fmt.Sprintf("gave up after %d attempts to build it", e.Attempts))
	}
	c := e
	c.Status = artifacts.StatusBuilding
	c.Claim = &artifacts.Claim{Owner: s.cfg.Owner, Until: now.Add(s.cfg.Lease)}
	c.Attempts++
	c.Version++
	c.UpdatedAt = now
	if err := s.st.Replace(ctx, l, c); err != nil {
		if errors.Is(err, outbox.ErrVersionConflict) {
			return false, nil // someone else claimed or changed it first
		}
		return false, fmt.Errorf("claim export %s: %w", id, err)
	}
	s.building.Store(id, true)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		defer s.building.Delete(id)
		s.build(ctx, c)
	}()
	return true, nil
}

func ownerOf(c *artifacts.Claim) string {
	if c == nil {
		return ""
	}
	return c.Owner
}

var (
	// errLostClaim: another builder took the export (our lease ran out).
	errLostClaim = errors.New("claim lost")
	// errDeleted: the export was deleted while it was built.
	errDeleted = errors.New("export deleted")
)

// build builds the zip of e, which this process has claimed at e.Version.
func (s *Service) build(ctx context.Context, e artifacts.Export) {
	start := time.Now()
	log := s.log.With("export", e.ID, "job", e.JobID)
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.building.Store(e.ID, cancel)
	stopRenew := s.renewWhileBuilding(bctx, cancel, e, log)

	var w *blob.Writer
	var clashes []string
	f, files, err := func() (blob.File, int, error) {
		arts, err := s.st.JobArtifacts(bctx, e.JobID)
		if err != nil {
			return blob.File{}, 0, err
		}
		all := make([]zipper.Entry, len(arts))
		for i, a := range arts {
			all[i] = a.Entry()
		}
		entries := zipper.Select(e.Request, all)
		clashes = zipper.CaseClashes(entries, maxWarnings)
		if room := maxWarnings - len(clashes); room > 0 {
			clashes = append(clashes, zipper.WindowsNames(entries, room)...)
		}
		// The zip's filename names the claim that writes it, so the orphan
		// sweep can tell a build in progress from the leftovers of a dead one.
		w, err = s.st.Zips.Create(bctx, zipName(e), s.now())
		if err != nil {
			return blob.File{}, 0, err
		}
		opt := zipper.Options{Store: s.cfg.Store}
		if s.afterEntry != nil {
			opt.AfterEntry = func(ctx context.Context, n int) error { return s.afterEntry(ctx, e.ID, n) }
		}
		m := zipper.Manifest{ExportID: e.ID, JobID: e.JobID, Request: e.Request}
		if err := zipper.Write(bctx, w, m, entries, s.open, opt); err != nil {
			return blob.File{}, 0, s.changedMeanwhile(bctx, e.JobID, entries, err)
		}
		f, err := w.Commit()
		return f, len(entries), err
	}()
	stopRenew()

	if err != nil {
		switch {
		case ctx.Err() != nil && s.noRelease:
			log.Info("stopped mid-build; leaving the claim to expire", "err", err)
			return
		case ctx.Err() != nil:
			log.Info("stopped mid-build; giving the export back", "err", err)
		case errors.Is(context.Cause(bctx), errLostClaim):
			log.Warn("lost the claim mid-build; another builder has it", "err", err)
		case errors.Is(context.Cause(bctx), errDeleted):
			log.Info("the export was deleted while it was built; dropping its partial zip")
		}
		if w != nil {
			if aerr := w.Abort(); aerr != nil {
				log.Warn("removing partial zip", "err", aerr)
			}
		}
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer wcancel()
		switch {
		case errors.Is(context.Cause(bctx), errLostClaim):
			s.m.builds.WithLabelValues("lost").Inc()
		case errors.Is(context.Cause(bctx), errDeleted):
			s.m.builds.WithLabelValues("deleted").Inc()
		case ctx.Err() == nil && isPermanent(err):
			log.Warn("export failed", "err", err)
			if ferr := s.finish(wctx, e, func(x *artifacts.Export) {
				x.Status, x.Reason = artifacts.StatusFailed, err.Error()
			}, events.TypeExportFailed); ferr != nil {
				log.Error("recording export failure", "err", ferr)
			}
			s.m.builds.WithLabelValues("failed").Inc()
		default:
			if ctx.Err() == nil {
				log.Warn("export build failed; giving it back for a retry", "err", err)
			}
			if rerr := s.finish(wctx, e, func(x *artifacts.Export) { x.Status = artifacts.StatusPending }, ""); rerr != nil {
				log.Warn("giving the export back", "err", rerr)
			}
			s.m.builds.WithLabelValues("released").Inc()
		}
		return
	}
	ferr := s.finish(ctx, e, func(x *artifacts.Export) {
		now := s.now().UTC().Truncate(time.Millisecond)
		x.Status, x.Size, x.FileCount, x.SHA256, x.ZipFileID, x.ReadyAt = artifacts.StatusReady, f.Length, files, f.Metadata.SHA256, f.ID, &now
		x.Warnings = clashes
	}, events.TypeExportReady)
	if ferr != nil {
		result := "lost"
		if errors.Is(ferr, errDeleted) {
			result = "deleted"
			log.Info("the export was deleted while it was built; removing its zip")
		} else {
			log.Warn("recording the built export failed; removing its zip", "err", ferr)
		}
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer dcancel()
		if derr := s.st.Zips.Delete(dctx, f.ID); derr != nil {
			log.Warn("removing zip", "err", derr)
		}
		s.m.builds.WithLabelValues(result).Inc()
		return
	}
	s.m.builds.WithLabelValues("ready").Inc()
	s.m.bytes.Add(float64(f.Length))
	s.m.duration.Observe(time.Since(start).Seconds())
	log.Info("export ready", "files", files, "bytes", f.Length, "seconds", time.Since(start).Seconds())
}

func zipName(e artifacts.Export) string {
	return fmt.Sprintf("%s#%s#%d", e.ID, e.Claim.Owner, e.Version)
}

// renewWhileBuilding renews the claim every Lease/3 until the returned stop is
// called; when the claim turns out to be lost it cancels the build.
func (s *Service) renewWhileBuilding(ctx context.Context, cancel context.CancelCauseFunc, e artifacts.Export, log *slog.Logger) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(s.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ok, err := s.st.RenewClaim(ctx, e.ID, e.Version, s.cfg.Owner, s.now().UTC().Add(s.cfg.Lease))
			switch {
			case err != nil:
				// Keep building: if renewals keep failing the lease runs out, and
				// then the final write notices the claim is gone.
				log.Warn("renewing claim", "err", err)
			case !ok:
				cancel(errLostClaim)
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

// finish applies change to the export claimed at e.Version and stores it with
// an event of type typ ("" for none), dropping the claim. It fails with
// errLostClaim if the export changed since the claim, errDeleted if it is gone.
func (s *Service) finish(ctx context.Context, e artifacts.Export, change func(*artifacts.Export), typ string) error {
	l, err := s.st.Load(ctx, e.ID)
	if errors.Is(err, artifacts.ErrNotFound) {
		return errDeleted
	}
	if err != nil {
		return err
	}
	cur := l.Export
	if cur.Version != e.Version || cur.Status != artifacts.StatusBuilding || ownerOf(cur.Claim) != s.cfg.Owner {
		return errLostClaim
	}
	next := cur
	change(&next)
	next.Claim = nil
	next.Version++
	next.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
	var evs []events.Event
	if typ != "" {
		ev, err := events.New(typ, Source, next.QueueID, next.ID, next)
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	if err := s.st.Replace(ctx, l, next, evs...); err != nil {
		if errors.Is(err, outbox.ErrVersionConflict) {
			return errLostClaim
		}
		return fmt.Errorf("store export %s: %w", e.ID, err)
	}
	return nil
}

// fail marks an unclaimed export failed with reason.
func (s *Service) fail(ctx context.Context, l artifacts.Loaded, reason string) error {
	next := l.Export
	next.Status, next.Reason, next.Claim = artifacts.StatusFailed, reason, nil
	next.Version++
	next.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
	ev, err := events.New(events.TypeExportFailed, Source, next.QueueID, next.ID, next)
	if err != nil {
		return err
	}
	if err := s.st.Replace(ctx, l, next, ev); err != nil && !errors.Is(err, outbox.ErrVersionConflict) {
		return fmt.Errorf("fail export %s: %w", next.ID, err)
	}
	return nil
}

// errArtifactsChanged: a selected file was replaced or removed while the zip
// was built (a worker of a running job uploaded it again, its job was
// deleted), so its old bytes went; a rebuild reads the records anew.
var errArtifactsChanged = errors.New("the job's artifacts changed while the zip was built")

// changedMeanwhile returns err, the failure of a build of entries of job, as
// errArtifactsChanged, which is not permanent, when it is bytes gone missing
// and some entry's record no longer points to the blob the build read.
func (s *Service) changedMeanwhile(ctx context.Context, job string, entries []zipper.Entry, err error) error {
	if !errors.Is(err, blob.ErrNotFound) && !errors.Is(err, blob.ErrCorrupt) {
		return err
	}
	arts, aerr := s.st.JobArtifacts(ctx, job)
	if aerr != nil {
		// Not permanent (err is not wrapped): the next attempt looks again.
		return fmt.Errorf("%v; and reading the job's artifacts again: %w", err, aerr)
	}
	current := make(map[string]bool, len(arts))
	for _, a := range arts {
		current[a.FileID] = true
	}
	for _, en := range entries {
		if !current[en.Ref] {
			return fmt.Errorf("%w (%s was replaced or removed); building it again: %v", errArtifactsChanged, en.ZipPath(), err)
		}
	}
	return err
}

// isPermanent: a rebuild would fail the same way, so the export fails with the reason.
func isPermanent(err error) bool {
	return errors.Is(err, zipper.ErrChecksum) || errors.Is(err, zipper.ErrPathConflict) || errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrCorrupt)
}

func (s *Service) open(ctx context.Context, e zipper.Entry) (io.ReadCloser, error) {
	r, err := s.st.Artifacts.Open(ctx, e.Ref)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(r), nil
}

// expire deletes export id, and its zip, if it has expired.
func (s *Service) expire(ctx context.Context, id string) error {
	l, err := s.st.Load(ctx, id)
	if errors.Is(err, artifacts.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Export.ExpiresAt.IsZero() || !s.now().After(l.Export.ExpiresAt) {
		return nil
	}
	ev, err := events.New(TypeExportDeleted, Source, l.Export.QueueID, id, l.Export)
	if err != nil {
		return err
	}
	if err := s.st.Delete(ctx, l, ev); err != nil && !errors.Is(err, outbox.ErrVersionConflict) {
		return err
	}
	s.log.Info("expired export deleted", "export", id)
	return nil
}
