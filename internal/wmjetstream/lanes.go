package wmjetstream

import (
	"cmp"
	"log/slog"
	"slices"
	"time"
)

// laneSet keeps the messages of a subscription with ordered lanes in stream
// order per key: at most one message of a key is out to a handler, later
// ones are held behind it, and a key whose message was retried is parked
// until that message comes back from the server.
//
// It decides only what goes out next. It does no I/O, starts no goroutine
// and reads no clock (callers pass the time), so that every case has a table
// test (lanes_internal_test.go); the subscription's loop does the talking to
// the server and calls it.
type laneSet struct {
	// redeliver is the longest the server takes to redeliver a message
	// whose ack was lost: AckWait, or the consumer's longest BackOff step.
	redeliver time.Duration
	// grace is how long past due a parked message is still waited for,
	// beyond redeliver: a pull request's expiry and a keep-alive period.
	grace time.Duration
	// maxDeliver is the consumer's MaxDeliver (0 or less: unlimited).
	maxDeliver int
	// maxSafeDelay is the longest retry delay that keeps a key in order if
	// this process crashes while the key is parked (AckWait − KeepAlive):
	// beyond it the server may deliver later messages of the key to the
	// next subscriber first. Longer delays are logged.
	maxSafeDelay time.Duration
	log          *slog.Logger

	byKey  map[string]*lane
	parked map[*lane]struct{}
	held   int // messages held in all lanes
}

// lane is the state of one key.
type lane struct {
	key    string
	active *entry   // ready or out to a handler; at most one per lane
	held   []*entry // behind active or the parked message, by stream sequence

	// parked is the message the lane waits to see redelivered (its last
	// delivery, to give it back at shutdown), nil when the lane is not
	// parked.
	parked   *entry
	parkDue  time.Time // when it should come back
	parkGive time.Time // when to stop waiting for it
}

func (l *lane) parkedSeq() uint64 {
	if l.parked == nil {
		return 0
	}
	return l.parked.seq
}

func newLaneSet(redeliver, grace, maxSafeDelay time.Duration, maxDeliver int, log *slog.Logger) *laneSet {
	return &laneSet{
		redeliver:    redeliver,
		grace:        grace,
		maxDeliver:   maxDeliver,
		maxSafeDelay: maxSafeDelay,
		log:          log,
		byKey:        make(map[string]*lane),
		parked:       make(map[*lane]struct{}),
	}
}

// receive takes a fetched message into its lane. It returns e, or an older
// held message of its key, when that is now free to go out; nil when e is
// held.
func (ls *laneSet) receive(e *entry) (ready *entry) {
	l := ls.byKey[e.key]
	if l == nil {
		l = &lane{key: e.key}
		ls.byKey[e.key] = l
	}
	switch parked := l.parkedSeq(); {
	case parked == e.seq && l.active == nil:
		// Back from its delay. If an older message of the key is held (it
		// arrived while this one was away), the older one goes first.
		ls.unpark(l)
		ls.hold(l, e)
		return ls.advance(l)
	case parked == e.seq:
		// An older message of the key went ahead while this one was away.
		ls.unpark(l)
		ls.hold(l, e)
		return nil
	case l.active == nil && parked != 0 && e.seq < parked:
		// An older message of the key arrived while a newer one is parked
		// (it was first delivered to another subscriber, e.g. before the
		// consumer's pin moved): in stream order it goes first, and the
		// lane keeps waiting for the parked one.
		l.active = e
		return e
	case l.active != nil || parked != 0:
		ls.hold(l, e)
		return nil
	default:
		l.active = e
		return e
	}
}

// settleKind is what became of a message a handler finished with, as far as
// its lane is concerned.
type settleKind int

const (
	// settledDone: acked and confirmed, or terminated. It will not come
	// back; the lane moves on.
	settledDone settleKind = iota
	// settledUnconfirmed: acked, but the ack may not have reached the
	// server, so the message may come back once its ack wait runs out.
	settledUnconfirmed
	// settledRetry: nacked; the server redelivers it after a delay, unless
	// it has had its last delivery.
	settledRetry
)

// settlement is how a message out to a handler was settled.
type settlement struct {
	kind settleKind
	// delay until the server redelivers it (settledRetry).
	delay time.Duration
	// attempt is the delivery that was settled (1 for the first).
	attempt uint64
}

// settled frees e's lane. A message that may come back parks the lane until
// it does; the next message of the key to go out, if any, is returned.
func (ls *laneSet) settled(e *entry, how settlement, now time.Time) (ready *entry) {
	l := ls.byKey[e.key]
	if l == nil {
		return nil
	}
	if l.active == e {
		l.active = nil
	}
	switch how.kind {
	case settledUnconfirmed:
		ls.log.Warn("ack not confirmed; lane waits for a redelivery", "key", l.key, "stream_seq", e.seq)
		ls.park(l, e, ls.redeliver, now)
	case settledRetry:
		if ls.maxDeliver > 0 && how.attempt >= uint64(ls.maxDeliver) {
			// The server will not deliver it again: do not wait for it.
			ls.log.Warn("message reached max deliver; lane moves on", "key", l.key, "stream_seq", e.seq, "attempt", how.attempt)
			break
		}
		if how.delay > ls.maxSafeDelay {
			ls.log.Warn("retry delay of an ordered lane exceeds AckWait − KeepAlive; order is not kept if this process crashes",
				"key", l.key, "stream_seq", e.seq, "delay", how.delay, "max_safe", ls.maxSafeDelay)
		}
		ls.park(l, e, how.delay, now)
	}
	// An older message of the key held behind e (it arrived while e was out
	// to its handler) goes first now, even if e is parked: waiting for e's
	// redelivery could wait forever when its handler defers it for that
	// very older message.
	return ls.advance(l)
}

// expire releases the lanes whose parked message has not come back long
// after it was due (it went to another subscriber, was removed from the
// stream or ran out of deliveries), so that a lane cannot stall forever. It
// returns the messages now free to go out.
func (ls *laneSet) expire(now time.Time) (ready []*entry) {
	for l := range ls.parked {
		if !now.After(l.parkGive) {
			continue
		}
		ls.log.Warn("parked message not redelivered; releasing lane", "key", l.key, "stream_seq", l.parked.seq)
		ls.unpark(l)
		if e := ls.advance(l); e != nil {
			ready = append(ready, e)
		}
	}
	slices.SortFunc(ready, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	return ready
}

// dueMargin is how long after its retry delay a parked message counts as
// due here. The server starts the delay when it processes the nak, a little
// after the lane parked, and its redelivery timer may fire late (by up to
// 100 ms while acks pour in). A one-message pull request sent to collect the
// message before the server has queued it would get a new message instead
// and push held messages past their bound.
const dueMargin = 100 * time.Millisecond

// due reports whether a parked message should be back on the server's
// redelivery queue by now.
func (ls *laneSet) due(now time.Time) bool {
	for l := range ls.parked {
		if !now.Before(l.parkDue.Add(dueMargin)) {
			return true
		}
	}
	return false
}

// nextDue returns when the next parked message that is not due yet will be.
func (ls *laneSet) nextDue(now time.Time) (at time.Time, ok bool) {
	for l := range ls.parked {
		if due := l.parkDue.Add(dueMargin); due.After(now) && (!ok || due.Before(at)) {
			at, ok = due, true
		}
	}
	return at, ok
}

// parkedEntries returns the messages the lanes wait for, by stream sequence.
func (ls *laneSet) parkedEntries() []*entry {
	var es []*entry
	for l := range ls.parked {
		es = append(es, l.parked)
	}
	slices.SortFunc(es, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	return es
}

// hold keeps e behind its lane's active or parked message, in stream order.
func (ls *laneSet) hold(l *lane, e *entry) {
	i, _ := slices.BinarySearchFunc(l.held, e.seq, func(h *entry, seq uint64) int { return cmp.Compare(h.seq, seq) })
	l.held = slices.Insert(l.held, i, e)
	ls.held++
}

// park makes l wait for the redelivery of e, expected after delay.
func (ls *laneSet) park(l *lane, e *entry, delay time.Duration, now time.Time) {
	l.parked = e
	l.parkDue = now.Add(delay)
	// If the nak was lost, or the consumer has BackOff, the message comes
	// back at the latest one redelivery period after it was due.
	l.parkGive = l.parkDue.Add(ls.redeliver + ls.grace)
	ls.parked[l] = struct{}{}
}

func (ls *laneSet) unpark(l *lane) {
	l.parked, l.parkDue, l.parkGive = nil, time.Time{}, time.Time{}
	delete(ls.parked, l)
}

// advance returns the next held message of l if the lane is free, and
// forgets the lane once it is empty.
func (ls *laneSet) advance(l *lane) *entry {
	if l.active != nil {
		return nil
	}
	if l.parked != nil && (len(l.held) == 0 || l.held[0].seq > l.parked.seq) {
		// Waiting for the parked message; only older ones go before it.
		return nil
	}
	if len(l.held) == 0 {
		delete(ls.byKey, l.key)
		return nil
	}
	e := l.held[0]
	l.held = l.held[1:]
	ls.held--
	l.active = e
	return e
}
