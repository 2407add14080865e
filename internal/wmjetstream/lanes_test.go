package wmjetstream_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// subjectKey keys lanes by the last subject token: t.lanes.<key>.
func subjectKey(subject string, _ nats.Header) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// seqMsg is message i of key k; its payload is i.
func seqMsg(k string, i int) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)))
	msg.Metadata.Set("key", k)
	return msg
}

// laneLog records what handlers saw, and checks that no key ever has two
// messages in handlers at once.
type laneLog struct {
	mu          sync.Mutex
	seen        map[string][]int // per key, payloads in handling order (first success only)
	done        map[string]bool  // by UUID: idempotent bookkeeping
	duplicates  int
	active      map[string]int
	overlap     []string
	inFlight    int
	maxInFlight int
}

func newLaneLog() *laneLog {
	return &laneLog{seen: map[string][]int{}, done: map[string]bool{}, active: map[string]int{}}
}

func (l *laneLog) start(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active[key]++
	if l.active[key] > 1 {
		l.overlap = append(l.overlap, key)
	}
	l.inFlight++
	l.maxInFlight = max(l.maxInFlight, l.inFlight)
}

// finish records a successful handling of msg and ends it.
func (l *laneLog) finish(key string, msg *message.Message, success bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active[key]--
	l.inFlight--
	if !success {
		return
	}
	if l.done[msg.UUID] {
		l.duplicates++
		return
	}
	l.done[msg.UUID] = true
	i, _ := strconv.Atoi(string(msg.Payload))
	l.seen[key] = append(l.seen[key], i)
}

func (l *laneLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.done)
}

// checkOrder fails unless every key saw 0..perKey-1 in order.
func (l *laneLog) checkOrder(t *testing.T, keys, perKey int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.overlap) > 0 {
		t.Errorf("keys with two messages in handlers at once: %v", l.overlap)
	}
	if got, want := len(l.seen), keys; got != want {
		t.Errorf("%d keys handled, want %d", got, want)
	}
	for k, got := range l.seen {
		for i, v := range got {
			if v != i {
				t.Errorf("key %s handled in order %v", k, got)
				break
			}
		}
		if len(got) != perKey {
			t.Errorf("key %s: %d messages handled, want %d", k, len(got), perKey)
		}
	}
}

func publishInterleaved(t *testing.T, pub *wmjetstream.Publisher, keys, perKey int) {
	t.Helper()
	for i := range perKey {
		for k := range keys {
			key := "k" + strconv.Itoa(k)
			publish(t, pub, "t.lanes."+key, seqMsg(key, i))
		}
	}
}

func TestOrderedLanes(t *testing.T) {
	const keys, perKey = 50, 20
	_, js := startJetStream(t)
	pub := newPublisher(t, js)
	sub := newSubscriber(t, js, wmjetstream.SubscriberConfig{
		SubjectFunc: func(string) string { return "t.lanes.*" },
		KeyFunc:     subjectKey,
		MaxInFlight: 16,
	})
	publishInterleaved(t, pub, keys, perKey)

	log := newLaneLog()
	runRouter(t, sub, "lanes", func(msg *message.Message) error {
		key := msg.Metadata.Get("key")
		if info, _ := wmjetstream.Delivery(msg); info.Key != key {
			return fmt.Errorf("delivery key %q, want %q", info.Key, key)
		}
		log.start(key)
		<-time.After(time.Duration(rand.IntN(3000)) * time.Microsecond)
		log.finish(key, msg, true)
		return nil
	})

	testenv.WaitFor(t, 60*time.Second, func() error {
		if n := log.count(); n < keys*perKey {
			return fmt.Errorf("%d of %d handled", n, keys*perKey)
		}
		return nil
	})
	log.checkOrder(t, keys, perKey)
	if log.maxInFlight < 2 {
		t.Errorf("at most %d handlers at once, want parallelism across keys", log.maxInFlight)
	}
	if log.maxInFlight > 16 {
		t.Errorf("%d handlers at once, MaxInFlight is 16", log.maxInFlight)
	}
	if log.duplicates != 0 {
		t.Errorf("%d duplicate deliveries", log.duplicates)
	}
}

// TestParkedLane retries the first message of key a twice. Later messages of
// a are held until it succeeds, while key b runs through; the held messages
// are kept alive past AckWait and never redelivered.
func TestParkedLane(t *testing.T) {
	const (
		ackWait = 1500 * time.Millisecond
		delay   = 900 * time.Millisecond // < AckWait − KeepAlive
	)
	_, js := startJetStream(t)
	pub := newPublisher(t, js)
	sub := newSubscriber(t, js, wmjetstream.SubscriberConfig{
		SubjectFunc: func(string) string { return "t.lanes.*" },
		KeyFunc:     subjectKey,
		AckWait:     ackWait,
	})
	for i := range 3 {
		publish(t, pub, "t.lanes.a", seqMsg("a", i))
	}
	for i := range 5 {
		publish(t, pub, "t.lanes.b", seqMsg("b", i))
	}

	type event struct {
		key     string
		i       int
		attempt uint64
	}
	var mu sync.Mutex
	var events []event
	snapshot := func() []event {
		mu.Lock()
		defer mu.Unlock()
		return append([]event(nil), events...)
	}
	runRouter(t, sub, "parking", func(msg *message.Message) error {
		info, _ := wmjetstream.Delivery(msg)
		i, _ := strconv.Atoi(string(msg.Payload))
		key := msg.Metadata.Get("key")
		mu.Lock()
		events = append(events, event{key: key, i: i, attempt: info.NumDelivered})
		mu.Unlock()
		if key == "a" && i == 0 && info.NumDelivered < 3 {
			wmjetstream.Retry(msg, delay)
		}
		return nil
	})

	// All of b is handled while a0 is parked: a1 has not been handled.
	testenv.WaitFor(t, 10*time.Second, func() error {
		nb := 0
		for _, e := range snapshot() {
			if e.key == "b" {
				nb++
			}
		}
		if nb < 5 {
			return fmt.Errorf("%d of 5 b messages handled", nb)
		}
		return nil
	})
	for _, e := range snapshot() {
		if e.key == "a" && e.i > 0 {
			t.Fatalf("a%d handled while a0 was parked: %+v", e.i, snapshot())
		}
	}

	testenv.WaitFor(t, 20*time.Second, func() error {
		if n := len(snapshot()); n < 3+2+5 {
			return fmt.Errorf("%d of 10 handlings", n)
		}
		return nil
	})
	var a []event
	for _, e := range snapshot() {
		if e.key == "a" {
			a = append(a, e)
		}
	}
	want := []event{{"a", 0, 1}, {"a", 0, 2}, {"a", 0, 3}, {"a", 1, 1}, {"a", 2, 1}}
	if fmt.Sprint(a) != fmt.Sprint(want) {
		t.Errorf("key a handled as %v, want %v", a, want)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		info := consumerInfo(t, js, "parking")
		if info.NumAckPending != 0 {
			return fmt.Errorf("%d pending ack", info.NumAckPending)
		}
		// Only a0 was redelivered: a1 and a2 were held past AckWait
		// without expiring.
		if info.NumRedelivered != 0 && info.NumRedelivered != 1 {
			return fmt.Errorf("%d messages redelivered, want only a0", info.NumRedelivered)
		}
		return nil
	})
}

// TestCloseLosesNothing closes a subscriber in the middle of a run with
// parked lanes, then finishes with a new subscriber on a new connection:
// every message is handled exactly once, in order per key.
func TestCloseLosesNothing(t *testing.T) {
	const keys, perKey = 20, 10
	url, js := startJetStream(t)
	pub := newPublisher(t, js)
	publishInterleaved(t, pub, keys, perKey)

	log := newLaneLog()
	handle := func(msg *message.Message) {
		key := msg.Metadata.Get("key")
		info, _ := wmjetstream.Delivery(msg)
		log.start(key)
		<-time.After(time.Duration(rand.IntN(5000)) * time.Microsecond)
		if i, _ := strconv.Atoi(string(msg.Payload)); i%4 == 1 && info.NumDelivered == 1 {
			log.finish(key, msg, false)
			wmjetstream.Retry(msg, 300*time.Millisecond)
			return
		}
		log.finish(key, msg, true)
		msg.Ack()
	}
	cfg := wmjetstream.SubscriberConfig{
		SubjectFunc:  func(string) string { return "t.lanes.*" },
		KeyFunc:      subjectKey,
		MaxInFlight:  8,
		CloseTimeout: 5 * time.Second,
	}
	consume := func(sub *wmjetstream.Subscriber) *sync.WaitGroup {
		ch := subscribe(t, sub, "close")
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range ch {
				wg.Add(1)
				go func() {
					defer wg.Done()
					handle(msg)
				}()
			}
		}()
		return &wg
	}

	sub1 := newSubscriber(t, js, cfg)
	wg1 := consume(sub1)
	testenv.WaitFor(t, 30*time.Second, func() error {
		if n := log.count(); n < keys*perKey/3 {
			return fmt.Errorf("%d handled", n)
		}
		return nil
	})
	if err := sub1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	wg1.Wait()
	if n := log.count(); n >= keys*perKey {
		t.Fatalf("all %d handled before Close; the test needs work in flight", n)
	}

	_, js2 := testenv.Connect(t, url)
	sub2 := newSubscriber(t, js2, cfg)
	wg2 := consume(sub2)
	testenv.WaitFor(t, 60*time.Second, func() error {
		if n := log.count(); n < keys*perKey {
			return fmt.Errorf("%d of %d handled", n, keys*perKey)
		}
		return nil
	})
	log.checkOrder(t, keys, perKey)
	if log.duplicates != 0 {
		t.Errorf("%d messages handled twice", log.duplicates)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		info := consumerInfo(t, js, "close")
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("ack pending %d, pending %d", info.NumAckPending, info.NumPending)
		}
		return nil
	})
	if err := sub2.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	wg2.Wait()
}

// TestPriorityGroupPinsOneSubscriber: two subscribers on one consumer with a
// pinned priority group; all messages go to one of them.
func TestPriorityGroupPinsOneSubscriber(t *testing.T) {
	_, js := startJetStream(t)
	pub := newPublisher(t, js)
	cfg := wmjetstream.SubscriberConfig{PriorityGroup: "workers", KeyFunc: subjectKey}
	var mu sync.Mutex
	counts := map[int]int{}
	for i := range 2 {
		ch := subscribe(t, newSubscriber(t, js, cfg), "t.pinned")
		go func() {
			for msg := range ch {
				mu.Lock()
				counts[i]++
				mu.Unlock()
				msg.Ack()
			}
		}()
	}
	for i := range 20 {
		publish(t, pub, "t.pinned", seqMsg("p", i))
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if counts[0]+counts[1] < 20 {
			return fmt.Errorf("%d of 20 received", counts[0]+counts[1])
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if counts[0] != 0 && counts[1] != 0 {
		t.Fatalf("both subscribers received messages: %v", counts)
	}
}

// TestMaxHeldStopsFetching parks key a with MaxHeld 3 on a consumer that
// would hand out more: the subscriber holds at most 3 messages behind the
// parked one and fetches no more until it is back, then finishes in order.
func TestMaxHeldStopsFetching(t *testing.T) {
	const maxHeld = 3
	_, js := startJetStream(t)
	pub := newPublisher(t, js)
	base := wmjetstream.SubscriberConfig{
		Stream:      testStream,
		SubjectFunc: func(string) string { return "t.lanes.*" },
		MaxInFlight: 4,
		MaxHeld:     maxHeld,
		AckWait:     30 * time.Second,
	}
	sub := newSubscriber(t, js, wmjetstream.SubscriberConfig{
		SubjectFunc: base.SubjectFunc,
		KeyFunc:     subjectKey,
		MaxInFlight: base.MaxInFlight,
		MaxHeld:     maxHeld,
		ConsumerConfig: func(topic string) jetstream.ConsumerConfig {
			cc := base.DefaultConsumerConfig(topic)
			cc.MaxAckPending = 1000 // only the subscriber bounds what it holds
			return cc
		},
	})
	for i := range 10 {
		publish(t, pub, "t.lanes.a", seqMsg("a", i))
	}
	log := newLaneLog()
	release := make(chan struct{})
	pendingAtReturn := make(chan uint64, 1)
	runRouter(t, sub, "held", func(msg *message.Message) error {
		info, _ := wmjetstream.Delivery(msg)
		key := msg.Metadata.Get("key")
		log.start(key)
		i, _ := strconv.Atoi(string(msg.Payload))
		if i == 0 && info.NumDelivered == 1 {
			log.finish(key, msg, false)
			wmjetstream.Retry(msg, time.Second)
			close(release)
			return nil
		}
		if i == 0 {
			pendingAtReturn <- info.NumPending
		}
		log.finish(key, msg, true)
		return nil
	})

	<-release
	// a0 parked on the server, a1..a3 held: 4 delivered and pending.
	testenv.WaitFor(t, 5*time.Second, func() error {
		if info := consumerInfo(t, js, "held"); info.NumAckPending != 1+maxHeld {
			return fmt.Errorf("%d pending ack, want %d", info.NumAckPending, 1+maxHeld)
		}
		return nil
	})
	// Nothing more was fetched while a0 was parked: when it comes back,
	// the six messages after a3 have not been delivered yet.
	if n := <-pendingAtReturn; n != 10-(1+maxHeld) {
		t.Errorf("a0 came back with %d messages not delivered yet, want %d", n, 10-(1+maxHeld))
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		if n := log.count(); n < 10 {
			return fmt.Errorf("%d of 10 handled", n)
		}
		return nil
	})
	log.checkOrder(t, 1, 10)
}

// TestBusyHandlersDoNotStopFetching: while every lane's handler is busy
// for a long time (as when commands wait for a rate limit), the
// subscription still fetches past them, so a message of another key
// further down the stream is handled as soon as a handler slot is free,
// without waiting for the busy ones.
func TestBusyHandlersDoNotStopFetching(t *testing.T) {
	_, js := startJetStream(t)
	pub := newPublisher(t, js)
	sub := newSubscriber(t, js, wmjetstream.SubscriberConfig{
		SubjectFunc: func(string) string { return "t.lanes.*" },
		KeyFunc:     subjectKey,
		MaxInFlight: 4,
		MaxHeld:     20,
		AckWait:     30 * time.Second,
	})
	// a, b and c each start a lane that blocks, with more behind them.
	for i := range 5 {
		for _, k := range []string{"a", "b", "c"} {
			publish(t, pub, "t.lanes."+k, seqMsg(k, i))
		}
	}
	publish(t, pub, "t.lanes.d", seqMsg("d", 0))
	release := make(chan struct{})
	handledD := make(chan struct{})
	runRouter(t, sub, "busy", func(msg *message.Message) error {
		switch msg.Metadata.Get("key") {
		case "d":
			close(handledD)
		default:
			<-release
		}
		msg.Ack()
		return nil
	})
	select {
	case <-handledD:
	case <-time.After(10 * time.Second):
		t.Fatal("d was not handled while a, b and c were busy: fetching stopped behind busy handlers")
	}
	close(release)
}

// TestOlderMessageGoesBeforeDeferredNewer: a key's newer message is in a
// handler when its older message arrives (the older one was with another
// subscriber, as after a crash or a hand-back); the newer one is then
// deferred. The older one must run next, not wait behind the newer one's
// redeliveries (which, with a handler that defers while an older message
// is pending, never ends: a per-key livelock).
func TestOlderMessageGoesBeforeDeferredNewer(t *testing.T) {
	_, js := startJetStream(t)
	pub := newPublisher(t, js)
	for i := range 2 {
		publish(t, pub, "t.lanes.k", seqMsg("k", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc := jetstream.ConsumerConfig{Durable: "ooo", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		FilterSubject: "t.lanes.>", MaxAckPending: 100}
	cons, err := js.CreateOrUpdateConsumer(ctx, testStream, cc)
	if err != nil {
		t.Fatal(err)
	}
	// Another process holds the older message, k0.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var older jetstream.Msg
	for m := range batch.Messages() {
		older = m
	}
	if older == nil || string(older.Data()) != "0" {
		t.Fatalf("the other process got %v, want k0", older)
	}

	sub := newSubscriber(t, js, wmjetstream.SubscriberConfig{
		SubjectFunc:    func(string) string { return "t.lanes.*" },
		KeyFunc:        subjectKey,
		MaxInFlight:    4,
		ConsumerConfig: func(string) jetstream.ConsumerConfig { return cc },
	})
	var (
		mu    sync.Mutex
		order []string
	)
	runRouter(t, sub, "ooo", func(msg *message.Message) error {
		info, _ := wmjetstream.Delivery(msg)
		mu.Lock()
		order = append(order, string(msg.Payload))
		mu.Unlock()
		if string(msg.Payload) == "1" && info.NumDelivered == 1 {
			// k1 is in a handler: the other process gives k0 back, and
			// k0 reaches this subscriber, behind k1.
			if err := older.Nak(); err != nil {
				t.Errorf("nak k0: %v", err)
			}
			testenv.WaitFor(t, 10*time.Second, func() error {
				if info := consumerInfo(t, js, "ooo"); info.NumRedelivered < 1 || info.NumAckPending < 2 {
					return fmt.Errorf("k0 not redelivered here yet: %+v", info)
				}
				return nil
			})
			// Defer k1, as the worker does while an older command of
			// its client is pending.
			wmjetstream.Retry(msg, 300*time.Millisecond)
			return nil
		}
		msg.Ack()
		return nil
	})
	testenv.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(order) < 3 {
			return fmt.Errorf("handled %v", order)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order[:3], []string{"1", "0", "1"}) {
		t.Errorf("handled %v, want k1 (deferred), then k0, then k1 again", order)
	}
}
