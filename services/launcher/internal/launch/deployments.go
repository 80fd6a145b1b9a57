package launch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// A deployment keeps Replicas instances running. Replica slot k of
// deployment d is driven as its own "job" d-r<k> (Ref{JobID: "d-r<k>",
// Role: replica, Index: generation}), so that a failed replica is removed
// with Cleanup of its slot alone and restarted as the next generation, and
// scaling down removes whole slots.
//
// Each replica slot holds a lease on the deployment's queue, granted by the
// scheduler; a slot is started only once it holds one (replicas.go).

// deployment is what the launcher reads of a deployment document; json
// tags give the API's shape for the events.
type deployment struct {
	events.Meta          `bson:",inline"`
	Name                 string            `json:"name" bson:"name"`
	ApplicationID        string            `json:"application_id" bson:"application_id"`
	QueueID              string            `json:"queue_id" bson:"queue_id"`
	Replicas             int               `json:"replicas" bson:"replicas"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty" bson:"environment_variables,omitempty"`
	Status               deploymentStatus  `json:"status" bson:"status"`
	// Runtime is what every replica starts from, resolved by the API when
	// the deployment was written; never in events.
	Runtime events.RuntimeSpec `json:"-" bson:"runtime"`
}

type deploymentStatus struct {
	ReadyReplicas int                `json:"ready_replicas" bson:"ready_replicas"`
	Conditions    []events.Condition `json:"conditions" bson:"conditions"`
	Replicas      []replicaStatus    `json:"replicas" bson:"replicas"`
}

// replicaStatus is one replica slot as the launcher last saw it.
type replicaStatus struct {
	Slot int `json:"slot" bson:"slot"`
	// State: pending (no lease yet), starting, running, restarting (the
	// last replica ended; the next waits for its back-off) or failed (it
	// cannot be started: the deployment's Available condition says why).
	State string `json:"state" bson:"state"`
	// Restarts counts the slot's replicas that ended and were started
	// again; the running one is generation Restarts (its logs' index).
	Restarts  int        `json:"restarts" bson:"restarts"`
	StartedAt *time.Time `json:"started_at,omitempty" bson:"started_at,omitempty"`
	// The last replica of the slot that ended: when, its exit code (none
	// when it was killed, lost or never started) and why.
	LastEndedAt  *time.Time `json:"last_ended_at,omitempty" bson:"last_ended_at,omitempty"`
	LastExitCode *int       `json:"last_exit_code,omitempty" bson:"last_exit_code,omitempty"`
	LastMessage  string     `json:"last_message,omitempty" bson:"last_message,omitempty"`
}

// Replica states (replicaStatus.State).
const (
	replicaPending    = "pending"
	replicaStarting   = "starting"
	replicaRunning    = "running"
	replicaRestarting = "restarting"
	replicaFailed     = "failed"
)

// depSlot is the restart state of one replica slot, in memory: after a
// launcher restart a failed replica is restarted at once.
type depSlot struct {
	failures int
	next     time.Time // when the failed replica may be restarted
	// The generation last started and, until the driver reports it, when
	// a round stops waiting for that and may start the slot again: the
	// pool sees an instance only once the driver's watch or list reports
	// it, and a round that ran in between saw the slot empty (its ended
	// replica removed) and started it again.
	started     int
	unseenUntil time.Time
}

// startUnseen bounds how long a replica started but not yet reported by
// its driver holds its slot; after that the slot is started again (a
// no-op for an instance that exists).
const startUnseen = 30 * time.Second

const slotSep = "-r"

func slotID(dep string, slot int) string { return dep + slotSep + strconv.Itoa(slot) }

// splitSlot parses a slot id. Deployment ids end in an upper-case ULID, so
// the last "-r" is the separator.
func splitSlot(id string) (dep string, slot int, ok bool) {
	i := strings.LastIndex(id, slotSep)
	if i <= 0 || !strings.HasPrefix(id, "dep-") {
		return "", 0, false
	}
	n, err := strconv.Atoi(id[i+len(slotSep):])
	if err != nil || n < 0 {
		return "", 0, false
	}
	return id[:i], n, true
}

// Replica restart backoff: doubled from restartBase up to restartMax;
// reset once a replica has run for restartReset.
const (
	restartBase  = time.Second
	restartMax   = 5 * time.Minute
	restartReset = time.Minute
)

// syncDeployment brings deployment id to its replica count and reports how
// many replicas run.
func (s *Service) syncDeployment(ctx context.Context, id string) (time.Duration, error) {
	raw, err := s.deployments.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return 0, fmt.Errorf("read deployment %s: %w", id, err)
	}
	var d deployment
	var env outbox.Envelope
	if err == nil {
		if err := bson.Unmarshal(raw, &env); err != nil {
			return 0, fmt.Errorf("decode deployment %s: %w", id, err)
		}
		if err := bson.Unmarshal(raw, &d); err != nil {
			return 0, fmt.Errorf("decode deployment %s: %w", id, err)
		}
	}
	gone := err != nil || env.Deleted
	errs := s.removeSlots(ctx, id, gone, d.Replicas)
	if gone {
		return 0, errors.Join(errs...)
	}
	leases, err := s.readReplicaLeases(ctx, id, d.QueueID)
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	r := s.syncSlots(ctx, id, &d, leases.admitted)
	errs = append(errs, r.errs...)

	status := deploymentStatus{ReadyReplicas: r.ready, Conditions: slices.Clone(d.Status.Conditions), Replicas: r.replicas}
	nowT := s.now()
	switch {
	case r.startErr != nil && permanent(r.startErr):
		setDepCondition(&status, "Available", "False", "StartFailed", r.startErr.Error(), nowT)
	case r.ready >= d.Replicas:
		setDepCondition(&status, "Available", "True", "ReplicasReady", fmt.Sprintf("%d of %d replicas running", r.ready, d.Replicas), nowT)
	default:
		setDepCondition(&status, "Available", "False", "ReplicasNotReady", fmt.Sprintf("%d of %d replicas running", r.ready, d.Replicas), nowT)
	}
	s.admissionCondition(ctx, &d, leases, &status, nowT)
	if err := s.writeDeploymentStatus(ctx, raw, &d, env.Outbox, status); err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	return r.after, errors.Join(errs...)
}

// removeSlots stops and removes the slots of deployment id beyond its
// replica count (all of them when the deployment is gone), their logs too
// (driver.Purger): no route reads the log of a slot that is no more.
func (s *Service) removeSlots(ctx context.Context, id string, gone bool, replicas int) []error {
	var errs []error
	for _, sid := range s.pool.jobIDs() {
		dep, slot, ok := splitSlot(sid)
		if !ok || dep != id || (!gone && slot < replicas) {
			continue
		}
		obs := s.pool.refsOf(sid)
		if err := s.stopAll(ctx, obs, func(driver.Ref) bool { return true }); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.removeFromDrivers(ctx, sid, obs, nil, true); err != nil {
			errs = append(errs, err)
		}
		s.mu.Lock()
		delete(s.dstate, sid)
		s.mu.Unlock()
	}
	return errs
}

// slotsResult is what syncSlots saw and did.
type slotsResult struct {
	ready    int
	after    time.Duration // when to look again; 0: no need
	startErr error         // the last failed start
	errs     []error
	replicas []replicaStatus
}

// syncSlots keeps every slot of d running: it counts the ready replicas
// and restarts ended ones, after a backoff, as their next generation.
func (s *Service) syncSlots(ctx context.Context, id string, d *deployment, admitted map[int]bool) slotsResult {
	var r slotsResult
	now := s.deps.Now()
	last := make(map[int]replicaStatus, len(d.Status.Replicas)) // what the last status said, for what this round does not see
	for _, rs := range d.Status.Replicas {
		last[rs.Slot] = rs
	}
	for slot := range d.Replicas {
		rs, ok := last[slot]
		if !ok {
			rs = replicaStatus{Slot: slot}
		}
		rs.StartedAt = nil
		r.replicas = append(r.replicas, rs)
		rep := &r.replicas[len(r.replicas)-1]
		sid := slotID(id, slot)
		obs := s.pool.refsOf(sid)
		if !admitted[slot] {
			rep.State = replicaPending
			r.after = minPositive(r.after, replicaWait) // not admitted yet: look again soon
			if latest := latestReplica(obs); latest != nil {
				// It runs without a lease on the deployment's queue (the
				// deployment moved to another queue): stopped, and started
				// again as the next generation once admitted there.
				r.errs = append(r.errs, s.unadmitSlot(ctx, sid, obs, latest, rep)...)
			}
			continue
		}
		st := s.slotState(sid)
		// With nothing of the slot known (never started, or its ended
		// replica removed and the start of the next one failed), the
		// generation its status last gave: the restart count does not go
		// back to 0, nor a log's index to a generation's before.
		gen := rep.Restarts
		latest := latestReplica(obs)
		if !st.unseenUntil.IsZero() {
			switch {
			case latest != nil && latest.st.Index >= st.started:
				st.unseenUntil = time.Time{} // reported
			case now.Before(st.unseenUntil):
				// Started, not reported by its driver yet.
				rep.State, rep.Restarts = replicaStarting, st.started
				r.after = minPositive(r.after, st.unseenUntil.Sub(now))
				continue
			default:
				st.unseenUntil = time.Time{}
			}
		}
		if latest != nil {
			gen = latest.st.Index
			rep.Restarts = gen
			if !latest.st.State.Final() {
				rep.State = replicaStarting
				if latest.st.State == driver.Running {
					rep.State = replicaRunning
					if !latest.st.StartedAt.IsZero() {
						rep.StartedAt = &latest.st.StartedAt
					}
					r.ready++
					if !latest.st.StartedAt.IsZero() && now.Sub(latest.st.StartedAt) >= restartReset {
						st.failures = 0
					} else if st.failures > 0 {
						r.after = minPositive(r.after, restartReset)
					}
				}
				continue
			}
			// Failed (or ended, which a replica should not): restart the
			// slot as the next generation, after the backoff.
			rep.State = replicaRestarting
			if latest.st.Reason == driver.ReasonNeverRuns {
				// The runtime will not run it as it stands: the next
				// generation is tried after the back-off all the same (the
				// image may be loaded onto the node, the deployment
				// written again), but the slot says failed, as after a
				// start the runtime refused.
				rep.State = replicaFailed
				r.startErr = errPermanent{fmt.Errorf("replica %d: %s", slot, latest.st.Message)}
			}
			rep.LastExitCode, rep.LastMessage = latest.st.ExitCode, endMessage(latest.st)
			if ended := latest.st.FinishedAt; !ended.IsZero() {
				rep.LastEndedAt = &ended
			}
			if st.next.IsZero() {
				st.failures++
				st.next = now.Add(min(restartBase<<min(st.failures-1, 20), restartMax))
				s.log.Warn("replica ended; restarting after backoff", "deployment", id, "slot", slot,
					"exit_code", latest.st.ExitCode, "message", latest.st.Message, "in", st.next.Sub(now))
			}
			if now.Before(st.next) {
				r.after = minPositive(r.after, st.next.Sub(now))
				continue
			}
			if err := s.cleanupDrivers(ctx, sid, obs, nil); err != nil {
				r.errs = append(r.errs, err)
				continue
			}
			gen++
		}
		st.next = time.Time{}
		rep.State, rep.Restarts = replicaStarting, gen
		err := s.startReplica(ctx, d, slot, gen)
		var pending *tryUnderWay
		if errors.As(err, &pending) {
			// Its driver is being made: no failure of the replica's, which
			// starts once the try ends (Service.process), without back-off.
			r.errs = append(r.errs, err)
			continue
		}
		if err != nil {
			r.startErr = err
			rep.State = replicaRestarting
			if permanent(err) {
				rep.State = replicaFailed
			} else {
				r.errs = append(r.errs, err)
			}
			st.failures++
			st.next = now.Add(min(restartBase<<min(st.failures-1, 20), restartMax))
			r.after = minPositive(r.after, st.next.Sub(now))
			continue
		}
		st.started, st.unseenUntil = gen, now.Add(startUnseen)
	}
	return r
}

// unadmitSlot stops and removes the replicas of slot sid, which holds no
// lease on its deployment's queue, and records in rep that the last one
// ended so; the slot's next replica is the next generation.
func (s *Service) unadmitSlot(ctx context.Context, sid string, obs map[driver.Ref]observed, latest *observed, rep *replicaStatus) []error {
	if err := s.stopAll(ctx, obs, func(driver.Ref) bool { return true }); err != nil {
		return []error{err}
	}
	if err := s.cleanupDrivers(ctx, sid, obs, nil); err != nil {
		return []error{err}
	}
	now := s.deps.Now()
	rep.Restarts = latest.st.Index + 1
	rep.LastEndedAt, rep.LastExitCode = &now, nil
	rep.LastMessage = "stopped: not admitted on the deployment's queue (it moved to another queue)"
	s.mu.Lock()
	delete(s.dstate, sid)
	s.mu.Unlock()
	return nil
}

// endMessage says how an instance ended: "exited with code 3", "killed by
// signal killed".
func endMessage(st driver.Status) string {
	switch {
	case st.ExitCode != nil && st.Message != "":
		return fmt.Sprintf("exited with code %d: %s", *st.ExitCode, st.Message)
	case st.ExitCode != nil:
		return fmt.Sprintf("exited with code %d", *st.ExitCode)
	case st.Message != "":
		return st.Message
	}
	return "ended (" + strings.ToLower(string(st.State)) + ")"
}

// slotState returns the restart state of slot sid.
func (s *Service) slotState(sid string) *depSlot {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.dstate[sid]
	if st == nil {
		st = &depSlot{}
		s.dstate[sid] = st
	}
	return st
}

// latestReplica returns the replica of the highest generation, nil if none.
func latestReplica(obs map[driver.Ref]observed) *observed {
	var latest *observed
	for _, o := range obs {
		if latest == nil || o.st.Index > latest.st.Index {
			latest = &o
		}
	}
	return latest
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || b < a {
		return b
	}
	return a
}

// startReplica starts generation gen of replica slot of d. The queue gives
// the driver, storages and attributes, as for a job; the rest comes from
// the runtime stored on d.
func (s *Service) startReplica(ctx context.Context, d *deployment, slot, gen int) error {
	if d.Runtime.Image == "" {
		return errPermanent{fmt.Errorf("deployment %s has no resolved runtime (it was written before the API resolved runtimes): replace or patch it", d.ID)}
	}
	q, err := s.queue(ctx, d.QueueID)
	if err != nil {
		return err
	}
	pd, err := s.driverFor(ctx, q)
	if err != nil {
		return err
	}
	spec := replicaSpec(d, slot, gen, q, s.cfg.APIURL)
	if err := pd.start(ctx, spec); err != nil {
		return fmt.Errorf("start %s: %w", spec.Ref, err)
	}
	s.metrics.starts.WithLabelValues(string(driver.RoleReplica)).Inc()
	return nil
}

// replicaSpec builds the spec of a replica from the runtime the API
// resolved for d (queue, application, app-runtime-config, deployment
// variables) plus the RM_* variables; storages and attributes from q.
func replicaSpec(d *deployment, slot, gen int, q *events.Queue, apiURL string) driver.Spec {
	s := queueSpec(q)
	s.Ref = driver.Ref{JobID: slotID(d.ID, slot), Role: driver.RoleReplica, Index: gen}
	rt := d.Runtime
	s.Image, s.Command, s.Args, s.WorkingDir = rt.Image, rt.Command, rt.Args, rt.WorkingDirectory
	env := maps.Clone(rt.EnvironmentVariables)
	if env == nil {
		env = map[string]string{}
	}
	env[EnvDeploymentID] = d.ID
	env[EnvRole] = string(driver.RoleReplica)
	env[EnvInstanceIndex] = strconv.Itoa(slot)
	if apiURL != "" {
		env[EnvAPIURL] = apiURL
	}
	s.Env = env
	s.Resources = resources(rt.ResourceLimits)
	return s
}

func setDepCondition(st *deploymentStatus, typ, status, reason, message string, now time.Time) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == typ {
			if c.Status != status {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason, c.Message = status, reason, message
			return
		}
	}
	st.Conditions = append(st.Conditions, events.Condition{Type: typ, Status: status, Reason: reason, Message: message, LastTransitionTime: now})
}

// writeDeploymentStatus stores status in the deployment (read as raw)
// unless it is what is stored, with rm.deployment.updated. Only status,
// version and updated_at change: the rest of the document is written back
// as read.
func (s *Service) writeDeploymentStatus(ctx context.Context, raw bson.Raw, d *deployment, pending []outbox.Entry, status deploymentStatus) error {
	if status.ReadyReplicas == d.Status.ReadyReplicas && sameConditions(status.Conditions, d.Status.Conditions) &&
		sameReplicas(status.Replicas, d.Status.Replicas) {
		return nil
	}
	var doc bson.D
	if err := bson.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("decode deployment %s: %w", d.ID, err)
	}
	prev := d.Version
	d.Version++
	d.UpdatedAt = s.now()
	d.Status = status
	set := map[string]any{"status": status, "version": d.Version, "updated_at": d.UpdatedAt}
	for i := range doc {
		if v, ok := set[doc[i].Key]; ok {
			doc[i].Value = v
			delete(set, doc[i].Key)
		}
	}
	for _, k := range []string{"status", "version", "updated_at"} {
		if v, ok := set[k]; ok {
			doc = append(doc, bson.E{Key: k, Value: v})
		}
	}
	ev, err := events.New(events.TypeDeploymentUpdated, Source, d.QueueID, d.ID, eventOf(d))
	if err != nil {
		return err
	}
	err = s.deps.Outbox.Replace(ctx, s.deployments, d.ID, prev, d.Version, pending, doc, ev)
	if errors.Is(err, outbox.ErrVersionConflict) {
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("update status of deployment %s: %w", d.ID, err)
	}
	return nil
}

// deploymentEvent is what a deployment's events carry (events.DeploymentEventStatus).
type deploymentEvent struct {
	*deployment
	Status events.DeploymentEventStatus `json:"status"`
}

func eventOf(d *deployment) deploymentEvent {
	return deploymentEvent{d, events.DeploymentEventStatus{ReadyReplicas: d.Status.ReadyReplicas, Conditions: d.Status.Conditions}}
}

// sameReplicas compares replica statuses by value.
func sameReplicas(a, b []replicaStatus) bool {
	return slices.EqualFunc(a, b, func(x, y replicaStatus) bool {
		return x.Slot == y.Slot && x.State == y.State && x.Restarts == y.Restarts && x.LastMessage == y.LastMessage &&
			sameTime(x.StartedAt, y.StartedAt) && sameTime(x.LastEndedAt, y.LastEndedAt) && samePtr(x.LastExitCode, y.LastExitCode)
	})
}

// sameTime compares times to the millisecond, as the store keeps them.
func sameTime(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond))
}

func samePtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// sameConditions compares conditions ignoring their transition times.
func sameConditions(a, b []events.Condition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Status != b[i].Status || a[i].Reason != b[i].Reason || a[i].Message != b[i].Message {
			return false
		}
	}
	return true
}
