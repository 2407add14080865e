// Package ratelimit keeps every worker process, together, inside the Altegio
// API budget (reference §4: 5 requests per second and 200 per minute per
// egress IP), spends it fairly between locations, and never sends a request
// that the API would refuse for our own pacing.
//
// # The shared schedule
//
// The budget is one schedule per egress IP kept in a JetStream KV bucket: the
// times of the latest grants (a sliding-window log). A slot goes no earlier
// than one second plus the margin after the PerSecond-th latest grant and one
// minute plus the margin after the PerMinute-th latest, so no window of either
// length holds more than its limit, for any number of processes.
//
// A process does not book every request with its own compare-and-set: it
// leases a short run of slots at a time (as many as it has requests waiting,
// reaching at most LeaseHorizon ahead), so the bookkeeping costs one KV round
// trip per lease, not per request, and no process holds slots far ahead of
// the others (which is what keeps processes fair to each other).
//
// # Sending late is what causes 429s
//
// A slot is only good if the request reaches the API close to the slot's
// time: a request sent late shrinks the gap to the request five slots later.
// So a granted slot carries a send check that the API client calls right
// before the request goes out: a slot more than half the margin late is
// dropped (the caller waits for another) instead of being sent. The margin
// is derived from the lateness this process measured at those checks (twice
// the 95th percentile of the recent ones, between MinMargin and MaxMargin) and is
// shared through the schedule, so every process books with the largest
// margin any of them needs.
//
// # Fairness
//
// Inside a process, requests wait in one queue per flow (a location, named
// by the caller, or "account/location") and slots are handed out by weighted
// fair queueing: a backlog at one location takes its share, a single request
// at another goes with the next slot; with accounts in the names, accounts
// share the budget first and their locations share each account's part.
//
// # 429 from someone else
//
// A 429 pushes the schedule back for everyone (Retry-After, or 1 s doubling
// to MaxPenalty) and halves the rate, which then recovers linearly over
// RecoverAfter.
//
// # Pacing the minute
//
// A steady load at 5/s would spend the minute's 200 requests in 40 s and
// then stall for 20 s. After a burst of MinuteBurst requests the schedule
// therefore paces the minute's budget evenly (200/min: one request every
// 0.3 s), which spends the same 200 a minute without the stall.
//
// When the KV bucket cannot be reached the limiter falls back to a local
// schedule with the same budget, logs the switch once, and goes back to the
// shared schedule when a probe reaches the bucket again.
package ratelimit

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/prom"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// ErrClosed is returned by Wait after Close.
var ErrClosed = errors.New("ratelimit: limiter closed")

// Config sets the shared budget. The zero value is completed by setDefaults.
type Config struct {
	// PerSecond is the number of requests allowed in one second, 1 to
	// 10,000 (the schedule keeps that many grant times). Default 5. For no
	// limit at all, use no Limiter.
	PerSecond int
	// PerMinute is the number of requests allowed in one minute, at most
	// 10,000. Default 200. A negative value disables the per-minute limit.
	PerMinute int
	// MinuteBurst is how many requests may go at the per-second rate before
	// the per-minute budget is paced evenly (PerMinute spread over the
	// minute). Without pacing, a steady load would spend the minute's 200
	// requests in 40 s and then send nothing for 20 s, which every waiting
	// request (another location's too) would feel. With pacing the longest
	// pause is about MinuteBurst intervals (1.5 s at 200/min). Default 5;
	// negative turns pacing off (the sliding minute window still holds).
	MinuteBurst int
	// Key is the KV key that holds the schedule; one key per egress IP.
	// Default "egress.default".
	Key string
	// MinMargin and MaxMargin bound the margin by which both windows are
	// stretched. The margin is twice the 95th percentile of the send
	// lateness measured recently, at least MinMargin (which also absorbs
	// jitter on the way to the API) and at most MaxMargin. Defaults 20 ms
	// and 500 ms.
	MinMargin time.Duration
	MaxMargin time.Duration
	// LeaseHorizon is how far ahead of now one lease may reach. Larger
	// leases cost fewer KV round trips at high rates but let one process
	// hold slots the others wait behind. Default 250 ms.
	LeaseHorizon time.Duration
	// MaxPenalty caps how far one 429 without Retry-After pushes the
	// schedule back. Default 30 s; the first 429 pushes by 1 s and each
	// following one within MaxPenalty doubles it.
	MaxPenalty time.Duration
	// RecoverAfter is how long the rate takes to climb back from the half
	// rate a 429 sets to the full budget. Default 30 s.
	RecoverAfter time.Duration
	// Weights gives flows a share of the budget relative to the others; a
	// flow not listed weighs 1. A flow is a location, or "account/location"
	// when the caller names the account too (see Wait): then the budget is
	// shared between the accounts first, by their weights (keyed by the
	// account's name), and within an account between its locations, by
	// theirs (keyed by the location). A location with weight 2 gets twice
	// the slots of one with weight 1 while both have requests waiting.
	Weights map[string]float64
	// CommandShare is the share of the budget commands keep while reads
	// wait too; reads keep the rest. Either class takes every slot the
	// other leaves idle. Between 0 and 1, both excluded; default 0.6. A
	// request is a read when its context says so (WithClass).
	CommandShare float64
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
	if c.Key == "" {
		c.Key = "egress.default"
	}
	if c.MinuteBurst == 0 {
		c.MinuteBurst = 5
	}
	if c.MinMargin == 0 {
		c.MinMargin = 20 * time.Millisecond
	}
	if c.MaxMargin == 0 {
		c.MaxMargin = 500 * time.Millisecond
	}
	if c.LeaseHorizon == 0 {
		c.LeaseHorizon = 250 * time.Millisecond
	}
	if c.MaxPenalty == 0 {
		c.MaxPenalty = 30 * time.Second
	}
	if c.RecoverAfter == 0 {
		c.RecoverAfter = 30 * time.Second
	}
	if c.CommandShare == 0 {
		c.CommandShare = 0.6
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
	case c.PerSecond < 1 || c.PerSecond > maxLog:
		return fmt.Errorf("ratelimit: per-second limit %d, want 1 to %d (no limiter at all for no limit)", c.PerSecond, maxLog)
	case c.PerMinute > maxLog:
		return fmt.Errorf("ratelimit: per-minute limit %d, want at most %d (or negative: none)", c.PerMinute, maxLog)
	case c.MinMargin < 0 || c.MaxMargin < c.MinMargin:
		return fmt.Errorf("ratelimit: margin bounds %v..%v, want 0 <= min <= max", c.MinMargin, c.MaxMargin)
	case c.MaxMargin >= time.Second:
		return fmt.Errorf("ratelimit: max margin %v, want below 1s", c.MaxMargin)
	case c.LeaseHorizon < 0:
		return fmt.Errorf("ratelimit: lease horizon %v, want at least 0", c.LeaseHorizon)
	case !(c.CommandShare > 0 && c.CommandShare < 1):
		return fmt.Errorf("ratelimit: command share %v, want above 0 and below 1", c.CommandShare)
	}
	for f, w := range c.Weights {
		if w <= 0 {
			return fmt.Errorf("ratelimit: weight of flow %q is %v, want more than 0", f, w)
		}
	}
	return nil
}

// ParseWeights reads flow weights written as "name=weight" pairs separated
// by commas, where a name is an account or a location ("main=2,7=0.5");
// empty means none. Each weight must be a number above 0.
func ParseWeights(s string) (map[string]float64, error) {
	out := make(map[string]float64)
	for pair := range strings.SplitSeq(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		flow, v, ok := strings.Cut(pair, "=")
		w, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || strings.TrimSpace(flow) == "" || err != nil || w <= 0 || math.IsInf(w, 0) {
			return nil, fmt.Errorf("ratelimit: weight %q: want name=weight with a weight above 0", pair)
		}
		out[strings.TrimSpace(flow)] = w
	}
	return out, nil
}

// Limiter is a shared request schedule. It is safe for concurrent use, and
// any number of processes may share one bucket and key. Close stops it.
type Limiter struct {
	cfg Config
	kv  jetstream.KeyValue

	mu        sync.Mutex
	queue     fairQueue        // the requests waiting for a slot
	perFlow   map[string]*flow // by flow name, for the per-flow metrics
	pool      []slot           // leased slots not handed out yet, oldest first
	local     state            // schedule used while the bucket is unreachable
	degraded  bool             // the last attempt to reach the bucket failed
	probeAt   time.Time
	penalty   time.Duration
	penaltyAt time.Time
	notBefore int64             // no slot is handed out or sent before this (a 429's push), Unix ns
	lateness  [64]time.Duration // recent send lateness, a ring
	sorted    [64]time.Duration // scratch for the percentile, not allocated per send
	lateN     int
	margin    time.Duration // this process's margin, from lateness

	kick    chan struct{}
	done    chan struct{}
	stopped sync.WaitGroup
	closed  bool

	m metrics
}

type metrics struct {
	waitSeconds prometheus.Histogram
	fallbacks   prometheus.Counter
	penalties   prometheus.Counter
	leases      prometheus.Counter
	dropped     *prometheus.CounterVec
	margin      prometheus.Gauge
	waiting     *prometheus.GaugeVec
	waitingBy   [2]prometheus.Gauge // waiting's child of each Class, looked up once
	refused     prometheus.Counter
	// flowWaiting and flowGranted are per flow ("account/location"): who
	// waits for the budget and who gets it. One series per location that
	// ever waited, as many as the accounts serve.
	flowWaiting *prometheus.GaugeVec
	flowGranted *prometheus.CounterVec
}

// setWaiting sets the waiting gauge of each class from q (under the
// limiter's mutex, on every push and pop: no label lookups here).
func (m *metrics) setWaiting(q *fairQueue) {
	for c, g := range m.waitingBy {
		g.Set(float64(q.waiting(Class(c))))
	}
}

// flow is one flow's waiters and its metric series, looked up once.
type flow struct {
	waiters int
	waiting prometheus.Gauge
	granted prometheus.Counter
}

// flowOf returns the state of the flow named name (under the limiter's
// mutex). Flows are kept: as many as the locations the accounts serve.
func (l *Limiter) flowOf(name string) *flow {
	f := l.perFlow[name]
	if f == nil {
		f = &flow{waiting: l.m.flowWaiting.WithLabelValues(name), granted: l.m.flowGranted.WithLabelValues(name)}
		l.perFlow[name] = f
	}
	return f
}

// flowJoined and flowLeft count a flow's waiters and grants (under the
// limiter's mutex).
func (l *Limiter) flowJoined(name string) {
	f := l.flowOf(name)
	f.waiters++
	f.waiting.Set(float64(f.waiters))
}

func (l *Limiter) flowLeft(name string, granted bool) {
	f := l.flowOf(name)
	f.waiters--
	f.waiting.Set(float64(f.waiters))
	if granted {
		f.granted.Inc()
	}
}

// slot is one leased grant and the margin it was booked with.
type slot struct {
	at     int64
	margin time.Duration
}

// waiter is one Wait call.
type waiter struct {
	flow  string
	class Class
	tags  [levels]float64 // its tag at each level of the fairQueue
	since time.Time
	ready chan slot // buffered; receives the slot once
}

// state is the stored schedule, in Unix nanoseconds.
type state struct {
	// Grants holds the times of the latest grants, oldest first, at most
	// max(PerSecond, PerMinute) of them.
	Grants []int64 `json:"grants"`
	// NotBefore is the earliest time of the next grant, set by Penalize.
	NotBefore int64 `json:"not_before,omitempty"`
	// Margin is the largest margin a process needed recently, and MarginAt
	// when it was last confirmed; it lapses after marginTTL.
	Margin   int64 `json:"margin,omitempty"`
	MarginAt int64 `json:"margin_at,omitempty"`
	// Paced is the theoretical time of the next grant when the minute's
	// budget is spread evenly (see MinuteBurst).
	Paced int64 `json:"paced,omitempty"`
	// Scale is the share of the rate allowed right after the last 429 at
	// ScaleAt; it climbs back to 1 over RecoverAfter.
	Scale   float64 `json:"scale,omitempty"`
	ScaleAt int64   `json:"scale_at,omitempty"`
}

// maxLog bounds both limits: the schedule keeps max(PerSecond, PerMinute)
// grant times, written with every lease.
const maxLog = 10000

// marginTTL is how long a margin written by one process binds the others
// after that process stopped confirming it.
const marginTTL = 30 * time.Second

// New returns a Limiter whose schedule lives under cfg.Key in kv and starts
// its dispatcher; call Close when done. kv may be nil, in which case the
// schedule is local to this process.
func New(kv jetstream.KeyValue, cfg Config) (*Limiter, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{
		cfg:     cfg,
		kv:      kv,
		queue:   newFairQueue(cfg.Weights, cfg.CommandShare),
		perFlow: make(map[string]*flow),
		margin:  cfg.MinMargin,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	l.m = metrics{
		waitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "altegio_ratelimit_wait_seconds",
			Help:    "Time a request waited for its slot in the shared API budget.",
			Buckets: []float64{0, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "altegio_ratelimit_local_fallbacks_total",
			Help: "Leases made on the local schedule because the shared bucket was unreachable.",
		}),
		penalties: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "altegio_ratelimit_penalties_total",
			Help: "Times a 429 from the API pushed the shared schedule back.",
		}),
		leases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "altegio_ratelimit_leases_total",
			Help: "Runs of slots leased from the schedule (one KV compare-and-set each).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "altegio_ratelimit_slots_dropped_total",
			Help: "Leased slots not used: late (sent too late to be safe), expired (no waiter in time), unclaimed (the waiter left) or penalized (a 429 pushed the schedule past them).",
		}, []string{"reason"}),
		margin: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "altegio_ratelimit_margin_seconds",
			Help: "This process's margin on both windows, from its measured send lateness.",
		}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "altegio_ratelimit_waiting",
			Help: "Requests waiting for a slot in this process, by class (commands, reads).",
		}, []string{"class"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "altegio_ratelimit_reads_refused_total",
			Help: "Reads refused at once because the wait they expected would pass their deadline.",
		}),
		flowWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "altegio_ratelimit_flow_waiting",
			Help: "Requests waiting for a slot in this process, by flow (account/location).",
		}, []string{"flow"}),
		flowGranted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "altegio_ratelimit_flow_granted_total",
			Help: "Slots of the budget given to requests in this process, by flow (account/location).",
		}, []string{"flow"}),
	}
	for c := range l.m.waitingBy {
		l.m.waitingBy[c] = l.m.waiting.WithLabelValues(Class(c).String())
	}
	l.m.margin.Set(l.margin.Seconds())
	if err := prom.Register(cfg.Registerer, "ratelimit", l.m.waitSeconds, l.m.fallbacks, l.m.penalties, l.m.leases,
		l.m.dropped, l.m.margin, l.m.waiting, l.m.refused, l.m.flowWaiting, l.m.flowGranted); err != nil {
		return nil, err
	}
	l.stopped.Add(1)
	go l.dispatch()
	return l, nil
}

// Close stops the dispatcher; waiting and later Wait calls return ErrClosed.
func (l *Limiter) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	l.mu.Unlock()
	l.stopped.Wait()
}

// Wait blocks until the caller may send one request of flow (a location;
// "" is a flow like any other), or ctx ends, and returns the slot's send
// check. An urgent request (one that finishes work already begun, such as
// the PUT after an update's GET, or a login everything else waits for) goes
// before every request queued that is not urgent. Call it right before the request goes out: it returns true when
// the request may be sent now, and false when the slot came too late to be
// safe (the slot is then spent; call Wait again). Each check answers true
// at most once.
//
// Wait returns ctx.Err() when ctx ends first and ErrClosed after Close; no
// request may be sent then. A wait has no deadline of its own, but a read
// (WithClass) whose context has a deadline is refused at once with a
// *TooLongError when the wait it expects would pass the deadline: the
// caller can answer "retry later" now instead of holding the request.
func (l *Limiter) Wait(ctx context.Context, flowName string, urgent bool) (func() bool, error) {
	w := &waiter{flow: flowName, class: ClassOf(ctx), since: l.cfg.Now(), ready: make(chan slot, 1)}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if deadline, ok := ctx.Deadline(); ok && w.class == Reads && !urgent {
		if expect := l.expectedWaitLocked(w.class, w.since); w.since.Add(expect).After(deadline) {
			l.mu.Unlock()
			l.m.refused.Inc()
			return nil, &TooLongError{Wait: expect}
		}
	}
	l.queue.push(w, urgent)
	l.m.setWaiting(&l.queue)
	l.flowJoined(w.flow)
	l.mu.Unlock()
	l.poke()

	select {
	case s := <-w.ready:
		l.m.waitSeconds.Observe(l.cfg.Now().Sub(w.since).Seconds())
		return l.sendCheck(s), nil
	case <-ctx.Done():
		if l.leave(w) {
			return nil, ctx.Err()
		}
		// The slot was handed over as ctx ended: it goes unused.
		<-w.ready
		l.m.dropped.WithLabelValues("unclaimed").Inc()
		return nil, ctx.Err()
	case <-l.done:
		l.leave(w)
		return nil, ErrClosed
	}
}

// classKey carries a request's Class in its context.
type classKey struct{}

// WithClass returns a context whose requests are of class c.
func WithClass(ctx context.Context, c Class) context.Context {
	return context.WithValue(ctx, classKey{}, c)
}

// ClassOf returns the class of ctx's requests: Commands unless WithClass
// said otherwise.
func ClassOf(ctx context.Context) Class {
	c, _ := ctx.Value(classKey{}).(Class)
	return c
}

// TooLongError is Wait's answer to a read that would wait past its
// deadline.
type TooLongError struct {
	// Wait is the expected wait: a good Retry-After.
	Wait time.Duration
}

func (e *TooLongError) Error() string {
	return fmt.Sprintf("ratelimit: the read would wait about %v for the API budget, past its deadline", e.Wait.Round(100*time.Millisecond))
}

// expectedWaitLocked estimates the wait of a new request of class c: the
// requests of its class waiting before it, at the rate the class gets (its
// share while the other class waits, the whole rate otherwise), after a
// 429's push. It counts this process's queue only, so with several
// processes it may come short; the deadline still ends a longer wait.
func (l *Limiter) expectedWaitLocked(c Class, now time.Time) time.Duration {
	rate := float64(l.cfg.PerSecond)
	if l.cfg.PerMinute > 0 {
		rate = min(rate, float64(l.cfg.PerMinute)/60)
	}
	if l.queue.waiting(1-c) > 0 {
		rate *= l.queue.share[c]
	}
	d := time.Duration(float64(l.queue.waiting(c)+1) / rate * float64(time.Second))
	if push := time.Unix(0, l.notBefore).Sub(now); push > 0 {
		d += push
	}
	return d
}

// leave removes w from the queue; it reports false when w was dispatched.
func (l *Limiter) leave(w *waiter) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.queue.remove(w) {
		return false
	}
	l.m.setWaiting(&l.queue)
	l.flowLeft(w.flow, false)
	return true
}

// sendCheck returns the check of slot s (see Wait).
func (l *Limiter) sendCheck(s slot) func() bool {
	var once sync.Once
	return func() bool {
		ok := false
		once.Do(func() {
			now := l.cfg.Now().UnixNano()
			late := time.Duration(now - s.at)
			l.mu.Lock()
			tolerance := min(s.margin, l.margin) / 2
			penalized := s.at < l.notBefore
			if !penalized {
				l.observeLocked(late)
			}
			l.mu.Unlock()
			switch {
			case penalized:
				l.m.dropped.WithLabelValues("penalized").Inc()
			case late > tolerance:
				l.m.dropped.WithLabelValues("late").Inc()
			default:
				ok = true
			}
		})
		return ok
	}
}

// observeLocked records a send lateness and recomputes the margin.
func (l *Limiter) observeLocked(late time.Duration) {
	l.lateness[l.lateN%len(l.lateness)] = max(late, 0)
	l.lateN++
	// Twice the 95th percentile, not the maximum: one slow send (a login,
	// a slow KV write before it) is refused as late by its own check, and
	// should not widen the margin of every process for the next minute.
	n := copy(l.sorted[:], l.lateness[:min(l.lateN, len(l.lateness))])
	recent := l.sorted[:n]
	slices.Sort(recent)
	p95 := recent[(len(recent)*95+99)/100-1]
	l.margin = min(max(2*p95, l.cfg.MinMargin), l.cfg.MaxMargin)
	l.m.margin.Set(l.margin.Seconds())
}

// poke wakes the dispatcher.
func (l *Limiter) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// dispatch hands leased slots to waiters, in fair order, at their time.
func (l *Limiter) dispatch() {
	defer l.stopped.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-l.done:
			return
		default:
		}
		l.mu.Lock()
		if l.queue.n == 0 {
			l.mu.Unlock()
			select {
			case <-l.kick:
				continue
			case <-l.done:
				return
			}
		}
		now := l.cfg.Now().UnixNano()
		l.dropLateLocked(now)
		if len(l.pool) == 0 {
			n := l.leaseSizeLocked()
			l.mu.Unlock()
			slots := l.lease(n)
			l.mu.Lock()
			l.pool = append(l.pool, slots...)
			slices.SortFunc(l.pool, func(a, b slot) int { return cmp.Compare(a.at, b.at) })
			l.dropPenalizedLocked()
			l.mu.Unlock()
			continue
		}
		s := l.pool[0]
		if d := time.Duration(s.at - now); d > 0 {
			l.mu.Unlock()
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-l.kick:
				timer.Stop()
			case <-l.done:
				timer.Stop()
				return
			}
			continue
		}
		l.pool = l.pool[1:]
		w := l.nextLocked()
		l.mu.Unlock()
		w.ready <- s
	}
}

// dropPenalizedLocked discards pooled slots earlier than a 429's push.
func (l *Limiter) dropPenalizedLocked() {
	kept := l.pool[:0]
	for _, s := range l.pool {
		if s.at >= l.notBefore {
			kept = append(kept, s)
		} else {
			l.m.dropped.WithLabelValues("penalized").Inc()
		}
	}
	l.pool = kept
}

// dropLateLocked discards pooled slots that are already too late to send.
func (l *Limiter) dropLateLocked(now int64) {
	for len(l.pool) > 0 && time.Duration(now-l.pool[0].at) > min(l.pool[0].margin, l.margin)/2 {
		l.pool = l.pool[1:]
		l.m.dropped.WithLabelValues("expired").Inc()
	}
}

// leaseSizeLocked is how many slots to lease: one per waiter, at most what
// the budget grants within the lease horizon.
func (l *Limiter) leaseSizeLocked() int {
	perHorizon := int(float64(l.cfg.PerSecond) * l.cfg.LeaseHorizon.Seconds())
	return max(1, min(l.queue.n, perHorizon))
}

// nextLocked removes and returns the next waiter in fair order;
// l.queue.n > 0.
func (l *Limiter) nextLocked() *waiter {
	w := l.queue.pop()
	l.m.setWaiting(&l.queue)
	l.flowLeft(w.flow, true)
	return w
}

// lease books up to n slots on the shared schedule, or on the local one
// when the bucket cannot be reached. It always returns at least one slot.
func (l *Limiter) lease(n int) []slot {
	l.mu.Lock()
	margin := l.margin
	l.mu.Unlock()
	l.m.leases.Inc()
	if l.tryShared() {
		var out []slot
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := l.update(ctx, func(s state, now int64) state {
			var next state
			next, out = l.book(s, now, n, margin)
			return next
		})
		cancel()
		if err == nil {
			return out
		}
		l.unreachable(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m.fallbacks.Inc()
	var out []slot
	l.local, out = l.book(l.local, l.cfg.Now().UnixNano(), n, margin)
	return out
}

// book reserves up to n of the earliest slots that keep s within both
// limits (the first one always, the others only within the lease horizon)
// and returns the new state and the slots. local is the margin this
// process needs; the schedule's margin is the largest one in force.
func (l *Limiter) book(s state, now int64, n int, local time.Duration) (state, []slot) {
	margin := local
	if time.Duration(s.Margin) > local && time.Duration(now-s.MarginAt) < marginTTL {
		margin = time.Duration(s.Margin)
	} else {
		s.Margin, s.MarginAt = int64(local), now
	}
	second, minute := int64(time.Second+margin), int64(time.Minute+margin)
	// After a 429 the rate is scaled down and recovers linearly: consecutive
	// grants are then spaced evenly at the scaled rate.
	var gap int64
	if s.Scale > 0 && s.Scale < 1 {
		scale := s.Scale + (1-s.Scale)*min(1, float64(now-s.ScaleAt)/float64(l.cfg.RecoverAfter))
		if scale < 1 {
			gap = int64(float64(second) / (float64(l.cfg.PerSecond) * scale))
		} else {
			s.Scale, s.ScaleAt = 0, 0
		}
	}
	keep := max(l.cfg.PerSecond, l.cfg.PerMinute)
	grants := slices.Clone(s.Grants)
	horizon := now + int64(l.cfg.LeaseHorizon)
	var out []slot
	for len(out) < n {
		at := max(now, s.NotBefore)
		if k := len(grants); k > 0 {
			at = max(at, grants[k-1]+gap) // grants stay in order
		}
		if k := len(grants); k >= l.cfg.PerSecond {
			at = max(at, grants[k-l.cfg.PerSecond]+second)
		}
		if k := len(grants); l.cfg.PerMinute > 0 && k >= l.cfg.PerMinute {
			at = max(at, grants[k-l.cfg.PerMinute]+minute)
		}
		pace := l.cfg.PerMinute > 0 && l.cfg.MinuteBurst > 0
		interval := minute / int64(max(l.cfg.PerMinute, 1))
		if pace {
			// Pace the minute (GCRA): a grant may come at most
			// MinuteBurst−1 intervals before its theoretical time.
			at = max(at, s.Paced-int64(l.cfg.MinuteBurst-1)*interval)
		}
		if len(out) > 0 && at > horizon {
			break
		}
		if pace {
			s.Paced = max(s.Paced, at) + interval
		}
		grants = append(grants, at)
		if len(grants) > keep {
			grants = grants[len(grants)-keep:]
		}
		out = append(out, slot{at: at, margin: margin})
	}
	s.Grants = grants
	return s, out
}

// Penalize pushes the schedule back after the API answered 429, for every
// process sharing it, and halves the rate, which recovers over
// RecoverAfter. retryAfter is the API's Retry-After, or 0 when it sent
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
		// Not backoff.Delay: a push is the least the API asked us to wait,
		// so its jitter only adds (up to a quarter), never shortens it.
		d += time.Duration(rand.Int64N(int64(d)/4 + 1))
	}
	l.m.penalties.Inc()
	until := now.Add(d).UnixNano()
	push := func(s state, now int64) state {
		s.NotBefore = max(s.NotBefore, until)
		cur := 1.0
		if s.Scale > 0 {
			cur = min(1, s.Scale+(1-s.Scale)*float64(now-s.ScaleAt)/float64(l.cfg.RecoverAfter))
		}
		s.Scale, s.ScaleAt = max(cur/2, 0.1), now
		return s
	}
	l.mu.Lock()
	l.local = push(l.local, now.UnixNano())
	// Set before the shared schedule is: a lease in flight that booked from
	// the old schedule is dropped when it lands, and slots already handed
	// out are refused by their send check.
	l.notBefore = max(l.notBefore, until)
	l.dropPenalizedLocked()
	l.mu.Unlock()
	if l.tryShared() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := l.update(ctx, push); err != nil {
			l.unreachable(err)
		}
	}
	l.poke()
}

// errNoBucket is returned by update when the limiter has no shared bucket.
var errNoBucket = errors.New("no shared bucket")

// update applies f to the shared state with compare-and-set, retrying on
// conflicts after a short random pause, until ctx ends.
func (l *Limiter) update(ctx context.Context, f func(s state, now int64) state) error {
	if l.kv == nil {
		return errNoBucket
	}
	for conflicts := 0; ; conflicts++ {
		var cur state
		var rev uint64
		entry, err := l.kv.Get(ctx, l.cfg.Key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read schedule: %w", err)
		default:
			rev = entry.Revision()
			if err := json.Unmarshal(entry.Value(), &cur); err != nil {
				// A damaged value is replaced; the budget restarts from now.
				cur = state{}
			}
		}
		b, _ := json.Marshal(f(cur, l.cfg.Now().UnixNano()))
		if rev == 0 {
			_, err = l.kv.Create(ctx, l.cfg.Key, b)
		} else {
			_, err = l.kv.Update(ctx, l.cfg.Key, b, rev)
		}
		switch {
		case err == nil:
			l.recovered()
			return nil
		case topology.IsKVConflict(err):
			// Another process booked first: read again after a pause that
			// grows with the conflicts, so that contenders spread out.
			pause := time.Duration(rand.Int64N(int64(time.Millisecond) << min(conflicts, 5)))
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return fmt.Errorf("write schedule: %w", ctx.Err())
			}
		default:
			return fmt.Errorf("write schedule: %w", err)
		}
	}
}

// probeInterval is how long the limiter paces locally after the shared
// bucket failed, before it tries the bucket again. It keeps an outage from
// costing every lease a KV timeout.
const probeInterval = 5 * time.Second

// tryShared tells whether the next lease should go to the bucket.
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
