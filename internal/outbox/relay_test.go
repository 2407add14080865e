package outbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/altegio-integrator/integrator/internal/testenv"
)

func TestRelayPublishesInOrderWithMsgIDs(t *testing.T) {
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	createStream(t, js, jetstream.StreamConfig{Name: "CMD", Subjects: []string{"cmd.>"}})

	o := openTest(t, tempPath(t), testConfig(nil))
	entries := makeEntries("cmd.x", 20)
	appendEach(t, o, entries[:5])
	if err := o.Append(context.Background(), entries[5:]...); err != nil {
		t.Fatalf("append batch: %v", err)
	}
	startRelay(t, o, js)
	flush(t, o, 10*time.Second)

	msgs := streamMsgs(t, js, "CMD")
	if got, want := msgIDs(msgs), ids(entries); !slices.Equal(got, want) {
		t.Fatalf("stream msg ids = %v, want %v", got, want)
	}
	for i, m := range msgs {
		e := entries[i]
		if m.Subject != e.Subject || string(m.Data) != string(e.Data) || m.Header.Get("Test-Index") != fmt.Sprint(i) {
			t.Fatalf("message %d = %s %q %v, want %s %q with Test-Index %d", i, m.Subject, m.Data, m.Header, e.Subject, e.Data, i)
		}
	}

	// JetStream drops a re-publish with the same id, from anyone...
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: entries[3].Subject, Data: []byte("again")}, jetstream.WithMsgID(entries[3].MsgID))
	if err != nil {
		t.Fatalf("re-publish: %v", err)
	}
	if !ack.Duplicate {
		t.Fatalf("re-publish of %s not flagged duplicate", entries[3].MsgID)
	}
	// ...and from the outbox, which counts the duplicate ack as relayed.
	appendEach(t, o, entries[7:8])
	flush(t, o, 10*time.Second)
	if got := len(streamMsgs(t, js, "CMD")); got != len(entries) {
		t.Fatalf("stream has %d messages after re-publishes, want %d", got, len(entries))
	}
	if got, want := testutil.ToFloat64(o.metrics.relayed), float64(len(entries)+1); got != want {
		t.Fatalf("relayed = %v, want %v", got, want)
	}
}

func TestRelayAcrossNATSOutage(t *testing.T) {
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	createStream(t, js, jetstream.StreamConfig{Name: "CMD", Subjects: []string{"cmd.>"}})
	path := tempPath(t)

	o, err := Open(path, testConfig(func(c *Config) { c.PublishTimeout = 200 * time.Millisecond }))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	stop := startRelay(t, o, js)
	first := makeEntries("cmd.a", 10)
	appendEach(t, o, first)
	flush(t, o, 10*time.Second)

	// NATS goes away; entries pile up and the relay keeps failing.
	n.Stop()
	during := makeEntries("cmd.b", 30)
	appendEach(t, o, during[:15])
	testenv.WaitFor(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(o.metrics.relayErrors.WithLabelValues(classRetryable)); got < 2 {
			return fmt.Errorf("%v retryable errors so far", got)
		}
		return nil
	})
	if got := depth(t, o); got != 15 {
		t.Fatalf("depth while NATS is down = %d, want 15", got)
	}

	// The process restarts in the middle of the outage.
	stop()
	if err := o.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	o = openTest(t, path, testConfig(func(c *Config) { c.PublishTimeout = 200 * time.Millisecond }))
	startRelay(t, o, js)
	appendEach(t, o, during[15:])
	if got := depth(t, o); got != 30 {
		t.Fatalf("depth after restart = %d, want 30", got)
	}

	n.Start()
	flush(t, o, 20*time.Second)

	want := ids(slices.Concat(first, during))
	if got := msgIDs(streamMsgs(t, js, "CMD")); !slices.Equal(got, want) {
		t.Fatalf("stream msg ids = %v, want %v (in order, once each)", got, want)
	}
}

func TestRelayDeadLetters(t *testing.T) {
	tests := []struct {
		name       string
		bad        Entry
		wantReason string
		wantClass  string
	}{
		{
			name:       "message too large for the stream",
			bad:        Entry{Subject: "cmd.big", MsgID: "big", Data: make([]byte, 2048)},
			wantReason: "maximum",
			wantClass:  classPermanent,
		},
		{
			name:       "no stream for the subject",
			bad:        Entry{Subject: "nowhere.x", MsgID: "lost", Data: []byte("x")},
			wantReason: "no response from stream",
			wantClass:  classNoStream,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := testenv.RunJetStream(t)
			_, js := testenv.Connect(t, n.URL())
			createStream(t, js, jetstream.StreamConfig{Name: "CMD", Subjects: []string{"cmd.>"}, MaxMsgSize: 1024})
			clk := testenv.NewClock()
			o := openTest(t, tempPath(t), testConfig(func(c *Config) {
				c.now = clk.Now
				c.NoStreamDeadAfter = time.Minute
			}))

			before, after := makeEntries("cmd.before", 2), makeEntries("cmd.after", 2)
			appendEach(t, o, before)
			appendEach(t, o, []Entry{tt.bad})
			appendEach(t, o, after)
			startRelay(t, o, js)

			// The entries before are published; the bad one holds the queue
			// while it may still succeed.
			testenv.WaitFor(t, 10*time.Second, func() error {
				if got := testutil.ToFloat64(o.metrics.relayErrors.WithLabelValues(tt.wantClass)); got < 1 {
					return errors.New("no failed attempt yet")
				}
				return nil
			})
			if tt.wantClass == classNoStream {
				testenv.WaitFor(t, 10*time.Second, func() error {
					if got := depth(t, o); got != 3 {
						return fmt.Errorf("depth = %d, want 3: the bad entry and those after it", got)
					}
					return nil
				})
				if got := testutil.ToFloat64(o.metrics.dead); got != 0 {
					t.Fatalf("dead-lettered %v entries before NoStreamDeadAfter", got)
				}
				clk.Advance(time.Minute)
			}
			flush(t, o, 10*time.Second)

			want := ids(slices.Concat(before, after))
			if got := msgIDs(streamMsgs(t, js, "CMD")); !slices.Equal(got, want) {
				t.Fatalf("stream msg ids = %v, want %v", got, want)
			}
			dead, err := o.Dead(context.Background(), 10)
			if err != nil {
				t.Fatalf("dead: %v", err)
			}
			if len(dead) != 1 || dead[0].Entry.MsgID != tt.bad.MsgID || !strings.Contains(dead[0].Reason, tt.wantReason) {
				t.Fatalf("dead = %+v, want %s with a reason containing %q", dead, tt.bad.MsgID, tt.wantReason)
			}
			if got := testutil.ToFloat64(o.metrics.dead); got != 1 {
				t.Fatalf("dead lettered = %v, want 1", got)
			}
		})
	}
}

// TestRelayRetriesSameEntry fails a third of the publish attempts and checks
// that the relay never skips or reorders an entry.
func TestRelayRetriesSameEntry(t *testing.T) {
	var mu sync.Mutex
	rnd := rand.New(rand.NewPCG(1, 2))
	pub := &fakePublisher{fail: func(*nats.Msg) error {
		mu.Lock()
		defer mu.Unlock()
		if rnd.IntN(3) == 0 {
			return nats.ErrTimeout
		}
		return nil
	}}
	o := openTest(t, tempPath(t), testConfig(func(c *Config) {
		c.RetryMin, c.RetryMax = time.Millisecond, time.Millisecond
		c.RelayBatch = 7
	}))
	entries := makeEntries("cmd", 100)
	startRelay(t, o, pub)
	appendEach(t, o, entries)
	flush(t, o, 20*time.Second)

	var want []string
	for _, e := range entries {
		want = append(want, e.Subject)
	}
	if got := pub.ids(); !slices.Equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(o.metrics.relayErrors.WithLabelValues(classRetryable)); got == 0 {
		t.Fatal("no publish failed: the test proves nothing")
	}
}

func TestIsPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nats.ErrMaxPayload, true},
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum}), true},
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 400, ErrorCode: 10097}), true},
		{nats.ErrTimeout, false},
		{context.DeadlineExceeded, false},
		{nats.ErrConnectionClosed, false},
		{jetstream.ErrNoStreamResponse, false},
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 503, ErrorCode: 10077}), false},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// Entries whose delete fails after they were published (a full disk, here a
// file that became read-only) never hold back the entries behind them: the
// relay goes on after the last published entry, Depth counts only what
// waits, and the rows are deleted once the file can be written again.
// Before, the relay read the same first RelayBatch rows again and again.
func TestRelayGoesOnWhenDeletesFail(t *testing.T) {
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	createStream(t, js, jetstream.StreamConfig{Name: "CMD", Subjects: []string{"cmd.>"}})

	o := openTest(t, tempPath(t), testConfig(func(c *Config) { c.RelayBatch, c.RetryMax = 4, 200*time.Millisecond }))
	entries := makeEntries("cmd.x", 20)
	if err := o.Append(context.Background(), entries...); err != nil {
		t.Fatal(err)
	}
	// From here every write to the file fails.
	if _, err := o.db.Exec(`PRAGMA query_only = ON`); err != nil {
		t.Fatal(err)
	}
	startRelay(t, o, js)
	flush(t, o, 10*time.Second) // Depth reaches 0: everything was relayed
	if got, want := msgIDs(streamMsgs(t, js, "CMD")), ids(entries); !slices.Equal(got, want) {
		t.Fatalf("stream msg ids = %v, want %v", got, want)
	}
	rows := func() int {
		var n int
		if err := o.db.QueryRow(`SELECT count(*) FROM entries`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := rows(); got != len(entries) {
		t.Fatalf("%d rows left while the file is read-only, want all %d", got, len(entries))
	}
	if _, err := o.db.Exec(`PRAGMA query_only = OFF`); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if got := rows(); got != 0 {
			return fmt.Errorf("%d relayed rows not deleted yet", got)
		}
		return nil
	})
}

// A second Run in the same process starts where the first stopped: entries
// the first published but could not delete are neither counted nor
// published again (before, Depth went negative and Flush never returned).
func TestRelayRunsAgainAfterFailedDeletes(t *testing.T) {
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	createStream(t, js, jetstream.StreamConfig{Name: "CMD", Subjects: []string{"cmd.>"}})
	o := openTest(t, tempPath(t), testConfig(nil))
	entries := makeEntries("cmd.x", 10)
	if err := o.Append(context.Background(), entries...); err != nil {
		t.Fatal(err)
	}
	if _, err := o.db.Exec(`PRAGMA query_only = ON`); err != nil {
		t.Fatal(err)
	}
	stop := startRelay(t, o, js)
	flush(t, o, 10*time.Second)
	stop()
	if _, err := o.db.Exec(`PRAGMA query_only = OFF`); err != nil {
		t.Fatal(err)
	}
	startRelay(t, o, js)
	more := makeEntries("cmd.y", 5)
	if err := o.Append(context.Background(), more...); err != nil {
		t.Fatal(err)
	}
	flush(t, o, 10*time.Second)
	if d := depth(t, o); d != 0 {
		t.Errorf("depth %d after everything was relayed, want 0", d)
	}
	if got := len(streamMsgs(t, js, "CMD")); got != 15 {
		t.Errorf("%d messages in the stream, want 15", got)
	}
}
