// Package workerstack assembles a worker process from the library
// packages: the shared rate limit, the session manager and the API client
// (NewAPI, also used by the tools beside the workers), the worker, and the
// read service. Only cmd/worker (and the dev stack) import it: ingest links
// none of the API client.
package workerstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/reads"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/worker"
)

// WorkerConfig is everything a worker process needs besides its NATS
// connection.
type WorkerConfig struct {
	// APIBaseURL is the Altegio API, default altegio.DefaultBaseURL.
	APIBaseURL string
	// Accounts are the API accounts (auth.AccountsFromEnv). Required.
	Accounts []auth.Account
	// RateLimit is the shared API budget; its Key names the egress IP.
	RateLimit ratelimit.Config
	// Worker configures the worker itself.
	Worker worker.Config
	// Reads starts the read service (internal/reads) on the worker's NATS
	// connection, with the worker's API client: the same accounts, session
	// and budget.
	Reads bool
	// ReadCacheTTL caches client.get answers this long (0: no cache).
	ReadCacheTTL time.Duration
	// ExportShare is the share of the budget one worker's exports may use
	// (default 0.25).
	ExportShare float64
	// Logger and Registerer are shared by every part.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// TracerProvider is shared by the worker and the API client (and so
	// the read service), unless cfg.Worker names one of its own: a
	// command's delivery, budget wait, API exchanges and publications
	// are one trace (internal/tracing). Default nil: otel's no-op
	// provider.
	TracerProvider trace.TracerProvider
}

// NewWorker builds the worker's parts on js: the API client of NewAPI
// (shared rate limit, session manager, client) and the worker. top must
// already be applied. Call the returned close function after the worker's
// Run has returned.
func NewWorker(ctx context.Context, js jetstream.JetStream, top *topology.Topology, cfg WorkerConfig) (w *worker.Worker, close func(), err error) {
	log := workerLogger(cfg)
	api, err := newAPI(ctx, js, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	closeAll := api.close
	wcfg := cfg.Worker
	wcfg.Logger, wcfg.Registerer = log.With("component", "worker"), cfg.Registerer
	wcfg.Flow, wcfg.AccountOf = api.flow, api.accountOf
	if wcfg.TracerProvider == nil {
		wcfg.TracerProvider = cfg.TracerProvider
	}
	if api.budget != nil { // a nil *ratelimit.Limiter in an interface would not be nil
		wcfg.Budget = api.budget
	}
	w, err = worker.New(wcfg, js, api.client, top)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	if cfg.Reads {
		svc, err := startReads(ctx, js, api.client, cfg, log)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closeWorker := closeAll
		closeAll = func() {
			_ = svc.Stop()
			closeWorker()
		}
	}
	return w, closeAll, nil
}

// NewAPI builds the Altegio API client of a worker process, for tools
// that call the API beside the workers (the webhooks CLI): the shared rate
// limit of cfg.RateLimit (none when its PerSecond is negative), the
// session manager with the tokens in the KV bucket altegio_tokens (the
// only source of credentials; logins are shared with the workers), and the
// client, whose exchanges are bounded by cfg.Worker.HandlerTimeout
// (default altegio.DefaultTimeout); the rest of cfg.Worker and cfg.Reads
// are not used.
// The topology must already be applied (the rate limit's bucket must
// exist). Call the returned close function when done with the client; it
// stops the session manager and the limiter. NewAPI fails when no account
// is configured, the rate limit's bucket cannot be bound or a part's
// configuration is invalid.
func NewAPI(ctx context.Context, js jetstream.JetStream, cfg WorkerConfig) (*altegio.Client, func(), error) {
	api, err := newAPI(ctx, js, cfg, workerLogger(cfg))
	if err != nil {
		return nil, nil, err
	}
	return api.client, api.close, nil
}

// apiParts are what newAPI builds.
type apiParts struct {
	client *altegio.Client
	// budget is the shared rate limit; nil when there is none.
	budget *ratelimit.Limiter
	// flow names a location's budget flow, "account/location".
	flow func(loc int64) string
	// accountOf names the account serving a location, "" when none does.
	accountOf func(loc int64) string
	close     func()
}

func workerLogger(cfg WorkerConfig) *slog.Logger {
	if cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cfg.Logger
}

// newAPI builds the shared rate limit, the session manager and the API
// client: the one code path of the workers and of the tools beside them.
func newAPI(ctx context.Context, js jetstream.JetStream, cfg WorkerConfig, log *slog.Logger) (apiParts, error) {
	if len(cfg.Accounts) == 0 {
		return apiParts{}, errors.New("no Altegio account configured (set ALTEGIO_PARTNER_TOKEN and ALTEGIO_USER_TOKEN or ALTEGIO_LOGIN/ALTEGIO_PASSWORD)")
	}
	rl, err := newLimiter(ctx, js, cfg, log)
	if err != nil {
		return apiParts{}, err
	}
	// The client gets no limiter at all when there is none (a nil
	// *ratelimit.Limiter in an interface would not be nil).
	var limiter altegio.Limiter
	closeLimiter := func() {}
	if rl != nil {
		limiter, closeLimiter = rl, rl.Close
	}
	// Budget flows name the account too, so that accounts sharing one
	// egress share its budget first (the sessions map locations to
	// accounts; they are built below, before the first request).
	var sessions *auth.Manager
	flow := func(loc int64) string {
		name, err := sessions.AccountName(loc)
		if err != nil {
			return altegio.LocationFlow(loc)
		}
		return altegio.AccountFlow(name, loc)
	}
	apiCfg := altegio.Config{BaseURL: cfg.APIBaseURL, Timeout: cfg.Worker.HandlerTimeout, Flow: flow,
		Logger: log.With("component", "altegio"), Registerer: cfg.Registerer, TracerProvider: cfg.TracerProvider}
	// Logins go through a client of their own: POST /auth carries only the
	// partner token, so it needs no Authorizer, but it shares the budget.
	loginClient, err := altegio.New(apiCfg, nil, limiter)
	if err != nil {
		closeLimiter()
		return apiParts{}, err
	}
	sessions, err = auth.New(auth.Config{
		Accounts:   cfg.Accounts,
		Bucket:     topology.BucketTokens,
		Logger:     log.With("component", "auth"),
		Registerer: cfg.Registerer,
	}, js, loginClient)
	if err != nil {
		closeLimiter()
		return apiParts{}, err
	}
	closeAll := func() {
		sessions.Close()
		closeLimiter()
	}
	api, err := altegio.New(apiCfg, sessions, limiter)
	if err != nil {
		closeAll()
		return apiParts{}, err
	}
	accountOf := func(loc int64) string {
		name, _ := sessions.AccountName(loc)
		return name
	}
	return apiParts{client: api, budget: rl, flow: flow, accountOf: accountOf, close: closeAll}, nil
}

// startReads starts the read service with api, resolving client_refs
// through the worker's ref mapping and listing commands from its client
// history.
func startReads(ctx context.Context, js jetstream.JetStream, api reads.API, cfg WorkerConfig, log *slog.Logger) (*reads.Service, error) {
	kv, err := js.KeyValue(ctx, topology.BucketClientRefs)
	if err != nil {
		return nil, fmt.Errorf("reads: bucket %s: %w", topology.BucketClientRefs, err)
	}
	history, err := js.KeyValue(ctx, topology.BucketCommandHistory)
	if err != nil {
		return nil, fmt.Errorf("reads: bucket %s: %w", topology.BucketCommandHistory, err)
	}
	rcfg := reads.Config{
		CacheTTL: cfg.ReadCacheTTL,
		History: func(ctx context.Context, loc int64, q worker.HistoryQuery) (worker.HistoryPage, error) {
			return worker.ClientHistory(ctx, history, loc, q)
		},
		Logger: log.With("component", "reads"),
	}
	if r := cfg.RateLimit; r.PerSecond > 0 {
		// The budget's sustained rate: the minute's, when it binds.
		perSecond := float64(r.PerSecond)
		if r.PerMinute > 0 {
			perSecond = min(perSecond, float64(r.PerMinute)/60)
		}
		rcfg.ExportRate = rate.Limit(perSecond * cmp.Or(cfg.ExportShare, 0.25))
	}
	refs := func(ctx context.Context, loc int64, ref string) (int64, bool, error) {
		return worker.LookupClientRef(ctx, kv, loc, ref)
	}
	return reads.Start(js.Conn(), api, refs, rcfg)
}

// newLimiter returns the shared budget of cfg.RateLimit, or no limiter at
// all when its per-second limit is negative (for benchmarks of the
// pipeline without the API's budget).
func newLimiter(ctx context.Context, js jetstream.JetStream, cfg WorkerConfig, log *slog.Logger) (*ratelimit.Limiter, error) {
	if cfg.RateLimit.PerSecond < 0 {
		log.Warn("no API budget: requests are not rate limited (--rate-per-second -1)")
		return nil, nil
	}
	kv, err := js.KeyValue(ctx, topology.BucketRateLimit)
	if err != nil {
		return nil, fmt.Errorf("rate limit bucket: %w", err)
	}
	rl := cfg.RateLimit
	rl.Logger, rl.Registerer = log.With("component", "ratelimit"), cfg.Registerer
	return ratelimit.New(kv, rl)
}
