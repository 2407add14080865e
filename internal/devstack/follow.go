package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// drainEventsFor bounds how long the follower waits, once the parts have
// stopped, for the events published before that.
const drainEventsFor = 10 * time.Second

// eventFollower prints one line per event of the EVENTS stream published
// after its creation. It is used by one goroutine.
type eventFollower struct {
	stream jetstream.Stream
	it     jetstream.MessagesContext
	out    io.Writer
	log    *slog.Logger
	last   uint64 // stream sequence of the last event printed
}

// newEventFollower starts following EVENTS from the sequence after its
// last one now, so that no event published later is missed.
func newEventFollower(ctx context.Context, js jetstream.JetStream, out io.Writer, log *slog.Logger) (*eventFollower, error) {
	s, err := js.Stream(ctx, topology.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	last := info.State.LastSeq
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   last + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	it, err := c.Messages()
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	return &eventFollower{stream: s, it: it, out: out, log: log, last: last}, nil
}

// run prints events until partsStopped ends (the parts that publish
// events, ingest and the worker, have returned), then prints those left up
// to the stream's last sequence at that moment, waiting at most drainFor
// for them, and stops.
func (f *eventFollower) run(partsStopped context.Context, drainFor time.Duration) {
	defer f.it.Stop()
	for {
		err := f.next(partsStopped)
		if err == nil {
			continue
		}
		if partsStopped.Err() != nil {
			break
		}
		f.log.Warn("follow events", "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainFor)
	defer cancel()
	info, err := f.stream.Info(ctx)
	if err != nil {
		f.log.Warn("follow events: the last events may be missing", "error", err)
		return
	}
	target := info.State.LastSeq
	for f.last < target {
		if err := f.next(ctx); err != nil {
			f.log.Warn("follow events: the last events are not printed", "from_seq", f.last+1, "to_seq", target, "error", err)
			return
		}
	}
}

// next prints the next event, waiting for it until ctx ends.
func (f *eventFollower) next(ctx context.Context) error {
	m, err := f.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		return err
	}
	if md, err := m.Metadata(); err == nil {
		f.last = md.Sequence.Stream
	}
	fmt.Fprintln(f.out, eventText(m.Subject(), m.Data()))
	return nil
}

// eventText renders a message of the EVENTS stream on one line for people:
// WebhookLine for an Altegio webhook event, EventLine for a result, else
// the subject.
func eventText(subject string, data []byte) string {
	var wh commands.WebhookEvent
	if strings.Contains(subject, ".webhook.") && json.Unmarshal(data, &wh) == nil {
		return WebhookLine(wh)
	}
	var r commands.Result
	if err := json.Unmarshal(data, &r); err != nil || r.CommandID == "" {
		return "event  " + subject
	}
	return EventLine(r)
}
