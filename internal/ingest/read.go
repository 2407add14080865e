package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/readclient"
)

// Reads over HTTP. Ingest holds no Altegio credentials: it asks the workers'
// read service (internal/reads, the altegio-reads micro service of
// `worker run --reads`) over NATS request-reply, so that a read uses the
// workers' session and the shared budget. A producer may read only when its
// spec says "read": true, and only in its locations; writing does not imply
// reading. Reads take the bearer API key, not a webhook signature (which
// does not cover the method and path, so a signed read could be replayed to
// read another client).
//
// Clients are addressed by id under /clients/{client_id} and by client_ref
// under /clients-by-ref/{client_ref}: one path shape each, since a ref may
// look like anything an id path segment could be followed by.

// readTimeout bounds the wait for the read service's answer; the service
// itself gives up (503) after 10 s.
const readTimeout = 15 * time.Second

// Problems of reads.
var (
	probBadRead  = problemKind{"invalid-read", "Invalid read", http.StatusBadRequest, "invalid_read"}
	probUpstream = problemKind{"api-error", "Altegio API error", http.StatusBadGateway, "api_error"}
)

// readTarget says where a read route finds its client, if it names one.
type readTarget int

const (
	readNoClient readTarget = iota // the body is the query
	readByID                       // path value client_id
	readByRef                      // path value client_ref
	readByQuery                    // the URL's query parameters are the query (listParams)
)

// readHandler answers a read route: query on the read service, with the
// client of target, or the request body as the query.
func (s *Server) readHandler(query string, target readTarget) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if target == readNoClient {
			b, prob := s.readBody(w, r, probBadRead)
			if prob != nil {
				s.writeProblem(w, r, prob)
				return
			}
			body = b
		}
		loc, ok := s.readAccess(w, r, body, r.PathValue("location_id"))
		if !ok {
			return
		}
		req, prob := readRequest(r, target, body)
		if prob != nil {
			s.writeProblem(w, r, prob)
			return
		}
		s.askRead(w, r, loc, query, req)
	}
}

// readBody reads a request's body, at most MaxBodyBytes: a larger one is
// a 413 problem, one that cannot be read a problem of kind unreadable.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, unreadable problemKind) ([]byte, *Problem) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, probTooLarge.problem(fmt.Sprintf("request body larger than %d bytes", s.cfg.MaxBodyBytes))
	case err != nil:
		return nil, unreadable.problem("read body: " + err.Error())
	}
	return b, nil
}

// readAccess authenticates a read in location (as written in the request)
// and checks the producer's right to read there; it answers the problem
// itself when not. An unreadable location is a 404 (it is a path
// segment).
func (s *Server) readAccess(w http.ResponseWriter, r *http.Request, body []byte, location string) (int64, bool) {
	p, ok := s.readAuth(w, r, body)
	if !ok {
		return 0, false
	}
	loc, err := strconv.ParseInt(location, 10, 64)
	if err != nil || loc <= 0 {
		s.writeProblem(w, r, probNotFound.problem("location_id must be a positive number"))
		return 0, false
	}
	return loc, s.readAllowed(w, r, p, loc)
}

// readAuth authenticates a read: the bearer key only (a webhook signature
// covers the id, the time and the body, not the method or the path: one
// signed read could be replayed to read any client).
func (s *Server) readAuth(w http.ResponseWriter, r *http.Request, body []byte) (*Producer, bool) {
	if r.Header.Get(headerWebhookSignature) != "" && !s.cfg.AuthDisabled {
		s.writeProblem(w, r, probUnauth.problem("reads take a bearer API key, not a webhook signature"))
		return nil, false
	}
	id, err := s.auth.authenticate(r.Header, body)
	if err != nil {
		s.writeProblem(w, r, probUnauth.problem(err.Error()))
		return nil, false
	}
	return id.producer, true
}

// readAllowed checks that p may read in loc.
func (s *Server) readAllowed(w http.ResponseWriter, r *http.Request, p *Producer, loc int64) bool {
	if !p.Read || !p.allowsLocation(loc) {
		s.writeProblem(w, r, probForbidden.problem(fmt.Sprintf("producer %s may not read in location %d", p.Name, loc)))
		return false
	}
	return true
}

// askRead asks the read service query in loc and writes its answer.
func (s *Server) askRead(w http.ResponseWriter, r *http.Request, loc int64, query string, req []byte) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	var answer json.RawMessage
	err := readclient.Ask(ctx, s.nc, loc, query, req, &answer)
	var re *readclient.ReadError
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	case errors.Is(err, readclient.ErrNoReadService):
		s.writeProblem(w, r, probUnavailable.problem(err.Error()))
	case r.Context().Err() != nil:
		w.WriteHeader(statusClientClosedRequest)
	case errors.As(err, &re):
		if re.Code == http.StatusServiceUnavailable && re.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(re.RetryAfter/time.Second))) // kept by writeProblem
		}
		s.writeProblem(w, r, readProblem(re.Code, re.Reason))
	default:
		s.writeProblem(w, r, probUnavailable.problem("the read service did not answer: "+err.Error()))
	}
}

// readRequest builds the read service's request.
func readRequest(r *http.Request, target readTarget, body []byte) ([]byte, *Problem) {
	switch target {
	case readByID:
		id, err := strconv.ParseInt(r.PathValue("client_id"), 10, 64)
		if err != nil || id <= 0 {
			return nil, probNotFound.problem("client_id must be a positive number")
		}
		return []byte(`{"client_id":` + strconv.FormatInt(id, 10) + `}`), nil
	case readByRef:
		b, _ := json.Marshal(map[string]string{"client_ref": r.PathValue("client_ref")})
		return b, nil
	case readByQuery:
		return queryRequest(r.URL.Query(), listParams)
	}
	if len(body) > 0 && !isJSON(r.Header.Get("Content-Type")) {
		return nil, probMediaType.problem("Content-Type must be application/json")
	}
	return body, nil
}

// param says how a query parameter becomes a field of a read's request.
type param int

const (
	paramString   param = iota // as it is
	paramPositive              // a whole number above 0
	paramNumber                // any number
	paramIDs                   // repeatable client ids, the field "ids"
	paramSkip                  // read by the handler itself
)

// listParams are the query parameters of GET …/clients: the request of
// clients.list (readclient.ListRequest).
var listParams = map[string]param{
	"page": paramPositive, "count": paramPositive, "paid_min": paramNumber, "paid_max": paramNumber, "id": paramIDs,
	"fullname": paramString, "phone": paramString, "email": paramString, "card": paramString,
	"changed_after": paramString, "changed_before": paramString,
}

// commandsParams are the query parameters of GET /v1/commands: the
// request of commands.list (readclient.CommandsRequest) and the location.
var commandsParams = map[string]param{
	"location_id": paramSkip, "client_ref": paramString, "since": paramString, "cursor": paramString,
	"client_id": paramPositive, "limit": paramPositive,
}

// queryRequest turns query parameters into the JSON request of a read, as
// params say; every bad or unknown parameter is a problem, by path.
func queryRequest(q url.Values, params map[string]param) ([]byte, *Problem) {
	req := map[string]any{}
	var errs []commands.Problem
	bad := func(key, reason string) { errs = append(errs, commands.Problem{Path: key, Reason: reason}) }
	for key, vals := range q {
		v := vals[len(vals)-1]
		kind, known := params[key]
		switch {
		case !known:
			bad(key, "unknown query parameter")
		case kind == paramString:
			req[key] = v
		case kind == paramPositive:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				bad(key, "must be a positive whole number")
			}
			req[key] = n
		case kind == paramNumber:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				bad(key, "must be a number")
			}
			req[key] = f
		case kind == paramIDs:
			ids := make([]int64, 0, len(vals))
			for _, v := range vals {
				id, err := strconv.ParseInt(v, 10, 64)
				if err != nil || id < 1 {
					bad(key, "must be client ids")
				}
				ids = append(ids, id)
			}
			req["ids"] = ids
		}
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b commands.Problem) int { return strings.Compare(a.Path, b.Path) })
		p := probBadRead.problem("invalid query parameters")
		p.Errors = errs
		return nil, p
	}
	b, _ := json.Marshal(req)
	return b, nil
}

// getClientCommands answers GET /v1/commands?location_id=…&client_ref=…
// (or client_id=…), with since, limit and cursor: the commands of a
// client and their outcomes, newest first, from the workers' history.
func (s *Server) getClientCommands(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, ok := s.readAuth(w, r, nil)
	if !ok {
		return
	}
	loc, err := strconv.ParseInt(q.Get("location_id"), 10, 64)
	if err != nil || loc <= 0 {
		prob := probBadRead.problem("invalid query parameters")
		prob.Errors = []commands.Problem{{Path: "location_id", Reason: "is required: a positive number"}}
		s.writeProblem(w, r, prob)
		return
	}
	if !s.readAllowed(w, r, p, loc) {
		return
	}
	b, prob := queryRequest(q, commandsParams)
	if prob != nil {
		s.writeProblem(w, r, prob)
		return
	}
	s.askRead(w, r, loc, commands.ReadCommands, b)
}

// exportClients answers GET /v1/locations/{location_id}/export/clients:
// every client card as JSON lines (application/x-ndjson), in ascending id,
// streamed as the pages come at the export share of the budget; after_id
// resumes after the last card a previous export wrote. The trailer
// Altegio-Export-Complete says "true" when every card was sent; a stream
// that fails after it began is cut off (an incomplete chunked body), so
// the caller resumes from its last id.
func (s *Server) exportClients(w http.ResponseWriter, r *http.Request) {
	loc, ok := s.readAccess(w, r, nil, r.PathValue("location_id"))
	if !ok {
		return
	}
	var after int64
	if v := r.URL.Query().Get("after_id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			p := probBadRead.problem("invalid query parameters")
			p.Errors = []commands.Problem{{Path: "after_id", Reason: "must be a client id"}}
			s.writeProblem(w, r, p)
			return
		}
		after = n
	}
	rc := http.NewResponseController(w)
	started := false
	begin := func() {
		if !started {
			started = true
			h := w.Header()
			h.Set("Content-Type", "application/x-ndjson")
			h.Set("Trailer", headerExportComplete)
			w.WriteHeader(http.StatusOK)
		}
	}
	err := readclient.Export(r.Context(), s.nc, loc, after, func(card json.RawMessage) error {
		begin()
		_ = rc.SetWriteDeadline(time.Now().Add(exportWriteTimeout))
		_, err := fmt.Fprintf(w, "%s\n", card) // compact JSON: one line
		return err
	}, func(readclient.ExportProgress) { _ = rc.Flush() })
	var re *readclient.ReadError
	switch {
	case err == nil:
		begin()
		w.Header().Set(headerExportComplete, "true")
	case started || r.Context().Err() != nil:
		s.log.Warn("export cut off", "location_id", loc, "error", err)
		panic(http.ErrAbortHandler)
	case errors.Is(err, readclient.ErrNoReadService):
		s.writeProblem(w, r, probUnavailable.problem("no read service is running (start a worker with --reads)"))
	case errors.As(err, &re):
		s.writeProblem(w, r, readProblem(re.Code, re.Reason))
	default:
		s.writeProblem(w, r, probUnavailable.problem("export: "+err.Error()))
	}
}

// headerExportComplete is the export's trailer.
const headerExportComplete = "Altegio-Export-Complete"

// exportWriteTimeout bounds the write of one card of an export (the
// server's WriteTimeout would end a long export).
const exportWriteTimeout = 30 * time.Second

// readProblem maps a micro error of the read service to a problem: an API
// error keeps its status when it is a client error (400, 402, 403, 404,
// 422; the service makes a 401 of the API a 502), other failures are 502
// or 503.
func readProblem(code int, reason string) *Problem {
	switch {
	case code == http.StatusBadRequest:
		return probBadRead.problem(reason)
	case code == http.StatusNotFound:
		return probNotFound.problem(reason)
	case code == http.StatusServiceUnavailable:
		return probUnavailable.problem(reason)
	}
	p := probUpstream.problem(fmt.Sprintf("%s (%d)", reason, code))
	if code > 400 && code < 500 {
		p.Status = code
	}
	return p
}
