// Command bench measures the whole pipeline on this machine: it starts the
// development stack (embedded NATS, sandbox, ingest, worker) on free ports
// with fresh data, sends client creates through ingest and waits for every
// result event, then prints throughput and latency as Markdown rows for
// docs/benchmarks.md.
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

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg stack.BenchConfig
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
	rep, err := stack.RunBench(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "| setting | value |\n|---|---|\n| producers × batch | %d × %d |\n| API budget | %d/s, %d/min |\n%s\n",
		cfg.Producers, cfg.Batch, cfg.RateLimit.PerSecond, cfg.RateLimit.PerMinute, rep)
	return nil
}
