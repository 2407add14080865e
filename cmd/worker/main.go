// Command worker carries out client commands against the Altegio API, and is
// the operators' tool for the dead-letter queue.
//
//	worker [run] [flags]     consume commands (the default)
//	worker dlq …             inspect, replay and purge dead letters
//	worker events tail …     follow result events
//	worker webhooks …        register this integrator for Altegio's client webhooks
//
// Every flag can also be set by the environment variable named in --help.
// Altegio credentials come only from the environment (see internal/auth).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/envflag"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/worker"
	"github.com/altegio-integrator/integrator/internal/workerstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(exitCode(err))
	}
}

// Exit codes scripts can rely on, besides 0 for success.
const (
	exitFailure     = 1   // failed (NATS unreachable, not confirmed, …)
	exitUsage       = 2   // bad flags or arguments
	exitNoMatch     = 3   // nothing matched the selection (or nothing left to do)
	exitInterrupted = 130 // stopped by Ctrl-C or SIGTERM; a replay resumes when run again
)

// exitCode maps an error to the process exit code: 2 for usage errors, 1 for
// the rest. Subcommands may return an *exitError with their own code.
func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitFailure
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// run dispatches to a subcommand, with the process's standard input for
// confirmations.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runIO(ctx, args, getenv, os.Stdin, stdout, stderr)
}

// runIO is run with an explicit standard input.
func runIO(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "run":
			return runWorker(ctx, args[1:], getenv, stderr)
		case "dlq":
			return runDLQ(ctx, args[1:], cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr})
		case "events":
			return runEvents(ctx, args[1:], cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr})
		case "webhooks":
			return runWebhooks(ctx, args[1:], cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr})
		case "export":
			return runExport(ctx, args[1:], cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr})
		case "commands":
			return runCommands(ctx, args[1:], cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr})
		}
	}
	return runWorker(ctx, args, getenv, stderr)
}

// common are the connection and logging settings every subcommand shares.
type common struct {
	nats      stack.NATSConfig
	logLevel  string
	logFormat string
}

func (c *common) define(fs *envflag.Set) {
	fs.String(&c.nats.URL, "nats-url", "NATS_URL", nats.DefaultURL, "NATS server URLs, comma-separated")
	fs.String(&c.nats.Creds, "nats-creds", "NATS_CREDS", "", "NATS credentials file (optional)")
	fs.String(&c.nats.InboxPrefix, "nats-inbox-prefix", "NATS_INBOX_PREFIX", "", "prefix of this connection's reply subjects: _INBOX_worker, or _INBOX_operator for dlq/events, with the deploy/nats users (empty: _INBOX)")
	fs.String(&c.logLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	fs.String(&c.logFormat, "log-format", "LOG_FORMAT", "json", "json or text")
}

// apiFlags are the Altegio API settings of run, shared by every subcommand
// that calls the API with the workers' session and budget (webhooks).
type apiFlags struct {
	baseURL string
	rate    ratelimit.Config
	weights string
	egress  string
}

func (a *apiFlags) define(fs *envflag.Set) {
	fs.String(&a.baseURL, "api-url", "ALTEGIO_API_URL", altegio.DefaultBaseURL, "Altegio API base URL")
	fs.Int(&a.rate.PerSecond, "rate-per-second", "ALTEGIO_RATE_PER_SECOND", 5, "API requests per second, all workers together (-1: no limit at all, for benchmarks)")
	fs.Int(&a.rate.PerMinute, "rate-per-minute", "ALTEGIO_RATE_PER_MINUTE", 200, "API requests per minute, all workers together (-1: no limit)")
	fs.String(&a.weights, "location-weights", "ALTEGIO_LOCATION_WEIGHTS", "", "share of the budget per account and per location while several wait, as name=weight pairs: an account's name or a location id (\"main=2,7=0.5\"; others weigh 1)")
	fs.String(&a.egress, "egress", "ALTEGIO_EGRESS", "default", "name of the egress IP whose budget this worker shares")
	fs.Float64(&a.rate.CommandShare, "command-share", "ALTEGIO_COMMAND_SHARE", 0.6, "share of the budget commands keep while reads wait too (reads keep the rest; either takes what the other leaves idle)")
}

// apply sets the API base URL and the budget of cfg; a bad weight list is
// an error.
func (a *apiFlags) apply(cfg *workerstack.WorkerConfig) error {
	lw, err := ratelimit.ParseWeights(a.weights)
	if err != nil {
		return err
	}
	cfg.APIBaseURL = a.baseURL
	cfg.RateLimit = a.rate
	cfg.RateLimit.Key = "egress." + a.egress
	cfg.RateLimit.Weights = lw
	return nil
}

// runWorker consumes commands until ctx ends.
func runWorker(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var (
		c        common
		api      apiFlags
		addr     string
		replicas int
		timeout  time.Duration
		profile  string
		cfg      workerstack.WorkerConfig
	)
	fs := envflag.New("worker run", getenv, stderr)
	c.define(fs)
	fs.String(&addr, "addr", "WORKER_ADDR", ":9090", "HTTP address of /healthz, /readyz and /metrics")
	fs.Int(&replicas, "replicas", "WORKER_REPLICAS", 1, "replicas of streams and buckets when applying the topology (3 on a cluster)")
	fs.Duration(&timeout, "nats-connect-timeout", "WORKER_NATS_CONNECT_TIMEOUT", 30*time.Second, "how long to wait for NATS and the topology at start")
	api.define(fs)
	fs.String(&profile, "cpu-profile", "WORKER_CPU_PROFILE", "", "write a CPU profile of the whole run to this file (diagnosing the hot path)")
	fs.Bool(&cfg.Reads, "reads", "WORKER_READS", false, "also answer reads over NATS (the altegio-reads micro service on altegio.read.<location>.<query>) with this worker's session and budget")
	fs.Duration(&cfg.ReadCacheTTL, "read-cache-ttl", "WORKER_READ_CACHE_TTL", 0, "with --reads, keep client cards this long (0: no cache); a command result or a webhook about the client drops its card")
	fs.Float64(&cfg.ExportShare, "export-share", "WORKER_EXPORT_SHARE", 0.25, "with --reads, the share of the budget this worker's exports may use")
	fs.String(&cfg.Worker.WorkerID, "worker-id", "WORKER_ID", "", "name of this process in results and logs (default host-pid-random)")
	fs.Int(&cfg.Worker.MaxInFlight, "max-in-flight", "WORKER_MAX_IN_FLIGHT", worker.DefaultMaxInFlight, "commands of one partition run at once")
	fs.Int(&cfg.Worker.CreateBatch, "create-batch", "WORKER_CREATE_BATCH", worker.DefaultCreateBatch, "most client.create commands of one location sent as one bulk request (1: no coalescing)")
	fs.Duration(&cfg.Worker.RetryFor, "retry-for", "WORKER_RETRY_FOR", worker.DefaultRetryFor, "how long after its first failure a command is retried before it is dead-lettered (an uncertain one is checked against the API first)")
	fs.Int(&cfg.Worker.MaxAttempts, "max-attempts", "WORKER_MAX_ATTEMPTS", 0, "also cap the attempts (0: only --retry-for bounds them)")
	fs.Duration(&cfg.Worker.RetryBase, "retry-base", "WORKER_RETRY_BASE", worker.DefaultRetryBase, "first retry delay")
	fs.Duration(&cfg.Worker.RetryMax, "retry-max", "WORKER_RETRY_MAX", worker.DefaultRetryMax, "longest retry delay (below two thirds of the consumer ack wait)")
	fs.Duration(&cfg.Worker.HandlerTimeout, "handler-timeout", "WORKER_HANDLER_TIMEOUT", worker.DefaultHandlerTimeout, "bound of one exchange with the API (not the wait for the budget)")
	fs.Duration(&cfg.Worker.CloseTimeout, "close-timeout", "WORKER_CLOSE_TIMEOUT", worker.DefaultCloseTimeout, "wait for in-flight commands at shutdown")
	if err := fs.ParseNoArgs(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("worker run: %v", err)
	}
	if err := api.apply(&cfg); err != nil {
		return usageErr("worker run: %v", err)
	}
	log, err := stack.NewLogger(c.logLevel, c.logFormat, stderr)
	if err != nil {
		return err
	}
	if cfg.Accounts, err = auth.AccountsFromEnv(getenv); err != nil {
		return err
	}
	if profile != "" {
		stopProfile, err := stack.StartCPUProfile(profile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Logger, cfg.Registerer = log, reg

	c.nats.Name = "worker"
	nc, js, err := stack.ConnectNATS(c.nats, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	top, err := stack.ApplyTopology(ctx, js, replicas, timeout, log)
	if err != nil {
		return err
	}
	w, closeWorker, err := workerstack.NewWorker(ctx, js, top, cfg)
	if err != nil {
		return err
	}
	defer closeWorker()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ops listen: %w", err)
	}
	ops := &http.Server{Handler: stack.OpsHandler(w.Ready, reg), ReadHeaderTimeout: 5 * time.Second}
	opsErr := make(chan error, 1)
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	go func() { opsErr <- stack.ServeOps(opsCtx, ops, ln) }()

	log.Info("worker started", "addr", addr, "nats", nc.ConnectedUrlRedacted())
	runErr := w.Run(ctx)
	stopOps()
	if err := <-opsErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("ops server", "error", err)
	}
	if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		log.Warn("nats drain", "error", err)
	}
	return runErr
}
