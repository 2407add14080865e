// Command worker carries out client commands against the Altegio API, and is
// the operators' tool for the dead-letter queue, the result events, the
// client export and history, and Altegio's webhook settings. "worker --help"
// lists the commands (workerUsage), "worker <command> --help" their flags.
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
	"net/http"
	"os"
	"os/signal"
	"strings"
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

// Exit codes scripts can rely on, besides 0 for success. workerUsage and
// exitCodesHelp list them for --help.
const (
	exitFailure = 1 // failed (NATS unreachable, an API error, …)
	exitUsage   = 2 // bad flags or arguments
	exitNoMatch = 3 // nothing matched the selection (or nothing left to do)
	// exitDeclined: the operator answered no to a replay or purge prompt.
	// Not exitNoMatch, which says there was nothing to do (a script may take
	// it as success): here there was, and it was not done. Not exitFailure:
	// nothing went wrong.
	exitDeclined    = 4
	exitInterrupted = 130 // stopped by Ctrl-C or SIGTERM; a replay resumes when run again
)

// exitCodesHelp ends the --help of every command that uses them.
const exitCodesHelp = "Exit codes: 0 ok, 1 error, 2 usage, 3 nothing matched, 4 declined at the\nprompt, 130 interrupted."

// workerUsage is "worker --help": one line per command.
const workerUsage = `Usage: worker [<command>] [flags]

Carry out client commands against the Altegio API, and operate the integrator.

Commands:
  run                                consume commands and carry them out (the default)
  dlq list|show|replay|purge         inspect, replay and purge dead-lettered commands
  events tail                        print the last result events, then follow new ones
  export clients                     write a location's client cards as JSON lines
  commands                           one client's commands and their outcomes, newest first
  webhooks list|register|unregister  subscribe this integrator to Altegio's client webhooks
  version                            print the version (also --version)

Run "worker <command> --help" for its flags.

` + exitCodesHelp + "\n"

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

// runIO is run with an explicit standard input. No command, or flags
// first, is run; help goes to stdout when asked for, to stderr with an
// unknown command (exit 2).
func runIO(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 || (strings.HasPrefix(args[0], "-") && !isHelp(args[0]) && !isVersion(args[0])) {
		return runWorker(ctx, args, getenv, stderr)
	}
	switch cmd := args[0]; {
	case cmd == "run":
		return runWorker(ctx, args[1:], getenv, stderr)
	case cmd == "dlq":
		return runDLQ(ctx, args[1:], c)
	case cmd == "events":
		return runEvents(ctx, args[1:], c)
	case cmd == "webhooks":
		return runWebhooks(ctx, args[1:], c)
	case cmd == "export":
		return runExport(ctx, args[1:], c)
	case cmd == "commands":
		return runCommands(ctx, args[1:], c)
	case isVersion(cmd):
		if len(args) > 1 {
			return usageErr("version: unexpected arguments %q", args[1:])
		}
		fmt.Fprintln(stdout, "worker", stack.Version())
		return nil
	case cmd == "help" && len(args) > 1: // worker help dlq: worker dlq --help
		return runIO(ctx, []string{args[1], "--help"}, getenv, stdin, stdout, stderr)
	case isHelp(cmd):
		fmt.Fprint(stdout, workerUsage)
		return flag.ErrHelp
	}
	fmt.Fprint(stderr, workerUsage)
	return usageErr("unknown command %q", args[0])
}

// isHelp reports whether arg asks for help: help, -h, -help, --help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// isVersion reports whether arg asks for the version.
func isVersion(arg string) bool {
	switch arg {
	case "version", "-version", "--version":
		return true
	}
	return false
}

// common are the connection and logging settings every subcommand shares.
type common struct {
	nats        stack.NATSConfig
	connectWait time.Duration
	logLevel    string
	logFormat   string
}

// define defines the flags of c. run waits 30 s for NATS (and the
// topology) at start, as NATS may still be coming up; the operator
// commands wait 5 s, as a person waits for them.
func (c *common) define(fs *envflag.Set, forRun bool) {
	fs.String(&c.nats.URL, "nats-url", "NATS_URL", nats.DefaultURL, "NATS server URLs, comma-separated")
	fs.String(&c.nats.Creds, "nats-creds", "NATS_CREDS", "", "NATS credentials file (optional)")
	fs.String(&c.nats.InboxPrefix, "nats-inbox-prefix", "NATS_INBOX_PREFIX", "", "prefix of this connection's reply subjects, _INBOX_<user> with the deploy/nats users: worker (run, webhooks), operator (dlq, events), audit (events), reader (export, commands); empty: _INBOX")
	if forRun {
		fs.Duration(&c.connectWait, "nats-connect-timeout", "WORKER_NATS_CONNECT_TIMEOUT", 30*time.Second, "how long to wait for NATS and the topology at start")
	} else {
		fs.Duration(&c.connectWait, "nats-connect-timeout", "WORKER_NATS_CONNECT_TIMEOUT", 5*time.Second, "how long to wait for NATS to answer")
	}
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

// runHelp ends "worker run --help".
const runHelp = `Altegio credentials come only from the environment: ALTEGIO_PARTNER_TOKEN,
and ALTEGIO_USER_TOKEN or ALTEGIO_LOGIN with ALTEGIO_PASSWORD (each also as
*_FILE); ALTEGIO_LOCATIONS limits the locations. Several accounts:
ALTEGIO_ACCOUNTS=main,eu and ALTEGIO_MAIN_LOGIN, … (see internal/auth).

Exit codes: 0 stopped by Ctrl-C or SIGTERM, 1 error, 2 usage.`

// runWorker consumes commands until ctx ends.
func runWorker(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var (
		c        common
		api      apiFlags
		addr     string
		replicas int
		profile  string
		cfg      workerstack.WorkerConfig
	)
	fs := envflag.New("worker run", getenv, stderr)
	fs.SetUsage("[flags]", "Consume commands from NATS and carry them out against the Altegio API; serve\n/healthz, /readyz and /metrics on --addr.", runHelp)
	c.define(fs, true)
	fs.String(&addr, "addr", "WORKER_ADDR", ":9090", "HTTP address of /healthz, /readyz and /metrics")
	fs.Int(&replicas, "replicas", "WORKER_REPLICAS", 1, "replicas of streams and buckets when applying the topology (3 on a cluster)")
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
		return usageErr("worker run: %v (set --location-weights or $ALTEGIO_LOCATION_WEIGHTS)", err)
	}
	log, err := stack.NewLogger(c.logLevel, c.logFormat, stderr)
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("worker run: %w", err)}
	}
	tp, stopTracing, err := startTracing(ctx, getenv, log)
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("worker run: %w", err)}
	}
	defer stopTracing()
	cfg.TracerProvider = tp
	if cfg.Accounts, err = auth.AccountsFromEnv(getenv); err != nil {
		return err
	}
	// The ops port is taken before any network work, so that a busy one
	// is reported at once, not after NATS and the topology.
	ln, err := stack.Listen(addr, "addr")
	if err != nil {
		return err
	}
	defer ln.Close()
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
	nc, js, err := connectNATS(ctx, c, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	top, err := stack.ApplyTopology(ctx, js, replicas, c.connectWait, log)
	if err != nil {
		return err
	}
	w, closeWorker, err := workerstack.NewWorker(ctx, js, top, cfg)
	if err != nil {
		return err
	}
	defer closeWorker()

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
