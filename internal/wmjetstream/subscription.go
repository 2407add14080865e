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
	known         map[uint64]*entry // by stream sequence: everything in custody
	lanes         *laneSet          // nil without ordered lanes
	ready         []*entry          // to emit, in order
	emitted       int               // out to handlers, not settled
	reserved      int               // asked for by pull requests in flight, not received
	fetches       int               // fetch goroutines running
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
	log := cfg.Logger.With("topic", topic, "stream", info.Stream, "consumer", info.Name)
	var lanes *laneSet
	if cfg.KeyFunc != nil {
		lanes = newLaneSet(redeliver, cfg.FetchExpiry+keepAlive, ackWait-keepAlive, info.Config.MaxDeliver, log)
	}
	return &subscription{
		cfg:        cfg,
		log:        log,
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
		known:      make(map[uint64]*entry),
		lanes:      lanes,
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

// maybeFetch starts a pull request of the size fetchSize decides.
func (s *subscription) maybeFetch() {
	if s.closing || s.fetches > 0 || time.Now().Before(s.fetchAfter) {
		return
	}
	c := s.custody()
	parkedDue := s.lanes != nil && laneRoom(s.cfg, c) <= 0 && s.lanes.due(time.Now())
	n := fetchSize(s.cfg, c, parkedDue)
	if n <= 0 {
		return
	}
	s.reserved += n
	s.fetches++
	s.fetchWG.Add(1)
	go s.fetch(n)
}

// custody counts what a subscription holds, to size its pull requests.
type custody struct {
	emitted  int // out to handlers
	ready    int // free to go out, waiting for a handler slot
	reserved int // asked for by the pull request in flight, not received yet
	held     int // behind a busy or parked lane
}

func (s *subscription) custody() custody {
	c := custody{emitted: s.emitted, ready: len(s.ready), reserved: s.reserved}
	if s.lanes != nil {
		c.held = s.lanes.held
	}
	return c
}

// fetchSize returns how many messages the next pull request asks for, 0
// for none. Only one pull request is out at a time: the server fills it in
// delivery order, and one goroutine forwards it, so messages reach the loop
// in that order. With two requests the forwarding goroutines could swap two
// messages of a lane.
//
// Without ordered lanes the room is the free handler slots. With lanes it is
// MaxInFlight + MaxHeld in all, and at most MaxHeld more held: messages whose
// lane is busy are held, and messages whose lane is free wait in ready for a
// handler slot, so a subscription whose handlers are all busy (waiting for a
// rate limit, say) keeps fetching past them, up to its bounds, and sees what
// else is in the stream. With custody at its bound, it fetches one message
// at a time only to collect a parked message that has come due (parkedDue):
// the server hands out redeliveries before new messages.
func fetchSize(cfg SubscriberConfig, c custody, parkedDue bool) int {
	n := cfg.MaxInFlight - (c.emitted + c.ready + c.reserved)
	if cfg.KeyFunc != nil {
		n = laneRoom(cfg, c)
		if n <= 0 && parkedDue {
			return 1
		}
	}
	if n <= 0 {
		return 0
	}
	if busy := c.emitted + c.ready; busy > 0 && n < (cfg.MaxInFlight+1)/2 {
		// Pull in batches of at least half the slots while busy: a pull
		// request per freed slot costs more than it gains.
		return 0
	}
	return n
}

// laneRoom is how many more messages a subscription with ordered lanes may
// take into custody: every one of them may have to be held.
func laneRoom(cfg SubscriberConfig, c custody) int {
	inCustody := c.emitted + c.ready + c.reserved
	if cfg.MaxHeld < 0 { // hold nothing beyond the free handler slots
		return cfg.MaxInFlight - inCustody - c.held
	}
	return min(cfg.MaxInFlight+cfg.MaxHeld-inCustody-c.held, cfg.MaxHeld-c.held)
}

// nextWake returns when the loop must look again at fetching without any
// other event: after a fetch backoff, or when a parked message comes due
// while custody is at its bound.
func (s *subscription) nextWake() (time.Duration, bool) {
	if s.closing {
		return 0, false
	}
	now := time.Now()
	var at time.Time
	if now.Before(s.fetchAfter) {
		at = s.fetchAfter
	}
	if s.lanes != nil && laneRoom(s.cfg, s.custody()) <= 0 {
		if due, ok := s.lanes.nextDue(now); ok && (at.IsZero() || due.Before(at)) {
			at = due
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
			s.fetchAfter = time.Now().Add(wait)
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
		// stays parked, and shutdown takes it from known, not from the lane.
		s.log.Debug("received while closing", "stream_seq", seq, "attempt", meta.NumDelivered)
		return
	}
	if s.lanes == nil {
		s.ready = append(s.ready, e)
		return
	}
	if next := s.lanes.receive(e); next != nil {
		s.ready = append(s.ready, next)
	}
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
	how := settlement{kind: settledDone}
	switch {
	case ev.acked && ev.err != nil && !errors.Is(ev.err, jetstream.ErrMsgAlreadyAckd):
		// The ack may not have reached the server: the message may come
		// back after its ack wait.
		s.log.Warn("ack not confirmed", "stream_seq", e.seq, "error", ev.err)
		how.kind = settledUnconfirmed
	case !ev.acked:
		how = s.settleNacked(e)
	}
	if s.lanes != nil {
		if next := s.lanes.settled(e, how, time.Now()); next != nil {
			s.ready = append(s.ready, next)
		}
	}
}

// settleNacked tells the server what the handler asked for when it nacked
// e: terminate it, or redeliver it after a delay.
func (s *subscription) settleNacked(e *entry) settlement {
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
		return settlement{kind: settledDone}
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
	return settlement{kind: settledRetry, delay: delay, attempt: attempt}
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

// checkParked releases the lanes that waited too long for a parked
// message (see laneSet.expire).
func (s *subscription) checkParked() {
	if s.lanes != nil {
		s.ready = append(s.ready, s.lanes.expire(time.Now())...)
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
	if s.lanes != nil {
		for _, e := range s.lanes.parkedEntries() {
			if _, ok := s.known[e.seq]; !ok {
				msgs = append(msgs, givenBack{seq: e.seq, key: e.key, m: e.d.msg()})
			}
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
	first, rest := handBackOrder(msgs, s.lanes != nil && s.unpin != nil)
	s.giveBack(first)
	s.watchWG.Wait()
	s.releasePin()
	s.giveBack(rest)
}

// handBackOrder splits msgs into the two steps of handBack, each in stream
// order. With pinned lanes, first holds the oldest message of each key and
// rest the others; otherwise first holds them all.
func handBackOrder(msgs []givenBack, pinnedLanes bool) (first, rest []givenBack) {
	msgs = slices.SortedFunc(slices.Values(msgs), func(a, b givenBack) int { return cmp.Compare(a.seq, b.seq) })
	if !pinnedLanes {
		return msgs, nil
	}
	seen := make(map[string]bool)
	for _, g := range msgs {
		if seen[g.key] {
			rest = append(rest, g)
			continue
		}
		seen[g.key] = true
		first = append(first, g)
	}
	return first, rest
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

// giveBack nacks msgs (in stream order, see handBackOrder) for immediate
// redelivery and waits until the server has processed them all, so that a
// subscriber started after Close sees them first (see handBack for the
// order the server redelivers them in).
func (s *subscription) giveBack(msgs []givenBack) {
	if len(msgs) == 0 {
		return
	}
	for _, g := range msgs[:len(msgs)-1] {
		if err := renak(context.Background(), s.conn, g.m, false); err != nil {
			s.log.Warn("nak at shutdown", "stream_seq", g.seq, "error", err)
		}
	}
	// The server answers a nak sent as a request once it has processed it,
	// and it processes a consumer's acks in order.
	last := msgs[len(msgs)-1]
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AckTimeout)
	defer cancel()
	if err := renak(ctx, s.conn, last.m, true); err != nil {
		s.log.Warn("nak at shutdown", "stream_seq", last.seq, "error", err)
	}
	s.log.Debug("returned messages at shutdown", "count", len(msgs), "first_seq", msgs[0].seq, "last_seq", last.seq)
}

// renak asks the server to redeliver m at once, even if it was already
// nacked with a delay: it is the one place the subscriber settles a message
// outside jetstream.Msg. A parked message was nacked with a delay, and
// jetstream.Msg refuses to settle a message twice (ErrMsgAlreadyAckd), but
// the server accepts another nak on the reply subject of any delivery of a
// message while it is pending. With confirm, renak waits (within ctx) until
// the server has processed the nak; without, it only publishes it.
func renak(ctx context.Context, conn *nats.Conn, m jetstream.Msg, confirm bool) error {
	nak := []byte("-NAK")
	if !confirm {
		return conn.Publish(m.Reply(), nak)
	}
	_, err := conn.RequestWithContext(ctx, m.Reply(), nak)
	return err
}
