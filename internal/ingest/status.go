package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
)

// Statuses of GET /v1/commands/{id}.
const (
	// StateSpooled: in this ingest's outbox, waiting for JetStream.
	StateSpooled = "spooled"
	// StateQueued: in the COMMANDS stream, not yet taken by a worker.
	StateQueued = "queued"
	// StateInFlight: a worker is carrying it out (or retrying it).
	StateInFlight = "in_flight"
	// StateSucceeded, StateDeadLettered and StateSuperseded are the
	// terminal outcomes of commands.Outcome; Result holds the result event.
	StateSucceeded    = string(commands.OutcomeSucceeded)
	StateDeadLettered = string(commands.OutcomeDeadLettered)
	StateSuperseded   = string(commands.OutcomeSuperseded)
)

// CommandState is the body of GET /v1/commands/{id}.
type CommandState struct {
	// ID is the command id.
	ID string `json:"id"`
	// Status is one of the State constants.
	Status string `json:"status"`
	// StreamSeq is the COMMANDS stream sequence, when known.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// Result is the command's result event (commands.Result), once the
	// worker recorded one.
	Result json.RawMessage `json:"result,omitempty"`
}

// statusClientClosedRequest is recorded for a request whose client went
// away before the answer (nginx's 499, as dlq.StatusClientClosedRequest):
// not a server error.
const statusClientClosedRequest = 499

// getCommand is GET /v1/commands/{id}: the worker's idempotency record when
// there is one, else what this process remembers of accepting the command,
// else 404. A producer sees only commands of its locations.
func (s *Server) getCommand(w http.ResponseWriter, r *http.Request) {
	id, err := s.auth.authenticate(r.Header, nil)
	if err != nil {
		s.writeProblem(w, r, probUnauth.problem(err.Error()))
		return
	}
	cmdID := r.PathValue("id")
	if !commands.ValidID(cmdID) {
		s.writeProblem(w, r, probNotFound.problem("no command with this id; ids are lowercase UUIDs"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
	defer cancel()
	st, location, found, err := s.lookup(ctx, cmdID)
	switch {
	case err != nil && r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		// The client went away: nobody reads the answer, and nothing
		// failed on our side.
		s.log.Debug("command status lookup abandoned by the client", "command_id", cmdID)
		w.WriteHeader(statusClientClosedRequest)
	case err != nil:
		s.log.Warn("command status lookup failed", "command_id", cmdID, "error", err)
		s.writeProblem(w, r, probUnavailable.problem("status store unreachable; retry later"))
	case !found || (location > 0 && !id.producer.allowsLocation(location)):
		s.writeProblem(w, r, probNotFound.problem("no command with this id is known"))
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// lookup finds the state of a command: the idempotency record first (it
// is shared by every replica), then the recent acceptances of this
// process.
func (s *Server) lookup(ctx context.Context, id string) (CommandState, int64, bool, error) {
	st := CommandState{ID: id}
	recent, isRecent := s.recent.get(id)
	if isRecent {
		st.StreamSeq = recent.seq
	}
	kv, err := s.idempotency(ctx)
	if err != nil {
		if isRecent {
			// The bucket is unreachable; say what this process knows.
			st.Status = s.recentState(recent)
			return st, recent.location, true, nil
		}
		return st, 0, false, err
	}
	rec, _, err := idem.Load(ctx, kv, id)
	var jsonErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if !isRecent {
			return st, 0, false, nil
		}
		st.Status = s.recentState(recent)
		return st, recent.location, true, nil
	case errors.As(err, &jsonErr), errors.As(err, &typeErr):
		s.log.Warn("undecodable idempotency record", "command_id", id, "error", err)
		st.Status = StateInFlight
		return st, recent.location, true, nil
	case err != nil:
		return st, 0, false, err
	}
	if rec.StreamSeq > 0 {
		st.StreamSeq = rec.StreamSeq
	}
	var res commands.Result
	if rec.Result != nil {
		res = *rec.Result
		st.Result, _ = commands.Marshal(res)
		if res.StreamSeq > 0 && st.StreamSeq == 0 {
			st.StreamSeq = res.StreamSeq
		}
	}
	switch rec.State {
	case idem.StateDone:
		st.Status = StateSucceeded
		if res.Outcome.Terminal() {
			st.Status = string(res.Outcome)
		}
	case idem.StateDead:
		st.Status = StateDeadLettered
	case idem.StateInFlight, "":
		st.Status = StateInFlight
	default:
		st.Status = string(rec.State)
	}
	location := res.LocationID
	if location == 0 {
		location = recent.location
	}
	return st, location, true, nil
}

// recentState is the state of a command this process accepted and the
// worker has not recorded yet.
func (s *Server) recentState(e recentEntry) string {
	if e.spooled && s.outbox != nil {
		if depth, err := s.outbox.Depth(); err == nil && depth > 0 {
			return StateSpooled
		}
	}
	return StateQueued
}

// idempotency returns the idempotency bucket, looked up once.
func (s *Server) idempotency(ctx context.Context) (jetstream.KeyValue, error) {
	return s.idem.Get(ctx, s.js)
}

// recentEntry is what a process remembers of a command it accepted.
type recentEntry struct {
	seq      uint64
	spooled  bool
	location int64
}

// recentIDs remembers the last n accepted commands, oldest forgotten first.
// Safe for concurrent use.
type recentIDs struct {
	mu      sync.Mutex
	entries map[string]recentEntry
	ring    []string
	next    int
}

func newRecentIDs(n int) *recentIDs {
	return &recentIDs{entries: make(map[string]recentEntry, n), ring: make([]string, n)}
}

func (r *recentIDs) add(id string, e recentEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ring) == 0 {
		return
	}
	if _, ok := r.entries[id]; !ok {
		if old := r.ring[r.next]; old != "" {
			delete(r.entries, old)
		}
		r.ring[r.next] = id
		r.next = (r.next + 1) % len(r.ring)
	}
	r.entries[id] = e
}

func (r *recentIDs) get(id string) (recentEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	return e, ok
}
