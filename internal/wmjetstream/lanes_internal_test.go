package wmjetstream

import (
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Lane settings for the table tests.
const (
	tRedeliver    = 30 * time.Second
	tGrace        = 2 * time.Second
	tMaxDeliver   = 5
	tMaxSafeDelay = 20 * time.Second
)

// laneStep is one event of a laneSet's life and the messages it should set
// free, in order (none: nil).
type laneStep struct {
	do      string // recv, done, retry, unconfirmed, expire
	seq     uint64
	key     string        // recv
	delay   time.Duration // retry
	attempt uint64        // retry (default 1)
	at      time.Duration // the clock, since the start (every step)
	want    []uint64
}

func recv(seq uint64, key string, want ...uint64) laneStep {
	return laneStep{do: "recv", seq: seq, key: key, want: want}
}
func done(seq uint64, want ...uint64) laneStep {
	return laneStep{do: "done", seq: seq, want: want}
}
func retry(seq uint64, delay time.Duration, want ...uint64) laneStep {
	return laneStep{do: "retry", seq: seq, delay: delay, want: want}
}
func unconfirmed(seq uint64, want ...uint64) laneStep {
	return laneStep{do: "unconfirmed", seq: seq, want: want}
}
func expire(at time.Duration, want ...uint64) laneStep {
	return laneStep{do: "expire", at: at, want: want}
}
func (s laneStep) onAttempt(n uint64) laneStep     { s.attempt = n; return s }
func (s laneStep) after(at time.Duration) laneStep { s.at = at; return s }

func TestLaneSet(t *testing.T) {
	tests := []struct {
		name  string
		steps []laneStep
		// wantParked lists the stream sequences still parked at the end.
		wantParked []uint64
		wantHeld   int
	}{
		{
			name: "one key goes out one message at a time in stream order",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "a"), recv(3, "a"),
				done(1, 2), done(2, 3), done(3),
			},
		},
		{
			name: "keys do not wait for each other",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "b", 2), recv(3, "a"), recv(4, "b"),
				done(2, 4), done(1, 3), done(3), done(4),
			},
		},
		{
			name: "a retried message parks its key until it is back",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "a"),
				retry(1, 5*time.Second),
				recv(3, "a"),
				recv(1, "a", 1).after(5 * time.Second),
				done(1, 2), done(2, 3), done(3),
			},
		},
		{
			name: "an older message arriving while a newer one is parked goes first",
			steps: []laneStep{
				recv(5, "a", 5), retry(5, time.Second),
				recv(3, "a", 3), recv(6, "a"),
				done(3), // the lane waits for 5 again; 6 stays behind it
				recv(5, "a", 5).after(time.Second),
				done(5, 6), done(6),
			},
		},
		{
			name: "an older message held behind a newer one goes out when the newer is retried",
			steps: []laneStep{
				recv(5, "a", 5), recv(3, "a"), // 3 arrives while 5 is in its handler
				retry(5, time.Second, 3), // 5's handler defers it for 3
				recv(5, "a").after(time.Second),
				done(3, 5), done(5),
			},
		},
		{
			name: "a parked message back while an older one is out waits behind it",
			steps: []laneStep{
				recv(5, "a", 5), retry(5, time.Second),
				recv(3, "a", 3), recv(2, "a"),
				recv(5, "a").after(time.Second),
				done(3, 2), done(2, 5), done(5),
			},
		},
		{
			name: "an unconfirmed ack waits for the redelivery",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "a"),
				unconfirmed(1),
				recv(1, "a", 1).after(tRedeliver),
				done(1, 2), done(2),
			},
		},
		{
			name: "an unconfirmed ack that never comes back is given up",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "a"),
				unconfirmed(1),
				expire(2*tRedeliver + tGrace),
				expire(2*tRedeliver+tGrace+time.Nanosecond, 2),
				done(2),
			},
		},
		{
			name: "the last delivery does not park the lane",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "a"),
				retry(1, time.Second, 2).onAttempt(tMaxDeliver),
				done(2),
			},
		},
		{
			name: "a delivery before the last parks the lane",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "a"),
				retry(1, time.Second).onAttempt(tMaxDeliver - 1),
			},
			wantParked: []uint64{1},
			wantHeld:   1,
		},
		{
			name: "a parked message that is not redelivered is given up",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "a"), recv(3, "b", 3), recv(4, "b"),
				retry(1, 5*time.Second), retry(3, time.Second),
				expire(time.Second + tRedeliver + tGrace),
				expire(time.Second+tRedeliver+tGrace+time.Nanosecond, 4),
				expire(5*time.Second+tRedeliver+tGrace+time.Nanosecond, 2),
				// Released lanes move on.
				done(2), done(4),
			},
		},
		{
			name: "lanes released together go out in stream order",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "b", 2), recv(3, "a"), recv(4, "b"),
				retry(2, time.Second), retry(1, time.Second),
				expire(time.Hour, 3, 4),
			},
		},
		{
			name: "a terminated message frees its lane",
			steps: []laneStep{
				recv(1, "a", 1), recv(2, "a"), done(1, 2),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ls := newLaneSet(tRedeliver, tGrace, tMaxSafeDelay, tMaxDeliver, slog.New(slog.DiscardHandler))
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			out := make(map[uint64]*entry) // the entries set free, by sequence
			for i, st := range tc.steps {
				now := start.Add(st.at)
				var got []*entry
				switch st.do {
				case "recv":
					got = appendNonNil(got, ls.receive(&entry{seq: st.seq, key: st.key}))
				case "done", "retry", "unconfirmed":
					e := out[st.seq]
					if e == nil {
						t.Fatalf("step %d: %s %d, which was never set free", i, st.do, st.seq)
					}
					delete(out, st.seq)
					how := settlement{kind: settledDone}
					switch st.do {
					case "retry":
						how = settlement{kind: settledRetry, delay: st.delay, attempt: max(st.attempt, 1)}
					case "unconfirmed":
						how = settlement{kind: settledUnconfirmed}
					}
					got = appendNonNil(got, ls.settled(e, how, now))
				case "expire":
					got = ls.expire(now)
				}
				var seqs []uint64
				for _, e := range got {
					seqs = append(seqs, e.seq)
					if out[e.seq] != nil {
						t.Fatalf("step %d (%s %d): %d set free twice", i, st.do, st.seq, e.seq)
					}
					out[e.seq] = e
				}
				if !slices.Equal(seqs, st.want) {
					t.Fatalf("step %d (%s %d): set free %v, want %v", i, st.do, st.seq, seqs, st.want)
				}
			}
			var parked []uint64
			for _, e := range ls.parkedEntries() {
				parked = append(parked, e.seq)
			}
			if !slices.Equal(parked, tc.wantParked) {
				t.Errorf("parked %v at the end, want %v", parked, tc.wantParked)
			}
			if ls.held != tc.wantHeld {
				t.Errorf("%d held at the end, want %d", ls.held, tc.wantHeld)
			}
			if len(out) == 0 && tc.wantParked == nil && tc.wantHeld == 0 && len(ls.byKey) != 0 {
				t.Errorf("lanes %v kept after everything was settled", slices.Collect(maps.Keys(ls.byKey)))
			}
		})
	}
}

func appendNonNil(es []*entry, e *entry) []*entry {
	if e == nil {
		return es
	}
	return append(es, e)
}

// TestLaneSetDue: a parked message is due from its delay (and a margin for
// the server's timer) on, and the loop wakes for the next one not due yet.
func TestLaneSetDue(t *testing.T) {
	ls := newLaneSet(tRedeliver, tGrace, tMaxSafeDelay, tMaxDeliver, slog.New(slog.DiscardHandler))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, m := range []struct {
		seq   uint64
		key   string
		delay time.Duration
	}{{1, "a", 5 * time.Second}, {2, "b", 2 * time.Second}} {
		e := ls.receive(&entry{seq: m.seq, key: m.key})
		ls.settled(e, settlement{kind: settledRetry, delay: m.delay, attempt: 1}, start)
	}
	tests := []struct {
		at       time.Duration
		wantDue  bool
		wantNext time.Duration // 0: none
	}{
		{at: 0, wantDue: false, wantNext: 2*time.Second + dueMargin},
		{at: 2*time.Second + dueMargin - time.Nanosecond, wantDue: false, wantNext: 2*time.Second + dueMargin},
		{at: 2*time.Second + dueMargin, wantDue: true, wantNext: 5*time.Second + dueMargin},
		{at: 5*time.Second + dueMargin, wantDue: true, wantNext: 0},
	}
	for _, tc := range tests {
		now := start.Add(tc.at)
		if got := ls.due(now); got != tc.wantDue {
			t.Errorf("at %v: due = %v, want %v", tc.at, got, tc.wantDue)
		}
		next, ok := ls.nextDue(now)
		if got := next.Sub(start); ok != (tc.wantNext != 0) || (ok && got != tc.wantNext) {
			t.Errorf("at %v: next due %v (%v), want %v", tc.at, got, ok, tc.wantNext)
		}
	}
}

func TestFetchSize(t *testing.T) {
	key := func(string, nats.Header) string { return "" }
	plain := SubscriberConfig{MaxInFlight: 16}
	lanes := SubscriberConfig{MaxInFlight: 4, MaxHeld: 3, KeyFunc: key}
	noHold := SubscriberConfig{MaxInFlight: 4, MaxHeld: -1, KeyFunc: key}
	tests := []struct {
		name      string
		cfg       SubscriberConfig
		c         custody
		parkedDue bool
		want      int
	}{
		{"idle: every handler slot", plain, custody{}, false, 16},
		{"busy with few free slots: wait for a batch", plain, custody{emitted: 9}, false, 0},
		{"busy with half the slots free", plain, custody{emitted: 8}, false, 8},
		{"ready messages count as busy", plain, custody{emitted: 4, ready: 5}, false, 0},
		{"a pull request's reserved room is taken", plain, custody{reserved: 10}, false, 6},
		{"full", plain, custody{emitted: 16}, false, 0},
		{"lanes: at most MaxHeld more, as each may be held", lanes, custody{}, false, 3},
		{"lanes: handlers busy, keep fetching past them", lanes, custody{emitted: 4}, false, 3},
		{"lanes: held at the bound", lanes, custody{emitted: 1, held: 3}, false, 0},
		{"lanes: at the bound, a parked message came due", lanes, custody{emitted: 1, held: 3}, true, 1},
		{"lanes: custody at its bound", lanes, custody{emitted: 4, ready: 2, held: 1}, false, 0},
		{"lanes: room left, the parked message comes with a batch", lanes, custody{held: 1}, true, 2},
		{"lanes holding nothing: the free slots", noHold, custody{emitted: 2}, false, 2},
		{"lanes holding nothing: held counts against the slots", noHold, custody{emitted: 2, held: 2}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fetchSize(tc.cfg, tc.c, tc.parkedDue); got != tc.want {
				t.Errorf("fetchSize(%+v, due %v) = %d, want %d", tc.c, tc.parkedDue, got, tc.want)
			}
		})
	}
}

func TestHandBackOrder(t *testing.T) {
	msgs := []givenBack{{seq: 5, key: "k"}, {seq: 2, key: "b"}, {seq: 3, key: "k"}, {seq: 9, key: "k"}, {seq: 7, key: "c"}}
	seqs := func(gs []givenBack) []uint64 {
		var s []uint64
		for _, g := range gs {
			s = append(s, g.seq)
		}
		return s
	}
	tests := []struct {
		name        string
		pinned      bool
		first, rest []uint64
	}{
		{"no pin: all at once, in stream order", false, []uint64{2, 3, 5, 7, 9}, nil},
		{"pinned lanes: the oldest of each key first, the rest after the unpin", true, []uint64{2, 3, 7}, []uint64{5, 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first, rest := handBackOrder(slices.Clone(msgs), tc.pinned)
			if !slices.Equal(seqs(first), tc.first) || !slices.Equal(seqs(rest), tc.rest) {
				t.Errorf("first %v, rest %v; want %v, %v", seqs(first), seqs(rest), tc.first, tc.rest)
			}
		})
	}
}
