// Package ratelimit keeps every worker process, together, inside the Altegio
// API budget (reference §4: 5 requests per second and 200 per minute per
// egress IP).
//
// The budget is one shared schedule kept in a JetStream KV bucket. Each
// request reserves the next free slot with a compare-and-set on one key and
// then waits, locally, until its slot comes. The schedule is a sliding-window
// log: the times of the last PerMinute grants. A new grant goes no earlier
// than one second after the PerSecond-th latest grant and one minute after
// the PerMinute-th latest, so no window of either length ever holds more
// than its limit, for any number of processes. A 429 from the API pushes the
// schedule back for everyone (Penalize).
//
// When the KV bucket cannot be reached the limiter falls back to a local
// schedule with the same budget, so a process keeps working at a safe pace
// on its own; it logs the switch once and goes back to the shared schedule on
// the next request that reaches the bucket.
package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/topology"
)

// Config sets the shared budget. The zero value is completed by setDefaults.
type Config struct {
	// PerSecond is the number of requests allowed in one second. Default 5.
	PerSecond int
	// PerMinute is the number of requests allowed in one minute. Default 200.
	// A negative value disables the per-minute limit.
	PerMinute int
	// Margin stretches both windows by this share to absorb network jitter
	// between our clock and the API's. Default 0.02 (2%).
	Margin float64
	// Key is the KV key that holds the schedule; one key per egress IP.
	// Default "egress.default".
	Key string
	// MaxPenalty caps how far one 429 without Retry-After pushes the
	// schedule back. Default 30 s; the first 429 pushes by 1 s and each
	// following one within MaxPenalty doubles it.
	MaxPenalty time.Duration
	// Logger receives the fallback warnings. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.PerSecond == 0 {
		c.PerSecond = 5
	}
	if c.PerMinute == 0 {
		c.PerMinute = 200
	}
	if c.Margin == 0 {
		c.Margin = 0.02
	}
	if c.Key == "" {
		c.Key = "egress.default"
	}
	if c.MaxPenalty == 0 {
		c.MaxPenalty = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.PerSecond < 1:
		return fmt.Errorf("ratelimit: per-second limit %d, want at least 1", c.PerSecond)
	case c.Margin < 0 || c.Margin >= 1:
		return fmt.Errorf("ratelimit: margin %v, want [0, 1)", c.Margin)
	}
	return nil
}

// Limiter is a shared request schedule. It is safe for concurrent use, and
// any number of processes may share one bucket and key.
type Limiter struct {
	cfg Config
	kv  jetstream.KeyValue

	second, minute time.Duration // the two windows, stretched by Margin

	mu        sync.Mutex
	local     state     // schedule used while the bucket is unreachable
	degraded  bool      // the last attempt to reach the bucket failed
	probeAt   time.Time // while degraded, the bucket is not tried before this
	penalty   time.Duration
	penaltyAt time.Time

	waitSeconds prometheus.Histogram
	fallbacks   prometheus.Counter
	penalties   prometheus.Counter
}

// state is the stored schedule, in Unix nanoseconds.
type state struct {
	// Grants holds the times of the latest grants, oldest first, at most
	// max(PerSecond, PerMinute) of them.
	Grants []int64 `json:"grants"`
	// NotBefore is the earliest time of the next grant, set by Penalize.
	NotBefore int64 `json:"not_before,omitempty"`
}

// book reserves the earliest slot that keeps s within both limits, and
// returns the new state and the slot.
func (l *Limiter) book(s state, now int64) (state, int64) {
	at := max(now, s.NotBefore)
	if n := len(s.Grants); n > 0 {
		at = max(at, s.Grants[n-1]) // grants stay in order
	}
	if n := len(s.Grants); n >= l.cfg.PerSecond {
		at = max(at, s.Grants[n-l.cfg.PerSecond]+int64(l.second))
	}
	if n := len(s.Grants); l.cfg.PerMinute > 0 && n >= l.cfg.PerMinute {
		at = max(at, s.Grants[n-l.cfg.PerMinute]+int64(l.minute))
	}
	keep := max(l.cfg.PerSecond, l.cfg.PerMinute)
	grants := append(s.Grants, at)
	if len(grants) > keep {
		grants = grants[len(grants)-keep:]
	}
	return state{Grants: slices.Clone(grants), NotBefore: s.NotBefore}, at
}

// New returns a Limiter whose schedule lives under cfg.Key in kv. kv may be
// nil, in which case the schedule is local to this process.
func New(kv jetstream.KeyValue, cfg Config) (*Limiter, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{
		cfg:    cfg,
		kv:     kv,
		second: time.Duration(float64(time.Second) * (1 + cfg.Margin)),
		minute: time.Duration(float64(time.Minute) * (1 + cfg.Margin)),
	}
	l.waitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "altegio_ratelimit_wait_seconds",
		Help:    "Time a request waited for its slot in the shared API budget.",
		Buckets: []float64{0, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	l.fallbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "altegio_ratelimit_local_fallbacks_total",
		Help: "Reservations made on the local schedule because the shared bucket was unreachable.",
	})
	l.penalties = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "altegio_ratelimit_penalties_total",
		Help: "Times a 429 from the API pushed the shared schedule back.",
	})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{l.waitSeconds, l.fallbacks, l.penalties} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ratelimit: register metrics: %w", err)
			}
		}
	}
	return l, nil
}

// Wait blocks until the caller may send one request, or ctx ends. It
// returns ctx.Err() when ctx ends first; the reserved slot is then lost,
// which only makes the schedule more conservative.
func (l *Limiter) Wait(ctx context.Context) error {
	at, err := l.reserve(ctx)
	if err != nil {
		return err
	}
	d := at.Sub(l.cfg.Now())
	l.waitSeconds.Observe(max(d, 0).Seconds())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Penalize pushes the schedule back after the API answered 429, for every
// process sharing it. retryAfter is the API's Retry-After, or 0 when it sent
// none; then the push starts at 1 s and doubles for each 429 seen within
// MaxPenalty of the previous one, up to MaxPenalty, with jitter.
func (l *Limiter) Penalize(retryAfter time.Duration) {
	now := l.cfg.Now()
	d := retryAfter
	if d <= 0 {
		l.mu.Lock()
		if l.penalty == 0 || now.Sub(l.penaltyAt) > l.cfg.MaxPenalty {
			l.penalty = time.Second
		} else {
			l.penalty = min(2*l.penalty, l.cfg.MaxPenalty)
		}
		l.penaltyAt = now
		d = l.penalty
		l.mu.Unlock()
		d += time.Duration(rand.Int64N(int64(d)/4 + 1))
	}
	l.penalties.Inc()
	until := now.Add(d).UnixNano()
	push := func(s state) state {
		s.NotBefore = max(s.NotBefore, until)
		return s
	}
	l.mu.Lock()
	l.local = push(l.local)
	l.mu.Unlock()
	if !l.tryShared() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := l.update(ctx, func(s state, _ int64) (state, int64) { return push(s), 0 }); err != nil {
		l.unreachable(err)
	}
}

// reserve books the next free slot and returns when it is.
func (l *Limiter) reserve(ctx context.Context) (time.Time, error) {
	if l.tryShared() {
		at, err := l.update(ctx, l.book)
		if err == nil {
			return time.Unix(0, at), nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return time.Time{}, ctxErr
		}
		l.unreachable(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fallbacks.Inc()
	var local int64
	l.local, local = l.book(l.local, l.cfg.Now().UnixNano())
	return time.Unix(0, local), nil
}

// errNoBucket is returned by update when the limiter has no shared bucket.
var errNoBucket = errors.New("no shared bucket")

// update applies f to the shared state with compare-and-set, retrying on
// conflicts, and returns f's second result.
func (l *Limiter) update(ctx context.Context, f func(s state, now int64) (state, int64)) (int64, error) {
	if l.kv == nil {
		return 0, errNoBucket
	}
	opCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		var cur state
		var rev uint64
		entry, err := l.kv.Get(opCtx, l.cfg.Key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return 0, fmt.Errorf("read schedule: %w", err)
		default:
			rev = entry.Revision()
			if err := json.Unmarshal(entry.Value(), &cur); err != nil {
				// A damaged value is replaced; the budget restarts from now.
				cur = state{}
			}
		}
		next, out := f(cur, l.cfg.Now().UnixNano())
		b, _ := json.Marshal(next)
		if rev == 0 {
			_, err = l.kv.Create(opCtx, l.cfg.Key, b)
		} else {
			_, err = l.kv.Update(opCtx, l.cfg.Key, b, rev)
		}
		switch {
		case err == nil:
			l.recovered()
			return out, nil
		case topology.IsKVConflict(err):
			continue // another process booked first; read again
		default:
			return 0, fmt.Errorf("write schedule: %w", err)
		}
	}
}

// probeInterval is how long the limiter paces locally after the shared
// bucket failed, before it tries the bucket again. It keeps an outage from
// costing every request a KV timeout.
const probeInterval = 5 * time.Second

// tryShared tells whether the next reservation should go to the bucket.
func (l *Limiter) tryShared() bool {
	if l.kv == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.degraded || !l.cfg.Now().Before(l.probeAt)
}

// unreachable records that the bucket could not be used.
func (l *Limiter) unreachable(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.degraded {
		l.cfg.Logger.Warn("shared API budget unreachable, pacing locally", "key", l.cfg.Key, "error", err)
		l.degraded = true
	}
	l.probeAt = l.cfg.Now().Add(probeInterval)
}

func (l *Limiter) recovered() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.degraded {
		l.cfg.Logger.Info("shared API budget reachable again", "key", l.cfg.Key)
		l.degraded = false
	}
}
