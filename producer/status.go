package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// State is where a command is, as GET /v1/commands/{id} reports it.
type State string

// The states. Succeeded, PartiallySucceeded, DeadLettered and Superseded
// are terminal.
const (
	// StateSpooled: in ingest's outbox, waiting for JetStream.
	StateSpooled State = "spooled"
	// StateQueued: in the COMMANDS stream, not yet taken by a worker.
	StateQueued State = "queued"
	// StateInFlight: a worker is carrying it out, or retrying it.
	StateInFlight State = "in_flight"
	// StateSucceeded: done; Result holds the API's answer.
	StateSucceeded State = "succeeded"
	// StatePartiallySucceeded: a bulk create some of whose clients the API
	// refused; Result.Data says which.
	StatePartiallySucceeded State = "partially_succeeded"
	// StateDeadLettered: it cannot succeed (refused by the API, or retries
	// exhausted) and waits in the DLQ for an operator; Result says why.
	StateDeadLettered State = "dead_lettered"
	// StateSuperseded: not carried out, a later command made it moot.
	StateSuperseded State = "superseded"
)

// Terminal reports whether s is a final state.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StatePartiallySucceeded, StateDeadLettered, StateSuperseded:
		return true
	default:
		return false
	}
}

// CommandState is what ingest knows of a command.
type CommandState struct {
	// ID is the command id.
	ID string `json:"id"`
	// State is where the command is.
	State State `json:"status"`
	// StreamSeq is the COMMANDS stream sequence, when known.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// Result is the command's result event, once a worker recorded one.
	Result *Result `json:"result,omitempty"`
}

// Result is the result event of a command (the contract's
// /schemas/result.json, its main fields).
type Result struct {
	// CommandID is the command's id.
	CommandID string `json:"command_id"`
	// Type is the command's type.
	Type Type `json:"type"`
	// LocationID is the command's location.
	LocationID int64 `json:"location_id"`
	// ClientID is Altegio's client id: the command's, or the one the API
	// gave a created client.
	ClientID int64 `json:"client_id,omitempty"`
	// ClientRef is the command's client_ref.
	ClientRef string `json:"client_ref,omitempty"`
	// Outcome is "succeeded", "partially_succeeded", "dead_lettered",
	// "superseded", or a progress report ("failed", "replayed",
	// "duplicate").
	Outcome string `json:"outcome"`
	// ErrorClass classifies a failure ("permanent", "transient", …).
	ErrorClass string `json:"error_class,omitempty"`
	// HTTPStatus is the status of the last API answer, if any.
	HTTPStatus int `json:"http_status,omitempty"`
	// APIMessage is the API's message, or the worker's reason.
	APIMessage string `json:"api_message,omitempty"`
	// FieldErrors are the API's field errors.
	FieldErrors []FieldError `json:"field_errors,omitempty"`
	// Attempts is how many times the worker called the API.
	Attempts int `json:"attempts"`
	// CorrelationID is the command's correlation_id.
	CorrelationID string `json:"correlation_id,omitempty"`
	// Note explains an outcome reached without a plain API success.
	Note string `json:"note,omitempty"`
	// CompletedAt is when the outcome was reached.
	CompletedAt time.Time `json:"completed_at"`
	// Data is the API's response data: the client card on create and
	// update, the comment on comment add.
	Data json.RawMessage `json:"data,omitempty"`
}

// Status asks ingest for the state of the command id (GET
// /v1/commands/{id}), once, without retrying. It returns a *ProblemError
// for an error answer (404 when ingest knows no such command), or a
// network error.
func (h *HTTP) Status(ctx context.Context, id string) (CommandState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.endpoint+"/"+url.PathEscape(id), nil)
	if err != nil {
		return CommandState{}, err
	}
	req.Header.Set("Authorization", "Bearer "+h.key)
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := h.client.Do(req)
	if err != nil {
		return CommandState{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return CommandState{}, fmt.Errorf("read status of %s: %w", id, err)
	}
	if resp.StatusCode != http.StatusOK {
		_, _, err := readAnswer(resp.StatusCode, resp.Header, data, nil)
		return CommandState{}, err
	}
	var st CommandState
	if err := json.Unmarshal(data, &st); err != nil {
		return CommandState{}, fmt.Errorf("%w: status of %s: %v", errBadAnswer, id, err)
	}
	return st, nil
}

// Wait polls Status until the command id reaches a terminal state, and
// returns it. It polls every 100ms at first, then less often, up to every
// 2s, until ctx ends: give ctx a deadline. A 404 is waited through (a
// command published over NATS is unknown to ingest until a worker records
// it), and so are transient answers (429, 5xx) and network errors; any
// other error answer (401, 403) is returned at once.
func (h *HTTP) Wait(ctx context.Context, id string) (CommandState, error) {
	every := 100 * time.Millisecond
	for {
		st, err := h.Status(ctx, id)
		if err == nil && st.State.Terminal() {
			return st, nil
		}
		var pe *ProblemError
		if errors.As(err, &pe) && pe.Status != http.StatusNotFound && !pe.Temporary() {
			return st, fmt.Errorf("wait for %s: %w", id, err)
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				err = fmt.Errorf("last state %s", st.State)
			}
			return st, fmt.Errorf("wait for %s: %w (%w)", id, ctx.Err(), err)
		case <-t.C:
		}
		every = min(2*every, 2*time.Second)
	}
}
