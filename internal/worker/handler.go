package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/backoff"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// job is the processing of one delivery of one command message.
type job struct {
	w         *Worker
	msg       *message.Message
	info      wmjetstream.DeliveryInfo
	partition int
	log       *slog.Logger

	cmd commands.Command
	rec idem.Record
	rev uint64
	// unread: the record was not read (a first delivery); the intent is
	// then written only if no record exists.
	unread bool
	// apiLatency is the time spent in execute.
	apiLatency time.Duration
	// span is the delivery's worker.handle span (no-op without tracing),
	// traceID its trace's id: "" when the message carried no trace
	// context and tracing is off.
	span    trace.Span
	traceID string
}

// handler returns the Watermill handler of partition p.
func (w *Worker) handler(p int) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		info, ok := wmjetstream.Delivery(msg)
		if !ok {
			return errors.New("message without jetstream delivery")
		}
		ctx, j := w.startHandle(msg, info, p)
		defer j.span.End()
		err := j.run(ctx)
		if err != nil {
			j.mark("nacked", "", err)
		}
		return err
	}
}

// bookkeeping returns a context for bookkeeping (KV writes, publishes): it keeps the
// values of ctx but not its deadline, so that a handler timeout does not
// stop the worker from recording what happened.
func (j *job) bookkeeping(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), j.w.cfg.BookkeepingTimeout)
}

// run processes the delivery and settles the message (ack, retry or
// terminate) itself; it returns an error only when it could not decide, and
// the router then nacks the message.
func (j *job) run(ctx context.Context) error {
	cmd, err := commands.Decode(j.msg.Payload)
	if err == nil && cmd.ID == "" {
		err = &commands.ValidationError{Problems: []commands.Problem{{Path: "id", Reason: "is required by the worker (the idempotency key)"}}}
	}
	if err == nil {
		// Lanes and partitions come from the subject: a command stored
		// under another client's subject would be ordered with the wrong
		// client. A replay publishes it on its own subject.
		err = cmd.CheckStoredSubject(j.info.Subject, j.w.partitions)
	}
	j.cmd = cmd
	if err != nil {
		return j.deadLetterInvalid(ctx, err)
	}
	j.log = j.log.With(slog.String("command_id", cmd.ID), slog.String("type", string(cmd.Type)),
		slog.Int64("location_id", cmd.LocationID))
	j.decoded()

	// The first delivery of an original message almost never finds a
	// record: it skips the read, and the intent's create-if-absent finds
	// the rare other copy of the command instead (see recordIntent).
	var rec idem.Record
	var rev uint64
	j.unread = j.info.NumDelivered == 1 && replayOf(j.msg) == 0
	if !j.unread {
		bctx, cancel := j.bookkeeping(ctx)
		rec, rev, err = j.w.idem.load(bctx, cmd.ID)
		cancel()
		if err != nil {
			return j.retryInfra(err)
		}
	}
	j.rec, j.rev = rec, rev
	replay := replayOf(j.msg)
	sameMsg := rec.StreamSeq == j.info.StreamSeq

	switch rec.State {
	case idem.StateDone:
		if rec.Result != nil {
			return j.alreadyDone(ctx, replay, sameMsg)
		}
		j.rec.State, j.rec.Uncertain = idem.StateInFlight, true // unreadable: reconcile
	case idem.StateDead:
		if sameMsg && rec.DeadLetter != nil && rec.Result != nil {
			// Dead-lettered, but the message was not terminated: finish
			// the publication (deduplicated by message id).
			return j.publishDead(ctx, *rec.DeadLetter, *rec.Result)
		}
		if replay == 0 {
			return j.duplicate(ctx)
		}
		// A replay from the DLQ starts over; Uncertain and ClientID are
		// kept so that an effect of the earlier attempts is found first.
		j.rec = idem.Record{State: idem.StateInFlight, Uncertain: rec.Uncertain, ClientID: rec.ClientID}
	}
	// Order across processes: an older command of the client that is still
	// in the stream goes first, wherever it is (see order.go). Checked
	// before the supersede check, which that older command may change.
	older, err := j.olderPending(ctx)
	if err != nil {
		return j.retryInfra(err)
	}
	if older != nil {
		return j.deferForOrder(ctx, older)
	}
	if replay > 0 {
		newer, err := j.newerApplied(ctx)
		if err != nil {
			return j.retryInfra(err)
		}
		if newer > 0 {
			return j.supersede(ctx, newer)
		}
	}
	return j.attempt(ctx)
}

// alreadyDone handles a command whose record is done: re-publish the stored
// result (the same message: deduplicated; a replay: a terminal event of
// the replay; any other copy: a non-terminal duplicate event) and ack.
func (j *job) alreadyDone(ctx context.Context, replay int, sameMsg bool) error {
	r := *j.rec.Result
	switch {
	case sameMsg:
	case replay > 0:
		r.Replay, r.ReplayOf, r.StreamSeq = replay, replayOfSeq(j.msg), j.info.StreamSeq
		r.Note = "already " + string(r.Outcome) + "; not repeated"
		r.CompletedAt = j.w.cfg.Now()
	default:
		return j.duplicate(ctx)
	}
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	if err := j.w.publishResult(bctx, r); err != nil {
		return j.retryInfra(err)
	}
	j.log.Debug("re-published stored result", slog.String("outcome", string(r.Outcome)))
	j.mark("republished", "", nil)
	j.w.metrics.commands.WithLabelValues(string(j.cmd.Type), "duplicate").Inc()
	j.msg.Ack()
	return nil
}

// duplicate acknowledges another copy of a command that already reached a
// terminal outcome, with a non-terminal duplicate event.
func (j *job) duplicate(ctx context.Context) error {
	r := j.result(commands.OutcomeDuplicate, verdict{})
	if j.rec.Result != nil {
		r.Data = j.rec.Result.Data
		r.ClientID = j.rec.Result.ClientID
		r.Attempts = j.rec.Result.Attempts
	}
	r.Note = "command id already reached " + string(j.rec.State) + "; not repeated"
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	if err := j.w.publishResult(bctx, r); err != nil {
		return j.retryInfra(err)
	}
	j.log.Debug("duplicate command")
	j.mark(string(commands.OutcomeDuplicate), "", nil)
	j.w.metrics.commands.WithLabelValues(string(j.cmd.Type), "duplicate").Inc()
	j.msg.Ack()
	return nil
}

// attempt makes one attempt: resolve the client, record the intent, call
// the API (reconciling first if an earlier attempt may have been applied),
// and act on the outcome.
func (j *job) attempt(ctx context.Context) error {
	w := j.w
	reconcile := j.rec.Uncertain
	clientID, err := j.resolveClient(ctx)
	if err != nil {
		if v := classify(err); v.class == commands.ClassPermanent {
			return j.deadLetter(ctx, v, err)
		}
		return j.retryInfra(err)
	}
	if w.cfg.MaxAttempts > 0 && j.rec.Attempts >= w.cfg.MaxAttempts {
		// A crash after the last attempt's intent was recorded.
		return j.deadLetter(ctx, verdict{class: commands.ClassExhausted, status: j.rec.LastStatus},
			fmt.Errorf("%d attempts made: %s", j.rec.Attempts, j.rec.LastError))
	}

	if f, ok := j.coalescable(reconcile); ok {
		return j.attemptCoalesced(ctx, f)
	}
	// Wait for the first request's slot before recording anything: a
	// command that waits is not in flight, so a crash meanwhile leaves
	// nothing to reconcile, and the wait is not an attempt.
	check, err := j.waitBudget(ctx)
	if err != nil {
		return j.notSent(err)
	}
	if err := j.recordIntent(ctx, clientID); err != nil {
		return j.intentFailed(err)
	}
	j.log.Debug("attempt", slog.Bool("reconcile", reconcile), slog.Int64("client_id", clientID))

	if h := w.hooks.beforeAPI; h != nil {
		h(j.cmd, j.rec.Attempts)
	}
	if check != nil {
		ctx = altegio.WithSlot(ctx, check)
	}
	start := time.Now()
	out, err := j.execute(ctx, clientID, reconcile)
	j.apiLatency = time.Since(start)
	if h := w.hooks.afterAPI; h != nil {
		h(j.cmd, err)
	}
	if err != nil {
		return j.fail(ctx, explainStaleRef(j.cmd, clientID, err), reconcile)
	}
	return j.succeed(ctx, out)
}

// recordIntent records that an attempt is about to call the API: in
// flight, one more attempt, uncertain until its outcome is known.
func (j *job) recordIntent(ctx context.Context, clientID int64) error {
	w := j.w
	now := w.cfg.Now()
	j.rec.State = idem.StateInFlight
	j.rec.Attempts++
	j.rec.Uncertain = true // until the outcome is known
	j.rec.ClientID = clientID
	j.rec.StreamSeq = j.info.StreamSeq
	j.rec.LastAttemptAt = now
	if j.rec.FirstAttemptAt.IsZero() {
		j.rec.FirstAttemptAt = now
	}
	j.rec.WorkerID = w.cfg.WorkerID
	if err := j.save(ctx); err != nil {
		return err
	}
	j.log = j.log.With(slog.Int("attempt", j.rec.Attempts))
	return nil
}

// intentFailed acts on a failed intent write. A first delivery that skipped
// reading its record and finds one (another copy of the command was
// published) comes back at once to be handled with the record; anything
// else is an infrastructure failure.
func (j *job) intentFailed(err error) error {
	if j.unread && errors.Is(err, errConflict) {
		j.log.Debug("a record exists for this first delivery; reading it on redelivery")
		j.mark("reread", "", nil)
		wmjetstream.Retry(j.msg, 0)
		return nil
	}
	return j.retryInfra(err)
}

// notSent gives the message back after its wait for the budget ended
// without a slot (the worker is stopping): nothing was recorded or sent,
// so it is neither an attempt nor a deferral.
func (j *job) notSent(err error) error {
	j.log.Debug("budget wait ended; handing back", slog.Any("error", err))
	j.mark("not_sent", "", nil)
	j.w.metrics.retries.WithLabelValues("budget").Inc()
	wmjetstream.Retry(j.msg, j.w.cfg.RetryBase)
	return nil
}

// resolveClient returns the client the command acts on: the one recorded by
// an earlier attempt, the command's client_id, or its client_ref's mapping.
func (j *job) resolveClient(ctx context.Context) (int64, error) {
	c := j.cmd
	switch {
	case c.Type == commands.TypeClientCreate || c.Type == commands.TypeClientBulkCreate:
		return 0, nil
	case j.rec.ClientID > 0:
		return j.rec.ClientID, nil
	case c.ClientID > 0:
		return c.ClientID, nil
	}
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	id, ok, err := j.w.refs.get(bctx, c.LocationID, c.ClientKey())
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, &permanentError{fmt.Errorf("%w %q in location %d", ErrUnknownClientRef, c.ClientRef, c.LocationID)}
	}
	return id, nil
}

// save writes j.rec with compare-and-set on j.rev.
func (j *job) save(ctx context.Context) error {
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	rev, err := j.w.idem.save(bctx, j.cmd.ID, j.rec, j.rev)
	if err != nil {
		return err
	}
	j.rev = rev
	return nil
}

// succeed records success in this order, each step safe to repeat after a
// crash: client ref, last-applied order, KV done with the result, result
// event, ack.
func (j *job) succeed(ctx context.Context, out outcome) error {
	w, c := j.w, j.cmd
	if out.clientID > 0 {
		j.rec.ClientID = out.clientID
	}
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	if c.ClientRef != "" {
		var err error
		switch c.Type {
		case commands.TypeClientCreate:
			err = w.refs.put(bctx, c.LocationID, c.ClientKey(), refEntry{ClientID: out.clientID, CommandID: c.ID, At: w.cfg.Now()})
		case commands.TypeClientDelete:
			err = w.refs.remove(bctx, c.LocationID, c.ClientKey())
		}
		if err != nil {
			// The record still says in_flight and uncertain: the
			// redelivery reconciles and stores the ref again.
			return j.retryInfra(err)
		}
	}
	if err := j.recordApplied(bctx); err != nil {
		// As for the ref: the redelivery reconciles and records again.
		return j.retryInfra(err)
	}
	o := commands.OutcomeSucceeded
	if len(out.refused) > 0 {
		// Before the record says done: a crash in between repeats the
		// attempt, which finds the created clients and dead-letters the
		// same items under the same ids (deduplicated).
		if err := j.deadLetterItems(bctx, out.refused); err != nil {
			return j.retryInfra(err)
		}
		o = commands.OutcomePartiallySucceeded
	}
	r := j.result(o, verdict{})
	r.Data, r.Note = out.data, out.note
	j.rec.State, j.rec.Uncertain, j.rec.Result = idem.StateDone, false, &r
	if err := j.save(ctx); err != nil {
		return j.retryInfra(err)
	}
	if h := w.hooks.afterRecord; h != nil {
		h(c, idem.StateDone)
	}
	if err := w.publishResult(bctx, r); err != nil {
		// Done is recorded: the redelivery re-publishes the stored result.
		return j.retryInfra(err)
	}
	j.log.Debug("succeeded", slog.String("outcome", string(o)), slog.String("note", out.note))
	j.mark(string(o), "", nil)
	w.metrics.commands.WithLabelValues(string(c.Type), string(o)).Inc()
	j.msg.Ack()
	return nil
}

// fail acts on a failed attempt according to its class.
func (j *job) fail(ctx context.Context, err error, uncertainBefore bool) error {
	w := j.w
	v := classify(err)
	if v.class == commands.ClassAuth && v.account == "" && w.cfg.AccountOf != nil {
		// The refusal (a 401 after the re-login) names no account: the
		// one serving the command's location is the one to fix.
		v.account = w.cfg.AccountOf(j.cmd.LocationID)
	}
	now := w.cfg.Now()
	j.rec.LastError, j.rec.LastClass, j.rec.LastStatus = err.Error(), v.class, v.status
	if j.rec.FirstFailureAt.IsZero() {
		j.rec.FirstFailureAt = now
	}
	j.rec.LastFailureAt = now
	lastDelivery := j.lastDelivery()

	if errors.Is(err, altegio.ErrNotSent) {
		// The wait for a later request's slot ended (the worker is
		// stopping): not an attempt. Uncertain stays as recorded.
		j.rec.Attempts--
		j.rec.Deferrals++
		return j.retry(ctx, v, w.cfg.RetryBase, false)
	}
	switch v.class {
	case commands.ClassRateLimited:
		// A 429 was not applied: not an attempt, a deferral.
		j.rec.Attempts--
		j.rec.Deferrals++
		j.rec.Uncertain = uncertainBefore
		if lastDelivery {
			return j.deadLetter(ctx, verdict{class: commands.ClassExhausted, status: v.status, message: v.message},
				fmt.Errorf("max deliveries reached while rate limited: %w", err))
		}
		delay := w.backoff(j.rec.Deferrals)
		if v.retryAfter > 0 {
			delay = min(v.retryAfter+rand.N(w.cfg.RetryBase/4+1), w.cfg.RetryMax)
		}
		return j.retry(ctx, v, delay, false)

	case commands.ClassAuth:
		// A broken account is not a broken command: its credentials were
		// refused (nothing was applied) or its login fails. The command
		// waits for the account to work again, which is not an attempt,
		// and an account.needs_attention event says why; once the
		// credentials work it goes on without a replay. Only the
		// consumer's last delivery dead-letters it.
		// Uncertain stays as the intent recorded it: a bulk create may have
		// been applied before a later request of the attempt was refused,
		// so the retry reconciles first.
		j.rec.Attempts--
		j.rec.Deferrals++
		if lastDelivery {
			return j.deadLetter(ctx, v, fmt.Errorf("the account did not work again before the last delivery: %w", err))
		}
		w.metrics.accountPaused.WithLabelValues(accountLabel(v.account)).Inc()
		bctx, cancel := j.bookkeeping(ctx)
		if perr := w.publishAccountPaused(bctx, j.cmd, j.info.StreamSeq, v.account, deadReason(v.class, err)); perr != nil {
			j.log.Warn("publish account event", slog.Any("error", perr))
		}
		cancel()
		return j.retry(ctx, v, w.cfg.RetryMax, false)

	case commands.ClassTransient:
		j.rec.Uncertain = uncertainBefore || v.unknown
		if j.rec.RetryingSince.IsZero() {
			j.rec.RetryingSince = now
		}
		if j.retriesOver(now) || lastDelivery {
			if j.rec.Uncertain {
				// An attempt may have been applied although its answer
				// was lost: look once more before giving up.
				if out, ok := j.verify(ctx); ok {
					return j.succeed(ctx, out)
				}
			}
			ex := v
			ex.class = commands.ClassExhausted
			return j.deadLetter(ctx, ex, fmt.Errorf("%d attempts made, retried for %v, last: %w",
				j.rec.Attempts, now.Sub(j.rec.RetryingSince).Round(time.Second), err))
		}
		return j.retry(ctx, v, w.backoff(j.rec.Attempts), true)
	}
	// permanent, ambiguous: the API (or reconciliation) answered;
	// keep Uncertain as before this attempt for a later replay.
	j.rec.Uncertain = uncertainBefore || v.unknown
	return j.deadLetter(ctx, v, err)
}

// retriesOver reports whether a command that failed at now has had its
// time (RetryFor from its first retryable failure; 429s and waits for the
// account do not count), or its attempts when they are capped.
func (j *job) retriesOver(now time.Time) bool {
	c := j.w.cfg
	return now.Sub(j.rec.RetryingSince) >= c.RetryFor || (c.MaxAttempts > 0 && j.rec.Attempts >= c.MaxAttempts)
}

// lastDelivery reports whether the server will not deliver the message
// again (the consumer's MaxDeliver is reached).
func (j *job) lastDelivery() bool {
	md := j.w.maxDeliver[j.partition]
	return md > 0 && j.info.NumDelivered >= uint64(md)
}

// retry records the failure and asks for a redelivery after delay; the
// message's client stays parked until then. A real attempt also publishes a
// non-terminal failed event.
func (j *job) retry(ctx context.Context, v verdict, delay time.Duration, attempt bool) error {
	w := j.w
	if err := j.save(ctx); err != nil {
		// The intent (Uncertain) is recorded already, which is the safe
		// side; retry anyway.
		j.log.Warn("record failure", slog.Any("error", err))
	}
	outcomeLabel := "deferred"
	if attempt {
		outcomeLabel = string(commands.OutcomeFailed)
		r := j.result(commands.OutcomeFailed, v)
		bctx, cancel := j.bookkeeping(ctx)
		if err := w.publishResult(bctx, r); err != nil {
			j.log.Warn("publish failed event", slog.Any("error", err))
		}
		cancel()
	}
	w.metrics.retries.WithLabelValues(string(v.class)).Inc()
	w.metrics.commands.WithLabelValues(string(j.cmd.Type), outcomeLabel).Inc()
	if attempt {
		j.mark(outcomeLabel, v.class, errors.New(j.rec.LastError))
	} else {
		j.mark(outcomeLabel, v.class, nil)
	}
	j.log.Debug("retry", slog.String("class", string(v.class)), slog.Int("status", v.status),
		slog.Duration("delay", delay), slog.String("error", j.rec.LastError))
	wmjetstream.Retry(j.msg, delay)
	return nil
}

// retryInfra asks for a redelivery after a failure of our own
// infrastructure (KV, publish), which is neither an attempt nor a
// deferral. What was recorded before stays valid.
func (j *job) retryInfra(err error) error {
	delay := j.w.backoff(int(min(j.info.NumDelivered, 16)))
	j.log.Warn("infrastructure error; retrying", slog.Any("error", err), slog.Duration("delay", delay))
	j.mark("retry_infrastructure", "", err)
	j.w.metrics.retries.WithLabelValues("infrastructure").Inc()
	wmjetstream.Retry(j.msg, delay)
	return nil
}

// result builds the result event of the command with outcome o.
func (j *job) result(o commands.Outcome, v verdict) commands.Result {
	now := j.w.cfg.Now()
	r := commands.Result{
		SchemaVersion:  commands.SchemaVersion,
		CommandID:      j.cmd.ID,
		Type:           j.cmd.Type,
		LocationID:     j.cmd.LocationID,
		ClientID:       j.cmd.ClientID,
		ClientRef:      j.cmd.ClientRef,
		Outcome:        o,
		ErrorClass:     v.class,
		HTTPStatus:     v.status,
		APIMessage:     v.message,
		FieldErrors:    v.fields,
		Attempts:       j.rec.Attempts,
		Replay:         replayOf(j.msg),
		ReplayOf:       replayOfSeq(j.msg),
		FirstAttemptAt: j.rec.FirstAttemptAt,
		CompletedAt:    now,
		APILatencyMS:   j.apiLatency.Milliseconds(),
		CorrelationID:  j.cmd.CorrelationID,
		StreamSeq:      j.info.StreamSeq,
		WorkerID:       j.w.cfg.WorkerID,
		TraceID:        j.traceID,
	}
	if j.rec.ClientID > 0 {
		r.ClientID = j.rec.ClientID
	}
	if !j.info.Timestamp.IsZero() {
		r.TotalMS = now.Sub(j.info.Timestamp).Milliseconds()
	}
	if o == commands.OutcomeFailed && v.class != "" && r.APIMessage == "" {
		r.APIMessage = j.rec.LastError
	}
	return r
}

// backoff returns the delay before retry n (n >= 1): backoff.Delay of
// RetryBase and RetryMax.
func (w *Worker) backoff(n int) time.Duration {
	return backoff.Delay(w.cfg.RetryBase, w.cfg.RetryMax, n)
}

// originalSeq returns the acceptance order of a replayed message: the
// COMMANDS stream sequence of its first publication (HeaderOriginalSeq), or
// 0 when the replay does not carry it.
func originalSeq(msg *message.Message) uint64 {
	n, _ := strconv.ParseUint(msg.Metadata.Get(commands.HeaderOriginalSeq), 10, 64)
	return n
}

// replayOf returns the replay generation of a message (0: original).
func replayOf(msg *message.Message) int {
	n, _ := strconv.Atoi(msg.Metadata.Get(commands.HeaderReplay))
	return max(n, 0)
}

// replayOfSeq returns the DLQ sequence a replayed message came from.
func replayOfSeq(msg *message.Message) uint64 {
	n, _ := strconv.ParseUint(msg.Metadata.Get(commands.HeaderReplayOf), 10, 64)
	return n
}

// messageHeaders returns the headers of the message as received.
func messageHeaders(msg *message.Message) map[string][]string {
	if m, ok := wmjetstream.JetStreamMsg(msg); ok && m.Headers() != nil {
		h := make(map[string][]string, len(m.Headers()))
		for k, v := range m.Headers() {
			h[k] = append([]string(nil), v...)
		}
		return h
	}
	h := make(map[string][]string, len(msg.Metadata))
	for k, v := range msg.Metadata {
		h[k] = []string{v}
	}
	return h
}

// typeLabel bounds the type label of metrics to the valid types.
func typeLabel(t commands.Type) string {
	if t.Valid() {
		return string(t)
	}
	return "unknown"
}
