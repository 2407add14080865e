package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// terminal is the first terminal result event of a command.
type terminal struct {
	received  time.Time // when the bench read it
	completed time.Time // the worker's CompletedAt
	started   time.Time // the worker's FirstAttemptAt
	outcome   commands.Outcome
	class     commands.ErrorClass
	count     int // terminal events of the command, this one included
}

// events follows the EVENTS stream from its start and keeps the first
// terminal event of every command, and counts of the others (events that
// do not decode are skipped). Safe for concurrent use.
type events struct {
	cc jetstream.ConsumeContext

	mu        sync.Mutex
	terminals map[string]terminal
	outcomes  map[commands.Outcome]int // every event, terminal or not
	classes   map[commands.ErrorClass]int
	// waiting counts failed events whose API message says the attempt
	// ran out of time waiting for the rate limiter.
	waiting int
	// last is when the latest event of any kind was read.
	last time.Time
	// reconciled counts terminal events whose note says the outcome was
	// found by reconciliation: an earlier attempt's answer was lost (a
	// crash between the API's answer and the ack, or a reset after the
	// change).
	reconciled int
}

// followEvents starts following the EVENTS stream on js.
func followEvents(ctx context.Context, js jetstream.JetStream) (*events, error) {
	ev := &events{
		terminals: make(map[string]terminal),
		outcomes:  make(map[commands.Outcome]int),
		classes:   make(map[commands.ErrorClass]int),
	}
	c, err := js.OrderedConsumer(ctx, topology.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	ev.cc, err = c.Consume(ev.handle)
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	return ev, nil
}

func (ev *events) stop() { ev.cc.Stop() }

func (ev *events) handle(m jetstream.Msg) {
	now := time.Now()
	var r commands.Result
	if err := json.Unmarshal(m.Data(), &r); err != nil {
		return // not a result event: nothing to count
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.last = now
	ev.outcomes[r.Outcome]++
	if r.ErrorClass != "" {
		ev.classes[r.ErrorClass]++
	}
	if r.Outcome == commands.OutcomeFailed && strings.Contains(strings.ToLower(r.APIMessage), "rate limiter") {
		ev.waiting++
	}
	if !r.Outcome.Terminal() {
		return
	}
	if strings.HasPrefix(r.Note, "reconciled") {
		ev.reconciled++
	}
	t, seen := ev.terminals[r.CommandID]
	if !seen {
		t = terminal{received: now, completed: r.CompletedAt, started: r.FirstAttemptAt, outcome: r.Outcome, class: r.ErrorClass}
	}
	t.count++
	ev.terminals[r.CommandID] = t
}

// lookup returns the terminal event of command id.
func (ev *events) lookup(id string) (terminal, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	t, ok := ev.terminals[id]
	return t, ok
}

// eventCounts is a snapshot of the counters of events.
type eventCounts struct {
	terminal, succeeded, deadLettered, failed, waiting, reconciled int
	classes                                                        map[commands.ErrorClass]int
}

func (ev *events) counts() eventCounts {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return eventCounts{
		terminal:     len(ev.terminals),
		succeeded:    ev.outcomes[commands.OutcomeSucceeded],
		deadLettered: ev.outcomes[commands.OutcomeDeadLettered],
		failed:       ev.outcomes[commands.OutcomeFailed],
		waiting:      ev.waiting,
		reconciled:   ev.reconciled,
		classes:      maps.Clone(ev.classes),
	}
}

// classList renders the error classes seen, e.g. "rate_limited 3"; "none".
func (c eventCounts) classList() string {
	var parts []string
	for _, k := range commands.ErrorClasses() {
		if n := c.classes[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// completionSpan returns the worker's CompletedAt of the first and the last
// terminal event among ids that have one, and how many have one.
func (ev *events) completionSpan(ids []string) (first, last time.Time, n int) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, id := range ids {
		t, ok := ev.terminals[id]
		if !ok {
			continue
		}
		n++
		if first.IsZero() || t.completed.Before(first) {
			first = t.completed
		}
		if t.completed.After(last) {
			last = t.completed
		}
	}
	return first, last, n
}

// lastReceived is when the bench read the last terminal event among ids.
func (ev *events) lastReceived(ids []string) time.Time {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var last time.Time
	for _, id := range ids {
		if t, ok := ev.terminals[id]; ok && t.received.After(last) {
			last = t.received
		}
	}
	return last
}

// waitAll waits until every command in ids has a terminal event, while s's
// processes are alive and ctx lasts; label names the wait in the progress
// lines and the error when not all finished.
func (ev *events) waitAll(ctx context.Context, s *stack, ids []string, label string) error {
	start := time.Now()
	nextProgress := start.Add(2 * time.Second)
	pending := append([]string(nil), ids...)
	for {
		ev.mu.Lock()
		kept := pending[:0]
		for _, id := range pending {
			if _, ok := ev.terminals[id]; !ok {
				kept = append(kept, id)
			}
		}
		pending = kept
		ev.mu.Unlock()
		done := len(ids) - len(pending)
		if len(pending) == 0 {
			return nil
		}
		if err := s.checkAlive(); err != nil {
			return err
		}
		if now := time.Now(); now.After(nextProgress) {
			s.env.logf("%s  completed %d/%d  %.0fs", label, done, len(ids), now.Sub(start).Seconds())
			nextProgress = now.Add(2 * time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d commands finished: %w", label, done, len(ids), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitQuiet polls until no event has been read for quiet, or fails after
// limit.
func (ev *events) waitQuiet(ctx context.Context, quiet, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ev.mu.Lock()
		last := ev.last
		ev.mu.Unlock()
		if time.Since(last) >= quiet {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("EVENTS not quiet for %v within %v", quiet, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
