package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/console"
	"github.com/altegio-integrator/integrator/internal/outbox"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/tracing"
)

// Server is the HTTP front door. Build it with New, serve Handler yourself
// or call Serve, which also runs the outbox relay and shuts down gracefully.
// All methods are safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	outbox  *outbox.Outbox
	auth    *authenticator
	metrics *metrics
	recent  *recentIDs
	handler http.Handler
	tracer  trace.Tracer // of cfg.TracerProvider (tracing.go)

	idem topology.LazyBucket // the idempotency bucket (status.go)

	ownChanges topology.LazyBucket // the own-changes bucket (altegio_webhook.go)
}

// route is one endpoint: the ServeMux pattern, and the statuses it answers
// with (the OpenAPI test checks the document against this table).
type route struct {
	method   string
	path     string
	statuses []int
	handler  func(*Server) http.HandlerFunc
}

// Statuses of the read routes (read.go).
var (
	readStatuses   = []int{200, 400, 401, 402, 403, 404, 422, 502, 503}
	dlqStatuses    = []int{200, 400, 401, 404, 500, 503}
	searchStatuses = []int{200, 400, 401, 402, 403, 404, 413, 415, 422, 502, 503}
)

func readRoute(query string, target readTarget) func(*Server) http.HandlerFunc {
	return func(s *Server) http.HandlerFunc { return s.readHandler(query, target) }
}

// routes is the router's table; Handler registers exactly these.
var routes = []route{
	{http.MethodPost, "/v1/commands", []int{202, 400, 401, 403, 413, 415, 422, 503}, func(s *Server) http.HandlerFunc { return s.postCommands }},
	{http.MethodGet, "/v1/commands", readStatuses, func(s *Server) http.HandlerFunc { return s.getClientCommands }},
	{http.MethodGet, "/v1/commands/{id}", []int{200, 401, 404, 503}, func(s *Server) http.HandlerFunc { return s.getCommand }},
	{http.MethodGet, "/v1/locations/{location_id}/clients", readStatuses, readRoute(commands.ReadList, readByQuery)},
	{http.MethodGet, "/v1/locations/{location_id}/export/clients", readStatuses, func(s *Server) http.HandlerFunc { return s.exportClients }},
	{http.MethodGet, "/v1/locations/{location_id}/clients/{client_id}", readStatuses, readRoute(commands.ReadClient, readByID)},
	{http.MethodGet, "/v1/locations/{location_id}/clients/{client_id}/comments", readStatuses, readRoute(commands.ReadComments, readByID)},
	{http.MethodGet, "/v1/locations/{location_id}/clients/{client_id}/files", readStatuses, readRoute(commands.ReadFiles, readByID)},
	{http.MethodGet, "/v1/locations/{location_id}/clients-by-ref/{client_ref}", readStatuses, readRoute(commands.ReadClient, readByRef)},
	{http.MethodGet, "/v1/locations/{location_id}/clients-by-ref/{client_ref}/comments", readStatuses, readRoute(commands.ReadComments, readByRef)},
	{http.MethodGet, "/v1/locations/{location_id}/clients-by-ref/{client_ref}/files", readStatuses, readRoute(commands.ReadFiles, readByRef)},
	{http.MethodPost, "/v1/locations/{location_id}/search/clients", searchStatuses, readRoute(commands.ReadSearch, readNoClient)},
	{http.MethodPost, "/v1/locations/{location_id}/search/visits", searchStatuses, readRoute(commands.ReadVisits, readNoClient)},
	{http.MethodGet, "/v1/dlq", dlqStatuses, func(s *Server) http.HandlerFunc { return s.dlqList }},
	{http.MethodGet, "/v1/dlq/{ref}", dlqStatuses, func(s *Server) http.HandlerFunc { return s.dlqShow }},
	{http.MethodPost, "/v1/dlq/replay", []int{200, 400, 401, 404, 415, 500, 503}, func(s *Server) http.HandlerFunc { return s.dlqReplay }},
	{http.MethodGet, "/healthz", []int{200}, func(s *Server) http.HandlerFunc { return s.healthz }},
	{http.MethodGet, "/readyz", []int{200, 503}, func(s *Server) http.HandlerFunc { return s.readyz }},
	{http.MethodGet, "/metrics", []int{200}, func(s *Server) http.HandlerFunc { return s.metricsHandler().ServeHTTP }},
	{http.MethodGet, "/openapi.json", []int{200}, func(s *Server) http.HandlerFunc { return serveBytes("application/json", openAPIDocument) }},
	{http.MethodGet, "/schemas/command.json", []int{200}, func(s *Server) http.HandlerFunc {
		return serveBytes("application/schema+json", commands.CommandSchema())
	}},
	{http.MethodGet, "/schemas/result.json", []int{200}, func(s *Server) http.HandlerFunc {
		return serveBytes("application/schema+json", commands.ResultSchema())
	}},
	{http.MethodGet, "/schemas/webhook-event.json", []int{200}, func(s *Server) http.HandlerFunc {
		return serveBytes("application/schema+json", commands.WebhookEventSchema())
	}},
	{http.MethodPost, "/v1/altegio/webhooks/{secret}", altegioWebhookStatuses, func(s *Server) http.HandlerFunc { return s.altegioWebhook }},
}

// New returns a Server publishing to js over nc and spooling to ob while
// JetStream is unreachable. ob may be nil: then nothing is spooled and an
// unreachable JetStream answers 503. nc, js and ob stay owned by the
// caller, who closes them after Serve returns. New applies cfg's defaults,
// validates it and registers the metrics; it returns the first error.
func New(cfg Config, nc *nats.Conn, js jetstream.JetStream, ob *outbox.Outbox) (*Server, error) {
	if nc == nil || js == nil {
		return nil, errors.New("new ingest server: nats connection and jetstream are required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		nc:         nc,
		js:         js,
		outbox:     ob,
		metrics:    m,
		recent:     newRecentIDs(cfg.RecentSize),
		idem:       topology.LazyBucket{Name: topology.BucketIdempotency},
		ownChanges: topology.LazyBucket{Name: topology.BucketOwnChanges},
		tracer:     tracing.Provider(cfg.TracerProvider).Tracer(tracerName),
		auth: &authenticator{
			producers: cfg.Producers,
			disabled:  cfg.AuthDisabled,
			tolerance: cfg.WebhookTolerance,
			now:       cfg.now,
		},
	}
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range routes {
		mux.HandleFunc(rt.method+" "+rt.path, rt.handler(s))
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	// 405 for the other methods, registered one by one: a pattern without
	// a method would conflict with a wildcard route of the same shape
	// (/v1/dlq/replay next to GET /v1/dlq/{ref}).
	for path, methods := range allowed {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if !slices.Contains(methods, m) {
				mux.HandleFunc(m+" "+path, s.methodNotAllowed(methods))
			}
		}
	}
	if cfg.Console != nil {
		// HTML for people, outside the routes table and openapi.json:
		// the console answers every method and path under /ui/ itself.
		mux.Handle(console.PathPrefix, cfg.Console)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeProblem(w, r, probNotFound.problem(notFoundDetail))
	})
	s.handler = s.instrument(mux)
	if cfg.AuthDisabled {
		s.log.Warn("producer authentication is disabled; every request is accepted as producer anonymous")
	}
	return s, nil
}

// Handler returns the HTTP handler of every endpoint, instrumented.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves HTTP on ln and runs the outbox relay (and Config.Console's
// counts) until ctx ends. Then it shuts down in order: stop accepting and
// finish in-flight requests (http.Server.Shutdown, bounded by
// Config.ShutdownTimeout), stop the console's counts, let the relay drain
// the outbox as far as NATS allows (Config.FlushTimeout), stop the relay.
// It does not close ln's connections beyond that, nor nc, js or the
// outbox. It returns nil after a shutdown caused by ctx, or the error that
// stopped the listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	relayDone := make(chan error, 1)
	if s.outbox != nil {
		go func() { relayDone <- s.outbox.Run(relayCtx, s.js) }()
	} else {
		relayDone <- nil
	}
	consoleCtx, stopConsole := context.WithCancel(ctx)
	defer stopConsole()
	consoleDone := make(chan error, 1)
	if s.cfg.Console != nil {
		go func() { consoleDone <- s.cfg.Console.Run(consoleCtx) }()
	} else {
		consoleDone <- nil
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.log.Info("ingest serving", "addr", ln.Addr().String())

	var err error
	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
		s.log.Info("ingest shutting down")
		shutCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		if serr := srv.Shutdown(shutCtx); serr != nil {
			s.log.Warn("http shutdown incomplete", "error", serr)
			_ = srv.Close()
		}
		cancel()
		<-serveErr
	}
	stopConsole()
	<-consoleDone
	if s.outbox != nil {
		flushCtx, cancel := context.WithTimeout(context.Background(), s.cfg.FlushTimeout)
		if ferr := s.outbox.Flush(flushCtx); ferr != nil {
			depth, _ := s.outbox.Depth()
			s.log.Warn("outbox not drained at shutdown; it is relayed at the next start", "entries", depth, "error", ferr)
		}
		cancel()
	}
	stopRelay()
	if rerr := <-relayDone; rerr != nil && !errors.Is(rerr, outbox.ErrClosed) {
		s.log.Warn("outbox relay stopped", "error", rerr)
	}
	s.log.Info("ingest stopped")
	return err
}

// methodNotAllowed answers 405 with the allowed methods.
func (s *Server) methodNotAllowed(methods []string) http.HandlerFunc {
	allow := strings.Join(methods, ", ")
	if strings.Contains(allow, http.MethodGet) {
		allow += ", " + http.MethodHead
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.writeProblem(w, r, probMethod.problem("allowed: "+allow))
	}
}

func serveBytes(contentType string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(body)
	}
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
}

// healthz answers 200 while the process serves: liveness only.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readiness is the body of GET /readyz.
type Readiness struct {
	// Status is "ready" or "not_ready".
	Status string `json:"status"`
	// Checks maps each check (nats, streams, outbox) to "ok" or the reason
	// it failed.
	Checks map[string]string `json:"checks"`
}

// readyz answers 200 when NATS is connected, the streams exist and the
// outbox is usable; 503 otherwise, with every check's result.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
	defer cancel()
	checks := map[string]string{"nats": "ok", "streams": "ok", "outbox": "ok"}
	ready := true
	fail := func(name, reason string) { checks[name], ready = reason, false }
	if st := s.nc.Status(); st != nats.CONNECTED {
		fail("nats", "connection "+strings.ToLower(st.String()))
		fail("streams", "unknown: nats not connected")
	} else {
		for _, name := range []string{topology.StreamCommands, topology.StreamEvents} {
			if _, err := s.js.Stream(ctx, name); err != nil {
				fail("streams", fmt.Sprintf("stream %s: %v", name, err))
				break
			}
		}
	}
	switch {
	case s.outbox == nil:
		checks["outbox"] = "disabled"
	default:
		if err := s.outbox.Probe(ctx); err != nil {
			fail("outbox", err.Error())
		}
	}
	status, code := "ready", http.StatusOK
	if !ready {
		status, code = "not_ready", http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, Readiness{Status: status, Checks: checks})
}

// requestIDKey keys the request id in a request's context.
type requestIDKey struct{}

// withRequestID gives r a fresh request id, echoed as X-Request-Id.
func withRequestID(r *http.Request) *http.Request {
	id := commands.NewID()
	return r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
}

// requestID returns r's id, or a new one.
func requestID(r *http.Request) string {
	if id, ok := r.Context().Value(requestIDKey{}).(string); ok {
		return id
	}
	return uuid.NewString()
}
