package worker

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/nats-io/nats.go"
)

// Subjects no consumer covers.
//
// COMMANDS stores only altegio.cmd.<location>.<client-key>.<op>: five
// tokens. No stream takes any other altegio.cmd subject, so nothing is
// stored that no consumer would take; but a core publish would vanish
// without a word. So the workers listen on exactly the other forms (two,
// three and four tokens, and six or more), one worker per message (a queue
// group), count them in worker_refused_subjects_total, log a sample, and
// answer a JetStream publisher with an error that says which form COMMANDS
// takes. A stored subject of the right form that disagrees with its body is
// the handler's business (CheckStoredSubject): dead-lettered as invalid.

// refusedQueue is the queue group of the workers' refused-subject listeners.
const refusedQueue = "altegio-workers-refused"

// refusedAnswer is the PubAck-shaped error a JetStream publisher on a
// refused subject gets: "stream not found" (10059), which nats.go reports as
// jetstream.ErrStreamNotFound, with the form COMMANDS takes.
var refusedAnswer = []byte(`{"error":{"code":404,"err_code":10059,"description":"no stream takes this subject: ` +
	`COMMANDS takes altegio.cmd.<location>.<client-key>.<op> only"}}`)

// refusedLogEvery bounds the warnings about refused subjects.
const refusedLogEvery = time.Minute

// watchRefused counts publishes on refused subjects until ctx ends.
func (w *Worker) watchRefused(ctx context.Context) {
	nc := w.js.Conn()
	var (
		mu      sync.Mutex
		lastLog time.Time
	)
	handle := func(m *nats.Msg) {
		w.metrics.refused.Inc()
		if m.Reply != "" {
			// A JetStream publish waits for a PubAck: answer with an error
			// that says why, as the server's "no responders" would not.
			_ = m.Respond(refusedAnswer)
		}
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); now.Sub(lastLog) >= refusedLogEvery {
			lastLog = now
			w.log.Warn("a command was published on a subject COMMANDS does not take; it was refused, not stored "+
				"(counted in worker_refused_subjects_total; this warning at most once a minute)",
				slog.String("subject", truncate(m.Subject, 200)), slog.Int("tokens", strings.Count(m.Subject, ".")+1))
		}
	}
	var subs []*nats.Subscription
	for _, s := range commands.MisformedCommandFilters {
		sub, err := nc.QueueSubscribe(s, refusedQueue, handle)
		if err != nil {
			w.log.Warn("cannot watch refused command subjects", slog.String("subject", s), slog.Any("error", err))
			continue
		}
		subs = append(subs, sub)
	}
	<-ctx.Done()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
