// Command bench measures the integrator on this machine and prints Markdown
// rows for docs/benchmarks.md.
//
//	bench [pipeline] [flags]   the whole pipeline in one process (the default)
//	bench <scenario> [flags]   budget, bulk, fairness, drain, ingest, growth, faults
//
// The pipeline bench starts the development stack in one process (embedded
// NATS, sandbox, ingest, worker) on free ports with fresh data, sends client
// creates through ingest and waits for every result event. The scenarios
// (internal/bench) run every part as a separate process over loopback, built
// once per run, and report their figures with a reference measured in the
// same run; --quick shrinks each to seconds. `bench <scenario> --help` lists
// a scenario's flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/altegio-integrator/integrator/internal/bench"
	"github.com/altegio-integrator/integrator/internal/devstack"
	"github.com/altegio-integrator/integrator/internal/envflag"
	"github.com/altegio-integrator/integrator/internal/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run dispatches on the first argument: a scenario, "pipeline", the hidden
// "bare" consumer, or flags of the pipeline bench.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, "bench", stack.Version())
		return nil
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return runPipeline(ctx, args, getenv, stdout, stderr)
	}
	switch name := args[0]; name {
	case "pipeline":
		return runPipeline(ctx, args[1:], getenv, stdout, stderr)
	case "bare":
		return runBare(ctx, args[1:], getenv, stdout, stderr)
	case "help":
		usage(stdout)
		return nil
	default:
		return runScenario(ctx, name, args[1:], getenv, stdout, stderr)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: bench [pipeline] [flags]  |  bench <scenario> [--quick] [flags]\n\nScenarios (separate processes over loopback):")
	for _, s := range bench.Scenarios() {
		fmt.Fprintf(w, "  %-9s %s\n", s.Name, s.Summary)
	}
	fmt.Fprintln(w, "\n`bench <scenario> --help` and `bench pipeline --help` list the flags; `bench --version` the version.")
}

// runPipeline is the one-process pipeline bench.
func runPipeline(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg devstack.BenchConfig
	fs := envflag.New("bench", getenv, stderr)
	fs.Int(&cfg.Commands, "n", "BENCH_COMMANDS", 1000, "client.create commands to send")
	fs.Int(&cfg.Producers, "producers", "BENCH_PRODUCERS", 8, "concurrent HTTP producers")
	fs.Int(&cfg.Batch, "batch", "BENCH_BATCH", 1, "commands per POST")
	fs.Int(&cfg.RateLimit.PerSecond, "rate-per-second", "BENCH_RATE_PER_SECOND", 1000, "API budget per second (the sandbox enforces the same)")
	fs.Int(&cfg.RateLimit.PerMinute, "rate-per-minute", "BENCH_RATE_PER_MINUTE", -1, "API budget per minute (-1: none)")
	fs.Duration(&cfg.Timeout, "timeout", "BENCH_TIMEOUT", 10*time.Minute, "bound of the whole run")
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	cfg.Progress = stderr
	rep, err := devstack.RunBench(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "| setting | value |\n|---|---|\n| producers × batch | %d × %d |\n| API budget | %d/s, %d/min |\n%s\n",
		cfg.Producers, cfg.Batch, cfg.RateLimit.PerSecond, cfg.RateLimit.PerMinute, rep)
	return nil
}

// runScenario runs one scenario of internal/bench and prints its report.
func runScenario(ctx context.Context, name string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if !knownScenario(name) {
		usage(stderr)
		return fmt.Errorf("unknown scenario %q", name)
	}
	fs := envflag.New("bench "+name, getenv, stderr)
	var cfg bench.Config
	defineCommon(fs, &cfg)
	lists := defineScenario(fs, name, &cfg)
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	if err := lists.apply(); err != nil {
		return err
	}
	cfg.Progress = stderr
	rep, err := bench.Run(ctx, name, cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, rep.Markdown())
	return nil
}

func knownScenario(name string) bool {
	return slices.ContainsFunc(bench.Scenarios(), func(s bench.Scenario) bool { return s.Name == name })
}

// runBare is the drain scenario's reference consumer, started by the bench
// as a process of its own; it prints its report as one JSON line.
func runBare(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg bench.BareConfig
	fs := envflag.New("bench bare", getenv, stderr)
	fs.String(&cfg.NATSURL, "nats-url", "BENCH_BARE_NATS_URL", "nats://127.0.0.1:4222", "NATS server")
	fs.String(&cfg.Stream, "stream", "BENCH_BARE_STREAM", "BENCH_BARE", "stream holding the commands")
	fs.String(&cfg.APIURL, "api-url", "BENCH_BARE_API_URL", "", "API base URL, …/api/v1")
	fs.Int(&cfg.Count, "count", "BENCH_BARE_COUNT", 0, "messages to handle")
	fs.Int(&cfg.Concurrency, "concurrency", "BENCH_BARE_CONCURRENCY", 32, "messages handled at once")
	if err := fs.ParseNoArgs(args); err != nil {
		return err
	}
	cfg.PartnerToken, cfg.UserToken = getenv("BENCH_BARE_PARTNER_TOKEN"), getenv("BENCH_BARE_USER_TOKEN")
	rep, err := bench.RunBare(ctx, cfg)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(rep)
}
