package ingest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// ProblemContentType is the media type of every error answer (RFC 9457).
const ProblemContentType = "application/problem+json"

// problemTypePrefix starts every problem type URI: a URN, so it is stable
// and never dereferenced.
const problemTypePrefix = "urn:altegio-integrator:problem:"

// Problem is an RFC 9457 problem details object, the body of every error
// answer of ingest.
type Problem struct {
	// Type identifies the kind of problem, "urn:altegio-integrator:problem:<slug>".
	Type string `json:"type"`
	// Title is the short, stable summary of the type.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
	// Instance identifies this occurrence ("urn:uuid:<request id>"); the
	// same id is logged as request_id.
	Instance string `json:"instance,omitempty"`
	// Errors lists every field problem at once. Paths are those of
	// commands.Problem; in a batch they start with the index, "[3].payload.phone".
	Errors []commands.Problem `json:"errors,omitempty"`
	// Commands lists, on a 503 in the middle of a batch, the commands that
	// were accepted before it; retry the batch with the same ids.
	Commands []CommandStatus `json:"commands,omitempty"`
}

// notFoundDetail is the detail of the answer to an unknown path (New's
// catch-all), which every refusal of the webhook route repeats.
const notFoundDetail = "no such endpoint; see /openapi.json"

// problem kinds: slug, title and status.
type problemKind struct {
	slug   string
	title  string
	status int
	reason string // the reason label of ingest_commands_total
}

var (
	probBadJSON      = problemKind{"malformed-json", "Malformed JSON", http.StatusBadRequest, "bad_json"}
	probBadHeader    = problemKind{"invalid-header", "Invalid header", http.StatusBadRequest, "bad_header"}
	probUnauth       = problemKind{"unauthenticated", "Authentication required", http.StatusUnauthorized, "unauthenticated"}
	probForbidden    = problemKind{"forbidden", "Producer not allowed", http.StatusForbidden, "forbidden"}
	probNotFound     = problemKind{"not-found", "Not found", http.StatusNotFound, "not_found"}
	probMethod       = problemKind{"method-not-allowed", "Method not allowed", http.StatusMethodNotAllowed, "method"}
	probTooLarge     = problemKind{"too-large", "Request too large", http.StatusRequestEntityTooLarge, "too_large"}
	probMediaType    = problemKind{"unsupported-media-type", "Unsupported media type", http.StatusUnsupportedMediaType, "media_type"}
	probInvalid      = problemKind{"invalid-command", "Invalid command", http.StatusUnprocessableEntity, "invalid"}
	probUnknownType  = problemKind{"unknown-command-type", "Unknown command type", http.StatusUnprocessableEntity, "unknown_type"}
	probStreamFull   = problemKind{"stream-full", "Command stream full", http.StatusServiceUnavailable, "stream_full"}
	probOutboxFull   = problemKind{"outbox-full", "NATS unavailable and outbox full", http.StatusServiceUnavailable, "outbox_full"}
	probOutboxDown   = problemKind{"outbox-unavailable", "NATS and outbox unavailable", http.StatusServiceUnavailable, "outbox_unavailable"}
	probUnavailable  = problemKind{"unavailable", "Service unavailable", http.StatusServiceUnavailable, "unavailable"}
	probInternal     = problemKind{"internal", "Internal error", http.StatusInternalServerError, "internal"}
	allProblemKinds  = []problemKind{probBadJSON, probBadHeader, probUnauth, probForbidden, probNotFound, probMethod, probTooLarge, probMediaType, probInvalid, probUnknownType, probStreamFull, probOutboxFull, probOutboxDown, probUnavailable, probInternal, probBadRead, probUpstream, probInvalidFilter, probEmptySelection}
	rejectionReasons = func() []string {
		var r []string
		for _, k := range allProblemKinds {
			r = append(r, k.reason)
		}
		return r
	}()
)

// newProblem builds the problem of kind k.
func (k problemKind) problem(detail string) *Problem {
	return &Problem{Type: problemTypePrefix + k.slug, Title: k.title, Status: k.status, Detail: detail}
}

// writeProblem sends p; a 503 carries Retry-After (the one already set, or
// Config.RetryAfter), a 401 WWW-Authenticate.
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	p.Instance = "urn:uuid:" + requestID(r)
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	switch p.Status {
	case http.StatusServiceUnavailable:
		if h.Get("Retry-After") == "" { // a handler may know better (a read's expected wait)
			h.Set("Retry-After", strconv.Itoa(int((s.cfg.RetryAfter+time.Second-1)/time.Second)))
		}
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="ingest"`)
	case http.StatusUnsupportedMediaType:
		h.Set("Accept-Post", "application/json")
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON sends v as application/json with the status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
