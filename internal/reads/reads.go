// Package reads answers reads of the Altegio API over NATS request-reply,
// as a nats.go micro service: get a client (by id or by client_ref), its
// comments and files, search clients, search visit history. A read goes
// through the worker's API client, so it uses the same accounts, the same
// session (re-login after a 401 included) and the same shared rate budget
// as the commands; nothing else needs Altegio credentials.
//
// Subjects carry the location, so that NATS permissions can scope a caller
// to its locations: altegio.read.<location>.<query>, with the queries of
// commands.ReadQueries. A request is a JSON object (see each query's request type); the
// answer is the JSON of the result (the API's snake_case field names), or
// an error in micro's form: the header Nats-Service-Error-Code holds an
// HTTP-like status (400 bad request, 404 not found, 503 the read could not
// be done within its deadline, the API is unavailable or rate limited, or
// too many reads wait; 502 another API failure) and Nats-Service-Error the
// reason. The answers are sent by the service itself, not through micro's
// Request (which must be answered before its handler returns), so that a
// read waiting for the budget does not hold back the next: micro's stats
// count the requests, not their errors or their time.
//
// Ingest serves the same reads over HTTP by asking this service
// (internal/ingest/read.go); docs/design.md, "Reads", lists what is not
// built yet.
package reads

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/time/rate"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/readclient"
	"github.com/altegio-integrator/integrator/internal/worker"
)

// API is the part of the Altegio client reads use.
type API interface {
	GetClient(ctx context.Context, locationID, clientID int64) (altegio.ClientRecord, error)
	SearchClients(ctx context.Context, locationID int64, req altegio.SearchClientsRequest) (altegio.SearchClientsResult, error)
	ListClientsDeprecated(ctx context.Context, locationID int64, p altegio.ListClientsParams) (altegio.ListClientsResult, error)
	ListComments(ctx context.Context, locationID, clientID int64) ([]altegio.Comment, error)
	ListFiles(ctx context.Context, locationID, clientID int64) ([]altegio.ClientFile, error)
	SearchVisits(ctx context.Context, locationID int64, req altegio.VisitSearchRequest) (altegio.VisitSearchResult, error)
}

// Refs resolves a client_ref of a location to the client id the worker
// mapped it to; ok is false when it maps to none.
type Refs func(ctx context.Context, locationID int64, ref string) (clientID int64, ok bool, err error)

// History lists the commands of a client of a location from the workers'
// client history (worker.ClientHistory).
type History func(ctx context.Context, locationID int64, q worker.HistoryQuery) (worker.HistoryPage, error)

// Service names.
const (
	ServiceName    = "altegio-reads"
	ServiceVersion = "1.0.0"
	// QueueGroup balances the reads over the worker processes.
	QueueGroup = "altegio-reads"
)

// Config configures a Service.
type Config struct {
	// Timeout bounds each read, the wait for the budget included; a read
	// that cannot be done within it answers 503. Default 10s.
	Timeout time.Duration
	// MaxConcurrent bounds the reads in progress in this process; more
	// answer 503 at once. Default 256.
	MaxConcurrent int
	// ExportRate bounds the pages of clients.export this process reads per
	// second (exports take a share of the budget, not all of it); the
	// stack sets it to ExportShare of the budget. Zero: no bound.
	ExportRate rate.Limit
	// CacheTTL keeps the answers of client.get this long; zero (the
	// default) caches nothing. A command result or an Altegio webhook
	// about the client drops its entry (see cache.go).
	CacheTTL time.Duration
	// CacheSize bounds the cached clients. Default 10,000.
	CacheSize int
	// History answers commands.list; nil answers 503.
	History History
	// Logger receives a Warn line per failed read. Default: discard.
	Logger *slog.Logger
}

// Service is the running micro service.
type Service struct {
	api  API
	refs Refs
	cfg  Config
	nc   *nats.Conn
	svc  micro.Service

	ctx    context.Context // cancelled by Stop: reads in progress give up
	cancel context.CancelFunc
	slots  chan struct{}
	wg     sync.WaitGroup
	export *rate.Limiter // nil: exports are not bounded
	cache  *cache        // nil: client.get is not cached
}

// Start adds the micro service to nc. Stop it with Stop.
func Start(nc *nats.Conn, api API, refs Refs, cfg Config) (*Service, error) {
	if nc == nil || api == nil || refs == nil {
		return nil, errors.New("reads: connection, api and refs are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 256
	}
	s := &Service{api: api, refs: refs, cfg: cfg, nc: nc, slots: make(chan struct{}, cfg.MaxConcurrent)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.ExportRate > 0 {
		s.export = rate.NewLimiter(cfg.ExportRate, 1)
	}
	if cfg.CacheTTL > 0 {
		c, err := startCache(nc, cfg.CacheTTL, cmp.Or(cfg.CacheSize, 10000))
		if err != nil {
			return nil, err
		}
		s.cache = c
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     ServiceVersion,
		Description: "Reads of the Altegio API through the integrator's session and budget",
		QueueGroup:  QueueGroup,
	})
	if err != nil {
		s.cache.stop()
		return nil, fmt.Errorf("reads: add service: %w", err)
	}
	s.svc = svc
	for _, q := range commands.ReadQueries {
		name := strings.ReplaceAll(q, ".", "-")
		err := svc.AddEndpoint(name, micro.HandlerFunc(s.handler(q)),
			micro.WithEndpointSubject(commands.ReadSubjectPrefix+"*."+q),
			micro.WithEndpointMetadata(map[string]string{"subject": commands.ReadSubjectPrefix + "<location>." + q}))
		if err != nil {
			_ = svc.Stop()
			s.cache.stop()
			return nil, fmt.Errorf("reads: add endpoint %s: %w", q, err)
		}
	}
	return s, nil
}

// Stop stops taking reads, cancels those in progress (they answer 503) and
// waits for them.
func (s *Service) Stop() error {
	err := s.svc.Stop()
	s.cancel()
	s.wg.Wait()
	s.cache.stop()
	return err
}

// handler answers query. Each request runs in its own goroutine (at most
// MaxConcurrent): a read may wait for the budget, and the next must not
// wait behind it.
func (s *Service) handler(query string) func(micro.Request) {
	return func(req micro.Request) {
		reply, subject, data := req.Reply(), req.Subject(), req.Data()
		timeout := s.cfg.Timeout
		if d, err := time.ParseDuration(req.Headers().Get(commands.HeaderReadTimeout)); err == nil && d > 0 {
			timeout = min(timeout, d)
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.answerError(reply, failure{503, fmt.Sprintf("%d reads in progress in this worker; retry later", s.cfg.MaxConcurrent), time.Second})
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			// Reads take the reads' share of the budget (ratelimit.Reads),
			// and one that would wait past its deadline is refused at once.
			ctx, cancel := context.WithTimeout(ratelimit.WithClass(s.ctx, ratelimit.Reads), timeout)
			defer cancel()
			out, err := s.read(ctx, query, subject, data)
			if err == nil {
				var body []byte
				if body, err = json.Marshal(out); err == nil {
					err = s.nc.Publish(reply, body)
				}
				if err == nil {
					return
				}
				err = fmt.Errorf("answer: %w", err) // e.g. larger than the max payload
			}
			a := status(err)
			if a.code >= 500 {
				s.cfg.Logger.Warn("read failed", "query", query, "subject", subject, "error", err)
			}
			s.answerError(reply, a)
		}()
	}
}

// failure is a read's error as answered: an HTTP-like code, the reason,
// and for a 503 when to retry.
type failure struct {
	code  int
	msg   string
	retry time.Duration
}

// answerError answers a request with an error in micro's form, and a 503
// with commands.HeaderRetryAfter.
func (s *Service) answerError(reply string, f failure) {
	if reply == "" {
		return
	}
	h := nats.Header{
		micro.ErrorCodeHeader: []string{strconv.Itoa(f.code)},
		micro.ErrorHeader:     []string{f.msg},
	}
	if f.code == 503 {
		h.Set(commands.HeaderRetryAfter, strconv.Itoa(int(max(time.Second, f.retry+time.Second-1)/time.Second)))
	}
	_ = s.nc.PublishMsg(&nats.Msg{Subject: reply, Header: h})
}

// badRequest is a request the service cannot read.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

// notFound is a client_ref that maps to no client.
type notFound struct{ msg string }

func (e *notFound) Error() string { return e.msg }

// read does one query.
func (s *Service) read(ctx context.Context, query, subject string, data []byte) (any, error) {
	loc, err := location(subject)
	if err != nil {
		return nil, err
	}
	switch query {
	case commands.ReadSearch:
		var r altegio.SearchClientsRequest
		if err := decode(data, &r); err != nil {
			return nil, err
		}
		res, err := s.api.SearchClients(ctx, loc, r)
		if err != nil {
			return nil, err
		}
		rows := make([]map[string]json.RawMessage, len(res.Clients))
		for i, c := range res.Clients {
			rows[i] = c.Columns
		}
		return struct {
			Clients    []map[string]json.RawMessage `json:"clients"`
			TotalCount int                          `json:"total_count"`
		}{rows, res.TotalCount}, nil
	case commands.ReadList:
		var r readclient.ListRequest
		if err := decode(data, &r); err != nil {
			return nil, err
		}
		return s.list(ctx, loc, r)
	case commands.ReadExport:
		var r readclient.ExportRequest
		if err := decode(data, &r); err != nil {
			return nil, err
		}
		return s.exportPage(ctx, loc, r)
	case commands.ReadVisits:
		var r readclient.VisitsRequest
		if err := decode(data, &r); err != nil {
			return nil, err
		}
		var id int64
		if r.ClientID != 0 || r.ClientRef != "" {
			if id, err = s.client(ctx, loc, r.ClientRequest); err != nil {
				return nil, err
			}
		}
		return s.api.SearchVisits(ctx, loc, altegio.VisitSearchRequest{
			ClientID: id, ClientPhone: r.ClientPhone, From: r.From, To: r.To,
			PaymentStatuses: r.PaymentStatuses, Attendance: r.Attendance,
		})
	case commands.ReadCommands:
		var r readclient.CommandsRequest
		if err := decode(data, &r); err != nil {
			return nil, err
		}
		return s.commands(ctx, loc, r)
	}
	var r readclient.ClientRequest
	if err := decode(data, &r); err != nil {
		return nil, err
	}
	id, err := s.client(ctx, loc, r)
	if err != nil {
		return nil, err
	}
	switch query {
	case commands.ReadClient:
		return s.getClient(ctx, loc, id)
	case commands.ReadComments:
		return s.api.ListComments(ctx, loc, id)
	case commands.ReadFiles:
		return s.api.ListFiles(ctx, loc, id)
	}
	return nil, &badRequest{"unknown query " + query}
}

// getClient reads a client card, from the cache when it holds it.
func (s *Service) getClient(ctx context.Context, loc, id int64) (altegio.ClientRecord, error) {
	if rec, ok := s.cache.get(loc, id); ok {
		return rec, nil
	}
	start := s.cache.start()
	rec, err := s.api.GetClient(ctx, loc, id)
	if err == nil {
		s.cache.put(loc, id, rec, start)
	}
	return rec, err
}

// errNoHistory answers commands.list in a service started without History.
var errNoHistory = errors.New("the client history is not available in this worker")

// commands lists the commands of a client from the workers' history.
func (s *Service) commands(ctx context.Context, loc int64, r readclient.CommandsRequest) (worker.HistoryPage, error) {
	if s.cfg.History == nil {
		return worker.HistoryPage{}, errNoHistory
	}
	q := worker.HistoryQuery{ClientRef: r.ClientRef, ClientID: r.ClientID, Limit: r.Limit, Cursor: r.Cursor}
	switch {
	case (r.ClientID > 0) == (r.ClientRef != ""):
		return worker.HistoryPage{}, &badRequest{"name the client by client_id or by client_ref (one of them)"}
	case r.Limit < 0 || r.Limit > 500:
		return worker.HistoryPage{}, &badRequest{"limit must be 1 to 500"}
	case r.Since != "":
		t, err := time.Parse(time.RFC3339, r.Since)
		if err != nil {
			return worker.HistoryPage{}, &badRequest{"since must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"}
		}
		q.Since = t
	}
	page, err := s.cfg.History(ctx, loc, q)
	if errors.Is(err, worker.ErrBadCursor) {
		return page, &badRequest{err.Error()}
	}
	return page, err
}

// client resolves the client a request names.
func (s *Service) client(ctx context.Context, loc int64, r readclient.ClientRequest) (int64, error) {
	switch {
	case r.ClientID > 0 && r.ClientRef != "":
		return 0, &badRequest{"name the client by client_id or by client_ref, not both"}
	case r.ClientID > 0:
		return r.ClientID, nil
	case r.ClientRef == "":
		return 0, &badRequest{"client_id or client_ref is required"}
	}
	id, ok, err := s.refs(ctx, loc, r.ClientRef)
	switch {
	case err != nil:
		return 0, err
	case !ok:
		return 0, &notFound{fmt.Sprintf("client_ref %q maps to no client in location %d", r.ClientRef, loc)}
	}
	return id, nil
}

// location reads the location token of altegio.read.<location>.<query>.
func location(subject string) (int64, error) {
	rest := strings.TrimPrefix(subject, commands.ReadSubjectPrefix)
	tok, _, _ := strings.Cut(rest, ".")
	loc, err := strconv.ParseInt(tok, 10, 64)
	// Canonical digits only ("01" and "+1" are refused), so that a NATS
	// permission on altegio.read.<location>.> cannot be bypassed.
	if err != nil || loc <= 0 || strconv.FormatInt(loc, 10) != tok {
		return 0, &badRequest{fmt.Sprintf("location %q in the subject is not a positive number", tok)}
	}
	return loc, nil
}

// decode reads a JSON request; an empty body is an empty object.
func decode(data []byte, v any) error {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &badRequest{"request: " + err.Error()}
	}
	if dec.More() {
		return &badRequest{"request: data after the JSON object"}
	}
	return nil
}

// status maps a read's error to its answer.
func status(err error) failure {
	var br *badRequest
	var nf *notFound
	var apiErr *altegio.APIError
	var tooLong *ratelimit.TooLongError
	switch {
	case errors.As(err, &br):
		return failure{code: 400, msg: br.msg}
	case errors.As(err, &nf):
		return failure{code: 404, msg: nf.msg}
	case errors.Is(err, altegio.ErrNotFound):
		return failure{code: 404, msg: err.Error()}
	case errors.Is(err, altegio.ErrInvalidRequest):
		return failure{code: 400, msg: err.Error()}
	case errors.As(err, &tooLong):
		return failure{503, fmt.Sprintf("the API budget is busy: this read would wait about %v, longer than its deadline; retry later", tooLong.Wait.Round(time.Second)), tooLong.Wait}
	case errors.Is(err, errExportBusy), errors.Is(err, errNoHistory):
		return failure{503, err.Error(), time.Second}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, altegio.ErrNotSent):
		return failure{503, "the read could not be done within its deadline (the API budget is busy); retry later", time.Second}
	case errors.As(err, &apiErr) && apiErr.Status == 401:
		// The integrator's own session was refused (after a re-login): not
		// the caller's credentials.
		return failure{code: 502, msg: "the API refused the integrator's session: " + apiErr.Error()}
	case errors.As(err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500 && apiErr.Status != 429:
		return failure{code: apiErr.Status, msg: apiErr.Error()}
	case altegio.ClassOf(err).Retryable():
		return failure{503, "the API is unavailable or rate limited; retry later: " + err.Error(), 5 * time.Second}
	}
	return failure{code: 502, msg: err.Error()}
}
