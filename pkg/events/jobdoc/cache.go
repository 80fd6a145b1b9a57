package jobdoc

import (
	"slices"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/events"
)

// The writer's cache of its jobs (WithCache).
//
// The launcher reconciles a job on every trigger: its own write's event,
// each batch of instance changes, the job's end. Each reconciliation read
// the job first, about six reads per job, most of them of the version the
// launcher had just written itself. With the cache, Update starts from the
// job as this Store last read or wrote it, and reads only when it has none.
//
// A stale entry cannot make a wrong write: the write is conditioned on the
// version the entry holds, so a job changed meanwhile gives a conflict,
// which drops the entry and reads afresh. What a stale entry can do is hide
// a change from a reconciliation that then does nothing. So the writer
// calls Forget with each event's version before it acts on the event (every
// change of a job has one, with its new version), and ForgetAll before a
// resync, whose reconciliations must see the store. Forget also raises the
// job's floor: a read or write that was in flight when the event came, and
// so may hold the older version, is not kept afterwards.

// cacheMax bounds the cache (jobs and floors); past it, it starts empty
// again.
const cacheMax = 10_000

type jobCache struct {
	mu    sync.Mutex
	jobs  map[string]cachedJob
	floor map[string]int64 // the newest version an event announced, per job
	// clears counts ForgetAll and the resets at cacheMax, which forget the
	// floors too: nothing read or written before one is kept after it.
	clears uint64
}

// cachedJob is a job as stored: the raw document, decoded afresh on every
// use so that no caller shares memory with the cache, and the instances of a
// job whose instances are in chunks (nil for one that keeps them inline).
type cachedJob struct {
	version   int64
	raw       bson.Raw
	instances bson.Raw // {i: [...]} when the job has chunks
}

type cachedInstances struct {
	I []events.Instance `bson:"i"`
}

// WithCache makes Update start from the job as this Store last read or
// wrote it (see above): for a sole writer of the fields it changes that
// hears every event of its jobs, the launcher.
func WithCache() Option {
	return func(s *Store) { s.cache = &jobCache{jobs: map[string]cachedJob{}, floor: map[string]int64{}} }
}

// Forget drops the cached job id if it is older than version, and keeps
// version as the job's floor: an event announced a change the cache may
// not hold.
func (s *Store) Forget(id string, version int64) {
	if s.cache == nil {
		return
	}
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if version > c.floor[id] {
		c.floor[id] = version
		c.trim()
	}
	if j, ok := c.jobs[id]; ok && j.version < version {
		delete(c.jobs, id)
	}
}

// ForgetAll empties the cache.
func (s *Store) ForgetAll() {
	if s.cache == nil {
		return
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	s.cache.reset()
}

func (c *jobCache) reset() {
	clear(c.jobs)
	clear(c.floor)
	c.clears++
}

// trim resets the cache when it holds cacheMax jobs and floors.
func (c *jobCache) trim() {
	if len(c.jobs)+len(c.floor) >= cacheMax {
		c.reset()
	}
}

// cacheToken is taken before a read or write whose result may be kept.
func (s *Store) cacheToken() uint64 {
	if s.cache == nil {
		return 0
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.clears
}

// drop removes job id from the cache.
func (s *Store) drop(id string) {
	if s.cache == nil {
		return
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	delete(s.cache.jobs, id)
}

// cached returns job id as the cache holds it, decoded as read would
// decode it from the store.
func (s *Store) cached(id string, withInstances bool) (read, bool) {
	if s.cache == nil {
		return read{}, false
	}
	s.cache.mu.Lock()
	c, ok := s.cache.jobs[id]
	s.cache.mu.Unlock()
	if !ok {
		return read{}, false
	}
	r, deleted, err := decodeRead(c.raw)
	if err != nil || deleted {
		s.drop(id)
		return read{}, false
	}
	if withInstances {
		if r.job.InstanceChunks == 0 {
			r.job.Instances = slices.Clone(r.job.InlineInstances)
		} else {
			var in cachedInstances
			if c.instances == nil || bson.Unmarshal(c.instances, &in) != nil {
				s.drop(id)
				return read{}, false
			}
			r.job.Instances = in.I
		}
	}
	return r, true
}

// keep caches job j as stored in raw (which the caller no longer changes),
// read or written since token, unless an event announced a newer version
// meanwhile. j's instances are kept apart when they are in chunks.
func (s *Store) keep(token uint64, j *events.Job, raw bson.Raw) {
	if s.cache == nil {
		return
	}
	e := cachedJob{version: j.Version, raw: raw}
	if j.InstanceChunks > 0 {
		in, err := bson.Marshal(cachedInstances{I: j.Instances})
		if err != nil {
			s.drop(j.ID)
			return
		}
		e.instances = in
	}
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if token != c.clears || c.floor[j.ID] > j.Version {
		delete(c.jobs, j.ID)
		return
	}
	c.jobs[j.ID] = e
	c.trim()
}
