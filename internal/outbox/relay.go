package outbox

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/altegio-integrator/integrator/internal/backoff"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes one message and waits for JetStream's acknowledgement.
// jetstream.JetStream satisfies it.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

var _ Publisher = (jetstream.JetStream)(nil)

// Classes of failed publish attempts, the label of outbox_relay_errors_total.
const (
	classRetryable = "retryable"
	classNoStream  = "no_stream"
	classPermanent = "permanent"
)

// IsPermanent reports whether a publish error can never succeed for the same
// message, whatever the state of the connection: the message is larger than
// the server's max payload or the stream's maximum message size, its headers
// are larger than the stream allows, or its subject is invalid. It is the
// default Config.Permanent. Everything else, including timeouts, a lost
// connection and a full stream, is retryable.
func IsPermanent(err error) bool {
	switch {
	case errors.Is(err, nats.ErrMaxPayload),
		errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, jetstream.ErrInvalidSubject),
		errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum):
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamMessageExceedsMaximum,
			jsErrCodeStreamHeaderExceedsMaximum:
			return true
		}
	}
	return false
}

// jsErrCodeStreamHeaderExceedsMaximum is the server's
// JSStreamHeaderExceedsMaximumErr, which nats.go has no constant for.
const jsErrCodeStreamHeaderExceedsMaximum jetstream.ErrorCode = 10097

// Run is the relay. It publishes the waiting entries to pub strictly in
// sequence order, each with its headers and Nats-Msg-Id set to its MsgID,
// and deletes entries only after their PubAck (a duplicate ack counts as
// success). It wakes as soon as Append commits new entries.
//
// A failed publish is retried, for the same entry, with exponential backoff
// from Config.RetryMin to Config.RetryMax; later entries wait. An entry whose
// error is permanent (Config.Permanent), or that found no stream for longer
// than Config.NoStreamDeadAfter, is moved to the dead table with the reason,
// counted in outbox_dead_lettered_total and logged at Error, and the relay
// goes on with the next entry. Errors of the file itself are logged and
// retried the same way.
//
// Run returns nil when ctx ends, ErrClosed when the outbox is closed,
// ErrRelayRunning when another Run is active, and an error for a nil pub. It is safe to call from any
// goroutine; only one Run works at a time.
func (o *Outbox) Run(ctx context.Context, pub Publisher) error {
	if pub == nil {
		return errors.New("run outbox relay: nil publisher")
	}
	o.mu.Lock()
	switch {
	case o.closed:
		o.mu.Unlock()
		return ErrClosed
	case o.relaying:
		o.mu.Unlock()
		return ErrRelayRunning
	}
	o.relaying = true
	o.relayWG.Add(1)
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.relaying = false
		o.mu.Unlock()
		o.relayWG.Done()
	}()

	// Close cancels the relay so that it can wait for it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-o.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	r := &relay{o: o, pub: pub, log: o.cfg.Logger}
	for {
		// Entries published but not deleted yet (a delete failed: a full
		// disk) are skipped, so that they never hold back the rest.
		batch, err := head(ctx, o.db, o.relayedSeq.Load(), o.cfg.RelayBatch)
		switch {
		case ctx.Err() != nil:
			return o.stopErr()
		case err != nil:
			r.log.Error("outbox relay read failed", "error", err)
			if !r.sleep(ctx) {
				return o.stopErr()
			}
			continue
		case len(batch) == 0:
			if !r.idle(ctx) {
				return o.stopErr()
			}
			continue
		}
		if !r.relayBatch(ctx, batch) {
			return o.stopErr()
		}
	}
}

// idle waits for new entries. Published entries whose delete failed are
// deleted again every RetryMax meanwhile. It returns false when ctx ended.
func (r *relay) idle(ctx context.Context) bool {
	var retry <-chan time.Time
	if r.o.undeleted.Load() > 0 {
		t := time.NewTimer(r.o.cfg.RetryMax)
		defer t.Stop()
		retry = t.C
	}
	select {
	case <-r.o.wake:
	case <-retry:
		r.deleteAcked(ctx)
	case <-ctx.Done():
		return false
	}
	return true
}

// stopErr is what Run returns once its context has ended.
func (o *Outbox) stopErr() error {
	if o.isClosed() {
		return ErrClosed
	}
	return nil
}

// relay is the state of one Run.
type relay struct {
	o   *Outbox
	pub Publisher
	log *slog.Logger

	failures int // consecutive failed attempts, for the backoff

	// noStreamSeq is the entry that has been failing with no responders
	// since noStreamSince, without another kind of error in between.
	noStreamSeq   int64
	noStreamSince time.Time
}

// relayBatch publishes batch in order. It returns false when ctx ended.
func (r *relay) relayBatch(ctx context.Context, batch []stored) bool {
	defer r.deleteAcked(ctx)
	for _, s := range batch {
		for attempt := 1; ; attempt++ {
			err := r.publish(ctx, s)
			if err == nil {
				r.failures, r.noStreamSeq = 0, 0
				r.o.relayedSeq.Store(s.seq)
				r.o.undeleted.Add(1)
				r.o.metrics.relayed.Inc()
				// Relayed: it no longer waits, even while its row stays
				// (Depth, Flush, and ingest's "spool while entries wait").
				r.o.removed(1, s.size)
				break
			}
			if ctx.Err() != nil {
				return false
			}
			class, dead := r.classify(s, err)
			r.o.metrics.relayErrors.WithLabelValues(class).Inc()
			if dead {
				// Record the progress first: a dead entry must not be
				// deleted together with the acknowledged ones before it.
				r.deleteAcked(ctx)
				if r.bury(ctx, s, err) {
					break
				}
			} else {
				level := slog.LevelDebug
				if attempt == 1 || attempt%10 == 0 {
					level = slog.LevelWarn
				}
				r.log.Log(ctx, level, "outbox publish failed, retrying",
					"msg_id", s.entry.MsgID, "subject", s.entry.Subject, "outbox_seq", s.seq,
					"attempt", attempt, "class", class, "error", err)
				// Delete the rows relayed so far while this entry waits.
				r.deleteAcked(ctx)
			}
			if !r.sleep(ctx) {
				return false
			}
		}
	}
	return true
}

// publish publishes one entry and waits for its PubAck, bounded by
// Config.PublishTimeout.
func (r *relay) publish(ctx context.Context, s stored) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.cfg.PublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: s.entry.Subject, Header: cloneHeader(s.entry.Header), Data: s.entry.Data}
	// No retries inside nats.go: the relay's own backoff retries, and a
	// no-responders error must surface as such, not as a timeout.
	ack, err := r.pub.PublishMsg(ctx, msg, jetstream.WithMsgID(s.entry.MsgID), jetstream.WithRetryAttempts(0))
	if err != nil {
		return err
	}
	r.log.Debug("outbox entry relayed", "msg_id", s.entry.MsgID, "outbox_seq", s.seq,
		"stream", ack.Stream, "stream_seq", ack.Sequence, "duplicate", ack.Duplicate)
	return nil
}

// classify returns the class of a failed publish of s and whether s goes to
// the dead table.
func (r *relay) classify(s stored, err error) (class string, dead bool) {
	cfg := r.o.cfg
	if cfg.Permanent(err) {
		r.noStreamSeq = 0
		return classPermanent, true
	}
	// No stream answered, or something answered that no stream takes the
	// subject (the workers answer so for command subjects COMMANDS
	// refuses): both end in the dead table after NoStreamDeadAfter.
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		r.noStreamSeq = 0
		return classRetryable, false
	}
	now := cfg.now()
	if r.noStreamSeq != s.seq {
		r.noStreamSeq, r.noStreamSince = s.seq, now
	}
	return classNoStream, cfg.NoStreamDeadAfter >= 0 && now.Sub(r.noStreamSince) >= cfg.NoStreamDeadAfter
}

// bury moves s to the dead table. It returns false if that failed, and the
// entry is to be tried again.
func (r *relay) bury(ctx context.Context, s stored, cause error) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.cfg.BusyTimeout)
	defer cancel()
	if err := moveToDead(ctx, r.o.db, s.seq, cause.Error(), r.o.cfg.now()); err != nil {
		r.log.Error("outbox dead-letter failed", "msg_id", s.entry.MsgID, "outbox_seq", s.seq, "error", err)
		return false
	}
	r.failures, r.noStreamSeq = 0, 0
	r.o.metrics.dead.Inc()
	r.o.removed(1, s.size)
	r.log.Error("outbox entry dead-lettered", "msg_id", s.entry.MsgID, "subject", s.entry.Subject,
		"outbox_seq", s.seq, "error", cause)
	return true
}

// deleteAcked deletes the entries published so far. It runs even when ctx
// has ended, so that a stopping relay records its progress. If it fails, the
// entries stay; the next delete covers them, or, after a restart, they are
// published again, which JetStream drops as duplicates within its window.
func (r *relay) deleteAcked(ctx context.Context) {
	if r.o.undeleted.Load() == 0 {
		return
	}
	upTo := r.o.relayedSeq.Load()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.cfg.BusyTimeout)
	defer cancel()
	_, err := r.o.db.ExecContext(ctx, deleteUpTo, upTo)
	if err != nil {
		// The write-ahead log may be what cannot grow (a full disk, a file
		// size limit): fold it into the database and try once more.
		if _, cerr := r.o.db.ExecContext(ctx, checkpoint); cerr == nil {
			_, err = r.o.db.ExecContext(ctx, deleteUpTo, upTo)
		}
	}
	if err != nil {
		// Keep the tally: the next successful delete covers these too.
		r.log.Error("outbox delete of relayed entries failed", "outbox_seq", upTo, "error", err)
		return
	}
	r.o.undeleted.Store(0) // relayedSeq stays: the next batch starts after it
}

// sleep waits for the next backoff delay. It returns false when ctx ended.
func (r *relay) sleep(ctx context.Context) bool {
	r.failures++
	d := backoff.Delay(r.o.cfg.RetryMin, r.o.cfg.RetryMax, r.failures)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
