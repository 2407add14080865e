package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GrowthConfig configures the growth scenario.
type GrowthConfig struct {
	// Sizes are the backlogs, one fresh stack each. Default 1000, 10000
	// and 100000; 200 and 1000 with Quick.
	Sizes []int
	// Locations spreads the creates over this many locations. Default 10.
	Locations int
	// Batch and Producers shape the preload through ingest. Defaults 100
	// and 8.
	Batch, Producers int
	// MaxRSS is the memory target per process, for the report. Default
	// 100 MiB.
	MaxRSS int64
	// Spread is the throughput target: every size within this share of
	// the fastest. Default 0.2.
	Spread float64
}

func (c *GrowthConfig) setDefaults(quick bool) {
	if len(c.Sizes) == 0 {
		c.Sizes = []int{1000, 10000, 100000}
		if quick {
			c.Sizes = []int{200, 1000}
		}
	}
	setDefault(&c.Locations, 10)
	setDefault(&c.Batch, 100)
	setDefault(&c.Producers, 8)
	setDefault(&c.MaxRSS, 100<<20)
	setDefault(&c.Spread, 0.2)
}

// runGrowth preloads each backlog through ingest, then starts one worker
// with no budget and reports its commands per second and the largest
// resident memory of the worker, ingest and nats-server. Figures per size
// n: "size=<n>/rate", "size=<n>/ingest_rate", "size=<n>/worker_rss_mib",
// "size=<n>/ingest_rss_mib", "size=<n>/nats_rss_mib"; and "spread", the
// slowest size's shortfall from the fastest.
func runGrowth(ctx context.Context, e *env, cfg Config) (Report, error) {
	c := cfg.Growth
	sizes := make([]string, len(c.Sizes))
	for i, n := range c.Sizes {
		sizes[i] = strconv.Itoa(n)
	}
	rep := Report{Title: fmt.Sprintf("backlogs of %s creates over %d locations, preloaded through ingest, then one worker, no budget", strings.Join(sizes, ", "), c.Locations)}
	t := Table{Header: []string{"backlog", "preload through ingest, commands/s", "worker commands/s", "vs the fastest size (reference)", "max RSS worker", "max RSS ingest", "max RSS nats-server", "CPU per command: worker / nats-server / sandbox"}}
	var rates []float64
	var rows [][]string
	for _, n := range c.Sizes {
		row, r, err := growthPhase(ctx, e, cfg, n, &rep)
		if err != nil {
			return rep, err
		}
		rows = append(rows, row)
		rates = append(rates, r)
	}
	fastest := slices.Max(rates)
	for i, row := range rows {
		row[3] = pct(rates[i] / fastest)
		t.add(row...)
	}
	rep.set("spread", 1-slices.Min(rates)/fastest)
	rep.Tables = append(rep.Tables, t)
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("Targets: throughput within %s across sizes (the slowest here is %s below the fastest); RSS ≤ %s per process.", pct(c.Spread), pct(1-slices.Min(rates)/fastest), mib(c.MaxRSS)),
		fmt.Sprintf("Each size runs on a fresh stack: the backlog is posted to ingest (%d per POST, %d producers) before the worker starts; the worker's rate is (commands − 1) over its first to last completion. RSS is VmRSS sampled every 100 ms over the whole phase.", c.Batch, c.Producers),
	)
	return rep, nil
}

func growthPhase(ctx context.Context, e *env, cfg Config, n int, rep *Report) ([]string, float64, error) {
	c := cfg.Growth
	s, err := openStack(ctx, e, "growth-"+strconv.Itoa(n), Unlimited, withIngest)
	if err != nil {
		return nil, 0, err
	}
	defer s.close()
	cmds := spreadCreates(cfg, "growth", n, c.Locations)
	e.logf("growth: preloading %d commands through ingest", n)
	start := time.Now()
	_, last, err := newIngestClient(s.ingestURL, c.Producers).postAll(ctx, cmds, c.Batch, c.Producers)
	if err != nil {
		return nil, 0, err
	}
	ingestRate := rate(n, last.Sub(start))
	ev, err := followEvents(ctx, s.js)
	if err != nil {
		return nil, 0, err
	}
	defer ev.stop()
	natsCPU, sandboxCPU := s.nats.cpu(), s.sandbox.cpu()
	if err := s.startWorkers(ctx, 1, Unlimited); err != nil {
		return nil, 0, err
	}
	ids := commandIDs(cmds)
	if err := ev.waitAll(ctx, s, ids, fmt.Sprintf("growth %d", n)); err != nil {
		return nil, 0, err
	}
	first, lastDone, done := ev.completionSpan(ids)
	r := rate(done-1, lastDone.Sub(first))
	// CPU per command while the worker drained the backlog, per process.
	perCmd := func(sec float64) string { return fmt.Sprintf("%.0f µs", sec/float64(n)*1e6) }
	cpu := fmt.Sprintf("%s / %s / %s", perCmd(s.workers[0].cpu()), perCmd(s.nats.cpu()-natsCPU), perCmd(s.sandbox.cpu()-sandboxCPU))
	w, in, ns := s.workers[0].maxRSS.Load(), s.ingest.maxRSS.Load(), s.nats.maxRSS.Load()
	key := fmt.Sprintf("size=%d/", n)
	rep.set(key+"rate", r)
	rep.set(key+"ingest_rate", ingestRate)
	rep.set(key+"worker_rss_mib", float64(w)/(1<<20))
	rep.set(key+"ingest_rss_mib", float64(in)/(1<<20))
	rep.set(key+"nats_rss_mib", float64(ns)/(1<<20))
	return []string{strconv.Itoa(n), num(ingestRate), num(r), "", mib(w), mib(in), mib(ns), cpu}, r, nil
}
