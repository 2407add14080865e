package dlq

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
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// HTTP limits.
const (
	// DefaultHTTPReplayMax is how many entries one POST /v1/dlq/replay
	// republishes when the body does not say ("max"); at the default rate
	// that is 10 s. The answer's "remaining" tells the caller to call
	// again.
	DefaultHTTPReplayMax = 20
	// MaxHTTPReplayMax is the largest "max" a request may ask for.
	MaxHTTPReplayMax = 500
	// maxBodySize bounds a replay request body.
	maxBodySize = 64 << 10
)

// ProblemContentType is the media type of error answers (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem details object, the body of every error
// answer of Handler. Its type URIs share ingest's prefix,
// "urn:altegio-integrator:problem:".
type Problem struct {
	// Type is "urn:altegio-integrator:problem:<slug>".
	Type string `json:"type"`
	// Title is the short, stable summary of the type.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
}

// ListResponse is the body of GET /v1/dlq and GET /v1/dlq/{seq}.
type ListResponse struct {
	// Entries are the selected entries, in DLQ order (never null).
	Entries []Entry `json:"entries"`
	// Summary counts them.
	Summary Summary `json:"summary"`
}

// ReplayRequest is the body of POST /v1/dlq/replay: the selection (the
// fields of Filter: ids, seqs, location_id, type, error_class,
// http_status, since, until, client_id, client_ref, text, status, all),
// dry_run, and max (entries to republish in this request, default
// DefaultHTTPReplayMax, at most MaxHTTPReplayMax).
type ReplayRequest struct {
	Filter
	// DryRun asks for the plan only.
	DryRun bool `json:"dry_run"`
	// Max bounds the entries republished by this request.
	Max int `json:"max,omitempty"`
}

// Handler serves the DLQ over HTTP for tools that cannot run the CLI:
//
//	GET  /v1/dlq            list; filters as query parameters (location,
//	                        type, class, http_status, since, until (RFC
//	                        3339), client_id, client_ref, q (text), status,
//	                        id and seq (repeatable or comma-separated))
//	GET  /v1/dlq/{seq}      one entry (or, for a command id, its entries)
//	POST /v1/dlq/replay     replay (ReplayRequest) → ReplayReport
//
// Every request needs "Authorization: Bearer <operator key>", where the
// key's SHA-256 is one of operatorKeyHashes (compared in constant time);
// with no hashes every request is refused. Errors are RFC 9457
// problem+json. Replays are recorded as made by "http:<first 8 hex digits
// of the key's hash>". The handler is safe for concurrent use; mount it
// on a mux for "/v1/dlq" and "/v1/dlq/".
func Handler(svc *Service, operatorKeyHashes [][sha256.Size]byte) http.Handler {
	h := &handler{svc: svc, keys: operatorKeyHashes}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/dlq", h.auth(h.list))
	mux.HandleFunc("GET /v1/dlq/{ref}", h.auth(h.show))
	mux.HandleFunc("POST /v1/dlq/replay", h.auth(h.replay))
	mux.HandleFunc("/v1/dlq", h.auth(h.notAllowed("GET")))
	mux.HandleFunc("/", h.auth(func(w http.ResponseWriter, r *http.Request, _ string) {
		writeProblem(w, http.StatusNotFound, "not-found", "Not found", "no such DLQ resource")
	}))
	return mux
}

// handler serves Handler's routes.
type handler struct {
	svc  *Service
	keys [][sha256.Size]byte
}

// auth checks the operator key and passes the operator's name on.
func (h *handler) auth(next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		key = strings.TrimSpace(key)
		if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dlq"`)
			writeProblem(w, http.StatusUnauthorized, "unauthenticated", "Authentication required",
				"send Authorization: Bearer <operator key>")
			return
		}
		sum := sha256.Sum256([]byte(key))
		match := 0
		for _, k := range h.keys {
			match |= subtle.ConstantTimeCompare(sum[:], k[:])
		}
		if match != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dlq", error="invalid_token"`)
			writeProblem(w, http.StatusUnauthorized, "unauthenticated", "Authentication required", "unknown operator key")
			return
		}
		next(w, r, "http:"+hex.EncodeToString(sum[:4]))
	}
}

func (h *handler) notAllowed(allow string) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, _ *http.Request, _ string) {
		w.Header().Set("Allow", allow)
		writeProblem(w, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", "use "+allow)
	}
}

func (h *handler) list(w http.ResponseWriter, r *http.Request, _ string) {
	f, err := FilterFromQuery(r.URL.Query())
	if err == nil {
		err = f.Validate()
	}
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-filter", "Invalid filter", err.Error())
		return
	}
	entries, sum, err := h.svc.List(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ListResponse{Entries: nonNil(entries), Summary: sum})
}

func (h *handler) show(w http.ResponseWriter, r *http.Request, _ string) {
	entries, err := h.svc.Show(r.Context(), r.PathValue("ref"))
	if errors.Is(err, ErrNotFound) {
		writeProblem(w, http.StatusNotFound, "not-found", "Not found", err.Error())
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ListResponse{Entries: entries, Summary: Summarize(entries)})
}

func (h *handler) replay(w http.ResponseWriter, r *http.Request, operator string) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type", "send application/json")
		return
	}
	var req ReplayRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBodySize))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "malformed-json", "Malformed JSON", err.Error())
		return
	}
	if err := req.Filter.Validate(); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-filter", "Invalid filter", err.Error())
		return
	}
	switch {
	case req.Max < 0 || req.Max > MaxHTTPReplayMax:
		writeProblem(w, http.StatusBadRequest, "invalid-filter", "Invalid filter",
			fmt.Sprintf("max must be between 1 and %d", MaxHTTPReplayMax))
		return
	case req.Max == 0:
		req.Max = DefaultHTTPReplayMax
	}
	rep, err := h.svc.Replay(r.Context(), req.Filter, ReplayOptions{DryRun: req.DryRun, Max: req.Max, Operator: operator})
	switch {
	case errors.Is(err, ErrEmptySelection):
		writeProblem(w, http.StatusBadRequest, "empty-selection", "Empty selection", err.Error())
	case err != nil && len(rep.Replayed) > 0:
		// Partly done: say what was done; the rest is resumable.
		writeJSON(w, http.StatusOK, rep)
	case err != nil:
		h.fail(w, r, err)
	default:
		writeJSON(w, http.StatusOK, rep)
	}
}

// StatusClientClosedRequest is recorded for a request whose client went
// away before the answer (nginx's 499): not a server error.
const StatusClientClosedRequest = 499

// fail answers an error of the service.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// The client went away: nobody reads the answer, and nothing
		// failed on our side.
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Service unavailable", "the DLQ did not answer in time")
		return
	}
	writeProblem(w, http.StatusInternalServerError, "internal", "Internal error", "the DLQ could not be read; see the server log")
	h.svc.cfg.Logger.Warn("dlq http", "error", err)
}

// FilterFromQuery reads a Filter from URL query parameters: location,
// type, class, http_status, since, until (RFC 3339), client_id,
// client_ref, q, status, all, and id and seq (repeatable, or
// comma-separated). Unknown parameters are an error, so that a typo does
// not silently widen the selection.
func FilterFromQuery(q url.Values) (Filter, error) {
	var f Filter
	var errs []error
	num := func(name string, v string) int64 {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not a number", name))
		}
		return n
	}
	at := func(name string, v string) time.Time {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not an RFC 3339 time", name))
		}
		return t
	}
	for name, vals := range q {
		v := vals[len(vals)-1]
		switch name {
		case "location":
			f.LocationID = num(name, v)
		case "type":
			f.Type = commands.Type(v)
		case "class":
			f.Class = commands.ErrorClass(v)
		case "http_status":
			f.HTTPStatus = int(num(name, v))
		case "since":
			f.Since = at(name, v)
		case "until":
			f.Until = at(name, v)
		case "client_id":
			f.ClientID = num(name, v)
		case "client_ref":
			f.ClientRef = v
		case "q":
			f.Text = v
		case "status":
			f.Status = Status(v)
		case "all":
			f.All = v == "" || v == "true" || v == "1"
		case "id":
			for _, v := range vals {
				for id := range strings.SplitSeq(v, ",") {
					if id = strings.TrimSpace(id); id != "" {
						f.IDs = append(f.IDs, id)
					}
				}
			}
		case "seq":
			for _, v := range vals {
				for s := range strings.SplitSeq(v, ",") {
					if s = strings.TrimSpace(s); s != "" {
						n, err := strconv.ParseUint(s, 10, 64)
						if err != nil {
							errs = append(errs, fmt.Errorf("seq: %q is not a sequence", s))
						}
						f.Seqs = append(f.Seqs, n)
					}
				}
			}
		default:
			errs = append(errs, fmt.Errorf("unknown parameter %q", name))
		}
	}
	return f, errors.Join(errs...)
}

func nonNil(e []Entry) []Entry {
	if e == nil {
		return []Entry{}
	}
	return e
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, status int, slug, title, detail string) {
	w.Header().Set("Content-Type", ProblemContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: "urn:altegio-integrator:problem:" + slug, Title: title, Status: status, Detail: detail})
}
