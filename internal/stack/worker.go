package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
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
	// Logger and Registerer are shared by every part.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// NewWorker builds the worker's parts on js: the shared rate limit, the
// session manager (the worker's only source of credentials), the API client
// and the worker. top must already be applied. Call the returned close
// function after the worker's Run has returned.
func NewWorker(ctx context.Context, js jetstream.JetStream, top *topology.Topology, cfg WorkerConfig) (w *worker.Worker, close func(), err error) {
	if len(cfg.Accounts) == 0 {
		return nil, nil, errors.New("no Altegio account configured (set ALTEGIO_PARTNER_TOKEN and ALTEGIO_USER_TOKEN or ALTEGIO_LOGIN/ALTEGIO_PASSWORD)")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rlKV, err := js.KeyValue(ctx, topology.BucketRateLimit)
	if err != nil {
		return nil, nil, fmt.Errorf("rate limit bucket: %w", err)
	}
	rl := cfg.RateLimit
	rl.Logger, rl.Registerer = log.With("component", "ratelimit"), cfg.Registerer
	limiter, err := ratelimit.New(rlKV, rl)
	if err != nil {
		return nil, nil, err
	}
	apiCfg := altegio.Config{BaseURL: cfg.APIBaseURL, Timeout: cfg.Worker.HandlerTimeout,
		Logger: log.With("component", "altegio"), Registerer: cfg.Registerer}
	// Logins go through a client of their own: POST /auth carries only the
	// partner token, so it needs no Authorizer, but it shares the budget.
	loginClient, err := altegio.New(apiCfg, nil, limiter)
	if err != nil {
		limiter.Close()
		return nil, nil, err
	}
	sessions, err := auth.New(auth.Config{
		Accounts:   cfg.Accounts,
		Bucket:     topology.BucketTokens,
		Logger:     log.With("component", "auth"),
		Registerer: cfg.Registerer,
	}, js, loginClient)
	if err != nil {
		limiter.Close()
		return nil, nil, err
	}
	closeAll := func() {
		sessions.Close()
		limiter.Close()
	}
	api, err := altegio.New(apiCfg, sessions, limiter)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	wcfg := cfg.Worker
	wcfg.Logger, wcfg.Registerer = log.With("component", "worker"), cfg.Registerer
	wcfg.Budget = limiter
	w, err = worker.New(wcfg, js, api, top)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return w, closeAll, nil
}

// ServeOps serves srv on ln until ctx ends, then shuts the server down.
func ServeOps(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ops server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
