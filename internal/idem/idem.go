// Package idem is the idempotency record of a command: its form, its key
// in the altegio_idempotency bucket (topology.BucketIdempotency) and how
// to read it. The worker writes it, with compare-and-set on every change
// (internal/worker/record.go); ingest's status lookups and the DLQ tooling
// read it. It is the one contract between them, so none of them links
// another's code to know it.
package idem

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// State is where a command stands in the idempotency record.
type State string

// The states of a Record.
const (
	// StateInFlight: an attempt was started. With Uncertain set, an attempt
	// may have reached the API without a known outcome, and the next one
	// reconciles before repeating a non-idempotent call.
	StateInFlight State = "in_flight"
	// StateDone: the command succeeded, or a replay of it was superseded
	// by a newer command of its client; Result holds the terminal result
	// event, which is re-published (deduplicated) instead of calling the
	// API again.
	StateDone State = "done"
	// StateDead: the command was dead-lettered; DeadLetter and Result hold
	// what was published. A replay from the DLQ starts it over.
	StateDead State = "dead"
)

// Record is the idempotency record of one command, stored as JSON in the
// KV bucket altegio_idempotency under Key(command id). Every write is
// a compare-and-set on the revision read, so two processes never both
// believe they own an attempt.
type Record struct {
	// State is in_flight, done or dead.
	State State `json:"state"`
	// Attempts counts real attempts (the API may have been called);
	// Deferrals counts 429 answers, which are not attempts.
	Attempts  int `json:"attempts"`
	Deferrals int `json:"deferrals,omitempty"`
	// Uncertain is set while an attempt of a non-idempotent operation may
	// have reached the API without a known outcome (crash, timeout,
	// transport error, 5xx). It survives dead-lettering, so that a replay
	// still reconciles first.
	Uncertain bool `json:"uncertain,omitempty"`
	// ClientID is the Altegio client the command acts on, resolved from
	// client_ref before the first attempt (so that a redelivery does not
	// depend on the ref mapping), or the id assigned by a create.
	ClientID int64 `json:"client_id,omitempty"`
	// StreamSeq is the COMMANDS stream sequence of the message of the
	// latest attempt; a different sequence means a duplicate or a replay.
	StreamSeq uint64 `json:"stream_seq"`
	// FirstAttemptAt and LastAttemptAt bracket the attempts.
	FirstAttemptAt time.Time `json:"first_attempt_at,omitzero"`
	LastAttemptAt  time.Time `json:"last_attempt_at,omitzero"`
	// FirstFailureAt and LastFailureAt bracket the failed attempts.
	FirstFailureAt time.Time `json:"first_failure_at,omitzero"`
	LastFailureAt  time.Time `json:"last_failure_at,omitzero"`
	// RetryingSince is the first retryable failure (not a 429, not a wait
	// for the account): Config.RetryFor counts from it.
	RetryingSince time.Time `json:"retrying_since,omitzero"`
	// LastError, LastClass and LastStatus describe the latest failure.
	LastError  string              `json:"last_error,omitempty"`
	LastClass  commands.ErrorClass `json:"last_class,omitempty"`
	LastStatus int                 `json:"last_status,omitempty"`
	// Account is the account that needs attention (class auth), if known.
	Account string `json:"account,omitempty"`
	// WorkerID is the process that wrote the record.
	WorkerID string `json:"worker_id,omitempty"`
	// Result is the terminal result event (done or dead).
	Result *commands.Result `json:"result,omitempty"`
	// DeadLetter is the DLQ record without the command bytes and headers,
	// which come from the message when it is re-published.
	DeadLetter *commands.DLQRecord `json:"dead_letter,omitempty"`
}

// Key returns the KV key of the idempotency record of a command.
func Key(commandID string) string { return "cmd." + commandID }

// Load reads the idempotency record of a command from the
// altegio_idempotency bucket with its revision. It returns
// jetstream.ErrKeyNotFound (wrapped) when the worker has not seen the
// command yet.
func Load(ctx context.Context, kv jetstream.KeyValue, commandID string) (Record, uint64, error) {
	e, err := kv.Get(ctx, Key(commandID))
	if err != nil {
		return Record{}, 0, fmt.Errorf("load record %s: %w", commandID, err)
	}
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return Record{}, 0, fmt.Errorf("decode record %s: %w", commandID, err)
	}
	return rec, e.Revision(), nil
}
