package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// Sharing the partitions among worker processes.
//
// Each partition has one pinned consumer, and the server gives its pin to
// whichever process pulls first: left alone, the first worker to start pins
// every partition and the others idle, and a crashed worker's partitions
// wait for the pin's priority_timeout (2 min) before anyone else gets them.
// So the workers agree on who pulls what:
//
//   - Every ShareInterval each worker announces itself on
//     topology.SubjectWorkers (core NATS, nothing stored), with the pins it
//     holds. A worker that has not been heard for three intervals is gone;
//     one that shuts down says so at once (and goes on reporting its pins
//     until it has handed everything back). A starting worker's first
//     announcement is a hello, which the others answer at once, so it takes
//     its share after a short grace (shareJoinGrace) instead of an interval.
//   - Every worker computes the same assignment from the members it hears
//     (assign: balanced, and stable as members come and go), and pulls only
//     from its own partitions. A partition that moves to another worker is
//     given up the way shutdown gives it up: the handlers finish, the rest is
//     nacked back in order, the pin is released.
//   - A partition taken over from a worker that crashed (or that gave it up
//     without knowing its pin: it had received nothing under it) still has
//     the dead pin. When a worker finds the pin of one of its partitions
//     reported by no live member while messages wait, on two checks in a
//     row an interval apart, it unpins the consumer and the server pins the
//     next pull: its own. (A member's last report counts until it is
//     declared gone; the check goes on until the pin is released.)
//
// Views may disagree for an interval (a new member not yet heard by all);
// then two workers pull one partition and the server serves only the pin
// holder, which is harmless. Order never depends on this: the stream decides
// it (order.go), so the messages a crashed worker held come back after their
// ack wait and the newer commands of their clients are deferred until then.
//
// With ShareInterval negative every worker pulls every partition (the pin
// alone decides), as before sharing existed.

// Defaults of the partition sharing.
const (
	// DefaultShareInterval is how often a worker announces itself. A
	// crashed worker's partitions resume elsewhere after about five
	// intervals (three to declare it gone, two to see its pin orphaned).
	DefaultShareInterval = time.Second
	// shareMissed is how many intervals a member may stay silent.
	shareMissed = 3
	// shareOrphanChecks is how many consecutive checks must find a taken
	// partition's old pin unreported before it is released.
	shareOrphanChecks = 2
	// shareJoinGrace is how long a starting worker listens for the others'
	// answers to its hello before it takes partitions (at most one and a
	// half intervals). A member that answers later (or runs a version that
	// does not answer) is heard at its next announcement; until then two
	// workers may pull one partition, which the pin makes harmless.
	shareJoinGrace = 250 * time.Millisecond
)

// announcement is the message on topology.SubjectWorkers.
type announcement struct {
	Member   string   `json:"member"` // unique per process run
	WorkerID string   `json:"worker_id"`
	Pins     []string `json:"pins,omitempty"`
	Leaving  bool     `json:"leaving,omitempty"`
	// Hello marks a worker's first announcement: the others answer with
	// theirs at once, so that it learns the members in a round trip
	// instead of an interval.
	Hello bool `json:"hello,omitempty"`
}

type memberSeen struct {
	last    time.Time
	pins    []string
	leaving bool // shutting down: assigned nothing, its pins still count
}

// share tracks the members and this worker's partitions.
type share struct {
	w        *Worker
	self     string
	interval time.Duration
	subs     []*wmjetstream.Subscriber // by partition
	// stopped is closed by Run once every subscription has shut down.
	stopped chan struct{}

	mu      sync.Mutex
	members map[string]memberSeen
	ready   bool   // the join grace is over: assignments are computed
	owned   []bool // by partition
	changed chan struct{}
	// orphan counts the checks in a row that found partition p's pin,
	// orphanPin[p], reported by no live member while messages wait.
	orphan    map[int]int
	orphanPin map[int]string
}

func newShare(w *Worker, subs []*wmjetstream.Subscriber) *share {
	sh := &share{
		w: w, self: uuid.NewString(), interval: w.cfg.ShareInterval, subs: subs, stopped: make(chan struct{}),
		members:   make(map[string]memberSeen),
		owned:     make([]bool, len(subs)),
		changed:   make(chan struct{}),
		orphan:    make(map[int]int),
		orphanPin: make(map[int]string),
	}
	if sh.interval < 0 { // sharing off: every partition is ours
		sh.ready = true
		for p := range sh.owned {
			sh.owned[p] = true
		}
	}
	return sh
}

// owns reports whether this worker pulls partition p now, and a channel
// closed at the next change of the assignment.
func (sh *share) owns(p int) (bool, <-chan struct{}) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.ready && sh.owned[p], sh.changed
}

// run announces this worker and follows the others until ctx ends, then
// announces that it leaves until Run closes sh.stopped (which it also does
// when the router fails to start: then run returns at once).
func (sh *share) run(ctx context.Context) {
	if sh.interval < 0 {
		return
	}
	nc := sh.w.js.Conn()
	heard := make(chan announcement, 64)
	sub, err := nc.Subscribe(topology.SubjectWorkers, func(m *nats.Msg) {
		var a announcement
		if json.Unmarshal(m.Data, &a) != nil || a.Member == "" {
			return
		}
		select {
		case heard <- a:
		default: // the next announcement will do
		}
	})
	if err != nil {
		// Without announcements every partition is ours: the pin decides.
		sh.w.log.Error("cannot follow the other workers; pulling every partition", slog.Any("error", err))
		sh.set(map[string]memberSeen{sh.self: {}})
		return
	}
	defer func() { _ = sub.Unsubscribe() }()

	// The orphan check makes JetStream requests that can take seconds when
	// a consumer leader is away; it runs apart, so that announcements go
	// out on time whatever it waits for.
	orphansDone := make(chan struct{})
	go func() {
		defer close(orphansDone)
		sh.orphanLoop(ctx)
	}()
	defer func() { <-orphansDone }()

	sh.announceHello(nc)
	tick := time.NewTicker(sh.interval)
	defer tick.Stop()
	grace := time.NewTimer(min(shareJoinGrace, sh.interval*3/2)) // hear the others before taking anything
	defer grace.Stop()
	for {
		select {
		case <-ctx.Done():
			sh.leave(nc, heard, tick.C)
			return
		case <-sh.stopped:
			sh.announce(nc, true)
			return
		case a := <-heard:
			if a.Hello && a.Member != sh.self {
				sh.announce(nc, false) // a new worker asks who is there
			}
			sh.hear(a)
		case <-grace.C:
			sh.mu.Lock()
			sh.ready = true
			sh.mu.Unlock()
			sh.recompute()
		case <-tick.C:
			sh.announce(nc, false)
			sh.recompute()
		}
	}
}

// orphanLoop runs releaseOrphans every interval until ctx ends or Run
// stops.
func (sh *share) orphanLoop(ctx context.Context) {
	tick := time.NewTicker(sh.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sh.stopped:
			return
		case <-tick.C:
			sh.releaseOrphans(ctx)
		}
	}
}

// leave announces that this worker leaves, so that the others take its
// partitions at once, and goes on announcing (with the pins it still holds,
// so that nobody takes them for orphans) until its subscriptions have handed
// everything back and Run closed sh.stopped.
func (sh *share) leave(nc *nats.Conn, heard <-chan announcement, tick <-chan time.Time) {
	sh.announce(nc, true)
	for {
		select {
		case <-sh.stopped:
			return
		case <-heard: // its own echo among them: drained, not answered
		case <-tick:
			sh.announce(nc, true)
		}
	}
}

func (sh *share) announce(nc *nats.Conn, leaving bool) {
	sh.publish(nc, announcement{Member: sh.self, WorkerID: sh.w.cfg.WorkerID, Leaving: leaving})
}

// announceHello is a starting worker's first announcement, which the
// others answer at once.
func (sh *share) announceHello(nc *nats.Conn) {
	sh.publish(nc, announcement{Member: sh.self, WorkerID: sh.w.cfg.WorkerID, Hello: true})
}

func (sh *share) publish(nc *nats.Conn, a announcement) {
	for _, s := range sh.subs {
		a.Pins = append(a.Pins, s.Pins()...)
	}
	data, _ := json.Marshal(a)
	if err := nc.Publish(topology.SubjectWorkers, data); err != nil {
		sh.w.log.Debug("announce", slog.Any("error", err))
	}
}

// hear records an announcement; a member that joins or leaves changes the
// assignment at once.
func (sh *share) hear(a announcement) {
	sh.mu.Lock()
	before, known := sh.members[a.Member]
	sh.members[a.Member] = memberSeen{last: time.Now(), pins: a.Pins, leaving: a.Leaving}
	sh.mu.Unlock()
	if a.Member != sh.self && (!known || before.leaving != a.Leaving) {
		sh.recompute()
	}
}

// recompute drops silent members and applies the assignment.
func (sh *share) recompute() {
	sh.mu.Lock()
	cutoff := time.Now().Add(-shareMissed * sh.interval)
	for id, m := range sh.members {
		if id != sh.self && m.last.Before(cutoff) {
			delete(sh.members, id)
			sh.w.log.Info("worker gone", slog.String("member", id))
		}
	}
	sh.members[sh.self] = memberSeen{last: time.Now()}
	members := sh.memberIDs()
	sh.mu.Unlock()
	sh.apply(members)
}

func (sh *share) memberIDs() []string {
	ids := make([]string, 0, len(sh.members))
	for id, m := range sh.members {
		if !m.leaving {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (sh *share) set(members map[string]memberSeen) {
	sh.mu.Lock()
	sh.members, sh.ready = members, true
	ids := sh.memberIDs()
	sh.mu.Unlock()
	sh.apply(ids)
}

// apply makes this worker's partitions those that assign gives it.
func (sh *share) apply(members []string) {
	owners := assign(len(sh.owned), members)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !sh.ready {
		return
	}
	changed, n := false, 0
	for p, o := range owners {
		mine := o == sh.self
		if mine {
			n++
		}
		if mine != sh.owned[p] {
			sh.owned[p], changed = mine, true
			delete(sh.orphan, p)
		}
	}
	sh.w.metrics.members.Set(float64(len(members)))
	sh.w.metrics.owned.Set(float64(n))
	if changed {
		sh.w.log.Info("partitions assigned", slog.Int("members", len(members)), slog.Int("owned", n))
		close(sh.changed)
		sh.changed = make(chan struct{})
	}
}

// assign gives each of n partitions to one member: every member gets at
// most ⌈n/len(members)⌉, and each partition goes to the first member with
// room in its own ranking of the members (rendezvous hashing), so a member
// that joins or leaves moves few partitions. Every worker that hears the
// same members computes the same result.
func assign(n int, members []string) []string {
	owners := make([]string, n)
	if len(members) == 0 {
		return owners
	}
	most := (n + len(members) - 1) / len(members)
	load := make(map[string]int, len(members))
	for p := range n {
		ranked := slices.Clone(members)
		score := func(m string) uint64 {
			h := fnv.New64a()
			_, _ = h.Write([]byte(m + "/" + strconv.Itoa(p)))
			return h.Sum64()
		}
		slices.SortFunc(ranked, func(a, b string) int { return cmp.Compare(score(b), score(a)) })
		for _, m := range ranked {
			if load[m] < most {
				owners[p] = m
				load[m]++
				break
			}
		}
	}
	return owners
}

// pin reads partition p's consumer: its pin, and whether messages wait for
// it (undelivered, or delivered and not acked).
func (sh *share) pin(ctx context.Context, p int) (pin string, waiting bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, sh.w.cfg.BookkeepingTimeout)
	defer cancel()
	c, err := sh.w.js.Consumer(cctx, topology.StreamCommands, topology.WorkerConsumer(p))
	if err != nil {
		return "", false, err
	}
	info := c.CachedInfo()
	return wmjetstream.PinnedClient(info, topology.PriorityGroup), info.NumPending > 0 || info.NumAckPending > 0, nil
}

// releaseOrphans unpins the partitions of this worker whose pin no live
// member reports while messages wait: the pin of a worker that is gone (or
// of one that gave the partition up without knowing its pin, having
// received nothing under it). The same pin must be found so on
// shareOrphanChecks checks in a row. A pin this worker holds without
// knowing it yet is not taken for an orphan as long as nothing waits; with
// messages waiting it would have received them.
func (sh *share) releaseOrphans(ctx context.Context) {
	sh.mu.Lock()
	reported := make(map[string]bool)
	for _, m := range sh.members {
		for _, pin := range m.pins {
			reported[pin] = true
		}
	}
	var owned []int
	for p, mine := range sh.owned {
		if mine && sh.w.pinned[p] {
			owned = append(owned, p)
		}
	}
	sh.mu.Unlock()
	for _, s := range sh.subs {
		for _, pin := range s.Pins() {
			reported[pin] = true
		}
	}
	for _, p := range owned {
		pin, waiting, err := sh.pin(ctx, p)
		if err != nil {
			sh.w.log.Debug("read pin", slog.Int("partition", p), slog.Any("error", err))
			continue
		}
		sh.mu.Lock()
		switch {
		case pin == "" || reported[pin] || !waiting:
			delete(sh.orphan, p)
		case sh.orphanPin[p] != pin:
			sh.orphanPin[p], sh.orphan[p] = pin, 1
		default:
			sh.orphan[p]++
		}
		due := sh.orphan[p] >= shareOrphanChecks
		sh.mu.Unlock()
		if !due {
			continue
		}
		if err := sh.unpin(ctx, p); err != nil {
			sh.w.log.Warn("release the pin of a gone worker", slog.Int("partition", p), slog.Any("error", err))
			continue
		}
		sh.w.metrics.takeovers.Inc()
		sh.w.log.Info("released the pin of a gone worker", slog.Int("partition", p))
		sh.mu.Lock()
		delete(sh.orphan, p)
		sh.mu.Unlock()
	}
}

func (sh *share) unpin(ctx context.Context, p int) error {
	cctx, cancel := context.WithTimeout(ctx, sh.w.cfg.BookkeepingTimeout)
	defer cancel()
	return wmjetstream.Unpin(cctx, sh.w.js, topology.StreamCommands, topology.WorkerConsumer(p), topology.PriorityGroup)
}

// partitionSubscriber is the Watermill subscriber of one partition's
// handler: it subscribes to the partition consumer while this worker owns
// the partition, and gives it up (in order, see wmjetstream's Close) when
// the assignment moves it elsewhere. Its channel lives until ctx ends.
type partitionSubscriber struct {
	sh    *share
	p     int
	inner *wmjetstream.Subscriber
}

var _ message.Subscriber = (*partitionSubscriber)(nil)

func (ps *partitionSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			mine, changed := ps.sh.owns(ps.p)
			if !mine {
				select {
				case <-ctx.Done():
				case <-changed:
				}
				continue
			}
			ps.pull(ctx, topic, changed, out)
		}
	}()
	return out, nil
}

// pull forwards the partition's messages until the assignment changes away
// from this worker or ctx ends, and returns once the inner subscription has
// shut down.
func (ps *partitionSubscriber) pull(ctx context.Context, topic string, changed <-chan struct{}, out chan<- *message.Message) {
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	in, err := ps.inner.Subscribe(subCtx, topic)
	if err != nil {
		ps.sh.w.log.Warn("subscribe partition", slog.Int("partition", ps.p), slog.Any("error", err))
		select { // try again at the next change or interval
		case <-ctx.Done():
		case <-changed:
		case <-time.After(max(ps.sh.interval, time.Second)):
		}
		return
	}
	for {
		select {
		case m, ok := <-in:
			if !ok {
				return
			}
			out <- m // the router reads until the channel closes
		case <-changed:
			if mine, next := ps.sh.owns(ps.p); mine {
				changed = next
				continue
			}
			cancel() // give it up; forward what comes until it is closed
			changed = nil
		}
	}
}

// Close closes the partition's consumer subscriber.
func (ps *partitionSubscriber) Close() error { return ps.inner.Close() }
