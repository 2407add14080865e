package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/altegio-integrator/integrator/internal/bench"
	"github.com/altegio-integrator/integrator/internal/envflag"
)

// defineCommon defines the flags every scenario has.
func defineCommon(fs *envflag.Set, cfg *bench.Config) {
	fs.Bool(&cfg.Quick, "quick", "BENCH_QUICK", false, "shrink the scenario to seconds (checks that it runs and reports, not speed)")
	fs.String(&cfg.BinDir, "bin-dir", "BENCH_BIN_DIR", "", "prebuilt binaries (nats-server, altegio-sandbox, ingest, worker, bench); empty: build them for this run")
	fs.String(&cfg.WorkDir, "work-dir", "BENCH_WORK_DIR", "", "folder for data and process logs (default: a temporary one, removed)")
	fs.Bool(&cfg.Keep, "keep", "BENCH_KEEP", false, "keep the data and process logs")
	fs.Duration(&cfg.Timeout, "timeout", "BENCH_TIMEOUT", 0, "bound of the whole run (0: 40m, 3m with --quick)")
	fs.Int(&cfg.NoBudgetRate, "no-budget-rate", "BENCH_NO_BUDGET_RATE", 100000, "per-second budget of workers for \"no budget\" when they refuse -rate-per-second -1")
	fs.Bool(&cfg.NoClientRef, "no-client-ref", "BENCH_NO_CLIENT_REF", false, "send creates without client_ref")
}

// lists holds list flags, parsed after the flag set.
type lists []func() error

func (l lists) apply() error {
	for _, f := range l {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// intList parses "1,3" into *dst when s is not empty.
func intList(name string, s *string, dst *[]int) func() error {
	return func() error {
		if *s == "" {
			return nil
		}
		*dst = nil
		for part := range strings.SplitSeq(*s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || n <= 0 {
				return fmt.Errorf("-%s: %q is not a list of positive numbers", name, *s)
			}
			*dst = append(*dst, n)
		}
		return nil
	}
}

// defineBudget defines the budget flags of a scenario that runs under one.
func defineBudget(fs *envflag.Set, b *bench.Budget) {
	fs.Int(&b.PerSecond, "rate-per-second", "BENCH_RATE_PER_SECOND", bench.Documented.PerSecond, "API budget per second, enforced by the sandbox and shared by the workers")
	fs.Int(&b.PerMinute, "rate-per-minute", "BENCH_RATE_PER_MINUTE", bench.Documented.PerMinute, "API budget per minute (-1: none)")
}

// defineScenario defines the flags of scenario name. Zero values take the
// scenario's defaults (full or --quick), given in the usage.
func defineScenario(fs *envflag.Set, name string, cfg *bench.Config) lists {
	var l lists
	switch name {
	case "budget":
		c := &cfg.Budget
		var workers string
		fs.Duration(&c.Duration, "duration", "BENCH_DURATION", 0, "how long commands are sent to each set of workers (0: 60s, 5s with --quick)")
		fs.String(&workers, "workers", "BENCH_WORKERS", "1,3", "worker processes of each phase, comma-separated")
		fs.Float64(&c.OfferedRate, "offered-rate", "BENCH_OFFERED_RATE", 10, "commands per second sent through ingest")
		defineBudget(fs, &c.Budget)
		l = append(l, intList("workers", &workers, &c.Workers))
	case "bulk":
		c := &cfg.Bulk
		fs.Int(&c.Commands, "n", "BENCH_COMMANDS", 0, "client.create commands (0: 1000, 25 with --quick)")
		fs.Int(&c.Batch, "batch", "BENCH_BATCH", 100, "commands per POST; all POSTs go at once")
		fs.Int(&c.Workers, "workers", "BENCH_WORKERS", 1, "worker processes")
		defineBudget(fs, &c.Budget)
	case "fairness":
		c := &cfg.Fairness
		fs.Int(&c.Backlog, "backlog", "BENCH_BACKLOG", 0, "commands preloaded at location A (0: 5000, 200 with --quick)")
		fs.String(&c.BacklogType, "backlog-type", "BENCH_BACKLOG_TYPE", "comment", "comment, update or create")
		fs.Int(&c.Clients, "clients", "BENCH_CLIENTS", 0, "clients the backlog's comments or updates address (0: 300, 20 with --quick)")
		fs.Duration(&c.Reference, "reference", "BENCH_REFERENCE", 0, "location B alone first, for the reference (0: 10s, 3s with --quick)")
		fs.Duration(&c.Duration, "duration", "BENCH_DURATION", 0, "location B with the backlog (0: 60s, 5s with --quick)")
		fs.Duration(&c.Settle, "settle", "BENCH_SETTLE", 0, "wait for B's last results after each phase (0: 30s, 5s with --quick)")
		fs.Int(&c.Workers, "workers", "BENCH_WORKERS", 1, "worker processes")
		defineBudget(fs, &c.Budget)
	case "drain":
		c := &cfg.Drain
		fs.Int(&c.Commands, "n", "BENCH_COMMANDS", 0, "preloaded creates (0: 20000, 500 with --quick)")
		fs.Int(&c.Locations, "locations", "BENCH_LOCATIONS", 10, "locations the creates are spread over")
		fs.Int(&c.Workers, "workers", "BENCH_WORKERS", 1, "worker processes")
		fs.Int(&c.BareConcurrency, "bare-concurrency", "BENCH_BARE_CONCURRENCY", 32, "commands the bare consumer handles at once")
		fs.Int(&c.CreateBatch, "create-batch", "BENCH_CREATE_BATCH", 1, "the worker's --create-batch (1: the same call as the bare consumer)")
	case "ingest":
		c := &cfg.Ingest
		fs.Int(&c.Commands, "n", "BENCH_COMMANDS", 0, "commands each way (0: 5000, 300 with --quick)")
		fs.Int(&c.Producers, "producers", "BENCH_PRODUCERS", 0, "concurrent HTTP producers (0: 16, 4 with --quick)")
		fs.Int(&c.Batch, "batch", "BENCH_BATCH", 10, "commands per batched POST")
	case "reads":
		c := &cfg.Reads
		fs.Int(&c.Commands, "n", "BENCH_COMMANDS", 0, "comments preloaded in each phase with commands (0: 300, 40 with --quick)")
		fs.Int(&c.Readers, "readers", "BENCH_READERS", 0, "concurrent readers (0: 50, 10 with --quick)")
		fs.Duration(&c.Reference, "reference", "BENCH_REFERENCE", 0, "reads alone first, for their reference (0: 20s, 3s with --quick)")
		fs.Int(&c.Clients, "clients", "BENCH_CLIENTS", 0, "clients seeded and read (0: 50, 10 with --quick)")
		defineBudget(fs, &c.Budget)
	case "growth":
		c := &cfg.Growth
		var sizes string
		fs.String(&sizes, "sizes", "BENCH_SIZES", "", "backlogs, comma-separated (empty: 1000,10000,100000; 200,1000 with --quick)")
		fs.Int(&c.Locations, "locations", "BENCH_LOCATIONS", 10, "locations the creates are spread over")
		fs.Int(&c.Batch, "batch", "BENCH_BATCH", 100, "commands per POST of the preload")
		fs.Int(&c.Producers, "producers", "BENCH_PRODUCERS", 8, "concurrent HTTP producers of the preload")
		l = append(l, intList("sizes", &sizes, &c.Sizes))
	case "faults":
		c := &cfg.Faults
		var phases string
		fs.Int(&c.Runs, "runs", "BENCH_RUNS", 0, "runs of each phase (0: 3, 1 with --quick)")
		fs.Int(&c.Clients, "clients", "BENCH_CLIENTS", 0, "clients of each run's load (0: 120, 24 with --quick)")
		fs.Duration(&c.Load, "load", "BENCH_LOAD", 0, "how long each run's load is spread over (0: 30s, 8s with --quick)")
		fs.Int(&c.Kills, "kills", "BENCH_KILLS", 0, "kill -9 of a worker per kill run (0: 12, 3 with --quick)")
		fs.Duration(&c.Settle, "settle", "BENCH_SETTLE", 0, "wait for the last results of a run (0: 4m, 2m with --quick)")
		fs.String(&phases, "phases", "BENCH_PHASES", "", "phases, comma-separated (empty: "+strings.Join(bench.FaultPhases, ",")+")")
		l = append(l, func() error {
			if phases == "" {
				return nil
			}
			c.Phases = nil
			for p := range strings.SplitSeq(phases, ",") {
				p = strings.TrimSpace(p)
				c.Phases = append(c.Phases, p)
				if !slices.Contains(bench.FaultPhases, p) {
					return fmt.Errorf("-phases: unknown phase %q", p)
				}
			}
			return nil
		})
	}
	return l
}
