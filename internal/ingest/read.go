package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/altegio-integrator/integrator/internal/commands"
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
)

// readHandler answers a read route: query on the read service, with the
// client of target, or the request body as the query.
func (s *Server) readHandler(query string, target readTarget) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(headerWebhookSignature) != "" && !s.cfg.AuthDisabled {
			// A webhook signature covers the id, the time and the body, not
			// the method or the path: one signed read could be replayed to
			// read any client. Reads take the bearer key only.
			s.writeProblem(w, r, probUnauth.problem("reads take a bearer API key, not a webhook signature"))
			return
		}
		var body []byte
		if target == readNoClient {
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe):
				s.writeProblem(w, r, probTooLarge.problem(fmt.Sprintf("request body larger than %d bytes", s.cfg.MaxBodyBytes)))
				return
			case err != nil:
				s.writeProblem(w, r, probBadRead.problem("read body: "+err.Error()))
				return
			}
			body = b
		}
		id, err := s.auth.authenticate(r.Header, body)
		if err != nil {
			s.writeProblem(w, r, probUnauth.problem(err.Error()))
			return
		}
		loc, err := strconv.ParseInt(r.PathValue("location_id"), 10, 64)
		if err != nil || loc <= 0 {
			s.writeProblem(w, r, probNotFound.problem("location_id must be a positive number"))
			return
		}
		if !id.producer.Read || !id.producer.allowsLocation(loc) {
			s.writeProblem(w, r, probForbidden.problem(fmt.Sprintf("producer %s may not read in location %d", id.producer.Name, loc)))
			return
		}
		req, prob := readRequest(r, target, body)
		if prob != nil {
			s.writeProblem(w, r, prob)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
		defer cancel()
		msg, err := s.nc.RequestWithContext(ctx, commands.ReadSubject(loc, query), req)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			s.writeProblem(w, r, probUnavailable.problem("no read service is running (start a worker with --reads)"))
			return
		case r.Context().Err() != nil:
			w.WriteHeader(statusClientClosedRequest)
			return
		case err != nil:
			s.writeProblem(w, r, probUnavailable.problem("the read service did not answer: "+err.Error()))
			return
		}
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			s.writeProblem(w, r, readProblem(code, msg.Header.Get(micro.ErrorHeader)))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(msg.Data)
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
	}
	if len(body) > 0 && !isJSON(r.Header.Get("Content-Type")) {
		return nil, probMediaType.problem("Content-Type must be application/json")
	}
	return body, nil
}

// readProblem maps a micro error of the read service to a problem.
func readProblem(code, reason string) *Problem {
	switch code {
	case "400":
		return probBadRead.problem(reason)
	case "404":
		return probNotFound.problem(reason)
	case "503":
		return probUnavailable.problem(reason)
	}
	return probUpstream.problem(fmt.Sprintf("%s (%s)", reason, code))
}
