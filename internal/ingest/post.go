package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/outbox"
)

// headerProducer names, on every command ingest publishes, the producer that
// sent it.
const headerProducer = "Altegio-Producer"

// Statuses of an accepted command in the answer of POST /v1/commands.
const (
	// StatusAccepted: stored in JetStream now (stream_seq) or in the
	// outbox (spooled).
	StatusAccepted = "accepted"
	// StatusDuplicate: JetStream already held a command with this id
	// (stream_seq is the original's).
	StatusDuplicate = "duplicate"
)

// CommandStatus is the answer for one command of POST /v1/commands.
type CommandStatus struct {
	// ID is the command id, assigned when the body had none.
	ID string `json:"id"`
	// Status is StatusAccepted or StatusDuplicate.
	Status string `json:"status"`
	// StreamSeq is the COMMANDS stream sequence; 0 (absent) when spooled.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// Spooled is true when the command is in the local outbox, to be
	// relayed once JetStream is reachable.
	Spooled bool `json:"spooled,omitempty"`
}

// Accepted is the 202 body of POST /v1/commands: one CommandStatus per
// command, in request order.
type Accepted struct {
	Commands []CommandStatus `json:"commands"`
}

// pending is one command ready to publish.
type pending struct {
	cmd commands.Command
	msg *nats.Msg
	// span is the command's ingest.publish span, ended when its fate is
	// known (tracing.go).
	span trace.Span
}

// errStreamFull is a publish refused because COMMANDS is at its limits.
var errStreamFull = errors.New("command stream full")

// postCommands is POST /v1/commands, in the span ingest.accept.
func (s *Server) postCommands(w http.ResponseWriter, r *http.Request) {
	ctx, span := s.startAccept(w, r)
	status := http.StatusInternalServerError // if it panics
	defer func() { endAccept(span, status) }()
	status = s.postCommandsIn(ctx, w, r)
}

// postCommandsIn answers POST /v1/commands, with ctx carrying the accept
// span, and returns the status it answered with.
func (s *Server) postCommandsIn(ctx context.Context, w http.ResponseWriter, r *http.Request) int {
	r = r.WithContext(ctx) // the request's log lines carry the trace id
	body, prob := s.readBody(w, r, probBadJSON)
	if prob != nil {
		return s.reject(w, r, prob, 1)
	}
	id, err := s.auth.authenticate(r.Header, body)
	if err != nil {
		s.log.InfoContext(r.Context(), "request unauthenticated", "remote", r.RemoteAddr, "request_id", requestID(r), "error", err)
		return s.reject(w, r, probUnauth.problem(err.Error()), 1)
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		return s.reject(w, r, probMediaType.problem("Content-Type must be application/json"), 1)
	}
	key, err := idempotencyKey(r.Header.Get(headerIdempotencyKey))
	if err != nil {
		return s.reject(w, r, probBadHeader.problem(err.Error()), 1)
	}
	if key == "" {
		key = id.webhookID
	}
	cmds, batch, err := decodeRequest(body, s.cfg.MaxBatch)
	if err != nil {
		var re *requestError
		if !errors.As(err, &re) {
			re = &requestError{kind: probInternal, detail: err.Error()}
		}
		return s.reject(w, r, re.problem(), max(len(cmds), 1))
	}
	acceptedBy(ctx, id.producer.Name, len(cmds))
	assignIDs(cmds, batch, id.producer.Name, key)
	if p := s.authorize(id.producer, cmds, batch); p != nil {
		s.log.InfoContext(r.Context(), "commands forbidden", "producer", id.producer.Name, "request_id", requestID(r), "problems", len(p.Errors))
		return s.reject(w, r, p, len(cmds))
	}
	statuses, p := s.accept(ctx, id.producer, cmds)
	if p != nil {
		p.Commands = statuses
		return s.reject(w, r, p, len(cmds)-len(statuses))
	}
	if !batch {
		w.Header().Set("Location", "/v1/commands/"+statuses[0].ID)
	}
	writeJSON(w, http.StatusAccepted, Accepted{Commands: statuses})
	return http.StatusAccepted
}

// reject answers with p, counts n rejected commands and returns p's status.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, p *Problem, n int) int {
	reason := "internal"
	for _, k := range allProblemKinds {
		if problemTypePrefix+k.slug == p.Type {
			reason = k.reason
			break
		}
	}
	s.metrics.commands.WithLabelValues(resultRejected, reason).Add(float64(n))
	if p.Status >= 500 {
		s.log.WarnContext(r.Context(), "commands refused", "status", p.Status, "reason", reason, "request_id", requestID(r), "detail", p.Detail)
	} else {
		s.log.InfoContext(r.Context(), "commands rejected", "status", p.Status, "reason", reason, "request_id", requestID(r), "problems", len(p.Errors))
	}
	s.writeProblem(w, r, p)
	return p.Status
}

// authorize returns a 403 problem listing every command the producer may
// not send, or nil.
func (s *Server) authorize(p *Producer, cmds []commands.Command, batch bool) *Problem {
	var problems []commands.Problem
	for i, c := range cmds {
		prefix := ""
		if batch {
			prefix = indexPrefix(i)
		}
		if !p.allowsType(c.Type) {
			problems = append(problems, commands.Problem{Path: joinPath(prefix, "type"),
				Reason: fmt.Sprintf("producer %s may not send %s", p.Name, c.Type)})
		}
		if !p.allowsLocation(c.LocationID) {
			problems = append(problems, commands.Problem{Path: joinPath(prefix, "location_id"),
				Reason: fmt.Sprintf("producer %s may not act in location %d", p.Name, c.LocationID)})
		}
	}
	if len(problems) == 0 {
		return nil
	}
	prob := probForbidden.problem(fmt.Sprintf("%d permission problems; nothing was accepted", len(problems)))
	prob.Errors = problems
	return prob
}

// accept publishes cmds in order and waits for each PubAck. From the first
// command JetStream cannot take (unreachable, timeout) on, the rest are
// spooled to the outbox together; while the outbox holds entries, every
// command is spooled, so that none overtakes a spooled one. It returns the
// statuses of the commands accepted and, when not all were, the problem
// (503 stream full or outbox unavailable). Each command's message carries
// the trace context of its ingest.publish span, a child of ctx's.
func (s *Server) accept(ctx context.Context, p *Producer, cmds []commands.Command) (statuses []CommandStatus, prob *Problem) {
	// Once we decided to take the commands, a client hanging up does not
	// cut the work short: the outcome must be definite.
	ctx = context.WithoutCancel(ctx)
	batch := make([]pending, len(cmds))
	defer func() {
		if prob != nil {
			endUnsettled(batch, prob.Title)
		}
	}()
	for i := range cmds {
		m, err := s.message(p, &cmds[i])
		if errors.Is(err, commands.ErrTooLarge) {
			// Refused here, not accepted and then refused by the worker.
			return nil, probTooLarge.problem(fmt.Sprintf("command %d: %v", i, err))
		}
		if err != nil {
			return nil, probInternal.problem(err.Error())
		}
		batch[i] = pending{cmd: cmds[i], msg: m}
		s.startPublish(ctx, &batch[i])
	}
	statuses = make([]CommandStatus, 0, len(cmds))
	spoolFrom := -1
	if s.mustSpool() {
		spoolFrom = 0
	}
	if spoolFrom < 0 {
		published, failedAt, err := s.publishBatch(ctx, batch)
		statuses = append(statuses, published...)
		switch {
		case err == nil:
		case errors.Is(err, errStreamFull):
			return statuses, probStreamFull.problem("the COMMANDS stream is at its limits; retry later")
		case outbox.IsPermanent(err):
			return statuses, probTooLarge.problem("JetStream refused the command: " + err.Error())
		default:
			s.log.Warn("jetstream unavailable, spooling", "command_id", batch[failedAt].cmd.ID, "error", err)
			spoolFrom = failedAt
		}
	}
	if spoolFrom >= 0 {
		spooled, prob := s.spool(ctx, batch[spoolFrom:])
		statuses = append(statuses, spooled...)
		if prob != nil {
			return statuses, prob
		}
	}
	return statuses, nil
}

// message builds the NATS message of c.
func (s *Server) message(p *Producer, c *commands.Command) (*nats.Msg, error) {
	if c.SchemaVersion == 0 {
		c.SchemaVersion = commands.SchemaVersion
	}
	// Without HTML escaping, so that a command within the size limit here
	// is within it at the worker too.
	data, err := commands.Marshal(*c)
	if err != nil {
		return nil, fmt.Errorf("encode command %s: %w", c.ID, err)
	}
	if len(data) > commands.MaxCommandSize {
		// The id and schema version ingest adds can push a command that was
		// just within the limit over it: the worker would refuse it.
		return nil, fmt.Errorf("%w: %d bytes as stored, limit %d", commands.ErrTooLarge, len(data), commands.MaxCommandSize)
	}
	h := nats.Header(commands.CommandHeaders(*c))
	h.Set(headerProducer, p.Name)
	return &nats.Msg{Subject: commands.CommandSubject(*c), Header: h, Data: data}, nil
}

// mustSpool reports whether commands go to the outbox without trying
// JetStream: the connection is down, or earlier commands wait in the
// outbox.
func (s *Server) mustSpool() bool {
	if s.outbox == nil {
		return false
	}
	if s.nc.Status() != nats.CONNECTED {
		return true
	}
	depth, err := s.outbox.Depth()
	return err == nil && depth > 0
}

// publishBatch publishes the commands of a batch without waiting for each
// PubAck before the next publish, except that a command waits for the
// PubAck of an earlier command of the same client in the batch: a client's
// commands are stored in batch order, and one that failed is never
// overtaken by a later one of its client. It returns the statuses of the
// commands before the first failure, in order, and the index and error of
// that failure (failedAt is len(batch) and err nil when all were stored).
// Commands of other clients after the failure may have been stored too; a
// spool or a retry of the batch publishes them again under the same message
// ids, which the stream deduplicates.
func (s *Server) publishBatch(ctx context.Context, batch []pending) ([]CommandStatus, int, error) {
	futures := make([]jetstream.PubAckFuture, len(batch))
	sent := make([]time.Time, len(batch)) // each PubAck waits PublishTimeout from its own publish
	statuses := make([]CommandStatus, len(batch))
	errs := make([]error, len(batch))
	waited := make([]bool, len(batch))
	wait := func(i int) error {
		if !waited[i] {
			waited[i] = true
			statuses[i], errs[i] = s.published(ctx, batch[i], futures[i], sent[i])
		}
		return errs[i]
	}
	issued := 0
	lastOfClient := make(map[string]int, len(batch))
	for i, pc := range batch {
		key := strconv.FormatInt(pc.cmd.LocationID, 10) + "." + pc.cmd.ClientKey()
		if j, ok := lastOfClient[key]; ok && wait(j) != nil {
			break // the client's earlier command failed: nothing of it may follow
		}
		sent[i] = time.Now()
		f, err := s.js.PublishMsgAsync(pc.msg, jetstream.WithMsgID(pc.cmd.ID))
		if err != nil {
			statuses[i], errs[i], waited[i] = CommandStatus{}, fmt.Errorf("publish %s: %w", pc.cmd.ID, err), true
			issued = i + 1
			break
		}
		futures[i], lastOfClient[key], issued = f, i, i+1
	}
	for i := range issued {
		wait(i)
	}
	// Publishing stops only at a failure, so one is found among the issued
	// whenever not all were.
	for i := range issued {
		if errs[i] != nil {
			return statuses[:i], i, errs[i]
		}
	}
	return statuses, len(batch), nil
}

// published waits for the PubAck of one command, published at sent, for
// at most PublishTimeout from then, and records it.
func (s *Server) published(ctx context.Context, pc pending, f jetstream.PubAckFuture, sent time.Time) (CommandStatus, error) {
	timeout := time.NewTimer(time.Until(sent.Add(s.cfg.PublishTimeout)))
	defer timeout.Stop()
	var ack *jetstream.PubAck
	var err error
	select {
	case ack = <-f.Ok():
	case err = <-f.Err():
	case <-timeout.C:
		err = context.DeadlineExceeded
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.metrics.publish.Observe(time.Since(sent).Seconds())
	if err != nil {
		publishFailed(pc, err)
		if isStreamFull(err) {
			return CommandStatus{}, fmt.Errorf("publish %s: %w: %w", pc.cmd.ID, errStreamFull, err)
		}
		return CommandStatus{}, fmt.Errorf("publish %s: %w", pc.cmd.ID, err)
	}
	st := CommandStatus{ID: pc.cmd.ID, Status: StatusAccepted, StreamSeq: ack.Sequence}
	result := resultAccepted
	if ack.Duplicate {
		st.Status, result = StatusDuplicate, resultDuplicate
	}
	s.metrics.commands.WithLabelValues(result, "").Inc()
	endStored(pc, ack.Sequence, ack.Duplicate)
	s.recent.add(pc.cmd.ID, recentEntry{seq: ack.Sequence, location: pc.cmd.LocationID})
	s.log.Debug("command "+st.Status, "command_id", pc.cmd.ID, "correlation_id", pc.cmd.CorrelationID,
		"type", pc.cmd.Type, "location_id", pc.cmd.LocationID, "stream_seq", ack.Sequence)
	return st, nil
}

// isStreamFull reports whether a publish failed because the stream is at its
// byte or message limit (discard new).
func isStreamFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jsErrCodeStreamStoreFailed && strings.Contains(apiErr.Description, "maximum")
}

// jsErrCodeStreamStoreFailed is the server's JSStreamStoreFailedF, which
// carries "maximum bytes exceeded" and "maximum messages exceeded".
const jsErrCodeStreamStoreFailed jetstream.ErrorCode = 10077

// spool appends the commands to the outbox in one commit.
func (s *Server) spool(ctx context.Context, batch []pending) ([]CommandStatus, *Problem) {
	if s.outbox == nil {
		return nil, probUnavailable.problem("JetStream is unreachable and no outbox is configured")
	}
	entries := make([]outbox.Entry, len(batch))
	for i, pc := range batch {
		entries[i] = outbox.Entry{Subject: pc.msg.Subject, MsgID: pc.cmd.ID, Header: pc.msg.Header, Data: pc.msg.Data}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SpoolTimeout)
	defer cancel()
	if err := s.outbox.Append(ctx, entries...); err != nil {
		if errors.Is(err, outbox.ErrFull) {
			return nil, probOutboxFull.problem("JetStream is unreachable and the outbox is full")
		}
		s.log.Error("outbox append failed", "entries", len(entries), "error", err)
		return nil, probOutboxDown.problem("JetStream is unreachable and the outbox cannot store commands")
	}
	statuses := make([]CommandStatus, len(batch))
	for i, pc := range batch {
		statuses[i] = CommandStatus{ID: pc.cmd.ID, Status: StatusAccepted, Spooled: true}
		endSpooled(pc)
		s.recent.add(pc.cmd.ID, recentEntry{spooled: true, location: pc.cmd.LocationID})
		s.log.Debug("command spooled", "command_id", pc.cmd.ID, "correlation_id", pc.cmd.CorrelationID,
			"type", pc.cmd.Type, "location_id", pc.cmd.LocationID)
	}
	s.metrics.commands.WithLabelValues(resultSpooled, "").Add(float64(len(batch)))
	return statuses, nil
}
