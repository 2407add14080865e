package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
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
// KV bucket altegio_idempotency under RecordKey(command id). Every write is
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

// RecordKey returns the KV key of the idempotency record of a command.
func RecordKey(commandID string) string { return "cmd." + commandID }

// LoadRecord reads the idempotency record of a command from the
// altegio_idempotency bucket. It returns jetstream.ErrKeyNotFound (wrapped)
// when the worker has not seen the command yet.
func LoadRecord(ctx context.Context, kv jetstream.KeyValue, commandID string) (Record, error) {
	s := recordStore{kv: kv}
	rec, rev, err := s.load(ctx, commandID)
	if err != nil {
		return Record{}, err
	}
	if rev == 0 {
		return Record{}, fmt.Errorf("load record %s: %w", commandID, jetstream.ErrKeyNotFound)
	}
	return rec, nil
}

// errConflict reports a lost compare-and-set on a record: another delivery
// of the same command wrote it in between.
var errConflict = errors.New("idempotency record changed concurrently")

// recordStore reads and writes Records with compare-and-set.
type recordStore struct {
	kv jetstream.KeyValue
}

// load returns the record and its revision; revision 0 and a zero Record
// when there is none.
func (s recordStore) load(ctx context.Context, id string) (Record, uint64, error) {
	e, err := s.kv.Get(ctx, RecordKey(id))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return Record{}, 0, nil
	case err != nil:
		return Record{}, 0, fmt.Errorf("load record %s: %w", id, err)
	}
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return Record{}, 0, fmt.Errorf("decode record %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// save writes rec if the stored revision is still rev (0: the key must not
// exist) and returns the new revision. It returns errConflict when another
// writer got there first.
func (s recordStore) save(ctx context.Context, id string, rec Record, rev uint64) (uint64, error) {
	b, err := commands.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("encode record %s: %w", id, err)
	}
	var newRev uint64
	if rev == 0 {
		newRev, err = s.kv.Create(ctx, RecordKey(id), b)
	} else {
		newRev, err = s.kv.Update(ctx, RecordKey(id), b, rev)
	}
	if topology.IsKVConflict(err) {
		return 0, fmt.Errorf("save record %s at revision %d: %w", id, rev, errConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("save record %s: %w", id, err)
	}
	return newRev, nil
}

// refStore maps client_ref to client id per location in the KV bucket
// altegio_client_refs, under "<location>.<client key>" (the client key is
// commands.Command.ClientKey: "ref_<ref>" or "refh_<hash>", both safe KV
// key tokens).
type refStore struct {
	kv jetstream.KeyValue
}

// refEntry is the stored value of a client_ref mapping.
type refEntry struct {
	ClientID  int64     `json:"client_id"`
	CommandID string    `json:"command_id"`
	At        time.Time `json:"at"`
}

// RefKey returns the KV key of a client_ref mapping in altegio_client_refs.
func RefKey(locationID int64, clientKey string) string {
	return strconv.FormatInt(locationID, 10) + "." + clientKey
}

// LookupClientRef returns the client id the client_ref ref of a location
// maps to in kv (the altegio_client_refs bucket), the same way commands
// resolve it; ok is false when it maps to none.
func LookupClientRef(ctx context.Context, kv jetstream.KeyValue, locationID int64, ref string) (clientID int64, ok bool, err error) {
	return refStore{kv: kv}.get(ctx, locationID, commands.Command{LocationID: locationID, ClientRef: ref}.ClientKey())
}

// get returns the client id a ref maps to; ok is false when it maps to none.
func (s refStore) get(ctx context.Context, loc int64, key string) (id int64, ok bool, err error) {
	e, err := s.kv.Get(ctx, RefKey(loc, key))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("load client ref %s: %w", RefKey(loc, key), err)
	}
	var v refEntry
	if err := json.Unmarshal(e.Value(), &v); err != nil || v.ClientID <= 0 {
		return 0, false, fmt.Errorf("decode client ref %s: invalid value", RefKey(loc, key))
	}
	return v.ClientID, true, nil
}

// put stores the mapping; later writes win (a ref re-created after a
// delete maps to the new client).
func (s refStore) put(ctx context.Context, loc int64, key string, v refEntry) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode client ref: %w", err)
	}
	if _, err := s.kv.Put(ctx, RefKey(loc, key), b); err != nil {
		return fmt.Errorf("store client ref %s: %w", RefKey(loc, key), err)
	}
	return nil
}

// remove forgets a mapping; a missing key is not an error.
func (s refStore) remove(ctx context.Context, loc int64, key string) error {
	err := s.kv.Delete(ctx, RefKey(loc, key))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete client ref %s: %w", RefKey(loc, key), err)
	}
	return nil
}
