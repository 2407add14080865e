package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// Order across processes.
//
// Commands of one client must be carried out in stream order. Inside a
// process the subscriber's ordered lanes keep that order, and the pinned
// priority group normally gives each partition to one process at a time.
// But the server keeps the pin only in the consumer leader's memory: when
// the consumer's leader moves (a node dies), the new leader hands the
// partition to whichever process pulls first, while the previous one may
// still hold unsettled commands of the same clients. So the pin is an
// optimisation, and the COMMANDS stream decides: it is a work queue, and a
// command leaves it only when it was acked (succeeded, duplicate,
// superseded), terminated (dead-lettered) or swept. Before a command is
// carried out the worker asks the stream for the first stored message of
// the command's client; if that message is older than the command, an
// earlier command of the client is still pending somewhere (in another
// process, waiting for a retry, or not yet redelivered), and this one is
// deferred without being attempted.
//
// The read goes to the stream leader (COMMANDS has allow_direct false, so
// nats.go uses $JS.API.STREAM.MSG.GET, which only the leader answers): a
// follower answering a direct get could lag and miss the older message.
// The leader may still show a command that was just acked (the deletion is
// proposed after the ack), which costs a needless deferral, never a wrong
// order.

// clientFilter returns the filter matching every stored command of the
// client of a message stored on subject
// altegio.cmd.<partition>.<location>.<client-key>.<op>: the same subject
// with the op replaced by "*". ok is false for subjects of another shape and
// for client keys that name only the command itself (cmd_…, a create
// without ref or a bulk create), which have no other command to wait for.
func clientFilter(subject string) (filter string, ok bool) {
	s, ok := commands.ParseStoredSubject(subject)
	if !ok || !commands.NamesClient(s.ClientKey) {
		return "", false
	}
	return s.ClientFilter(), true
}

// olderPending returns the oldest command of the delivered command's client
// that is still stored in COMMANDS, when it is older than the delivered
// one; nil when there is none.
func (j *job) olderPending(ctx context.Context) (*jetstream.RawStreamMsg, error) {
	filter, ok := clientFilter(j.info.Subject)
	if !ok || j.w.commands == nil {
		return nil, nil
	}
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	first, err := j.w.commands.GetMsg(bctx, 1, jetstream.WithGetMsgSubject(filter))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Not even this message is stored any more: it was settled by
		// another delivery; the idempotency record tells what to do.
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("look up older commands of %s: %w", filter, err)
	case first.Sequence < j.info.StreamSeq:
		return first, nil
	}
	return nil, nil
}

// deferForOrder gives the command back to the server without attempting it,
// because an older command of its client (older) is still pending. It is a
// deferral, not an attempt: nothing is recorded. The delay grows with the
// delivery count (RetryBase doubling, capped at RetryMax); meanwhile the
// client's lane in this process stays parked. On the consumer's last
// delivery the command is dead-lettered as exhausted rather than run out of
// order.
func (j *job) deferForOrder(ctx context.Context, older *jetstream.RawStreamMsg) error {
	w := j.w
	olderID := older.Header.Get(commands.HeaderCommandID)
	if j.lastDelivery() {
		return j.deadLetter(ctx, verdict{class: commands.ClassExhausted},
			fmt.Errorf("max deliveries reached while an older command of the client (stream seq %d, command %s) was pending",
				older.Sequence, olderID))
	}
	delay := w.backoff(int(min(j.info.NumDelivered, 16)))
	w.metrics.retries.WithLabelValues(retryClassOrder).Inc()
	w.metrics.commands.WithLabelValues(string(j.cmd.Type), "deferred").Inc()
	j.log.Debug("deferred: an older command of the client is pending",
		slog.Uint64("older_seq", older.Sequence), slog.String("older_command_id", olderID),
		slog.Duration("delay", delay))
	j.mark("deferred_order", "", nil)
	wmjetstream.Retry(j.msg, delay)
	return nil
}

// retryClassOrder is the worker_retries_total class of a deferral behind an
// older command of the same client.
const retryClassOrder = "order"
