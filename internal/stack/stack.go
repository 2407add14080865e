// Package stack is what every production binary (cmd/ingest, cmd/worker)
// shares: the logger, the NATS connection, the topology and the ops
// server; the worker process itself is assembled by internal/workerstack.
// The binaries parse settings and call into here; tests do the same. It links neither an embedded nats-server nor the sandbox
// (TestProductionBinariesLinkNoTestMachinery): the one-process development
// stack and the pipeline bench are in internal/devstack.
package stack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/tracing"
)

// NewLogger returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format ("json" or "text"). A line logged with a context that
// holds a span carries its trace_id (tracing.LogHandler). Its errors name
// --log-level and --log-format, the flags of every binary.
func NewLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, FlagHint(fmt.Errorf("log level %q: want debug, info, warn or error", level), "log-level", "LOG_LEVEL")
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(tracing.LogHandler(slog.NewJSONHandler(w, opts))), nil
	case "text":
		return slog.New(tracing.LogHandler(slog.NewTextHandler(w, opts))), nil
	default:
		return nil, FlagHint(fmt.Errorf("log format %q: want json or text", format), "log-format", "LOG_FORMAT")
	}
}

// NATSConfig says how to reach NATS.
type NATSConfig struct {
	// URL is one or more comma-separated server URLs. Default nats.DefaultURL.
	URL string
	// Creds is a credentials file (JWT + nkey seed); optional.
	Creds string
	// Name identifies the connection in server monitoring.
	Name string
	// FailFastWhenDisconnected makes publishes fail at once while
	// disconnected instead of buffering, for callers that spool elsewhere.
	FailFastWhenDisconnected bool
	// InboxPrefix is the prefix of the connection's reply subjects
	// (nats.CustomInboxPrefix): deploy/nats lets each user subscribe only
	// to _INBOX_<user>.>. Default: nats.go's _INBOX.
	InboxPrefix string
}

// ConnectNATS connects with endless reconnects (also when the server is not
// up yet), logging disconnects and reconnects.
func ConnectNATS(cfg NATSConfig, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	if cfg.URL == "" {
		cfg.URL = nats.DefaultURL
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if cfg.FailFastWhenDisconnected {
		opts = append(opts, nats.ReconnectBufSize(-1))
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// ApplyTopology loads the definitions, sets replicas (when above 1) and
// applies them, retrying every second until timeout while NATS is still
// coming up. It returns the applied topology.
func ApplyTopology(ctx context.Context, js jetstream.JetStream, replicas int, timeout time.Duration, log *slog.Logger) (*topology.Topology, error) {
	top, err := topology.Load()
	if err != nil {
		return nil, err
	}
	if replicas > 1 {
		top = top.WithReplicas(replicas)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := topology.Apply(ctx, js, top)
		if err == nil {
			return top, nil
		}
		log.Warn("apply topology; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("apply topology: %w", err)
		case <-time.After(time.Second):
		}
	}
}

// OpsHandler serves /healthz (the process is alive), /readyz (ready returns
// nil; it is given the request's context) and /metrics (from g).
//
// /healthz answers as ingest's does: 200, Content-Type application/json,
// Cache-Control no-store, body {"status":"ok"}.
func OpsHandler(ready func(context.Context) error, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
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
