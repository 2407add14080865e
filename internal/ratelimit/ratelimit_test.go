package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/altegio-integrator/integrator/internal/testenv"
)

// bucket creates the shared KV bucket on a fresh server and returns a
// function that opens it over a new connection, as a separate worker
// process would.
func bucket(t *testing.T) (*testenv.NATS, func() jetstream.KeyValue) {
	t.Helper()
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "ratelimit", TTL: time.Hour}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return n, func() jetstream.KeyValue {
		_, js := testenv.Connect(t, n.URL())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, "ratelimit")
		if err != nil {
			t.Fatalf("open bucket: %v", err)
		}
		return kv
	}
}

// newLimiter returns a started limiter that is closed with the test.
func newLimiter(t *testing.T, kv jetstream.KeyValue, cfg Config) *Limiter {
	t.Helper()
	l, err := New(kv, cfg)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

// maxInWindow returns the largest number of times that fall into any
// half-open window [t, t+w).
func maxInWindow(times []time.Time, w time.Duration) int {
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	best, j := 0, 0
	for i := range times {
		for times[i].Sub(times[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// send waits for a slot of flow and "sends" at the moment the slot's check
// passes, waiting again after a late slot as the API client does. It
// returns the send time.
func send(ctx context.Context, l *Limiter, flow string) (time.Time, error) {
	for {
		check, err := l.Wait(ctx, flow, false)
		if err != nil {
			return time.Time{}, err
		}
		if check() {
			return time.Now(), nil
		}
	}
}

// sendAll sends n requests on each limiter concurrently and returns the
// send times.
func sendAll(t *testing.T, lims []*Limiter, n int) []time.Time {
	t.Helper()
	var (
		mu    sync.Mutex
		times []time.Time
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, l := range lims {
		for k := range n {
			wg.Go(func() {
				at, err := send(ctx, l, fmt.Sprint("loc-", (i+k)%3))
				if err != nil {
					t.Errorf("send: %v", err)
					return
				}
				mu.Lock()
				times = append(times, at)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return times
}

// TestSharedBudgetAcrossProcesses checks the times requests are actually
// sent (when the slot's check passes), not the booked slots: what the API
// counts is what arrives.
func TestSharedBudgetAcrossProcesses(t *testing.T) {
	_, open := bucket(t)
	var lims []*Limiter
	for range 3 { // three worker processes, each with its own connection
		lims = append(lims, newLimiter(t, open(), Config{PerSecond: 20, PerMinute: -1}))
	}
	times := sendAll(t, lims, 15)
	if got := len(times); got != 45 {
		t.Fatalf("sent %d, want 45", got)
	}
	if got := maxInWindow(times, time.Second); got > 20 {
		t.Errorf("%d requests in one second, want at most 20", got)
	}
}

// TestLeasesCostFarLessThanOneRoundTripPerRequest: at a high budget a
// process leases runs of slots, so the shared schedule is written far less
// often than once per request.
func TestLeasesCostFarLessThanOneRoundTripPerRequest(t *testing.T) {
	_, open := bucket(t)
	var lims []*Limiter
	for range 2 {
		lims = append(lims, newLimiter(t, open(), Config{PerSecond: 2000, PerMinute: -1}))
	}
	times := sendAll(t, lims, 1000)
	if got := maxInWindow(times, time.Second); got > 2000 {
		t.Errorf("%d requests in one second, want at most 2000", got)
	}
	leases := testutil.ToFloat64(lims[0].m.leases) + testutil.ToFloat64(lims[1].m.leases)
	if leases > float64(len(times))/10 {
		t.Errorf("%v leases for %d requests, want at most one per 10 requests", leases, len(times))
	}
}

// TestScheduleKeepsBothWindows books slots for callers that all arrive at
// once and checks the schedule against both documented limits.
func TestScheduleKeepsBothWindows(t *testing.T) {
	start := time.Unix(1000, 0).UnixNano()
	l := newLimiter(t, nil, Config{})
	var s state
	var times []time.Time
	for range 1000 {
		var out []slot
		s, out = l.book(s, start, 1, 20*time.Millisecond)
		times = append(times, time.Unix(0, out[0].at))
	}
	if got := maxInWindow(slices.Clone(times), time.Second); got != 5 {
		t.Errorf("max in one second = %d, want 5", got)
	}
	if got := maxInWindow(slices.Clone(times), time.Minute); got != 200 {
		t.Errorf("max in one minute = %d, want 200", got)
	}
	// 1000 requests need five full minutes, and not much more.
	if got := times[999].Sub(time.Unix(0, start)); got < 4*time.Minute || got > 5*time.Minute+10*time.Second {
		t.Errorf("1000th request at +%v, want between 4 minutes and 5 minutes 10 s", got)
	}
	// Paced: no pause is longer than about MinuteBurst intervals (no 20 s
	// stall once 200 were spent).
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap > 1600*time.Millisecond {
			t.Fatalf("gap of %v before request %d: the minute's budget was not paced", gap, i)
		}
	}
}

// TestLeaseStaysWithinHorizon: a lease reaches at most LeaseHorizon ahead,
// so a process with a long queue does not hold slots others wait behind.
func TestLeaseStaysWithinHorizon(t *testing.T) {
	now := time.Unix(1000, 0).UnixNano()
	l := newLimiter(t, nil, Config{PerSecond: 5, PerMinute: 200})
	s, out := l.book(state{}, now, 100, 20*time.Millisecond)
	if len(out) != 5 {
		t.Fatalf("first lease got %d slots, want the 5 free now", len(out))
	}
	_, out = l.book(s, now, 100, 20*time.Millisecond)
	if len(out) != 1 {
		t.Fatalf("second lease got %d slots, want 1 (the next is a second away)", len(out))
	}
	if got := time.Duration(out[0].at - now); got != time.Second+20*time.Millisecond {
		t.Errorf("next slot at +%v, want +1.02s", got)
	}
}

// TestLargestMarginBindsEveryProcess: a process that measured more send
// jitter makes every process book with its margin until it lapses.
func TestLargestMarginBindsEveryProcess(t *testing.T) {
	now := time.Unix(1000, 0).UnixNano()
	l := newLimiter(t, nil, Config{PerSecond: 1, PerMinute: -1})
	s, _ := l.book(state{}, now, 1, 200*time.Millisecond) // a jittery process
	s, out := l.book(s, now, 1, 20*time.Millisecond)
	if got := time.Duration(out[0].at - now); got != 1200*time.Millisecond {
		t.Errorf("slot at +%v, want +1.2s (the larger margin)", got)
	}
	later := now + int64(marginTTL) + int64(time.Second)
	s, _ = l.book(s, later, 1, 20*time.Millisecond)
	if got := time.Duration(s.Margin); got != 20*time.Millisecond {
		t.Errorf("margin after the larger one lapsed = %v, want 20ms", got)
	}
}

// TestLateSlotIsNotSent: a slot whose check comes later than half the
// margin is refused, and the margin grows to cover the measured lateness.
func TestLateSlotIsNotSent(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(t, nil, Config{Now: func() time.Time { return now }})
	check := l.sendCheck(slot{at: now.Add(-5 * time.Millisecond).UnixNano(), margin: 20 * time.Millisecond})
	if !check() {
		t.Fatal("slot 5ms late with margin 20ms refused, want sent")
	}
	if check() {
		t.Error("second check of one slot passed, want a slot to be sent once")
	}
	late := l.sendCheck(slot{at: now.Add(-80 * time.Millisecond).UnixNano(), margin: 20 * time.Millisecond})
	if late() {
		t.Fatal("slot 80ms late with margin 20ms sent, want refused")
	}
	if got := testutil.ToFloat64(l.m.dropped.WithLabelValues("late")); got != 1 {
		t.Errorf("late drops = %v, want 1", got)
	}
	l.mu.Lock()
	got := l.margin
	l.mu.Unlock()
	if got != 160*time.Millisecond {
		t.Errorf("margin after 80ms lateness = %v, want 160ms", got)
	}
}

// TestFairnessAcrossFlows: a single request at one location goes with one
// of the next slots although another location has a long queue, and
// weights share the budget. The queues are filled while a penalty holds
// every slot back, and the test takes the dispatcher's place.
func TestFairnessAcrossFlows(t *testing.T) {
	now := time.Now
	l := newLimiter(t, nil, Config{PerSecond: 100, PerMinute: -1, Weights: map[string]float64{"a": 2}})
	l.Penalize(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		order []string
		wg    sync.WaitGroup
	)
	start := func(flow string, n int) {
		for range n {
			wg.Go(func() {
				if _, err := l.Wait(ctx, flow, false); err != nil {
					t.Errorf("wait: %v", err)
				}
			})
		}
		testenv.WaitFor(t, 10*time.Second, func() error {
			if got := queued(l, Commands, flow); got < n {
				return fmt.Errorf("flow %s not queued yet", flow)
			}
			return nil
		})
	}
	start("a", 60)
	start("b", 30)
	// Hand the slots out in the dispatcher's order, recorded as it goes.
	l.mu.Lock()
	for l.queue.n > 0 {
		w := l.nextLocked()
		order = append(order, w.flow)
		w.ready <- slot{at: now().UnixNano(), margin: time.Second}
	}
	l.mu.Unlock()
	wg.Wait()
	// a (weight 2) and b (weight 1) share the slots 2:1 while both wait,
	// and b's first request is among the first three.
	if got := slices.Index(order, "b"); got < 0 || got > 2 {
		t.Errorf("b's first request went as number %d, want among the first three (order %v)", got+1, order)
	}
	a := 0
	for _, f := range order[:60] {
		if f == "a" {
			a++
		}
	}
	if a < 38 || a > 42 {
		t.Errorf("a got %d of the first 60 slots, want about 40 (weight 2 vs 1; order %v)", a, order)
	}
}

func TestPenalizeDelaysEveryone(t *testing.T) {
	_, open := bucket(t)
	a := newLimiter(t, open(), Config{PerSecond: 50, PerMinute: -1})
	b := newLimiter(t, open(), Config{PerSecond: 50, PerMinute: -1})
	start := time.Now()
	a.Penalize(400 * time.Millisecond)
	if _, err := send(context.Background(), b, ""); err != nil {
		t.Fatal(err)
	}
	if got := time.Since(start); got < 400*time.Millisecond {
		t.Errorf("other process sent %v after a 429 with Retry-After 400ms, want at least 400ms", got)
	}
}

// TestPenaltyHalvesRateAndRecovers: after a 429 the grants are spaced at
// half the rate, and the spacing shrinks back to none over RecoverAfter.
func TestPenaltyHalvesRateAndRecovers(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(t, nil, Config{PerSecond: 10, PerMinute: -1, RecoverAfter: 10 * time.Second,
		Now: func() time.Time { return now }})
	l.Penalize(time.Second)
	s := l.local
	at := now.Add(time.Second).UnixNano()
	s, out := l.book(s, at, 3, 0)
	if len(out) != 2 { // the horizon (250ms) holds two slots 200ms apart
		t.Fatalf("lease after a 429 got %d slots, want 2", len(out))
	}
	if gap := time.Duration(out[1].at - out[0].at); gap < 180*time.Millisecond || gap > 200*time.Millisecond {
		t.Errorf("gap after a 429 = %v, want about 190ms (half of 10/s, recovering)", gap)
	}
	_, out = l.book(s, now.Add(20*time.Second).UnixNano(), 3, 0)
	if len(out) != 3 || out[2].at != out[0].at {
		t.Errorf("after RecoverAfter: %d slots %v, want 3 at once", len(out), out)
	}
}

func TestPenaltyWithoutRetryAfterGrows(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(t, nil, Config{Now: func() time.Time { return now }})
	var got []time.Duration
	for range 7 {
		l.Penalize(0)
		got = append(got, l.penalty)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("penalties = %v, want %v seconds", got, want)
		}
	}
}

func TestWaitEndsWithContextAndClose(t *testing.T) {
	l, err := New(nil, Config{PerSecond: 1, PerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send(context.Background(), l, ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(ctx, "", false); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait past the deadline = %v, want DeadlineExceeded", err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := testutil.ToFloat64(l.m.waiting.WithLabelValues("commands")); got != 0 {
			return fmt.Errorf("waiting = %v", got)
		}
		return nil
	})
	errc := make(chan error, 1)
	go func() {
		_, err := l.Wait(context.Background(), "", false)
		errc <- err
	}()
	l.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("wait across Close = %v, want ErrClosed", err)
	}
}

func TestFallsBackWhenBucketUnreachable(t *testing.T) {
	n, open := bucket(t)
	reg := prometheus.NewRegistry()
	l := newLimiter(t, open(), Config{PerSecond: 50, PerMinute: -1, Registerer: reg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := send(ctx, l, ""); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	for i := range 10 {
		if _, err := send(ctx, l, ""); err != nil {
			t.Fatalf("send %d with NATS down: %v", i, err)
		}
	}
	if got := testutil.ToFloat64(l.m.fallbacks); got < 1 {
		t.Errorf("local fallbacks = %v, want at least 1", got)
	}
	n.Start()
	testenv.WaitFor(t, 15*time.Second, func() error {
		l.mu.Lock()
		l.probeAt = time.Time{} // do not wait for the probe interval
		l.mu.Unlock()
		if _, err := send(ctx, l, ""); err != nil {
			return err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.degraded {
			return fmt.Errorf("still pacing locally")
		}
		return nil
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative per second", Config{PerSecond: -1}},
		{"margin of a second", Config{MaxMargin: time.Second}},
		{"min above max", Config{MinMargin: 300 * time.Millisecond, MaxMargin: 200 * time.Millisecond}},
		{"zero weight", Config{Weights: map[string]float64{"1": 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(nil, tt.cfg); err == nil {
				t.Errorf("New(%+v) = nil error, want one", tt.cfg)
			}
		})
	}
}

func TestParseWeights(t *testing.T) {
	got, err := ParseWeights(" 7=2, 9=0.5,")
	if err != nil || len(got) != 2 || got["7"] != 2 || got["9"] != 0.5 {
		t.Errorf("ParseWeights = %v, %v", got, err)
	}
	for _, bad := range []string{"7", "7=0", "=2", "7=x", "7=-1", "7=+Inf"} {
		if _, err := ParseWeights(bad); err == nil {
			t.Errorf("ParseWeights(%q) = nil error", bad)
		}
	}
}

// TestUrgentGoesFirst: a request that finishes work already begun goes
// before every queued request that is not urgent, in arrival order.
func TestUrgentGoesFirst(t *testing.T) {
	l := newLimiter(t, nil, Config{PerSecond: 100, PerMinute: -1})
	l.Penalize(time.Hour) // hold every slot back; the test hands them out
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	queue := func(flow string, urgent bool) {
		before := func() int { l.mu.Lock(); defer l.mu.Unlock(); return l.queue.n }()
		wg.Go(func() {
			if _, err := l.Wait(ctx, flow, urgent); err != nil {
				t.Errorf("wait: %v", err)
			}
		})
		testenv.WaitFor(t, 10*time.Second, func() error {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.queue.n != before+1 {
				return fmt.Errorf("%d waiting", l.queue.n)
			}
			return nil
		})
	}
	queue("a", false)
	queue("a", false)
	queue("b", false)
	queue("a", true)
	queue("b", true)
	var order []string
	l.mu.Lock()
	for l.queue.n > 0 {
		w := l.nextLocked()
		order = append(order, fmt.Sprintf("%s%v", w.flow, w.tags[levels-1] == 0))
		w.ready <- slot{at: time.Now().UnixNano(), margin: time.Second}
	}
	l.mu.Unlock()
	wg.Wait()
	want := []string{"atrue", "btrue", "afalse", "bfalse", "afalse"}
	if !slices.Equal(order, want) {
		t.Errorf("order = %v, want %v (urgent first)", order, want)
	}
}

// TestFairnessAcrossAccounts: with flows named "account/location",
// accounts share the budget first: an account with four busy locations
// gets no more than an account with one.
func TestFairnessAcrossAccounts(t *testing.T) {
	l := newLimiter(t, nil, Config{PerSecond: 100, PerMinute: -1})
	l.Penalize(time.Hour) // hold every slot back; the test hands them out
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	queued := 0
	queue := func(flow string, n int) {
		for range n {
			wg.Go(func() {
				if _, err := l.Wait(ctx, flow, false); err != nil {
					t.Errorf("wait: %v", err)
				}
			})
		}
		queued += n
		testenv.WaitFor(t, 10*time.Second, func() error {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.queue.n != queued {
				return fmt.Errorf("%d waiting", l.queue.n)
			}
			return nil
		})
	}
	for loc := range 4 {
		queue(fmt.Sprintf("big/%d", loc), 20)
	}
	queue("small/9", 40)
	var order []string
	l.mu.Lock()
	for l.queue.n > 0 {
		w := l.nextLocked()
		order = append(order, w.flow)
		w.ready <- slot{at: time.Now().UnixNano(), margin: time.Second}
	}
	l.mu.Unlock()
	wg.Wait()
	small := 0
	for _, f := range order[:40] {
		if f == "small/9" {
			small++
		}
	}
	if small < 17 || small > 23 {
		t.Errorf("the one-location account got %d of the first 40 slots, want about 20 (order %v)", small, order[:40])
	}
}

// TestPenaltyRefusesSlotsHandedOut: a slot handed out before a 429 pushed
// the schedule back is not sent.
func TestPenaltyRefusesSlotsHandedOut(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(t, nil, Config{Now: func() time.Time { return now }})
	check := l.sendCheck(slot{at: now.UnixNano(), margin: 20 * time.Millisecond})
	l.Penalize(time.Second)
	if check() {
		t.Error("a slot from before a 429's push was sent")
	}
	if got := testutil.ToFloat64(l.m.dropped.WithLabelValues("penalized")); got != 1 {
		t.Errorf("penalized drops = %v, want 1", got)
	}
}

// TestFairQueueRemoveGivesTagsBack: requests that leave do not charge the
// ones of their flow that stay.
func TestFairQueueRemoveGivesTagsBack(t *testing.T) {
	q := newFairQueue(nil, 0.6)
	a := pushN(&q, "a", 5)
	for _, w := range a[2:] {
		if !q.remove(w) {
			t.Fatal("remove of a queued waiter = false")
		}
	}
	for range 4 {
		q.push(&waiter{flow: "b"}, false)
	}
	q.push(&waiter{flow: "a"}, false)
	var order []string
	for q.n > 0 {
		order = append(order, q.pop().flow)
	}
	// a's third request takes the place of the first one that left, not a
	// place after every request b queued meanwhile.
	if want := []string{"a", "b", "a", "b", "a", "b", "b"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
}

// queued returns how many requests of class c and group flow wait in l.
func queued(l *Limiter, c Class, flow string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cn := l.queue.root.children[c.String()]; cn != nil {
		if g := cn.children[flow]; g != nil {
			return len(g.tags)
		}
	}
	return 0
}

// handOut queues n waits of class c and flow on l (whose slots the test
// hands out itself), in goroutines of wg.
func handOut(t *testing.T, ctx context.Context, l *Limiter, c Class, flow string, n int, wg *sync.WaitGroup) {
	t.Helper()
	before := queued(l, c, flow)
	for range n {
		wg.Go(func() {
			if _, err := l.Wait(WithClass(ctx, c), flow, false); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("wait: %v", err)
			}
		})
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if got := queued(l, c, flow); got != before+n {
			return fmt.Errorf("%d of %s %s queued", got, c, flow)
		}
		return nil
	})
}

// dispatchAll hands every queued request its slot, in the dispatcher's
// order, and returns the classes in that order.
func dispatchAll(l *Limiter) []Class {
	var order []Class
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.queue.n > 0 {
		w := l.nextLocked()
		order = append(order, w.class)
		w.ready <- slot{at: time.Now().UnixNano(), margin: time.Second}
	}
	return order
}

// count returns how many of order are c.
func count(order []Class, c Class) int {
	n := 0
	for _, o := range order {
		if o == c {
			n++
		}
	}
	return n
}

// TestCommandsKeepTheirShareUnderReads: 1,000 reads in flight (over three
// locations) cannot take more than the reads' share while commands wait,
// and a command queued behind them goes within the first slots.
func TestCommandsKeepTheirShareUnderReads(t *testing.T) {
	l := newLimiter(t, nil, Config{PerSecond: 100, PerMinute: -1}) // CommandShare 0.6
	l.Penalize(time.Hour)                                          // the test hands the slots out
	ctx, cancel := context.WithCancel(context.Background())        // no deadline: reads would be refused
	defer cancel()
	var wg sync.WaitGroup
	for loc := range 3 {
		handOut(t, ctx, l, Reads, fmt.Sprint(loc), 334, &wg)
	}
	handOut(t, ctx, l, Commands, "7", 100, &wg)
	order := dispatchAll(l)
	wg.Wait()
	if i := slices.Index(order, Commands); i < 0 || i > 1 {
		t.Errorf("the first command went as number %d behind 1,002 reads, want among the first two", i+1)
	}
	if got := count(order[:100], Commands); got < 57 || got > 63 {
		t.Errorf("commands got %d of the first 100 slots while both waited, want about 60 (their share)", got)
	}
	if got := count(order[len(order)-100:], Reads); got != 100 {
		t.Errorf("reads got %d of the last 100 slots after the commands were done, want all of them", got)
	}
}

// TestReadsKeepTheirShareUnderCommands: the reverse, a command backlog of
// 1,000 does not starve an interactive read.
func TestReadsKeepTheirShareUnderCommands(t *testing.T) {
	l := newLimiter(t, nil, Config{PerSecond: 100, PerMinute: -1, CommandShare: 0.75})
	l.Penalize(time.Hour)
	ctx, cancel := context.WithCancel(context.Background()) // no deadline: reads would be refused
	defer cancel()
	var wg sync.WaitGroup
	handOut(t, ctx, l, Commands, "7", 1000, &wg)
	handOut(t, ctx, l, Reads, "7", 100, &wg)
	order := dispatchAll(l)
	wg.Wait()
	if i := slices.Index(order, Reads); i < 0 || i > 4 {
		t.Errorf("the first read went as number %d behind 1,000 commands, want among the first four (share 25%%)", i+1)
	}
	if got := count(order[:200], Reads); got < 47 || got > 53 {
		t.Errorf("reads got %d of the first 200 slots, want about 50 (25%% share)", got)
	}
}

// TestReadPastItsDeadlineIsRefusedAtOnce: a read that would wait longer
// than its deadline allows gets a TooLongError with the expected wait
// right away; a command with the same deadline waits.
func TestReadPastItsDeadlineIsRefusedAtOnce(t *testing.T) {
	l := newLimiter(t, nil, Config{}) // 5/s, 200/min: 3.33 a second at length
	l.Penalize(time.Hour)
	ctx, cancel := context.WithCancel(context.Background()) // no deadline: reads would be refused
	defer cancel()
	var wg sync.WaitGroup
	handOut(t, ctx, l, Reads, "7", 30, &wg)
	defer func() { l.Close(); wg.Wait() }()

	rctx, rcancel := context.WithTimeout(WithClass(context.Background(), Reads), 5*time.Second)
	defer rcancel()
	start := time.Now()
	_, err := l.Wait(rctx, "8", false)
	var tl *TooLongError
	switch {
	case !errors.As(err, &tl):
		t.Fatalf("read behind 30 others with 5 s left = %v, want a TooLongError", err)
	case time.Since(start) > time.Second:
		t.Errorf("the refusal took %v, want it at once", time.Since(start))
	case tl.Wait < time.Hour:
		t.Errorf("expected wait %v, want the hour the 429 push holds everything back plus the queue", tl.Wait)
	}
	if got := testutil.ToFloat64(l.m.refused); got != 1 {
		t.Errorf("refused reads = %v, want 1", got)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer ccancel()
	if _, err := l.Wait(cctx, "8", false); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a command with a short deadline = %v, want it to wait until DeadlineExceeded", err)
	}
}

// TestExpectedWaitCountsTheClassShare: the estimate is the class's queue at
// the class's rate: the whole rate alone, its share while the other waits.
func TestExpectedWaitCountsTheClassShare(t *testing.T) {
	now := time.Now()
	l := newLimiter(t, nil, Config{PerSecond: 10, PerMinute: -1, CommandShare: 0.5})
	l.mu.Lock()
	defer l.mu.Unlock()
	for range 9 {
		l.queue.push(&waiter{flow: "7", class: Reads}, false)
	}
	if got := l.expectedWaitLocked(Reads, now); got != time.Second {
		t.Errorf("10th read alone at 10/s: expected %v, want 1s", got)
	}
	l.queue.push(&waiter{flow: "7", class: Commands}, false)
	if got := l.expectedWaitLocked(Reads, now); got != 2*time.Second {
		t.Errorf("10th read at half of 10/s: expected %v, want 2s", got)
	}
}

// TestFairQueueKeepsTagsOfWaiters: a pop hands out a waiter whose group
// tag is not the group's smallest (another location's turn), and a waiter
// that leaves afterwards still finds its own tags: the counts stay right
// and a later request of another class does not meet a stale node.
func TestFairQueueKeepsTagsOfWaiters(t *testing.T) {
	q := newFairQueue(nil, 0.6)
	a := pushN(&q, "acc/1", 3)
	pushN(&q, "acc/2", 1)
	if got := q.pop().flow; got != "acc/1" {
		t.Fatalf("first pop %s, want acc/1", got)
	}
	if got := q.pop().flow; got != "acc/2" {
		t.Fatalf("second pop %s, want acc/2 (its location's turn)", got)
	}
	if !q.remove(a[2]) {
		t.Fatal("remove of a queued waiter = false")
	}
	if got := q.pop(); got != a[1] {
		t.Fatalf("third pop %v, want the last acc/1 waiter", got.flow)
	}
	if q.n != 0 || q.waiting(Commands) != 0 || len(q.root.children) != 0 {
		t.Fatalf("empty queue holds n=%d, %d commands waiting, %d classes", q.n, q.waiting(Commands), len(q.root.children))
	}
	q.push(&waiter{flow: "7", class: Reads}, false)
	if got := q.pop(); got.class != Reads {
		t.Errorf("pop after emptying = %v, want the read", got.class)
	}
}

// TestFairQueueRandomOperations pushes, pops and removes at random over
// two classes, two accounts and three locations, checking after each step
// that every node holds one tag per waiter below it and that q.n counts
// them: a node with a stale tag would make pop choose an empty child.
func TestFairQueueRandomOperations(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	q := newFairQueue(map[string]float64{"a": 2, "7": 3}, 0.6)
	var queued []*waiter
	flows := []string{"a/7", "a/8", "b/7", "b/9", "auth"}
	var count func(n *node) int
	count = func(n *node) int {
		if len(n.children) == 0 {
			return len(n.queue)
		}
		total := 0
		for _, c := range n.children {
			total += count(c)
		}
		return total
	}
	var check func(n *node, depth int)
	check = func(n *node, depth int) {
		for _, c := range n.children {
			if got := count(c); got != len(c.tags) || got == 0 {
				t.Fatalf("node %s (level %d) holds %d tags for %d waiters", c.name, depth, len(c.tags), got)
			}
			check(c, depth+1)
		}
	}
	for step := range 5000 {
		switch op := r.IntN(10); {
		case op < 5 || len(queued) == 0:
			w := &waiter{flow: flows[r.IntN(len(flows))], class: Class(r.IntN(2))}
			q.push(w, r.IntN(8) == 0)
			queued = append(queued, w)
		case op < 8:
			w := q.pop()
			i := slices.Index(queued, w)
			if i < 0 {
				t.Fatalf("step %d: pop returned a waiter that was not queued", step)
			}
			queued = slices.Delete(queued, i, i+1)
		default:
			i := r.IntN(len(queued))
			if !q.remove(queued[i]) {
				t.Fatalf("step %d: remove of a queued waiter = false", step)
			}
			queued = slices.Delete(queued, i, i+1)
		}
		if q.n != len(queued) {
			t.Fatalf("step %d: q.n = %d, %d queued", step, q.n, len(queued))
		}
		check(&q.root, 0)
	}
}

// pushN queues n commands of flow in q and returns them.
func pushN(q *fairQueue, flow string, n int) []*waiter {
	out := make([]*waiter, n)
	for i := range out {
		out[i] = &waiter{flow: flow}
		q.push(out[i], false)
	}
	return out
}

// TestFlowMetrics: the per-flow gauge counts who waits, and the per-flow
// counter who got a slot; a wait that gives up counts as no grant.
func TestFlowMetrics(t *testing.T) {
	l := newLimiter(t, nil, Config{PerSecond: 1, PerMinute: -1})
	if _, err := send(context.Background(), l, "acct/1"); err != nil {
		t.Fatal(err)
	}
	// The next second's slot is taken by the first of these; the others wait.
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 3)
	for _, flow := range []string{"acct/1", "acct/2", "acct/2"} {
		go func() {
			_, err := l.Wait(ctx, flow, false)
			errs <- err
		}()
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		waiting := testutil.ToFloat64(l.m.flowWaiting.WithLabelValues("acct/1")) + testutil.ToFloat64(l.m.flowWaiting.WithLabelValues("acct/2"))
		granted := testutil.ToFloat64(l.m.flowGranted.WithLabelValues("acct/1")) + testutil.ToFloat64(l.m.flowGranted.WithLabelValues("acct/2"))
		if waiting+granted != 4 || granted < 2 {
			return fmt.Errorf("waiting %v, granted %v: want 4 requests, 2 of them granted", waiting, granted)
		}
		return nil
	})
	cancel()
	for range 3 {
		<-errs
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		for _, flow := range []string{"acct/1", "acct/2"} {
			if got := testutil.ToFloat64(l.m.flowWaiting.WithLabelValues(flow)); got != 0 {
				return fmt.Errorf("%s waiting = %v after every wait ended", flow, got)
			}
		}
		return nil
	})
	if got := testutil.ToFloat64(l.m.flowGranted.WithLabelValues("acct/1")); got < 1 {
		t.Errorf("acct/1 granted %v, want at least its first request", got)
	}
}
