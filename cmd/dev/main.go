// Command dev runs the whole pipeline in one process for development and
// demos: embedded NATS with JetStream, the Altegio sandbox, ingest and the
// worker. Flags (or their environment variables) switch each part to a real
// one: an external NATS, or the real Altegio API with credentials from the
// environment (see internal/auth).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/devstack"
	"github.com/altegio-integrator/integrator/internal/envflag"
	"github.com/altegio-integrator/integrator/internal/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first Ctrl-C the stack finishes the commands in flight; a
	// second one ends the process at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

// about is the first line of --help.
const about = "dev runs the whole integrator in one process (embedded NATS, the Altegio sandbox, ingest, the worker); " +
	"the first `go run ./cmd/dev` compiles for a minute or two (`go build ./...` ahead does it once)."

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		cfg         devstack.DevConfig
		logLevel    string
		logFormat   string
		showVersion bool
	)
	fs := envflag.New("dev", getenv, stderr)
	fs.SetUsage("", "", "Ctrl-C stops the stack once the worker has finished the commands in flight; a second Ctrl-C ends it at once.\n"+
		"Exit codes: 0 stopped by Ctrl-C or SIGTERM (or --help, --version), 1 error.")
	usage := fs.Usage
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\n", about)
		usage()
	}
	fs.String(&cfg.DataDir, devstack.FlagDataDir, "DEV_DATA", "data", "folder of the NATS store and the ingest outbox, kept across runs; one dev at a time")
	fs.String(&cfg.NATSURL, "nats-url", "NATS_URL", "", "external NATS (empty: start an embedded one)")
	fs.String(&cfg.NATSListen, devstack.FlagNATSListen, "DEV_NATS_LISTEN", "127.0.0.1:4222", "address of the embedded NATS")
	fs.String(&cfg.APIURL, "api-url", "ALTEGIO_API_URL", "", "real Altegio API base URL, with ALTEGIO_* credentials (empty: start the sandbox)")
	fs.String(&cfg.SandboxAddr, devstack.FlagSandboxAddr, "DEV_SANDBOX_ADDR", "127.0.0.1:8081", "address of the sandbox")
	fs.String(&cfg.IngestAddr, devstack.FlagIngestAddr, "DEV_INGEST_ADDR", "127.0.0.1:8080", "address of ingest")
	fs.String(&cfg.OpsAddr, devstack.FlagOpsAddr, "DEV_OPS_ADDR", "127.0.0.1:9090", "address of the worker's health and metrics")
	fs.Int(&cfg.RateLimit.PerSecond, "rate-per-second", "ALTEGIO_RATE_PER_SECOND", 5, "API requests per second")
	fs.Int(&cfg.RateLimit.PerMinute, "rate-per-minute", "ALTEGIO_RATE_PER_MINUTE", 200, "API requests per minute (-1: no limit)")
	fs.Float64(&cfg.SandboxFaults.ErrorRate, "sandbox-error-rate", "DEV_SANDBOX_ERROR_RATE", 0, "share of sandbox answers that are 5xx (0..1)")
	fs.Float64(&cfg.SandboxFaults.ResetRate, "sandbox-reset-rate", "DEV_SANDBOX_RESET_RATE", 0, "share of sandbox connections reset (0..1)")
	fs.Duration(&cfg.SandboxFaults.Latency, "sandbox-latency", "DEV_SANDBOX_LATENCY", 0, "latency added to every sandbox answer")
	fs.Duration(&cfg.WebhookDelay, "webhook-delay", "DEV_WEBHOOK_DELAY", 5*time.Second, "how long after a change the sandbox sends its client webhook to ingest (Altegio: about 5s)")
	fs.Duration(&cfg.Progress, "progress", "DEV_PROGRESS", 10*time.Second, "how often to print a progress line")
	fs.String(&logLevel, "log-level", "LOG_LEVEL", "warn", "debug, info, warn or error")
	fs.String(&logFormat, "log-format", "LOG_FORMAT", "text", "json or text")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	if showVersion {
		fmt.Fprintln(stdout, "dev", stack.Version())
		return nil
	}
	log, err := stack.NewLogger(logLevel, logFormat, stderr)
	if err != nil {
		return err
	}
	cfg.Logger, cfg.Out = log, stdout
	if cfg.APIURL != "" {
		if cfg.Accounts, err = auth.AccountsFromEnv(getenv); err != nil {
			return err
		}
	}
	return devstack.RunDev(ctx, cfg)
}
