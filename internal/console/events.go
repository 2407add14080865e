package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// storedEvent is a result event with where and when EVENTS stored it.
type storedEvent struct {
	commands.Result
	Seq     uint64
	Subject string
	At      time.Time
}

// attention is an account.needs_attention event (internal/worker
// AccountAttention, read by its JSON names: ingest links no worker code).
type attention struct {
	LocationID int64     `json:"location_id"`
	Account    string    `json:"account"`
	Reason     string    `json:"reason"`
	CommandID  string    `json:"command_id"`
	Paused     bool      `json:"paused"`
	At         time.Time `json:"at"`
}

// resultFilter matches the result events (altegio.evt.<location>.<op>.
// <outcome>) and the account.needs_attention events, which have the same
// number of tokens; webhook events have six and are not matched.
const resultFilter = "altegio.evt.*.*.*"

// subjectParts splits an event subject into its op and last token; ok is
// false for anything but altegio.evt.<location>.<op>.<outcome>.
func subjectParts(subject string) (op, last string, ok bool) {
	t := strings.Split(subject, ".")
	if len(t) != 5 || t[0] != "altegio" || t[1] != "evt" {
		return "", "", false
	}
	return t[3], t[4], true
}

// isAttention reports an account.needs_attention subject.
func isAttention(subject string) bool {
	op, last, ok := subjectParts(subject)
	return ok && op == "account" && last == "needs_attention"
}

// Series of result events per minute.
const (
	seriesSucceeded    = "events.succeeded" // succeeded and partially_succeeded
	seriesRetried      = "events.failed"    // failed: a retryable failure, retried
	seriesDeadLettered = "events.dead_lettered"
	seriesReplayed     = "events.replayed"
	seriesSuperseded   = "events.superseded"
)

// seriesOf maps an outcome to its series.
func seriesOf(o commands.Outcome) string {
	switch o {
	case commands.OutcomeSucceeded, commands.OutcomePartiallySucceeded:
		return seriesSucceeded
	case commands.OutcomeFailed:
		return seriesRetried
	case commands.OutcomeDeadLettered:
		return seriesDeadLettered
	case commands.OutcomeReplayed:
		return seriesReplayed
	case commands.OutcomeSuperseded:
		return seriesSuperseded
	}
	return ""
}

// eventCounter counts the result events of the last hour per minute, and
// keeps the latest account.needs_attention event of each account, from
// one ordered consumer on EVENTS that starts at now − 1 h and follows new
// events. Safe for concurrent use.
type eventCounter struct {
	js     jetstream.JetStream
	series *minutes
	now    func() time.Time
	log    *slog.Logger

	mu        sync.Mutex
	running   bool
	since     time.Time // where the count started
	read      int64
	err       error
	attention map[string]attention // by account (or "location N" when unnamed)
}

func newEventCounter(js jetstream.JetStream, series *minutes, now func() time.Time, log *slog.Logger) *eventCounter {
	return &eventCounter{js: js, series: series, now: now, log: log, attention: map[string]attention{}}
}

// counterState is what the overview says about the count.
type counterState struct {
	Running bool
	Since   time.Time
	Read    int64
	Err     error
}

func (c *eventCounter) state() counterState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return counterState{Running: c.running, Since: c.since, Read: c.read, Err: c.err}
}

// accounts returns the latest needs_attention event of each account.
func (c *eventCounter) accounts() map[string]attention {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]attention, len(c.attention))
	for k, v := range c.attention {
		out[k] = v
	}
	return out
}

// The counter's waits before it tries again when its consumer cannot be
// created or stopped: doubling from retryFirst to retryMax.
const (
	retryFirst = 5 * time.Second
	retryMax   = time.Minute
)

// run counts until ctx ends. The consumer is an ordered consumer: it
// recreates itself after a NATS outage, from the event after the last it
// delivered; when it cannot (no permission to read EVENTS, no stream),
// run tries again later, and logs each new reason once.
func (c *eventCounter) run(ctx context.Context) {
	wait, lastErr := retryFirst, ""
	for {
		started := time.Now()
		err := c.consume(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > retryMax {
			wait = retryFirst // it had worked for a while
		}
		c.mu.Lock()
		c.running, c.err = false, err
		c.mu.Unlock()
		if err.Error() != lastErr {
			c.log.Warn("console: cannot count result events; trying again", "error", err, "in", wait)
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// consume creates the consumer and counts until ctx ends (nil), or
// returns why the consumer could not be created or stopped.
func (c *eventCounter) consume(ctx context.Context) error {
	start := c.now().Add(-window)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := c.js.OrderedConsumer(cctx, topology.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{resultFilter},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	c.mu.Lock()
	// Counts from an earlier consumer stay: this one starts an hour back,
	// so clear them to count each event once.
	c.running, c.err, c.since, c.read = true, nil, start, 0
	c.mu.Unlock()
	c.series.reset(seriesSucceeded, seriesRetried, seriesDeadLettered, seriesReplayed, seriesSuperseded)
	cc, err := cons.Consume(c.count, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			c.log.Debug("console: events consumer", "error", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	select {
	case <-ctx.Done():
		cc.Stop()
		<-cc.Closed()
		return nil
	case <-cc.Closed():
		return errors.New("read events: the consumer stopped")
	}
}

// count handles one delivered event.
func (c *eventCounter) count(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	c.mu.Lock()
	c.read++
	c.mu.Unlock()
	subject := m.Subject()
	if isAttention(subject) {
		var a attention
		if json.Unmarshal(m.Data(), &a) != nil {
			return
		}
		if a.At.IsZero() {
			a.At = md.Timestamp
		}
		key := a.Account
		if key == "" {
			key = fmt.Sprintf("location %d", a.LocationID)
		}
		c.mu.Lock()
		if cur, ok := c.attention[key]; !ok || !a.At.Before(cur.At) {
			c.attention[key] = a
		}
		c.mu.Unlock()
		return
	}
	_, outcome, ok := subjectParts(subject)
	if !ok {
		return
	}
	if s := seriesOf(commands.Outcome(outcome)); s != "" {
		c.series.add(s, md.Timestamp, 1)
	}
}

// scanLimit bounds the events one page reads.
const scanLimit = 200_000

// scan reads the stored events on filter from since on, oldest first,
// calling fn for each until fn returns false, the last event stored when
// the scan started was read, or limit events were read (then truncated is
// true).
func scan(ctx context.Context, js jetstream.JetStream, filter string, since time.Time, limit int, fn func(storedEvent) bool) (truncated bool, err error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := js.OrderedConsumer(ctx, topology.StreamEvents, cfg)
	if err != nil {
		return false, fmt.Errorf("read events: %w", err)
	}
	info := cons.CachedInfo()
	if info == nil || info.NumPending == 0 {
		return false, nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(500))
	if err != nil {
		return false, fmt.Errorf("read events: %w", err)
	}
	defer it.Stop()
	for n := 0; ; n++ {
		if n >= limit {
			return true, nil
		}
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return false, fmt.Errorf("read events: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return false, fmt.Errorf("read events: %w", err)
		}
		if !isAttention(m.Subject()) {
			e := storedEvent{Seq: md.Sequence.Stream, Subject: m.Subject(), At: md.Timestamp.UTC()}
			if json.Unmarshal(m.Data(), &e.Result) == nil && !fn(e) {
				return false, nil
			}
		}
		if md.NumPending == 0 {
			return false, nil
		}
	}
}
