package commands

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Outcome is what became of a command, as reported by a result event.
type Outcome string

// The outcomes. Exactly one terminal outcome (succeeded, dead_lettered or
// superseded) is published per accepted command and per replay of it; the
// others are progress reports.
const (
	// OutcomeSucceeded: the API call succeeded, or reconciliation showed it
	// already had (a create found by phone, a delete that found 404, a
	// comment already present). Terminal.
	OutcomeSucceeded Outcome = "succeeded"
	// OutcomeFailed: one attempt failed with a retryable class and the
	// command will be retried. Not terminal.
	OutcomeFailed Outcome = "failed"
	// OutcomeDeadLettered: the command cannot succeed (invalid, permanent,
	// auth, or retries exhausted) and a DLQRecord was published. Terminal
	// until an operator replays it.
	OutcomeDeadLettered Outcome = "dead_lettered"
	// OutcomeReplayed: an operator republished the command from the DLQ; a
	// terminal outcome of the replay follows. Not terminal.
	OutcomeReplayed Outcome = "replayed"
	// OutcomeDuplicate: a command id that had already reached a terminal
	// outcome was delivered again; the API was not called, and Data holds
	// the stored result's data. Not terminal: the command's terminal event
	// was published before.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeSuperseded: the command was not carried out because a later
	// command made it moot (for example an update of a client deleted in
	// the meantime). Terminal.
	OutcomeSuperseded Outcome = "superseded"
	// OutcomePartiallySucceeded: a client.bulk_create whose request
	// succeeded for some clients while the API refused others. Data.items
	// says what became of each; every refused item was dead-lettered as a
	// client.create of its own (command id BulkItemCommandID, the DLQ
	// record names the bulk command and the item's index), to be fixed or
	// replayed alone. Terminal. A bulk create whose every item was refused
	// is dead_lettered as a whole.
	OutcomePartiallySucceeded Outcome = "partially_succeeded"
)

// Outcomes returns every valid outcome, in a stable order.
func Outcomes() []Outcome {
	return []Outcome{
		OutcomeSucceeded, OutcomeFailed, OutcomeDeadLettered,
		OutcomeReplayed, OutcomeDuplicate, OutcomeSuperseded, OutcomePartiallySucceeded,
	}
}

// Valid reports whether o is one of Outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case OutcomeSucceeded, OutcomeFailed, OutcomeDeadLettered,
		OutcomeReplayed, OutcomeDuplicate, OutcomeSuperseded, OutcomePartiallySucceeded:
		return true
	default:
		return false
	}
}

// Terminal reports whether o ends the processing of a command: succeeded,
// partially_succeeded, dead_lettered or superseded.
func (o Outcome) Terminal() bool {
	switch o {
	case OutcomeSucceeded, OutcomePartiallySucceeded, OutcomeDeadLettered, OutcomeSuperseded:
		return true
	default:
		return false
	}
}

// ErrorClass classifies a failure; the class decides between retrying
// (NakWithDelay) and dead-lettering.
type ErrorClass string

// The error classes.
const (
	// ClassInvalid: the command broke the contract; dead-lettered at once.
	ClassInvalid ErrorClass = "invalid"
	// ClassTransient: transport error or 5xx; retried with backoff.
	ClassTransient ErrorClass = "transient"
	// ClassRateLimited: 429; retried after Retry-After or with backoff.
	ClassRateLimited ErrorClass = "rate_limited"
	// ClassPermanent: 400, 402, 403, 404 or 422; dead-lettered at once.
	ClassPermanent ErrorClass = "permanent"
	// ClassAuth: 401 again after one re-login; dead-lettered.
	ClassAuth ErrorClass = "auth"
	// ClassAmbiguous: the outcome of a non-idempotent call is unknown
	// (timeout after sending); reconciled before any retry.
	ClassAmbiguous ErrorClass = "ambiguous"
	// ClassExhausted: retries ran out; dead-lettered.
	ClassExhausted ErrorClass = "exhausted"
)

// ErrorClasses returns every valid error class, in a stable order.
func ErrorClasses() []ErrorClass {
	return []ErrorClass{
		ClassInvalid, ClassTransient, ClassRateLimited, ClassPermanent,
		ClassAuth, ClassAmbiguous, ClassExhausted,
	}
}

// Valid reports whether c is one of ErrorClasses.
func (c ErrorClass) Valid() bool {
	switch c {
	case ClassInvalid, ClassTransient, ClassRateLimited, ClassPermanent,
		ClassAuth, ClassAmbiguous, ClassExhausted:
		return true
	default:
		return false
	}
}

// Retryable reports whether a failure of class c is retried: transient,
// rate_limited and ambiguous (after reconciliation). The others go to the
// DLQ.
func (c ErrorClass) Retryable() bool {
	switch c {
	case ClassTransient, ClassRateLimited, ClassAmbiguous:
		return true
	default:
		return false
	}
}

// Result is the body of a result event (see EventSubject and
// result.schema.json). Consumers must ignore fields they do not know: new
// optional fields may be added within one schema version.
type Result struct {
	// SchemaVersion is the contract version, SchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// CommandID is the command's id; empty only when the command could
	// not be decoded at all.
	CommandID string `json:"command_id"`
	// Type is the command's type as sent (possibly invalid).
	Type Type `json:"type"`
	// LocationID is the command's location (0 when unknown).
	LocationID int64 `json:"location_id"`
	// ClientID is the Altegio client id: the command's, or the one the API
	// assigned on create.
	ClientID int64 `json:"client_id,omitempty"`
	// ClientRef is the command's client_ref.
	ClientRef string `json:"client_ref,omitempty"`
	// Outcome is what became of the command.
	Outcome Outcome `json:"outcome"`
	// ErrorClass classifies the failure; empty on success.
	ErrorClass ErrorClass `json:"error_class,omitempty"`
	// HTTPStatus is the status of the last API response, if any.
	HTTPStatus int `json:"http_status,omitempty"`
	// APIMessage is the API's meta.message (or errors.message), or our
	// reason when the API was not called.
	APIMessage string `json:"api_message,omitempty"`
	// FieldErrors are the API's field errors (Path is the API's field key,
	// empty for messages without one) or, for an invalid command, the
	// validation problems.
	FieldErrors []Problem `json:"field_errors,omitempty"`
	// Attempts is how many times the worker tried the command (0 when it
	// never called the API).
	Attempts int `json:"attempts"`
	// Replay is the replay generation the result belongs to (0 for the
	// original publication).
	Replay int `json:"replay,omitempty"`
	// ReplayOf is, on a replayed event, the DLQ stream sequence of the
	// record that was replayed.
	ReplayOf uint64 `json:"replay_of,omitempty"`
	// FirstAttemptAt is when the first attempt started.
	FirstAttemptAt time.Time `json:"first_attempt_at,omitzero"`
	// CompletedAt is when this outcome was reached.
	CompletedAt time.Time `json:"completed_at"`
	// APILatencyMS is the time spent in API calls by the last attempt, in
	// milliseconds.
	APILatencyMS int64 `json:"api_latency_ms,omitempty"`
	// TotalMS is the time from the command's acceptance into the stream to
	// CompletedAt, in milliseconds.
	TotalMS int64 `json:"total_ms,omitempty"`
	// CorrelationID is the command's correlation_id.
	CorrelationID string `json:"correlation_id,omitempty"`
	// Data is the API's response data: the client card on create and
	// update, the comment on comment add, {created, errors} on bulk create;
	// absent when the API returned none.
	Data json.RawMessage `json:"data,omitempty"`
	// StreamSeq is the COMMANDS stream sequence of the command message.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// Note explains an outcome reached without a plain API success, e.g.
	// "reconciled: client found by phone" or "delete found 404".
	Note string `json:"note,omitempty"`
	// WorkerID identifies the worker process that produced the result.
	WorkerID string `json:"worker_id,omitempty"`
	// TraceID is the W3C trace id (32 lower-case hex digits) of the
	// command's trace: the one its producer sent in traceparent, or the one
	// ingest started. Empty when the command carried no trace context
	// (tracing off end to end).
	TraceID string `json:"trace_id,omitempty"`
}

// ResultMsgID returns the Nats-Msg-Id of the result event with outcome o for
// a command: "<command id>:<outcome>". It is deterministic, so a worker that
// publishes the same result twice (after a crash, or when re-emitting a
// stored result) is deduplicated by JetStream. Result.MsgID extends it for
// replays and per-attempt failures; publishers should use that.
func ResultMsgID(commandID string, o Outcome) string {
	return commandID + ":" + string(o)
}

// MsgID returns the Nats-Msg-Id to publish r with: ResultMsgID of its
// command id and outcome, plus ":replay:<n>" when r.Replay > 0 (so the
// outcome of a replay is not deduplicated against the original's) and
// ":attempt:<n>" for OutcomeFailed (one event per failed attempt). When the
// command id is unknown, "seq-<stream seq>" stands in for it.
func (r Result) MsgID() string {
	id := r.CommandID
	if id == "" {
		id = "seq-" + strconv.FormatUint(r.StreamSeq, 10)
	}
	s := ResultMsgID(id, r.Outcome)
	if r.Replay > 0 {
		s += ":replay:" + strconv.Itoa(r.Replay)
	}
	if r.Outcome == OutcomeFailed {
		s += ":attempt:" + strconv.Itoa(r.Attempts)
	}
	return s
}

// ResultHeaders returns the headers to publish r with: HeaderMsgID
// (r.MsgID()), HeaderCommandType, HeaderOutcome, HeaderSchemaVersion and,
// when set, HeaderCommandID, HeaderErrorClass and HeaderCorrelationID.
func ResultHeaders(r Result) map[string][]string {
	h := map[string][]string{
		HeaderMsgID:         {r.MsgID()},
		HeaderCommandType:   {string(r.Type)},
		HeaderOutcome:       {string(r.Outcome)},
		HeaderSchemaVersion: {strconv.Itoa(SchemaVersion)},
	}
	if r.CommandID != "" {
		h[HeaderCommandID] = []string{r.CommandID}
	}
	if r.ErrorClass != "" {
		h[HeaderErrorClass] = []string{string(r.ErrorClass)}
	}
	if r.CorrelationID != "" {
		h[HeaderCorrelationID] = []string{r.CorrelationID}
	}
	return h
}

// DLQRecord is the body of a dead-letter record (see DLQSubject): the
// command as it arrived, where it came from, and why it failed. The DLQ
// tooling lists records by the summary fields without decoding Command and
// replays CommandBytes.
type DLQRecord struct {
	// SchemaVersion is the contract version, SchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// Command is the original command when it is well-formed JSON (kept
	// compact: insignificant whitespace is not preserved).
	Command json.RawMessage `json:"command,omitempty"`
	// CommandRaw is the original message body, base64 in JSON, when it is
	// not well-formed JSON. Exactly one of Command and CommandRaw is set;
	// use SetCommand and CommandBytes.
	CommandRaw []byte `json:"command_raw,omitempty"`
	// CommandRef, set instead of Command and CommandRaw, points at the
	// command stored on its own in the DLQ stream, for a command so large
	// that a record embedding it would not fit in a message.
	CommandRef *CommandRef `json:"command_ref,omitempty"`
	// Headers are the original message's headers (nats.Header).
	Headers map[string][]string `json:"headers,omitempty"`
	// Subject is the subject the command was received on.
	Subject string `json:"subject"`
	// StreamSeq is the command's COMMANDS stream sequence.
	StreamSeq uint64 `json:"stream_seq"`
	// CommandID is the command's id, when it could be decoded that far.
	CommandID string `json:"command_id,omitempty"`
	// Type is the command's type as sent, when it could be decoded.
	Type Type `json:"type,omitempty"`
	// LocationID is the command's location, when it could be decoded.
	LocationID int64 `json:"location_id,omitempty"`
	// ClientKey is the command's ClientKey, for replaying one client's
	// commands in order.
	ClientKey string `json:"client_key,omitempty"`
	// BulkCommandID and BulkIndex name the client.bulk_create and the
	// position in it of a refused item that was dead-lettered as a
	// client.create of its own (the bulk ended partially_succeeded).
	BulkCommandID string `json:"bulk_command_id,omitempty"`
	BulkIndex     *int   `json:"bulk_index,omitempty"`
	// ErrorClass is why the command was dead-lettered.
	ErrorClass ErrorClass `json:"error_class"`
	// Reason is a one-line human explanation.
	Reason string `json:"reason"`
	// HTTPStatus is the status of the last API response, if any.
	HTTPStatus int `json:"http_status,omitempty"`
	// APIMessage is the API's message from the last response, if any.
	APIMessage string `json:"api_message,omitempty"`
	// FieldErrors are the API's field errors or the validation problems.
	FieldErrors []Problem `json:"field_errors,omitempty"`
	// Attempts is how many times the worker tried the command.
	Attempts int `json:"attempts"`
	// Replay is the replay generation of the failed delivery (0 for the
	// original publication).
	Replay int `json:"replay,omitempty"`
	// FirstFailureAt is when the first failed attempt ended.
	FirstFailureAt time.Time `json:"first_failure_at,omitzero"`
	// LastFailureAt is when the last failed attempt ended.
	LastFailureAt time.Time `json:"last_failure_at,omitzero"`
	// DeadLetteredAt is when the record was written.
	DeadLetteredAt time.Time `json:"dead_lettered_at"`
	// WorkerID identifies the worker process that dead-lettered the command.
	WorkerID string `json:"worker_id,omitempty"`
	// TraceID is the W3C trace id of the delivery that dead-lettered the
	// command, as in Result.TraceID; empty without trace context.
	TraceID string `json:"trace_id,omitempty"`
}

// CommandRef locates a command stored on its own in the DLQ stream
// (DLQCommandSubject), with its size and SHA-256 to check it.
type CommandRef struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	Size    int    `json:"size"`
	SHA256  string `json:"sha256"`
}

// SetCommand stores the original message body: in Command when it is
// well-formed JSON, else in CommandRaw. It copies data.
func (r *DLQRecord) SetCommand(data []byte) {
	r.Command, r.CommandRaw = nil, nil
	if json.Valid(data) {
		r.Command = append(json.RawMessage{}, data...)
		return
	}
	r.CommandRaw = append([]byte{}, data...)
}

// CommandBytes returns the stored message body (Command or CommandRaw), for
// a replay.
func (r DLQRecord) CommandBytes() []byte {
	if len(r.Command) > 0 {
		return r.Command
	}
	return r.CommandRaw
}

// bulkItemNamespace is the UUIDv5 namespace of BulkItemCommandID.
var bulkItemNamespace = uuid.MustParse("5f0f2d4e-6a59-4c3e-9f7e-0b6c1d2a8e11")

// BulkItemCommandID is the command id of item index of the bulk create
// bulkID when the item is dead-lettered as a client.create of its own:
// a UUIDv5 of both, so a redelivery names the same command.
func BulkItemCommandID(bulkID string, index int) string {
	return uuid.NewSHA1(bulkItemNamespace, []byte(bulkID+"/"+strconv.Itoa(index))).String()
}

// MsgID returns the Nats-Msg-Id to publish r with:
// "dlq:<command id>:<stream seq>", unique per failed command message (a
// replay is a new message), so a worker that dead-letters the same message
// twice is deduplicated.
func (r DLQRecord) MsgID() string {
	return "dlq:" + r.CommandID + ":" + strconv.FormatUint(r.StreamSeq, 10)
}
