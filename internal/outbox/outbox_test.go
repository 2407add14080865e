package outbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/altegio-integrator/integrator/internal/testenv"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero is valid", cfg: Config{}},
		{name: "negative entries", cfg: Config{MaxEntries: -1}, wantErr: "max entries"},
		{name: "negative bytes", cfg: Config{MaxBytes: -1}, wantErr: "max bytes"},
		{name: "negative window", cfg: Config{BatchWindow: -time.Second}, wantErr: "batch window"},
		{name: "retry min above max", cfg: Config{RetryMin: time.Minute, RetryMax: time.Second}, wantErr: "retry min"},
		{name: "several at once", cfg: Config{MaxBatch: -1, RelayBatch: -1}, wantErr: "relay batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.setDefaults()
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}

func TestAppendValidatesEntries(t *testing.T) {
	o := openTest(t, tempPath(t), testConfig(nil))
	for _, e := range []Entry{{MsgID: "a"}, {Subject: "s"}} {
		if err := o.Append(context.Background(), e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("Append(%+v) = %v, want ErrInvalidEntry", e, err)
		}
	}
	if got := depth(t, o); got != 0 {
		t.Fatalf("depth = %d, want 0", got)
	}
}

func TestReopenKeepsEntries(t *testing.T) {
	path := tempPath(t)
	clk := testenv.NewClock()
	cfg := testConfig(func(c *Config) { c.now = clk.Now })

	first, err := Open(path, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	before := makeEntries("cmd.a", 10)
	appendEach(t, first, before)
	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := first.Append(context.Background(), before[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}

	clk.Advance(90 * time.Second)
	cfg.Registerer = nil
	o := openTest(t, path, cfg)
	if got := depth(t, o); got != 10 {
		t.Fatalf("depth after reopen = %d, want 10", got)
	}
	age, err := o.OldestAge()
	if err != nil {
		t.Fatalf("oldest age: %v", err)
	}
	if got, want := age, 90*time.Second; got != want {
		t.Fatalf("oldest age = %v, want %v", got, want)
	}
	after := makeEntries("cmd.b", 5)
	appendEach(t, o, after)

	pub := &fakePublisher{}
	startRelay(t, o, pub)
	flush(t, o, 10*time.Second)
	var want []string
	for _, e := range slices.Concat(before, after) {
		want = append(want, e.Subject)
	}
	if got := pub.ids(); !slices.Equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
	if age, err := o.OldestAge(); err != nil || age != 0 {
		t.Fatalf("oldest age when empty = %v, %v; want 0, nil", age, err)
	}
}

func TestOpenLockedFile(t *testing.T) {
	path := tempPath(t)
	openTest(t, path, testConfig(nil))
	_, err := Open(path, testConfig(func(c *Config) { c.BusyTimeout = 50 * time.Millisecond }))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestAppendFull(t *testing.T) {
	e := makeEntries("cmd", 1)[0]
	tests := []struct {
		name string
		cfg  func(*Config)
	}{
		{name: "max entries", cfg: func(c *Config) { c.MaxEntries = 3 }},
		{name: "max bytes", cfg: func(c *Config) { c.MaxBytes = 3 * e.Size() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := openTest(t, tempPath(t), testConfig(tt.cfg))
			ctx := context.Background()
			if err := o.Append(ctx, e, e); err != nil {
				t.Fatalf("append 2: %v", err)
			}
			if err := o.Append(ctx, e, e); !errors.Is(err, ErrFull) {
				t.Fatalf("append 2 more = %v, want ErrFull", err)
			}
			if got := depth(t, o); got != 2 {
				t.Fatalf("depth after refused append = %d, want 2 (all or none)", got)
			}
			if err := o.Append(ctx, e); err != nil {
				t.Fatalf("append the third: %v", err)
			}
			if err := o.Append(ctx, e); !errors.Is(err, ErrFull) {
				t.Fatalf("append a fourth = %v, want ErrFull", err)
			}
			if got, want := testutil.ToFloat64(o.metrics.rejected.WithLabelValues("full")), 3.0; got != want {
				t.Fatalf("rejected = %v, want %v", got, want)
			}

			// Relaying makes room again.
			startRelay(t, o, &fakePublisher{})
			flush(t, o, 10*time.Second)
			if err := o.Append(ctx, e); err != nil {
				t.Fatalf("append after relay: %v", err)
			}
		})
	}
}

func TestConcurrentAppendGroupCommit(t *testing.T) {
	const writers, perWriter = 32, 40
	o := openTest(t, tempPath(t), testConfig(func(c *Config) { c.BatchWindow = time.Millisecond }))

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				e := Entry{Subject: fmt.Sprintf("cmd.%d", w), MsgID: fmt.Sprintf("%d-%d", w, i), Data: []byte("x")}
				if err := o.Append(context.Background(), e); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}

	const total = writers * perWriter
	commits, entries := histogramCount(t, o.metrics.batchSize)
	if entries != total {
		t.Fatalf("batch sizes sum to %v, want %d", entries, total)
	}
	if commits >= total {
		t.Fatalf("%d commits for %d entries: no group commit", commits, total)
	}
	t.Logf("%d entries in %d commits", total, commits)

	// Every entry is stored once, and each writer's entries are in the
	// order it appended them.
	stored, err := head(context.Background(), o.db, 0, total+1)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if len(stored) != total {
		t.Fatalf("stored %d entries, want %d", len(stored), total)
	}
	seen := make(map[string]bool, total)
	next := make([]int, writers)
	for i, s := range stored {
		if i > 0 && s.seq <= stored[i-1].seq {
			t.Fatalf("sequence %d after %d", s.seq, stored[i-1].seq)
		}
		if seen[s.entry.MsgID] {
			t.Fatalf("entry %s stored twice", s.entry.MsgID)
		}
		seen[s.entry.MsgID] = true
		var w, n int
		if _, err := fmt.Sscanf(s.entry.MsgID, "%d-%d", &w, &n); err != nil {
			t.Fatalf("msg id %q: %v", s.entry.MsgID, err)
		}
		if n != next[w] {
			t.Fatalf("writer %d: entry %d stored where %d was due", w, n, next[w])
		}
		next[w]++
	}
	if got := depth(t, o); got != total {
		t.Fatalf("depth = %d, want %d", got, total)
	}
}

func TestAppendContextCanceled(t *testing.T) {
	o := openTest(t, tempPath(t), testConfig(nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := o.Append(ctx, makeEntries("cmd", 1)...); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with canceled ctx = %v, want context.Canceled", err)
	}
}

func TestFlush(t *testing.T) {
	o := openTest(t, tempPath(t), testConfig(nil))
	flush(t, o, time.Second) // empty: returns at once

	appendEach(t, o, makeEntries("cmd", 3))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := o.Flush(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush without a relay = %v, want DeadlineExceeded", err)
	}

	// A Flush waiting when the relay starts returns once it is done.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- o.Flush(ctx)
	}()
	startRelay(t, o, &fakePublisher{})
	if err := <-done; err != nil {
		t.Fatalf("flush: %v", err)
	}
	if got := depth(t, o); got != 0 {
		t.Fatalf("depth after flush = %d", got)
	}
}

func TestCloseStopsRelay(t *testing.T) {
	o, err := Open(tempPath(t), testConfig(nil))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- o.Run(context.Background(), &fakePublisher{}) }()

	// A second relay is refused while the first runs.
	testWaitRelaying(t, o)
	if err := o.Run(context.Background(), &fakePublisher{}); !errors.Is(err, ErrRelayRunning) {
		t.Fatalf("second Run = %v, want ErrRelayRunning", err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
	if _, err := o.Depth(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Depth after Close = %v, want ErrClosed", err)
	}
	if err := o.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v, want ErrClosed", err)
	}
}

func testWaitRelaying(t *testing.T, o *Outbox) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, func() error {
		o.mu.Lock()
		defer o.mu.Unlock()
		if !o.relaying {
			return errors.New("relay not running")
		}
		return nil
	})
}

// TestCrashKeepsEntries appends in a child process that exits without
// Close, as a crash would, and reads the entries back in this one.
func TestCrashKeepsEntries(t *testing.T) {
	const envPath = "OUTBOX_TEST_CRASH_PATH"
	entries := makeEntries("cmd.crash", 10)
	if path := os.Getenv(envPath); path != "" {
		o, err := Open(path, Config{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, e := range entries {
			if err := o.Append(context.Background(), e); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
		os.Exit(3) // no Close
	}

	path := tempPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsEntries$")
	cmd.Env = append(os.Environ(), envPath+"="+path)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Fatalf("child = %v, want exit code 3; output:\n%s", err, out)
	}

	o := openTest(t, path, testConfig(nil))
	stored, err := head(context.Background(), o.db, 0, 100)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	var got []string
	for _, s := range stored {
		got = append(got, s.entry.MsgID)
	}
	if want := ids(entries); !slices.Equal(got, want) {
		t.Fatalf("after crash: stored %v, want %v", got, want)
	}
}

func TestProbeWritesAndFailsWhenClosed(t *testing.T) {
	path := tempPath(t)
	o, err := Open(path, testConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := o.Probe(ctx); err != nil {
		t.Fatalf("probe: %v", err)
	}
	var n int
	if err := o.db.QueryRowContext(ctx, `SELECT count(*) FROM probe`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("probe rows = %d (%v), want 1", n, err)
	}
	if got := depth(t, o); got != 0 {
		t.Errorf("depth after probe = %d, want 0: the probe is not an entry", got)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Probe(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("probe after Close = %v, want ErrClosed", err)
	}
}
