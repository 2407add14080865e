package outbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testConfig is a Config with short timeouts, a fresh registry and the
// given tweaks applied.
func testConfig(tweak func(*Config)) Config {
	cfg := Config{
		PublishTimeout: 500 * time.Millisecond,
		RetryMin:       5 * time.Millisecond,
		RetryMax:       50 * time.Millisecond,
		BusyTimeout:    time.Second,
		Registerer:     prometheus.NewRegistry(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	return cfg
}

// openTest opens an outbox at path and closes it in t.Cleanup.
func openTest(t testing.TB, path string, cfg Config) *Outbox {
	t.Helper()
	o, err := Open(path, cfg)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return o
}

func tempPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "outbox.db")
}

// startRelay runs o.Run in a goroutine; t.Cleanup stops it and checks that
// it returned nil or ErrClosed.
func startRelay(t testing.TB, o *Outbox, pub Publisher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx, pub) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// makeEntries returns n entries on subject prefix.<i> with ids prefix-<i>.
func makeEntries(prefix string, n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = Entry{
			Subject: fmt.Sprintf("%s.%d", prefix, i),
			MsgID:   fmt.Sprintf("%s-%d", prefix, i),
			Header:  nats.Header{"Test-Index": {fmt.Sprint(i)}},
			Data:    fmt.Appendf(nil, `{"i":%d}`, i),
		}
	}
	return out
}

func appendEach(t testing.TB, o *Outbox, entries []Entry) {
	t.Helper()
	for _, e := range entries {
		if err := o.Append(context.Background(), e); err != nil {
			t.Fatalf("append %s: %v", e.MsgID, err)
		}
	}
}

func createStream(t testing.TB, js jetstream.JetStream, cfg jetstream.StreamConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatalf("create stream %s: %v", cfg.Name, err)
	}
}

// streamMsgs returns every message in the stream, in stream order.
func streamMsgs(t testing.TB, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream %s message %d: %v", name, seq, err)
		}
		out = append(out, m)
	}
	return out
}

// msgIDs returns the Nats-Msg-Id of each message.
func msgIDs(msgs []*jetstream.RawStreamMsg) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Header.Get(jetstream.MsgIDHeader)
	}
	return out
}

func ids(entries []Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.MsgID
	}
	return out
}

func flush(t testing.TB, o *Outbox, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := o.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func depth(t testing.TB, o *Outbox) int {
	t.Helper()
	n, err := o.Depth()
	if err != nil {
		t.Fatalf("depth: %v", err)
	}
	return n
}

// histogramCount returns how many observations h has and their sum.
func histogramCount(t testing.TB, h prometheus.Histogram) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatalf("read histogram: %v", err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// fakePublisher records what it acknowledged and fails on demand.
type fakePublisher struct {
	mu        sync.Mutex
	published []string // subjects, in ack order
	fail      func(msg *nats.Msg) error
}

func (p *fakePublisher) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.fail != nil {
		if err := p.fail(msg); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published = append(p.published, msg.Subject)
	return &jetstream.PubAck{Stream: "FAKE", Sequence: uint64(len(p.published))}, nil
}

func (p *fakePublisher) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.published...)
}
