package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/services/launcher/internal/driver"
)

// errNoFactory: a plugin's type has no driver in this launcher.
var errNoFactory = errors.New("launch: no driver for plugin type")

// plugin is what the launcher needs of a plugin document. The pseudo plugin
// "_default" stands for the launcher's default driver type when a queue has
// no plugin and no plugin is the default.
type plugin struct {
	ID     string         `bson:"_id"`
	Name   string         `bson:"name"`
	Type   string         `bson:"type"`
	Config map[string]any `bson:"config"`
}

// defaultPluginID is the pool key of the launcher's own default driver.
const defaultPluginID = "_default"

// pool holds one driver per plugin, created on first use, and the last
// status each driver reported of each of its instances. Plugins whose
// drivers would see the same instances and run them alike (the same
// driver.SharedKey: two local plugins of one work_dir, or one and the
// launcher's own local default) share one driver, so that nothing is
// adopted, stopped or cleaned up twice. A goroutine per
// driver reads its Watch channel into the cache and calls onChange, so the
// cache is the launcher's view of what exists; reconciliation reads it.
type pool struct {
	factories map[string]driver.Factory
	opts      driver.Options
	log       *slog.Logger
	onChange  func(driver.Ref)
	// installation, when set, gives opts.Installation (read from the store
	// before the first driver is made).
	installation func(context.Context) (string, error)
	// bounds are those of the calls to its drivers.
	bounds callBounds

	mu      sync.Mutex
	drivers map[string]*pooled // by plugin id; plugins may share one
	shared  map[string]*pooled // by driver.SharedKey, where there is one
	closed  bool
	wg      sync.WaitGroup
	// tries is, by the key of the driver to make (tryKey), the try to
	// make it under way, or the last one, which failed; none once the
	// driver is made. One try at a time per driver, made without holding
	// mu: a runtime that does not answer delays only the jobs on that
	// driver's plugins.
	tries map[string]*try
}

// try is one try to make a plugin's driver.
type try struct {
	done chan struct{} // closed once it has ended
	err  error         // its failure, set before done is closed
	// prev is the failure of the plugin's try before this one, nil if
	// there was none.
	prev error
}

// tryTimeout bounds a try's listing of the instances (the docker driver
// bounds its own wait for the engine in its constructor).
const tryTimeout = 10 * time.Second

// tryUnderWay is get's error while another call's try to make the
// plugin's driver is under way and no try of it failed before: the caller
// asks again once done is closed (Service.process), holding no worker
// meanwhile.
type tryUnderWay struct {
	plugin string
	done   <-chan struct{}
}

func (e *tryUnderWay) Error() string {
	return "launch: the driver of plugin " + e.plugin + " is being made"
}

// pooled is one driver and its cache.
type pooled struct {
	plugin plugin // the first of the plugins sharing it
	key    string // its driver.SharedKey, "" if none
	d      driver.Driver
	bounds callBounds // of the calls to d (calls.go)

	mu sync.Mutex
	// sharers are the ids of the other plugins that share it, in the
	// order they came.
	sharers []string
	jobs    map[string]map[driver.Ref]driver.Status // by Ref.JobID
	// live counts, by Ref.JobID, the instances in jobs not final. It could
	// be derived from jobs, but settled is asked on every status and a scan
	// would be quadratic for a job of many ended instances (up to 100,000
	// workers) that a driver keeps until cleanup and replays to a new watch.
	live map[string]int
}

func newPool(factories map[string]driver.Factory, opts driver.Options, log *slog.Logger, onChange func(driver.Ref)) *pool {
	return &pool{factories: factories, opts: opts, log: log, onChange: onChange, drivers: map[string]*pooled{}, shared: map[string]*pooled{}, tries: map[string]*try{}, bounds: defaultBounds}
}

// get returns the driver of p, creating it on first use: the driver is
// built, its instances listed into the cache (so that what existed before a
// restart is known before anything is started), then watched until ctx ends.
// Config changes of a plugin take effect at the launcher's next start.
//
// One try to make a plugin's driver is under way at a time, and the other
// calls do not wait for it: a runtime that does not answer takes a try up
// to 10 s (docker), and calls that waited held as many of the launcher's
// workers, the other plugins' jobs waiting. While a try is under way, a
// call gets the failure of the plugin's try before it (the job shows
// RuntimeUnavailable and retries with its back-off), or, if none failed
// before, a *tryUnderWay: its job is reconciled again once the try ends.
// A call after a failed try tries again. A plugin whose driver another
// plugin's shares (the same driver.SharedKey) gets that one.
func (pl *pool) get(ctx context.Context, p plugin) (*pooled, error) {
	pl.mu.Lock()
	if pd := pl.drivers[p.ID]; pd != nil {
		pl.mu.Unlock()
		return pd, nil
	}
	if pl.closed {
		pl.mu.Unlock()
		return nil, errors.New("launch: driver pool closed")
	}
	key := pl.sharedKey(p)
	if pd := pl.shared[key]; key != "" && pd != nil {
		pl.drivers[p.ID] = pd
		pl.mu.Unlock()
		pd.mu.Lock()
		pd.sharers = append(pd.sharers, p.ID)
		pd.mu.Unlock()
		pl.log.Info("driver shared", "plugin", p.ID, "with", pd.plugin.ID, "type", p.Type)
		return pd, nil
	}
	tk := tryKey(p, key)
	t := &try{done: make(chan struct{})}
	if last := pl.tries[tk]; last != nil {
		select {
		case <-last.done:
			t.prev = last.err
		default:
			pl.mu.Unlock()
			if last.prev != nil {
				return nil, last.prev
			}
			return nil, &tryUnderWay{plugin: p.ID, done: last.done}
		}
	}
	pl.tries[tk] = t
	pl.mu.Unlock()
	pd, err := pl.make(ctx, p, key)
	pl.mu.Lock()
	t.err = err
	if err == nil {
		delete(pl.tries, tk)
	}
	close(t.done)
	pl.mu.Unlock()
	return pd, err
}

// plugins names the plugins whose driver pd is, for its errors: "plugin
// plg-1", or "plugins plg-1 and plg-2" when another shares it.
func (pd *pooled) plugins() string {
	pd.mu.Lock()
	ids := append([]string{pd.plugin.ID}, pd.sharers...)
	pd.mu.Unlock()
	if len(ids) == 1 {
		return "plugin " + ids[0]
	}
	return "plugins " + strings.Join(ids[:len(ids)-1], ", ") + " and " + ids[len(ids)-1]
}

// sharedKey is p's driver.SharedKey.
func (pl *pool) sharedKey(p plugin) string {
	raw, err := p.rawConfig()
	if err != nil {
		return ""
	}
	return driver.SharedKey(p.Type, raw, pl.opts)
}

// rawConfig is p's config as JSON, nil if it has none.
func (p plugin) rawConfig() (json.RawMessage, error) {
	if p.Config == nil {
		return nil, nil
	}
	return json.Marshal(p.Config)
}

// tryKey keys the tries to make p's driver: its shared key, else its
// plugin id.
func tryKey(p plugin, key string) string {
	if key != "" {
		return key
	}
	return "plugin " + p.ID
}

// made reports whether the driver of plugin id exists.
func (pl *pool) made(id string) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.drivers[id] != nil
}

// make is one try to make the driver of p, whose shared key is key; get
// makes one at a time.
func (pl *pool) make(ctx context.Context, p plugin, key string) (*pooled, error) {
	d, err := pl.create(ctx, p)
	if err != nil {
		return nil, err
	}
	pd := &pooled{plugin: p, key: key, d: d, bounds: pl.bounds, jobs: map[string]map[driver.Ref]driver.Status{}, live: map[string]int{}}
	lctx, cancel := context.WithTimeout(ctx, tryTimeout)
	list, err := d.List(lctx)
	cancel()
	if err != nil {
		_ = d.Close()
		// The runtime cannot be reached: a job shows RuntimeUnavailable.
		return nil, driver.Mark(driver.ErrUnavailable, fmt.Errorf("list instances of plugin %s: %w", p.ID, err))
	}
	for _, st := range list {
		pd.put(st)
	}
	// The watch lives as long as the driver (Close ends it), not as long
	// as the request that happened to create the driver.
	ch, err := d.Watch(context.WithoutCancel(ctx))
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("watch plugin %s: %w", p.ID, err)
	}
	pl.mu.Lock()
	if pl.closed { // closed while this driver was made
		pl.mu.Unlock()
		_ = d.Close()
		return nil, errors.New("launch: driver pool closed")
	}
	pl.drivers[p.ID] = pd
	if key != "" {
		pl.shared[key] = pd
	}
	pl.wg.Add(1)
	// onChange runs without pl.mu: it asks the pool (settled) for the job.
	pl.mu.Unlock()
	go func() {
		defer pl.wg.Done()
		for st := range ch {
			pd.put(st)
			pl.onChange(st.Ref)
		}
	}()
	pl.log.Info("driver ready", "plugin", p.ID, "type", p.Type, "instances", len(list))
	for _, st := range list {
		pl.onChange(st.Ref)
	}
	return pd, nil
}

// create builds the driver of p with the factory of its type.
func (pl *pool) create(ctx context.Context, p plugin) (driver.Driver, error) {
	f := pl.factories[p.Type]
	if f == nil {
		return nil, fmt.Errorf("plugin %s: %w %q", p.ID, errNoFactory, p.Type)
	}
	raw, err := p.rawConfig()
	if err != nil {
		return nil, fmt.Errorf("plugin %s config: %w", p.ID, err)
	}
	opts := pl.opts
	if pl.installation != nil {
		id, err := pl.installation(ctx)
		if err != nil {
			return nil, fmt.Errorf("create %s driver of plugin %s: %w", p.Type, p.ID, err)
		}
		opts.Installation = id
	}
	d, err := f(raw, opts)
	if err != nil {
		return nil, fmt.Errorf("create %s driver of plugin %s: %w", p.Type, p.ID, err)
	}
	return d, nil
}

// put records st unless it would take a final instance back; a removed
// instance is forgotten.
func (pd *pooled) put(st driver.Status) {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	m := pd.jobs[st.JobID]
	if st.Removed {
		delete(m, st.Ref)
		if len(m) == 0 {
			delete(pd.jobs, st.JobID)
		}
		return
	}
	if m == nil {
		m = map[driver.Ref]driver.Status{}
		pd.jobs[st.JobID] = m
	}
	cur, ok := m[st.Ref]
	if ok && cur.State.Final() && !st.State.Final() {
		return
	}
	switch {
	case (!ok || cur.State.Final()) && !st.State.Final():
		pd.live[st.JobID]++
	case ok && !cur.State.Final() && st.State.Final():
		pd.live[st.JobID]--
	}
	m[st.Ref] = st
}

// forget drops the cache of job id after a Cleanup. A status the watch
// delivers later for it (the end of a stopped instance) would bring an
// entry back; cleanup removes such an entry at the next reconciliation.
func (pd *pooled) forget(jobID string) {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	delete(pd.jobs, jobID)
	delete(pd.live, jobID)
}

// settled reports whether every instance of job id that any driver knows
// has reached a final state: nothing more of the job will end, so its
// reconciliation need not wait for others (Service.changed).
func (pl *pool) settled(jobID string) bool {
	for _, pd := range pl.all() {
		pd.mu.Lock()
		n := pd.live[jobID]
		pd.mu.Unlock()
		if n > 0 {
			return false
		}
	}
	return true
}

// observed is one instance as a driver reported it.
type observed struct {
	st driver.Status
	pd *pooled
}

// refsOf returns what every driver knows of job id's instances.
func (pl *pool) refsOf(jobID string) map[driver.Ref]observed {
	out := map[driver.Ref]observed{}
	for _, pd := range pl.all() {
		pd.mu.Lock()
		for ref, st := range pd.jobs[jobID] {
			out[ref] = observed{st: st, pd: pd}
		}
		pd.mu.Unlock()
	}
	return out
}

// find returns the driver that knows ref, nil if none does.
func (pl *pool) find(ref driver.Ref) *pooled {
	for _, pd := range pl.all() {
		pd.mu.Lock()
		_, ok := pd.jobs[ref.JobID][ref]
		pd.mu.Unlock()
		if ok {
			return pd
		}
	}
	return nil
}

// jobIDs returns the job ids (deployment slot ids too) every driver knows.
func (pl *pool) jobIDs() []string {
	seen := map[string]bool{}
	for _, pd := range pl.all() {
		pd.mu.Lock()
		for id, m := range pd.jobs {
			if len(m) > 0 {
				seen[id] = true
			}
		}
		pd.mu.Unlock()
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// countStates counts the cached instances by state, for the metrics.
func (pl *pool) countStates() map[driver.State]int {
	out := map[driver.State]int{}
	for _, pd := range pl.all() {
		pd.mu.Lock()
		for _, m := range pd.jobs {
			for _, st := range m {
				out[st.State]++
			}
		}
		pd.mu.Unlock()
	}
	return out
}

// all returns every driver once, whichever plugins share it.
func (pl *pool) all() []*pooled {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return unique(pl.drivers)
}

func unique(m map[string]*pooled) []*pooled {
	out := make([]*pooled, 0, len(m))
	seen := make(map[*pooled]bool, len(m))
	for _, pd := range m {
		if !seen[pd] {
			seen[pd] = true
			out = append(out, pd)
		}
	}
	return out
}

// close closes every driver (instances keep running) and waits for the
// watch goroutines.
func (pl *pool) close() {
	pl.mu.Lock()
	pl.closed = true
	ds := unique(pl.drivers)
	pl.drivers = map[string]*pooled{}
	pl.shared = map[string]*pooled{}
	pl.mu.Unlock()
	for _, pd := range ds {
		if err := pd.d.Close(); err != nil {
			pl.log.Warn("close driver", "plugin", pd.plugin.ID, "err", err)
		}
	}
	pl.wg.Wait()
}
