package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/tracing"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// ReasonMaxDeliveries is the reason of a dead letter written by the sweeper.
const ReasonMaxDeliveries = "max deliveries reached"

// maxDeliveriesAdvisory is the part of the server's
// io.nats.jetstream.advisory.v1.max_deliver advisory the sweeper reads.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// sweep handles one max-deliveries advisory: the command it names ran out
// of deliveries without the worker settling it (typically a crash or panic
// on the last delivery). If the message is still in COMMANDS, the sweeper
// finishes what the worker would have done: a done command gets its stored
// result re-published, a dead one its DLQ record and event, and anything
// else is dead-lettered with class exhausted. Then the message is deleted
// from the stream. Every step is idempotent (compare-and-set on the
// record, deduplicated message ids), so several sweepers, or a sweeper
// racing a worker, write one DLQ record.
//
// A command the sweeper cannot settle (NATS trouble) is retried with
// backoff, and reported at Error once, not at every retry.
func (w *Worker) sweep(msg *message.Message) error {
	var adv maxDeliveriesAdvisory
	if err := json.Unmarshal(msg.Payload, &adv); err != nil || adv.StreamSeq == 0 {
		w.log.Warn("sweeper: unreadable advisory dropped", slog.Any("error", err))
		return nil
	}
	if adv.Stream != topology.StreamCommands {
		return nil
	}
	err := w.sweepCommandAt(msg, adv)
	if err == nil {
		w.swept.forget(adv.StreamSeq)
		return nil
	}
	if w.swept.first(adv.StreamSeq) {
		w.log.Error("sweeper cannot settle a command that ran out of deliveries; retrying (reported once per command)",
			slog.Uint64("stream_seq", adv.StreamSeq), slog.Any("error", err))
	} else {
		w.log.Debug("sweeper retry failed", slog.Uint64("stream_seq", adv.StreamSeq), slog.Any("error", err))
	}
	n := 1
	if info, ok := wmjetstream.Delivery(msg); ok {
		n = int(min(info.NumDelivered, 16))
	}
	wmjetstream.Retry(msg, w.backoff(n))
	return nil
}

// sweepCommandAt settles the command an advisory names.
func (w *Worker) sweepCommandAt(msg *message.Message, adv maxDeliveriesAdvisory) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), w.cfg.BookkeepingTimeout)
	defer cancel()
	raw, err := w.commands.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // settled after all, or swept already
	}
	if err != nil {
		return fmt.Errorf("sweeper: get command %d: %w", adv.StreamSeq, err)
	}
	if err := w.sweepCommand(ctx, raw, adv); err != nil {
		return fmt.Errorf("sweeper: command %d: %w", adv.StreamSeq, err)
	}
	if err := w.commands.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("sweeper: delete command %d: %w", adv.StreamSeq, err)
	}
	return nil
}

// sweepCommand brings the command at raw to a terminal event, in a
// worker.sweep span of the command's trace.
func (w *Worker) sweepCommand(ctx context.Context, raw *jetstream.RawStreamMsg, adv maxDeliveriesAdvisory) (err error) {
	ctx = tracing.Extract(ctx, raw.Header)
	ctx, span := w.tracer.Start(ctx, "worker.sweep")
	defer func() {
		tracing.SetError(span, err)
		span.End()
	}()
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrStreamSeq.Int64(int64(raw.Sequence)), tracing.AttrDeliveryCount.Int64(int64(adv.Deliveries)))
	}
	m := message.NewMessage(fmt.Sprintf("sweep-%d", raw.Sequence), raw.Data)
	for k, v := range raw.Header {
		if len(v) > 0 {
			m.Metadata.Set(k, v[0])
		}
	}
	j := &job{w: w, msg: m,
		info: wmjetstream.DeliveryInfo{
			Stream: topology.StreamCommands, Consumer: adv.Consumer, Subject: raw.Subject,
			StreamSeq: raw.Sequence, NumDelivered: adv.Deliveries, Timestamp: raw.Time,
		},
		log:  w.log.With(slog.String("component", "sweeper"), slog.Uint64("stream_seq", raw.Sequence)),
		span: span, traceID: tracing.TraceID(ctx),
	}
	if j.traceID != "" {
		j.log = j.log.With(slog.String("trace_id", j.traceID))
	}
	cmd, err := commands.Decode(raw.Data)
	j.cmd = cmd
	exhausted := verdict{class: commands.ClassExhausted}
	if err != nil || cmd.ID == "" {
		// Not a decodable command; its body may still name its id, under
		// which the worker recorded the dead letter it was publishing.
		if id := commands.PeekID(raw.Data); id != "" {
			rec, _, lerr := w.idem.load(ctx, id)
			switch {
			case lerr != nil:
				return lerr
			case rec.State == idem.StateDead && rec.StreamSeq == raw.Sequence && rec.DeadLetter != nil && rec.Result != nil:
				j.cmd.ID = id
				return j.emitDead(ctx, *rec.DeadLetter, *rec.Result)
			case rec.State == "":
				j.cmd.ID = id
			}
		}
		dl := j.dlqRecord(exhausted, ReasonMaxDeliveries, w.cfg.Now())
		r := j.result(commands.OutcomeDeadLettered, exhausted)
		r.APIMessage = ReasonMaxDeliveries
		return j.emitDead(ctx, dl, r)
	}
	j.log = j.log.With(slog.String("command_id", cmd.ID), slog.String("type", string(cmd.Type)))
	rec, rev, err := w.idem.load(ctx, cmd.ID)
	if err != nil {
		return err
	}
	j.rec, j.rev = rec, rev
	switch {
	case rec.State == idem.StateDone && rec.Result != nil:
		// It succeeded; only the ack was lost.
		return w.publishResult(ctx, *rec.Result)
	case rec.State == idem.StateDead && rec.StreamSeq == raw.Sequence && rec.DeadLetter != nil && rec.Result != nil:
		return j.emitDead(ctx, *rec.DeadLetter, *rec.Result)
	case rec.State == idem.StateDead && replayOf(m) == 0:
		return nil // a duplicate of a dead-lettered command
	}
	if j.rec.LastStatus != 0 {
		exhausted.status = j.rec.LastStatus
	}
	cause := errors.New(ReasonMaxDeliveries)
	if j.rec.LastError != "" {
		cause = fmt.Errorf("%s; last error: %s", ReasonMaxDeliveries, j.rec.LastError)
	}
	dl, r, err := j.markDead(ctx, exhausted, cause)
	if err != nil {
		return err
	}
	return j.emitDead(ctx, dl, r)
}

// reportedOnce remembers the stream sequences already reported, so that a
// stuck command is reported once. It forgets everything past a bound.
type reportedOnce struct {
	mu   sync.Mutex
	seqs map[uint64]struct{}
}

// reportedOnceMax bounds reportedOnce.
const reportedOnceMax = 10000

// first reports whether seq is reported for the first time.
func (r *reportedOnce) first(seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seqs[seq]; ok {
		return false
	}
	if r.seqs == nil || len(r.seqs) >= reportedOnceMax {
		r.seqs = make(map[uint64]struct{})
	}
	r.seqs[seq] = struct{}{}
	return true
}

func (r *reportedOnce) forget(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.seqs, seq)
}
