package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// deadLetter records the command as dead, then publishes the DLQ record and
// the dead_lettered event and terminates the message.
func (j *job) deadLetter(ctx context.Context, v verdict, cause error) error {
	dl, r, err := j.markDead(ctx, v, cause)
	if err != nil {
		return j.retryInfra(err)
	}
	return j.publishDead(ctx, dl, r)
}

// markDead builds the dead letter and stores it in the idempotency record
// (state dead), so that a crash before the publication is finished by the
// redelivery or the sweeper without calling the API again.
func (j *job) markDead(ctx context.Context, v verdict, cause error) (commands.DLQRecord, commands.Result, error) {
	now := j.w.cfg.Now()
	if j.rec.FirstFailureAt.IsZero() {
		j.rec.FirstFailureAt = now
	}
	if j.rec.LastFailureAt.IsZero() {
		j.rec.LastFailureAt = now
	}
	reason := deadReason(v.class, cause)
	dl := j.dlqRecord(v, reason, now)
	r := j.result(commands.OutcomeDeadLettered, v)
	if r.APIMessage == "" {
		r.APIMessage = reason
	}
	j.rec.State, j.rec.StreamSeq = idem.StateDead, j.info.StreamSeq
	j.rec.LastError, j.rec.LastClass = cause.Error(), v.class
	j.rec.Account = v.account
	stored := dl
	j.rec.DeadLetter, j.rec.Result = &stored, &r
	if err := j.save(ctx); err != nil {
		return commands.DLQRecord{}, commands.Result{}, err
	}
	if h := j.w.hooks.afterRecord; h != nil {
		h(j.cmd, idem.StateDead)
	}
	return dl, r, nil
}

// publishDead publishes a dead letter and terminates the message.
func (j *job) publishDead(ctx context.Context, dl commands.DLQRecord, r commands.Result) error {
	if err := j.emitDead(ctx, dl, r); err != nil {
		return j.retryInfra(err)
	}
	wmjetstream.Terminate(j.msg, string(dl.ErrorClass)+": "+dl.Reason)
	return nil
}

// emitDead publishes a dead letter's DLQ record (with the message's bytes
// and headers), the account-attention event for class auth, and the result
// event. Every publication has a deterministic message id, so repeating
// emitDead after a crash publishes nothing twice.
func (j *job) emitDead(ctx context.Context, dl commands.DLQRecord, r commands.Result) error {
	w := j.w
	if err := j.storeDLQRecord(ctx, &dl); err != nil {
		return err
	}
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	if dl.ErrorClass == commands.ClassAuth {
		if err := w.publishAccountAttention(bctx, j.cmd, dl.StreamSeq, j.rec.Account, dl.Reason); err != nil {
			return err
		}
	}
	if err := w.publishResult(bctx, r); err != nil {
		return err
	}
	w.metrics.dlq.WithLabelValues(string(dl.ErrorClass)).Inc()
	w.metrics.commands.WithLabelValues(typeLabel(j.cmd.Type), string(commands.OutcomeDeadLettered)).Inc()
	j.log.Warn("dead-lettered", slog.String("class", string(dl.ErrorClass)),
		slog.Int("status", dl.HTTPStatus), slog.String("reason", dl.Reason))
	j.mark(string(commands.OutcomeDeadLettered), dl.ErrorClass, errors.New(dl.Reason))
	return nil
}

// storeDLQRecord publishes dl with the message's bytes and headers (the
// bytes by reference when too large to embed).
func (j *job) storeDLQRecord(ctx context.Context, dl *commands.DLQRecord) error {
	dl.SetCommand(j.msg.Payload)
	dl.Headers = messageHeaders(j.msg)
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	return j.w.publishDLQ(bctx, j.cmd, *dl)
}

// deadLetterInvalid dead-letters a message that is not a valid command:
// class invalid, the problems as field errors, and, when the body names a
// command id, a dead idempotency record unless one exists.
func (j *job) deadLetterInvalid(ctx context.Context, err error) error {
	v := verdict{class: commands.ClassInvalid}
	var ve *commands.ValidationError
	if errors.As(err, &ve) {
		v.fields = ve.Problems
	} else {
		v.fields = []commands.Problem{{Reason: err.Error()}}
	}
	if !commands.ValidID(j.cmd.ID) {
		// Too large or broken beyond decoding: the DLQ record, the event
		// and the status lookup still name the command when its body did.
		j.cmd.ID = commands.PeekID(j.msg.Payload)
	}
	now := j.w.cfg.Now()
	reason := deadReason(v.class, err)
	dl := j.dlqRecord(v, reason, now)
	r := j.result(commands.OutcomeDeadLettered, v)
	r.APIMessage = reason
	if j.cmd.ID != "" {
		ours, err := j.recordInvalid(ctx, dl, r)
		if err != nil {
			return j.retryInfra(err)
		}
		if !ours {
			// The id belongs to another message, which has (or will have)
			// its own terminal event: this one is dead-lettered without
			// the id and without a terminal event of its own.
			dl.CommandID = ""
			if err := j.storeDLQRecord(ctx, &dl); err != nil {
				return j.retryInfra(err)
			}
			j.w.metrics.dlq.WithLabelValues(string(dl.ErrorClass)).Inc()
			j.mark(string(commands.OutcomeDeadLettered), dl.ErrorClass, errors.New(dl.Reason))
			wmjetstream.Terminate(j.msg, string(dl.ErrorClass)+": "+dl.Reason)
			return nil
		}
	}
	return j.publishDead(ctx, dl, r)
}

// recordInvalid stores the dead record of an invalid message that names
// command id j.cmd.ID, so that GET /v1/commands/{id} and the DLQ tools see
// the outcome. It reports false when the id belongs to another message: a
// record of another message exists, and this message is not a replay of a
// dead-lettered command.
func (j *job) recordInvalid(ctx context.Context, dl commands.DLQRecord, r commands.Result) (ours bool, err error) {
	rec := idem.Record{State: idem.StateDead, StreamSeq: j.info.StreamSeq, LastError: dl.Reason, LastClass: dl.ErrorClass,
		FirstFailureAt: dl.FirstFailureAt, LastFailureAt: dl.LastFailureAt, DeadLetter: &dl, Result: &r,
		WorkerID: j.w.cfg.WorkerID}
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	_, err = j.w.idem.save(bctx, j.cmd.ID, rec, 0)
	if !errors.Is(err, errConflict) {
		return err == nil, err
	}
	existing, rev, err := j.w.idem.load(bctx, j.cmd.ID)
	switch {
	case err != nil:
		return false, err
	case existing.StreamSeq == j.info.StreamSeq:
		return true, nil // this message's own record: an earlier delivery wrote it
	case existing.State == idem.StateDead && replayOf(j.msg) > 0:
		// A replay of the dead-lettered command: its record now.
		_, err = j.w.idem.save(bctx, j.cmd.ID, rec, rev)
		return err == nil, err
	}
	return false, nil
}

// dlqRecord builds the DLQ record of the command, without its bytes.
func (j *job) dlqRecord(v verdict, reason string, now time.Time) commands.DLQRecord {
	first, last := j.rec.FirstFailureAt, j.rec.LastFailureAt
	if first.IsZero() {
		first = now
	}
	if last.IsZero() {
		last = now
	}
	dl := commands.DLQRecord{
		SchemaVersion:  commands.SchemaVersion,
		Subject:        j.info.Subject,
		StreamSeq:      j.info.StreamSeq,
		CommandID:      j.cmd.ID,
		Type:           j.cmd.Type,
		LocationID:     j.cmd.LocationID,
		ErrorClass:     v.class,
		Reason:         reason,
		HTTPStatus:     v.status,
		APIMessage:     v.message,
		FieldErrors:    v.fields,
		Attempts:       j.rec.Attempts,
		Replay:         replayOf(j.msg),
		FirstFailureAt: first,
		LastFailureAt:  last,
		DeadLetteredAt: now,
		WorkerID:       j.w.cfg.WorkerID,
		TraceID:        j.traceID,
	}
	if j.cmd.Type.Valid() {
		dl.ClientKey = j.cmd.ClientKey()
	}
	return dl
}

// deadReason is the one-line reason of a dead letter.
func deadReason(c commands.ErrorClass, cause error) string {
	switch c {
	case commands.ClassInvalid:
		return "invalid command: " + trimReason(cause)
	case commands.ClassAuth:
		return "account needs attention: " + trimReason(cause)
	}
	return trimReason(cause)
}

// trimReason bounds a reason's length.
func trimReason(err error) string { return truncate(err.Error(), 500) }
