package reads

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
)

// cache keeps client.get answers for a short time (Config.CacheTTL). It
// listens to the events on altegio.evt.> (core NATS, not a JetStream
// consumer): a command result or an Altegio webhook naming a client drops
// that client's entry in every worker. An event missed while the
// connection was down leaves an entry stale for at most the TTL. A nil
// *cache caches nothing.
type cache struct {
	ttl  time.Duration
	size int
	sub  *nats.Subscription

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
	// drops counts invalidations: a read during which any client was
	// invalidated does not store its answer (it may hold the old card).
	// Coarse, but constant in memory and work under a burst of events.
	drops uint64
}

type cacheKey struct{ loc, id int64 }

type cacheEntry struct {
	rec     altegio.ClientRecord
	expires time.Time
}

func startCache(nc *nats.Conn, ttl time.Duration, size int) (*cache, error) {
	c := &cache{ttl: ttl, size: size, entries: make(map[cacheKey]cacheEntry)}
	sub, err := nc.Subscribe(commands.EventSubjects, c.onEvent)
	if err != nil {
		return nil, fmt.Errorf("reads: cache invalidation subscription: %w", err)
	}
	c.sub = sub
	return c, nil
}

// onEvent drops the client a result event or a webhook event names.
func (c *cache) onEvent(m *nats.Msg) {
	var ev struct {
		LocationID int64 `json:"location_id"`
		ClientID   int64 `json:"client_id"`   // a result
		ResourceID int64 `json:"resource_id"` // a webhook
	}
	if json.Unmarshal(m.Data, &ev) != nil || ev.LocationID <= 0 {
		return
	}
	for _, id := range []int64{ev.ClientID, ev.ResourceID} {
		if id > 0 {
			c.drop(cacheKey{ev.LocationID, id})
		}
	}
}

func (c *cache) drop(k cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
	c.drops++
}

// start is taken when a read starts, to pass to put.
func (c *cache) start() uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drops
}

func (c *cache) get(loc, id int64) (altegio.ClientRecord, bool) {
	if c == nil {
		return altegio.ClientRecord{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[cacheKey{loc, id}]
	if !ok || time.Now().After(e.expires) {
		return altegio.ClientRecord{}, false
	}
	return e.rec, true
}

// put stores rec, read by a request that began at start (c.start()),
// unless a client was invalidated since.
func (c *cache) put(loc, id int64, rec altegio.ClientRecord, start uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{loc, id}
	if c.drops != start {
		return
	}
	now := time.Now()
	if len(c.entries) >= c.size {
		c.evictLocked(now)
	}
	c.entries[k] = cacheEntry{rec: rec, expires: now.Add(c.ttl)}
}

// evictLocked makes room: the expired entries go, and if that is not
// enough, an arbitrary half of them.
func (c *cache) evictLocked(now time.Time) {
	for k, e := range c.entries {
		if now.After(e.expires) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.size/2 {
			break
		}
		delete(c.entries, k)
	}
}

func (c *cache) stop() {
	if c != nil {
		_ = c.sub.Unsubscribe()
	}
}
