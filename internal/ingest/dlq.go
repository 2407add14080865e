package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/altegio-integrator/integrator/internal/dlq"
)

// The DLQ over HTTP, for tools that cannot run the CLI (`worker dlq`):
//
//	GET  /v1/dlq            list; filters as query parameters
//	                        (dlq.FilterFromQuery)
//	GET  /v1/dlq/{ref}      one entry by DLQ sequence, or a command id's
//	POST /v1/dlq/replay     replay (dlq.ReplayRequest) → dlq.ReplayReport
//
// Served only when Config.DLQ is set. Every request needs an operator key,
// "Authorization: Bearer <key>", whose SHA-256 is one of
// Config.OperatorKeys (compared in constant time, like producer keys);
// producer keys do not open it. Replays are recorded as made by
// "http:<first 8 hex digits of the key's hash>".

// Problems of the DLQ endpoints.
var (
	probInvalidFilter  = problemKind{"invalid-filter", "Invalid filter", http.StatusBadRequest, "invalid_filter"}
	probEmptySelection = problemKind{"empty-selection", "Empty selection", http.StatusBadRequest, "empty_selection"}
)

// maxReplayBody bounds a replay request's body.
const maxReplayBody = 64 << 10

// operator checks the operator key of r and returns the operator's name
// for the audit; it answers the problem itself when there is none.
func (s *Server) operator(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.cfg.DLQ == nil {
		s.writeProblem(w, r, probNotFound.problem("the DLQ is not served here (configure operator keys)"))
		return "", false
	}
	key, ok := bearerKey(r.Header)
	if !ok {
		s.writeProblem(w, r, probUnauth.problem("send Authorization: Bearer <operator key>"))
		return "", false
	}
	sum := HashAPIKey(key)
	if !keyMatches(sum, s.cfg.OperatorKeys) {
		s.writeProblem(w, r, probUnauth.problem("unknown operator key"))
		return "", false
	}
	return "http:" + hex.EncodeToString(sum[:4]), true
}

func (s *Server) dlqList(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.operator(w, r); !ok {
		return
	}
	f, err := dlq.FilterFromQuery(r.URL.Query())
	if err == nil {
		err = f.Validate()
	}
	if err != nil {
		s.writeProblem(w, r, probInvalidFilter.problem(err.Error()))
		return
	}
	entries, sum, err := s.cfg.DLQ.List(r.Context(), f)
	if err != nil {
		s.dlqFailed(w, r, err)
		return
	}
	if entries == nil {
		entries = []dlq.Entry{}
	}
	writeJSON(w, http.StatusOK, dlq.ListResponse{Entries: entries, Summary: sum})
}

func (s *Server) dlqShow(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.operator(w, r); !ok {
		return
	}
	entries, err := s.cfg.DLQ.Show(r.Context(), r.PathValue("ref"))
	switch {
	case errors.Is(err, dlq.ErrNotFound):
		s.writeProblem(w, r, probNotFound.problem(err.Error()))
	case err != nil:
		s.dlqFailed(w, r, err)
	default:
		writeJSON(w, http.StatusOK, dlq.ListResponse{Entries: entries, Summary: dlq.Summarize(entries)})
	}
}

func (s *Server) dlqReplay(w http.ResponseWriter, r *http.Request) {
	operator, ok := s.operator(w, r)
	if !ok {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		s.writeProblem(w, r, probMediaType.problem("Content-Type must be application/json"))
		return
	}
	var req dlq.ReplayRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxReplayBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.writeProblem(w, r, probBadJSON.problem(err.Error()))
		return
	}
	if err := req.Filter.Validate(); err != nil {
		s.writeProblem(w, r, probInvalidFilter.problem(err.Error()))
		return
	}
	switch {
	case req.Max < 0 || req.Max > dlq.MaxHTTPReplayMax:
		s.writeProblem(w, r, probInvalidFilter.problem(fmt.Sprintf("max must be between 1 and %d", dlq.MaxHTTPReplayMax)))
		return
	case req.Max == 0:
		req.Max = dlq.DefaultHTTPReplayMax
	}
	rep, err := s.cfg.DLQ.Replay(r.Context(), req.Filter, dlq.ReplayOptions{DryRun: req.DryRun, Max: req.Max, Operator: operator})
	switch {
	case errors.Is(err, dlq.ErrEmptySelection):
		s.writeProblem(w, r, probEmptySelection.problem(err.Error()))
	case err != nil && len(rep.Replayed) > 0:
		// Partly done: say what was done; the rest is resumable.
		writeJSON(w, http.StatusOK, rep)
	case err != nil:
		s.dlqFailed(w, r, err)
	default:
		writeJSON(w, http.StatusOK, rep)
	}
}

// dlqFailed answers an error of the DLQ service.
func (s *Server) dlqFailed(w http.ResponseWriter, r *http.Request, err error) {
	timedOut := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	switch {
	case timedOut && r.Context().Err() != nil:
		// The client went away: nobody reads the answer, and nothing
		// failed on our side.
		w.WriteHeader(statusClientClosedRequest)
	case timedOut:
		s.writeProblem(w, r, probUnavailable.problem("the DLQ did not answer in time"))
	default:
		s.log.Warn("dlq http", "error", err)
		s.writeProblem(w, r, probInternal.problem("the DLQ could not be read; see the server log"))
	}
}

// keyMatches reports whether sum is one of hashes, comparing with every
// one in constant time (no early exit).
func keyMatches(sum [sha256.Size]byte, hashes [][sha256.Size]byte) bool {
	match := 0
	for _, h := range hashes {
		match |= subtle.ConstantTimeCompare(sum[:], h[:])
	}
	return match == 1
}
