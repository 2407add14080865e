package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Config configures Run. The zero value runs the full scenarios with
// freshly built binaries in a temporary folder.
type Config struct {
	// Quick shrinks every scenario to seconds (CI checks that they run and
	// report, not speed); the defaults below say what each becomes.
	Quick bool
	// BinDir holds binaries built by Build; empty builds them into the work
	// folder first.
	BinDir string
	// WorkDir holds each phase's data and process logs; empty uses a new
	// temporary folder, removed at the end unless Keep is set.
	WorkDir string
	// Keep keeps the work folder (data and logs) for inspection.
	Keep bool
	// Timeout bounds the whole run, processes included. Default 40m; 3m
	// with Quick.
	Timeout time.Duration
	// NoBudgetRate is the per-second budget given to workers for "no
	// budget" when they refuse -rate-per-second -1. Default 100000.
	NoBudgetRate int
	// NoClientRef sends creates without client_ref (default: every create
	// carries one, as producers are told to).
	NoClientRef bool
	// Progress receives a line now and then while the run waits. Default:
	// discarded.
	Progress io.Writer

	// The settings of each scenario.
	Budget   BudgetConfig
	Bulk     BulkConfig
	Fairness FairnessConfig
	Drain    DrainConfig
	Ingest   IngestConfig
	Growth   GrowthConfig
	Faults   FaultsConfig
	Reads    ReadsConfig
}

func (c *Config) setDefaults() {
	setDefaultQuick(&c.Timeout, 40*time.Minute, 3*time.Minute, c.Quick)
	setDefault(&c.NoBudgetRate, 100000)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	c.Budget.setDefaults(c.Quick)
	c.Bulk.setDefaults(c.Quick)
	c.Fairness.setDefaults(c.Quick)
	c.Drain.setDefaults(c.Quick)
	c.Ingest.setDefaults(c.Quick)
	c.Growth.setDefaults(c.Quick)
	c.Faults.setDefaults(c.Quick)
	c.Reads.setDefaults(c.Quick)
}

// setDefault sets *p to v when it is the zero value.
func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// setDefaultQuick sets a zero *p to full, or to quick with Config.Quick.
func setDefaultQuick[T comparable](p *T, full, quick T, isQuick bool) {
	if isQuick {
		full = quick
	}
	setDefault(p, full)
}

// Scenario is one benchmark scenario.
type Scenario struct {
	// Name selects the scenario: budget, bulk, fairness, drain, ingest,
	// growth, faults.
	Name string
	// Summary says in one line what it measures.
	Summary string
	run     func(ctx context.Context, e *env, cfg Config) (Report, error)
}

// Scenarios lists the scenarios Run knows, in the order of the docs.
func Scenarios() []Scenario {
	return []Scenario{
		{"budget", "mixed commands through 1, then 3 workers under 5/s and 200/min: share of the budget used, 429s, commands failed only by waiting", runBudget},
		{"bulk", "1,000 creates accepted at once under the budget: time to the last result, API requests", runBulk},
		{"fairness", "a backlog at location A and one command a second at location B: B's latency", runFairness},
		{"drain", "preloaded creates with no budget: the worker's commands/s against a bare JetStream consumer", runDrain},
		{"ingest", "single and batched POSTs to ingest against raw JetStream publishes", runIngest},
		{"reads", "a backlog of comments alone, then with 50 readers through ingest: the commands' share of the budget, read latency, 503s", runReads},
		{"growth", "throughput and memory of worker, ingest and nats-server at growing backlogs", runGrowth},
		{"faults", "the fault suite: kill -9 of workers, nats-server restarts, API faults, a full outbox, stuck audit consumers, poison input; lost, doubled, out of order, time to resume", runFaults},
	}
}

// ErrUnknownScenario is returned by Run for a name Scenarios does not list.
var ErrUnknownScenario = errors.New("unknown scenario")

// Run runs the scenario called name and returns its report. It starts and
// stops every process itself; on return none is left running. It returns
// ErrUnknownScenario (wrapped) for an unknown name, and the first failure of
// a phase (a process that would not start or exited, commands not finished
// within Timeout) otherwise.
func Run(ctx context.Context, name string, cfg Config) (Report, error) {
	i := slices.IndexFunc(Scenarios(), func(s Scenario) bool { return s.Name == name })
	if i < 0 {
		return Report{}, fmt.Errorf("%w %q", ErrUnknownScenario, name)
	}
	sc := Scenarios()[i]
	cfg.setDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	work := cfg.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "altegio-bench-")
		if err != nil {
			return Report{}, err
		}
		work = dir
		if !cfg.Keep {
			defer os.RemoveAll(dir)
		}
	}
	e := &env{bins: cfg.BinDir, work: work, progress: cfg.Progress, noBudgetRate: cfg.NoBudgetRate}
	if e.bins == "" {
		e.bins = filepath.Join(work, "bin")
		e.logf("building binaries into %s", e.bins)
		if err := Build(ctx, e.bins); err != nil {
			return Report{}, err
		}
	}
	if cfg.Keep {
		e.logf("data and logs in %s", work)
	}
	rep, err := sc.run(ctx, e, cfg)
	rep.Scenario = sc.Name
	if err != nil {
		return rep, fmt.Errorf("%s: %w", sc.Name, err)
	}
	return rep, nil
}

// ref is the client_ref of the k-th client of a series, or "" when
// creates go without one.
func (c Config) ref(prefix string, k int) string {
	if c.NoClientRef {
		return ""
	}
	return fmt.Sprintf("%s-%d", prefix, k)
}
