package main

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/console"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/envflag"
)

// consoleOptions are the settings of the operators' console (/ui/).
type consoleOptions struct {
	enabled       bool
	workerMetrics string
	traceURL      string
	sessionTTL    time.Duration
	budget        int
}

// register adds the console's flags to fs.
func (o *consoleOptions) register(fs *envflag.Set) {
	fs.Bool(&o.enabled, "console", "INGEST_CONSOLE", true, "serve the operators' web console at /ui/ when operator keys are set (without them /ui/ answers 404)")
	fs.String(&o.workerMetrics, "console-worker-metrics", "INGEST_CONSOLE_WORKER_METRICS", "", "the workers' Prometheus /metrics URLs, comma-separated, for the console's API, budget and account figures (empty: shown as unknown)")
	fs.String(&o.traceURL, "console-trace-url", "INGEST_CONSOLE_TRACE_URL", "", "link from a trace id to a trace viewer, {trace_id} replaced, e.g. http://jaeger:16686/trace/{trace_id} (empty: the id alone)")
	fs.Duration(&o.sessionTTL, "console-session-ttl", "INGEST_CONSOLE_SESSION_TTL", console.DefaultSessionTTL, "how long a console login lasts")
	fs.Int(&o.budget, "console-budget-per-minute", "INGEST_CONSOLE_BUDGET_PER_MINUTE", console.DefaultBudgetPerMinute, "the workers' API budget per minute, which the console's budget use is measured against")
}

// urls returns the worker metrics URLs.
func (o consoleOptions) urls() []string {
	var out []string
	for _, u := range strings.Split(o.workerMetrics, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// check reports a setting that cannot work, before any network work.
func (o consoleOptions) check() error {
	cfg := console.Config{WorkerMetrics: o.urls(), TraceURL: o.traceURL, SessionTTL: o.sessionTTL, BudgetPerMinute: o.budget}
	if err := cfg.ValidateSettings(); err != nil {
		return fmt.Errorf("%w (set --console-worker-metrics or $INGEST_CONSOLE_WORKER_METRICS, --console-trace-url or $INGEST_CONSOLE_TRACE_URL)", err)
	}
	return nil
}

// newConsole builds the console when it is enabled; nil when it is off.
// It reads the DLQ, the events and the consumers through js (the operator
// connection when one is configured), shows nc's health, and counts the
// commands this process accepted from local.
func newConsole(o consoleOptions, keys [][sha256.Size]byte, svc *dlq.Service, js jetstream.JetStream, nc *nats.Conn,
	local prometheus.Gatherer, log *slog.Logger) (*console.Console, error) {
	if !o.enabled {
		return nil, nil
	}
	con, err := console.New(console.Config{
		OperatorKeys:    keys,
		DLQ:             svc,
		JS:              js,
		NATS:            nc,
		Local:           local,
		WorkerMetrics:   o.urls(),
		TraceURL:        o.traceURL,
		SessionTTL:      o.sessionTTL,
		BudgetPerMinute: o.budget,
		Logger:          log.With("component", "console"),
	})
	if err != nil {
		return nil, err
	}
	log.Info("operator console enabled", "path", console.PathPrefix, "worker_metrics", len(o.urls()))
	return con, nil
}
