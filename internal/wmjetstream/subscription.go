package wmjetstream

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/altegio-integrator/integrator/internal/backoff"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// subscription is one Subscribe call: a single loop goroutine owns all of
// its state (entries, lanes, counters); fetch goroutines and one watcher per
// emitted message talk to it through channels.
type subscription struct {
	cfg        SubscriberConfig
	log        *slog.Logger
	cons       jetstream.Consumer
	conn       *nats.Conn
	consumer   string
	maxDeliver int
	ackWait    time.Duration
	redeliver  time.Duration // longest the server takes to redeliver an expired message
	keepAlive  time.Duration
	msgCtx     context.Context // values of the Subscribe context, never cancelled
	out        chan *message.Message

	fetchCh  chan fetchEvent
	settleCh chan settleEvent
	fetchWG  sync.WaitGroup
	watchWG  sync.WaitGroup

	// Loop-owned state.
	now           func() time.Time
	known         map[uint64]*entry // by stream sequence: everything in custody
	lanes         map[string]*lane
	parked        map[*lane]struct{}
	ready         []*entry // to emit, in order
	emitted       int      // out to handlers, not settled
	held          int
	reserved      int // asked for by pull requests in flight, not received
	fetches       int // fetch goroutines running
	closing       bool
	fetchFailures int // fetches that failed in a row
	fetchAfter    time.Time
	// pin is the pin this subscription last received messages under
	// (also read by [Subscriber.Pins], outside the loop).
	pin atomic.Pointer[string]

	// unpin releases the consumer's pin for the priority group, so that
	// another process takes a partition over at once after a clean
	// shutdown instead of after the pinned TTL. Nil without a group.
	unpin func(ctx context.Context) error
}

type entry struct {
	seq     uint64
	key     string
	d       *delivery
	msg     *message.Message // set when emitted
	cancel  context.CancelFunc
	claimed atomic.Bool // whoever claims the entry settles it with the server
	abandon chan struct{}
}

func (e *entry) claim() bool { return e.claimed.CompareAndSwap(false, true) }

// lane is the per-key state with ordered lanes.
type lane struct {
	key      string
	active   *entry        // ready or emitted; at most one per lane
	parkSeq  uint64        // stream sequence the lane waits to see redelivered
	parkMsg  jetstream.Msg // its last delivery, to give it back at shutdown
	parkDue  time.Time     // when the parked message should come back
	parkGive time.Time     // when to stop waiting for it
	held     []*entry      // sorted by stream sequence
}

type fetchEvent struct {
	msg        jetstream.Msg
	done       bool
	unreceived int
	err        error
}

type settleEvent struct {
	e     *entry
	acked bool  // the watcher claimed the entry and sent the ack
	err   error // ack error
}

func newSubscription(cfg SubscriberConfig, topic string, conn *nats.Conn, cons jetstream.Consumer, msgCtx context.Context) *subscription {
	info := cons.CachedInfo()
	ackWait := info.Config.AckWait
	if ackWait <= 0 {
		ackWait = 30 * time.Second
	}
	deadline, redeliver := ackWait, ackWait
	for _, b := range info.Config.BackOff {
		deadline = min(deadline, b)
		redeliver = max(redeliver, b)
	}
	keepAlive := cfg.KeepAlive
	if keepAlive == 0 {
		keepAlive = max(deadline/3, time.Millisecond)
	}
	return &subscription{
		cfg:        cfg,
		log:        cfg.Logger.With("topic", topic, "stream", info.Stream, "consumer", info.Name),
		cons:       cons,
		conn:       conn,
		ackWait:    ackWait,
		consumer:   info.Name,
		maxDeliver: info.Config.MaxDeliver,
		redeliver:  redeliver,
		keepAlive:  keepAlive,
		msgCtx:     msgCtx,
		out:        make(chan *message.Message),
		fetchCh:    make(chan fetchEvent),
		settleCh:   make(chan settleEvent),
		now:        time.Now,
		known:      make(map[uint64]*entry),
		lanes:      make(map[string]*lane),
		parked:     make(map[*lane]struct{}),
	}
}

// run is the loop. It returns after shutdown, with out closed and every
// goroutine it started finished.
func (s *subscription) run(ctx context.Context, closing <-chan struct{}) {
	defer close(s.out)
	keepAlive := time.NewTicker(s.keepAlive)
	defer keepAlive.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()

	for {
		s.maybeFetch()
		if d, ok := s.nextWake(); ok {
			wake.Reset(d)
		}
		var out chan<- *message.Message
		var next *message.Message
		if len(s.ready) > 0 && s.emitted < s.cfg.MaxInFlight {
			next = s.emitMessage(s.ready[0])
			out = s.out
		}
		select {
		case <-ctx.Done():
			s.shutdown(keepAlive.C)
			return
		case <-closing:
			s.shutdown(keepAlive.C)
			return
		case out <- next:
			e := s.ready[0]
			s.ready = s.ready[1:]
			s.emitted++
			s.watchWG.Add(1)
			go s.watch(e)
		case ev := <-s.fetchCh:
			s.onFetch(ev)
		case ev := <-s.settleCh:
			s.onSettle(ev)
		case <-keepAlive.C:
			s.keepAliveAll()
			s.checkParked()
		case <-wake.C:
		}
	}
}

// maybeFetch starts a pull request for the room left in custody. Only one
// pull request is out at a time: the server fills it in delivery order, and
// one goroutine forwards it, so messages reach the loop in that order. With
// two requests the forwarding goroutines could swap two messages of a lane.
//
// Without ordered lanes the room is the free handler slots. With lanes it is
// MaxInFlight + MaxHeld in all, and at most MaxHeld more held: messages whose
// lane is busy are held, and messages whose lane is free wait in ready for a
// handler slot, so a subscription whose handlers are all busy (waiting for a
// rate limit, say) keeps fetching past them, up to its bounds, and sees what
// else is in the stream.
func (s *subscription) maybeFetch() {
	if s.closing || s.fetches > 0 || s.now().Before(s.fetchAfter) {
		return
	}
	inCustody := s.emitted + len(s.ready) + s.reserved
	n := s.cfg.MaxInFlight - inCustody
	parkedOnly := false // fetching only to collect a parked message
	if s.cfg.KeyFunc != nil {
		// Every fetched message may have to be held.
		n = min(s.cfg.MaxInFlight+s.cfg.MaxHeld-inCustody-s.held, s.cfg.MaxHeld-s.held)
		if s.cfg.MaxHeld < 0 { // hold nothing beyond the free handler slots
			n = s.cfg.MaxInFlight - inCustody - s.held
		}
		if n <= 0 {
			// Custody is at its bound. Fetch only to collect a parked
			// message that has come due, one at a time: the server hands
			// out redeliveries before new messages.
			if !s.parkedDue() {
				return
			}
			n, parkedOnly = 1, true
		}
	}
	if n <= 0 {
		return
	}
	if busy := s.emitted + len(s.ready); busy > 0 && n < (s.cfg.MaxInFlight+1)/2 && !parkedOnly {
		// Pull in batches of at least half the slots while busy: a pull
		// request per freed slot costs more than it gains.
		return
	}
	s.reserved += n
	s.fetches++
	s.fetchWG.Add(1)
	go s.fetch(n)
}

func (s *subscription) parkedDue() bool {
	now := s.now()
	for l := range s.parked {
		if !now.Before(l.parkDue) {
			return true
		}
	}
	return false
}

// nextWake returns when the loop must look again at fetching without any
// other event: after a fetch backoff, or when a parked message comes due
// while held messages are at their bound.
func (s *subscription) nextWake() (time.Duration, bool) {
	if s.closing {
		return 0, false
	}
	now := s.now()
	var at time.Time
	if now.Before(s.fetchAfter) {
		at = s.fetchAfter
	}
	if s.cfg.KeyFunc != nil && (s.held >= s.cfg.MaxHeld || s.emitted+len(s.ready)+s.reserved+s.held >= s.cfg.MaxInFlight+s.cfg.MaxHeld) {
		for l := range s.parked {
			if l.parkDue.After(now) && (at.IsZero() || l.parkDue.Before(at)) {
				at = l.parkDue
			}
		}
	}
	if at.IsZero() {
		return 0, false
	}
	return at.Sub(now), true
}

// fetch runs one pull request and forwards what it receives to the loop.
func (s *subscription) fetch(n int) {
	defer s.fetchWG.Done()
	opts := []jetstream.FetchOpt{jetstream.FetchMaxWait(s.cfg.FetchExpiry)}
	if s.cfg.PriorityGroup != "" {
		opts = append(opts, jetstream.FetchPriorityGroup(s.cfg.PriorityGroup))
	}
	received := 0
	batch, err := s.cons.Fetch(n, opts...)
	if err == nil {
		for m := range batch.Messages() {
			s.fetchCh <- fetchEvent{msg: m}
			received++
		}
		err = batch.Error()
	}
	s.fetchCh <- fetchEvent{done: true, unreceived: n - received, err: err}
}

func (s *subscription) onFetch(ev fetchEvent) {
	if ev.done {
		s.fetches--
		s.reserved -= ev.unreceived
		switch {
		case ev.err == nil || errors.Is(ev.err, nats.ErrTimeout):
			s.fetchFailures = 0
		default:
			s.fetchFailures++
			wait := backoff.Delay(50*time.Millisecond, 5*time.Second, s.fetchFailures)
			s.fetchAfter = s.now().Add(wait)
			s.log.Warn("fetch", "error", ev.err, "retry_in", wait)
		}
		return
	}
	s.reserved--
	s.receive(ev.msg)
}

// receive takes a fetched message into custody.
func (s *subscription) receive(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		s.log.Error("fetched message without jetstream metadata", "subject", m.Subject(), "error", err)
		return
	}
	seq := meta.Sequence.Stream
	if pin := m.Headers().Get(pinIDHeader); pin != "" && pin != s.pinID() {
		s.pin.Store(&pin)
	}
	if e, ok := s.known[seq]; ok {
		// The server redelivered a message we still hold (its ack timer
		// ran out, e.g. while disconnected): settle through the latest
		// delivery from now on.
		e.d.setMsg(m)
		s.log.Debug("redelivered while in custody", "stream_seq", seq, "attempt", meta.NumDelivered)
		return
	}
	e := &entry{seq: seq, d: &delivery{js: m}}
	if s.cfg.KeyFunc != nil {
		e.key = s.cfg.KeyFunc(m.Subject(), m.Headers())
	}
	s.known[seq] = e
	if s.closing {
		// Given back at the end of shutdown through this, its latest,
		// delivery. If it is a parked message that came back, its lane
		// stays parked, and shutdown takes it from known, not parkMsg.
		s.log.Debug("received while closing", "stream_seq", seq, "attempt", meta.NumDelivered)
		return
	}
	if s.cfg.KeyFunc == nil {
		s.ready = append(s.ready, e)
		return
	}
	l := s.lanes[e.key]
	if l == nil {
		l = &lane{key: e.key}
		s.lanes[e.key] = l
	}
	switch {
	case l.parkSeq == seq && l.active == nil && len(l.held) > 0 && l.held[0].seq < seq:
		// Back from its delay while an older message of the key is held:
		// the older one goes first.
		s.unpark(l)
		s.hold(l, e)
		s.advance(l)
	case l.parkSeq == seq && l.active == nil:
		s.unpark(l)
		s.activate(l, e)
	case l.parkSeq == seq:
		// An older message of the key went ahead while this one was away.
		s.unpark(l)
		s.hold(l, e)
	case l.active == nil && l.parkSeq != 0 && seq < l.parkSeq:
		// An older message of the key arrived while a newer one is parked
		// (it was first delivered to another subscriber, e.g. before the
		// consumer's pin moved): in stream order it goes first, and the
		// lane keeps waiting for the parked one.
		s.activate(l, e)
	case l.active != nil || l.parkSeq != 0:
		s.hold(l, e)
	default:
		s.activate(l, e)
	}
}

// hold keeps e behind its lane's active or parked message, in stream order.
func (s *subscription) hold(l *lane, e *entry) {
	i, _ := slices.BinarySearchFunc(l.held, e.seq, func(h *entry, seq uint64) int {
		switch {
		case h.seq < seq:
			return -1
		case h.seq > seq:
			return 1
		}
		return 0
	})
	l.held = slices.Insert(l.held, i, e)
	s.held++
}

func (s *subscription) activate(l *lane, e *entry) {
	l.active = e
	s.ready = append(s.ready, e)
}

func (s *subscription) unpark(l *lane) {
	l.parkSeq, l.parkMsg = 0, nil
	l.parkDue, l.parkGive = time.Time{}, time.Time{}
	delete(s.parked, l)
}

// park makes l wait for the redelivery of m (stream sequence seq), expected
// after delay.
func (s *subscription) park(l *lane, seq uint64, m jetstream.Msg, delay time.Duration) {
	now := s.now()
	l.parkSeq, l.parkMsg = seq, m
	l.parkDue = now.Add(delay)
	// If the nak was lost, or the consumer has BackOff, the message comes
	// back at the latest one redelivery period after it was due.
	l.parkGive = l.parkDue.Add(s.redeliver + s.cfg.FetchExpiry + s.keepAlive)
	s.parked[l] = struct{}{}
}

// advance emits the next held message of l if the lane is free, and forgets
// the lane once it is empty.
func (s *subscription) advance(l *lane) {
	if l.active != nil {
		return
	}
	if l.parkSeq != 0 && (len(l.held) == 0 || l.held[0].seq > l.parkSeq) {
		// Waiting for the parked message; only older ones go before it.
		return
	}
	if len(l.held) == 0 {
		delete(s.lanes, l.key)
		return
	}
	e := l.held[0]
	l.held = l.held[1:]
	s.held--
	s.activate(l, e)
}

// emitMessage builds the Watermill message for e, once.
func (s *subscription) emitMessage(e *entry) *message.Message {
	if e.msg != nil {
		return e.msg
	}
	m := e.d.msg()
	h := m.Headers()
	id := h.Get(UUIDHeader)
	if id == "" {
		id = h.Get(MsgIDKey)
	}
	if id == "" {
		id = watermill.NewUUID()
	}
	msg := message.NewMessage(id, m.Data())
	for k, v := range h {
		if k != UUIDHeader && len(v) > 0 {
			msg.Metadata[k] = v[0]
		}
	}
	if meta, err := m.Metadata(); err == nil {
		e.d.info = DeliveryInfo{
			Stream:       meta.Stream,
			Consumer:     meta.Consumer,
			Subject:      m.Subject(),
			StreamSeq:    meta.Sequence.Stream,
			ConsumerSeq:  meta.Sequence.Consumer,
			NumDelivered: meta.NumDelivered,
			NumPending:   meta.NumPending,
			Timestamp:    meta.Timestamp,
			Key:          e.key,
		}
	}
	ctx, cancel := context.WithCancel(s.msgCtx)
	msg.SetContext(context.WithValue(ctx, deliveryKey{}, e.d))
	e.msg, e.cancel = msg, cancel
	e.abandon = make(chan struct{})
	return msg
}

// watch waits for the handler's Ack or Nack of an emitted message. An ack is
// sent (and confirmed) here, off the loop; a nack is passed to the loop so
// that the lane is parked before the server can redeliver.
func (s *subscription) watch(e *entry) {
	defer s.watchWG.Done()
	var ev settleEvent
	select {
	case <-e.msg.Acked():
		if !e.claim() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AckTimeout)
		err := e.d.msg().DoubleAck(ctx)
		cancel()
		e.cancel()
		ev = settleEvent{e: e, acked: true, err: err}
	case <-e.msg.Nacked():
		ev = settleEvent{e: e}
	case <-e.abandon:
		return
	}
	select {
	case s.settleCh <- ev:
	case <-e.abandon:
	}
}

func (s *subscription) onSettle(ev settleEvent) {
	e := ev.e
	if !ev.acked && !e.claim() {
		return // abandoned at shutdown
	}
	s.emitted--
	delete(s.known, e.seq)
	l := s.lanes[e.key]
	if s.cfg.KeyFunc == nil {
		l = nil
	}
	if l != nil && l.active == e {
		l.active = nil
	}

	if ev.acked {
		if ev.err != nil && !errors.Is(ev.err, jetstream.ErrMsgAlreadyAckd) {
			// The ack may not have reached the server: the message may
			// come back after its ack wait. Keep the lane waiting for it.
			s.log.Warn("ack not confirmed", "stream_seq", e.seq, "error", ev.err)
			if l != nil {
				s.park(l, e.seq, e.d.msg(), s.redeliver)
				return
			}
		}
		if l != nil {
			s.advance(l)
		}
		return
	}

	disp := e.d.seal()
	defer e.cancel()
	m := e.d.msg()
	attempt := e.d.info.NumDelivered
	if disp.kind == dispTerm {
		var err error
		if disp.reason != "" {
			err = m.TermWithReason(disp.reason)
		} else {
			err = m.Term()
		}
		s.log.Debug("term", "stream_seq", e.seq, "attempt", attempt, "reason", disp.reason, "error", err)
		if l != nil {
			s.advance(l)
		}
		return
	}
	delay := disp.delay
	if disp.kind == dispNack {
		delay = s.cfg.NackDelay
	}
	var err error
	if delay > 0 {
		err = m.NakWithDelay(delay)
	} else {
		err = m.Nak()
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		s.log.Warn("nak", "stream_seq", e.seq, "error", err)
		delay = s.redeliver // it comes back when its ack wait runs out
	}
	s.log.Debug("nak", "stream_seq", e.seq, "attempt", attempt, "delay", delay)
	if l == nil {
		return
	}
	if s.maxDeliver > 0 && attempt >= uint64(s.maxDeliver) {
		// The server will not deliver it again: do not wait for it.
		s.log.Warn("message reached max deliver; lane moves on", "stream_seq", e.seq, "key", l.key, "attempt", attempt)
		s.advance(l)
		return
	}
	if safe := s.ackWait - s.keepAlive; delay > safe {
		s.log.Warn("retry delay of an ordered lane exceeds AckWait − KeepAlive; order is not kept if this process crashes",
			"key", l.key, "stream_seq", e.seq, "delay", delay, "max_safe", safe)
	}
	s.park(l, e.seq, m, delay)
	// An older message of the key held behind this one (it arrived while
	// this one was in the handler) goes first now: waiting for this one's
	// redelivery could wait forever when its handler defers it for that
	// very older message.
	s.advance(l)
}

// keepAliveAll sends InProgress for every message in custody.
func (s *subscription) keepAliveAll() {
	for _, e := range s.known {
		if e.claimed.Load() {
			continue
		}
		if err := e.d.msg().InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			s.log.Debug("in progress", "stream_seq", e.seq, "error", err)
		}
	}
}

// checkParked releases lanes whose parked message has not come back long
// after it was due (it went to another client, was removed from the stream
// or ran out of deliveries), so that a lane cannot stall forever.
func (s *subscription) checkParked() {
	now := s.now()
	for l := range s.parked {
		if now.After(l.parkGive) {
			s.log.Warn("parked message not redelivered; releasing lane", "key", l.key, "stream_seq", l.parkSeq)
			s.unpark(l)
			s.advance(l)
		}
	}
}

// shutdown stops fetching, lets pull requests in flight end and handlers
// settle within CloseTimeout, then gives everything still in custody back
// (see handBack) and waits for every goroutine.
func (s *subscription) shutdown(keepAlive <-chan time.Time) {
	s.closing = true
	// Messages waiting to be emitted will not be: they are nacked below.
	// Keep them in known (and their lanes) so they are kept alive meanwhile.
	s.ready = nil
	timeout := time.NewTimer(s.cfg.CloseTimeout)
	defer timeout.Stop()
	timedOut := false
	for s.fetches > 0 || (s.emitted > 0 && !timedOut) {
		select {
		case ev := <-s.fetchCh:
			s.onFetch(ev)
		case ev := <-s.settleCh:
			s.onSettle(ev)
		case <-keepAlive:
			s.keepAliveAll()
		case <-timeout.C:
			timedOut = true
		}
	}
	s.fetchWG.Wait()

	// Abandon what handlers still hold, then give everything back.
	var msgs []givenBack
	for _, e := range s.known {
		if e.abandon != nil {
			close(e.abandon)
		}
		if !e.claim() {
			continue // its watcher is acking it
		}
		if e.cancel != nil {
			e.cancel()
		}
		// The latest delivery: a message the server redelivered while we
		// held it, or a parked one that came back while closing, is only
		// in custody through it.
		msgs = append(msgs, givenBack{seq: e.seq, key: e.key, m: e.d.msg()})
	}
	// A parked message waits on the server for its retry delay. Later
	// messages of its key that were never delivered here would overtake it
	// at the next subscriber, so it is given back now, with the rest (unless
	// it came back while closing: then it is in known).
	for l := range s.parked {
		if _, ok := s.known[l.parkSeq]; !ok {
			msgs = append(msgs, givenBack{seq: l.parkSeq, key: l.key, m: l.parkMsg})
		}
	}
	s.handBack(msgs)
}

// givenBack is a message to nak at shutdown: its latest delivery.
type givenBack struct {
	seq uint64
	key string
	m   jetstream.Msg
}

// handBack gives msgs back to the server and, with a priority group,
// releases the pin, so that the next subscriber gets every key in stream
// order and before anything never delivered.
//
// The server redelivers nacked messages before new ones, from a queue in the
// order it processed the naks — but not while this subscription still holds
// the pin and other clients' pull requests wait (as when every process pulls
// every partition): each time its delivery loop wakes up it takes the head of that
// queue, finds no request it may serve, and puts the message back at the
// tail. The queue rotates, and the next pin holder would get, say, k3..k9
// before k0..k2. So with a pin the messages go back in two steps:
//
//  1. while pinned, the first message in custody of each key (parked,
//     abandoned, waiting or held): one per key, so rotating them cannot
//     reorder a key, and they are queued before any new message;
//  2. once the pin is released (the server now serves the new holder's
//     requests, so the queue no longer rotates), the rest in stream order.
//     They reach the new holder about a round trip after the unpin, while it
//     still has the first message of their key from step 1 in hand, and its
//     lanes hold them behind it, in stream order.
//
// Without a priority group (or without ordered lanes) there is no pin to
// wait for and everything goes back in one step.
func (s *subscription) handBack(msgs []givenBack) {
	var first, rest []givenBack
	if s.cfg.KeyFunc == nil || s.unpin == nil {
		first = msgs
	} else {
		slices.SortFunc(msgs, func(a, b givenBack) int { return cmp.Compare(a.seq, b.seq) })
		seen := make(map[string]bool)
		for _, g := range msgs {
			if seen[g.key] {
				rest = append(rest, g)
				continue
			}
			seen[g.key] = true
			first = append(first, g)
		}
	}
	s.giveBack(first)
	s.watchWG.Wait()
	s.releasePin()
	s.giveBack(rest)
}

// pinID returns the pin this subscription last received messages under,
// or "".
func (s *subscription) pinID() string {
	if p := s.pin.Load(); p != nil {
		return *p
	}
	return ""
}

// pinIDHeader carries, on each message of a pinned consumer, the id of the
// pin it was delivered under.
const pinIDHeader = "Nats-Pin-Id"

// releasePin unpins the consumer if this subscription still holds the pin,
// once the first message of every key it held is back on the server (see
// handBack), so that the next process does not wait for the pinned TTL. If
// another process took the pin meanwhile, it is left alone.
func (s *subscription) releasePin() {
	if s.unpin == nil || s.pinID() == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AckTimeout)
	defer cancel()
	info, err := s.cons.Info(ctx)
	if err != nil {
		s.log.Warn("read pin before unpinning", "error", err)
		return
	}
	if PinnedClient(info, s.cfg.PriorityGroup) != s.pinID() {
		return
	}
	if err := s.unpin(ctx); err != nil {
		s.log.Warn("unpin", "group", s.cfg.PriorityGroup, "error", err)
	}
}

// PinnedClient returns the id of the client pinned in group of the
// consumer described by info, or "" when none is.
func PinnedClient(info *jetstream.ConsumerInfo, group string) string {
	for _, g := range info.PriorityGroups {
		if g.Group == group {
			return g.PinnedClientID
		}
	}
	return ""
}

// Unpin releases the pin of group on consumer of stream, so that the
// server pins the next pull request.
func Unpin(ctx context.Context, js jetstream.JetStream, stream, consumer, group string) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	return st.UnpinConsumer(ctx, consumer, group)
}

// giveBack nacks msgs for immediate redelivery in stream order and waits
// until the server has processed them all, so that a subscriber started
// after Close sees them first (see handBack for the order the server
// redelivers them in).
func (s *subscription) giveBack(msgs []givenBack) {
	if len(msgs) == 0 {
		return
	}
	slices.SortFunc(msgs, func(a, b givenBack) int { return cmp.Compare(a.seq, b.seq) })
	// Raw naks: a message already nacked with a delay (parked) is refused by
	// jetstream.Msg, but the server accepts a second nak while it is pending
	// (through the reply subject of any of its deliveries).
	nak := []byte("-NAK")
	for _, g := range msgs[:len(msgs)-1] {
		if err := s.conn.Publish(g.m.Reply(), nak); err != nil {
			s.log.Warn("nak at shutdown", "stream_seq", g.seq, "error", err)
		}
	}
	// The server answers a nak sent as a request once it has processed it,
	// and it processes a consumer's acks in order.
	last := msgs[len(msgs)-1]
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AckTimeout)
	defer cancel()
	if _, err := s.conn.RequestWithContext(ctx, last.m.Reply(), nak); err != nil {
		s.log.Warn("nak at shutdown", "stream_seq", last.seq, "error", err)
	}
	s.log.Debug("returned messages at shutdown", "count", len(msgs), "first_seq", msgs[0].seq, "last_seq", last.seq)
}
