package ratelimit

import (
	"context"
	"fmt"
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

// grant books n slots on each limiter concurrently and returns the slots.
// It checks the shared schedule, not when goroutines woke up: timer latency
// on a loaded machine is local noise, which Margin absorbs in production.
func grant(t *testing.T, lims []*Limiter, n int) []time.Time {
	t.Helper()
	var (
		mu    sync.Mutex
		times []time.Time
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, l := range lims {
		for range n {
			wg.Go(func() {
				at, err := l.reserve(ctx)
				if err != nil {
					t.Errorf("reserve: %v", err)
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

func TestSharedBudgetAcrossProcesses(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		perRequest int
		window     time.Duration
		limit      int
	}{
		{"per second", Config{PerSecond: 20, PerMinute: -1}, 15, time.Second, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, open := bucket(t)
			var lims []*Limiter
			for range 3 { // three worker processes, each with its own connection
				l, err := New(open(), tt.cfg)
				if err != nil {
					t.Fatalf("new: %v", err)
				}
				lims = append(lims, l)
			}
			times := grant(t, lims, tt.perRequest)
			if got := len(times); got != 3*tt.perRequest {
				t.Fatalf("granted %d, want %d", got, 3*tt.perRequest)
			}
			if got := maxInWindow(times, tt.window); got > tt.limit {
				t.Errorf("%d requests in one %v window, want at most %d", got, tt.window, tt.limit)
			}
		})
	}
}

// TestScheduleKeepsBothWindows books a day's worth of slots for callers that
// all arrive at once and checks the schedule against both documented limits.
func TestScheduleKeepsBothWindows(t *testing.T) {
	start := time.Unix(1000, 0)
	l, err := New(nil, Config{Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	var times []time.Time
	for range 1000 {
		at, err := l.reserve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, at)
	}
	if got := maxInWindow(slices.Clone(times), time.Second); got != 5 {
		t.Errorf("max in one second = %d, want 5", got)
	}
	if got := maxInWindow(slices.Clone(times), time.Minute); got != 200 {
		t.Errorf("max in one minute = %d, want 200", got)
	}
	// 1000 requests need five full minutes, and not much more.
	if got := times[999].Sub(start); got < 4*time.Minute || got > 5*time.Minute {
		t.Errorf("1000th request at +%v, want between 4 and 5 minutes", got)
	}
}

func TestPenalizeDelaysEveryone(t *testing.T) {
	_, open := bucket(t)
	a, err := New(open(), Config{PerSecond: 50, PerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(open(), Config{PerSecond: 50, PerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a.Penalize(400 * time.Millisecond)
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := time.Since(start); got < 400*time.Millisecond {
		t.Errorf("other process waited %v after a 429 with Retry-After 400ms, want at least 400ms", got)
	}
}

func TestPenaltyWithoutRetryAfterGrows(t *testing.T) {
	now := time.Unix(1000, 0)
	l, err := New(nil, Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
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

func TestFallsBackWhenBucketUnreachable(t *testing.T) {
	n, open := bucket(t)
	reg := prometheus.NewRegistry()
	l, err := New(open(), Config{PerSecond: 50, PerMinute: -1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	for i := range 10 {
		if err := l.Wait(ctx); err != nil {
			t.Fatalf("wait %d with NATS down: %v", i, err)
		}
	}
	if got := testutil.ToFloat64(l.fallbacks); got < 10 {
		t.Errorf("local fallbacks = %v, want at least 10", got)
	}
	n.Start()
	l.mu.Lock()
	l.probeAt = time.Time{} // do not wait for the probe interval
	l.mu.Unlock()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if err := l.Wait(ctx); err != nil {
			return err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.degraded {
			l.probeAt = time.Time{}
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
		{"margin of one", Config{Margin: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(nil, tt.cfg); err == nil {
				t.Errorf("New(%+v) = nil error, want one", tt.cfg)
			}
		})
	}
}
