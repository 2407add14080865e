package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// BulkConfig configures the bulk scenario: many creates accepted at once
// under the budget.
type BulkConfig struct {
	// Commands is the number of client.create commands (distinct phones,
	// no custom_fields). Default 1000; 25 with Quick.
	Commands int
	// Batch is the commands per POST; all POSTs go at once. Default 100.
	Batch int
	// Workers is the number of worker processes. Default 1.
	Workers int
	// Budget is what the sandbox enforces and the workers share. Default
	// Documented.
	Budget Budget
	// Target is the wall time to beat, for the report. Default 10s.
	Target time.Duration
}

func (c *BulkConfig) setDefaults(quick bool) {
	setDefaultQuick(&c.Commands, 1000, 25, quick)
	setDefault(&c.Batch, 100)
	setDefault(&c.Workers, 1)
	setDefault(&c.Budget, Documented)
	setDefault(&c.Target, 10*time.Second)
}

// runBulk reports the wall time from the first 202 to the last terminal
// result event and the API requests, against the same clients sent by the
// bench straight to a fresh sandbox in bulk calls paced at the budget.
// Figures: "wall_seconds", "api_requests", "rate_limited", "succeeded",
// "dead_lettered", "duplicates", "reference_seconds", "reference_requests".
func runBulk(ctx context.Context, e *env, cfg Config) (Report, error) {
	c := cfg.Bulk
	rep := Report{Title: fmt.Sprintf("%d client.create accepted at once (%d per POST), %d worker(s), budget %v",
		c.Commands, c.Batch, c.Workers, c.Budget)}
	cmds := spreadCreates(cfg, "bulk", c.Commands, 1)

	refTime, refCalls, err := bulkReference(ctx, e, c)
	if err != nil {
		return rep, err
	}

	s, err := openStack(ctx, e, "bulk", c.Budget, withIngest)
	if err != nil {
		return rep, err
	}
	defer s.close()
	if err := s.startWorkers(ctx, c.Workers, c.Budget); err != nil {
		return rep, err
	}
	ev, err := followEvents(ctx, s.js)
	if err != nil {
		return rep, err
	}
	defer ev.stop()
	before, err := s.stats(ctx)
	if err != nil {
		return rep, err
	}

	producers := min((c.Commands+c.Batch-1)/c.Batch, 16)
	first, _, err := newIngestClient(s.ingestURL, producers).postAll(ctx, cmds, c.Batch, producers)
	if err != nil {
		return rep, err
	}
	ids := commandIDs(cmds)
	if err := ev.waitAll(ctx, s, ids, "bulk"); err != nil {
		return rep, err
	}
	wall := ev.lastReceived(ids).Sub(first)
	after, err := s.stats(ctx)
	if err != nil {
		return rep, err
	}
	d := after.sub(before)
	counts := ev.counts()

	rep.set("wall_seconds", wall.Seconds())
	rep.set("api_requests", float64(d.Requests))
	rep.set("rate_limited", float64(d.RateLimited))
	rep.set("succeeded", float64(counts.succeeded))
	rep.set("dead_lettered", float64(counts.deadLettered))
	rep.set("duplicates", float64(d.DuplicateCreates))
	rep.set("reference_seconds", refTime.Seconds())
	rep.set("reference_requests", float64(refCalls))
	t := Table{Header: []string{"measure", "value"}}
	t.add("commands", fmt.Sprintf("%d (succeeded %d, dead-lettered %d)", c.Commands, counts.succeeded, counts.deadLettered))
	t.add("wall time, first accept → last terminal result event", dur(wall))
	t.add("API requests (429 answers)", fmt.Sprintf("%d (%d): %s", d.Requests, d.RateLimited, d.ops()))
	t.add("duplicate creates", strconv.Itoa(d.DuplicateCreates))
	t.add("reference: the same clients in direct bulk calls paced at the budget", fmt.Sprintf("%s, %d requests", dur(refTime), refCalls))
	t.add("target", "≤ "+dur(c.Target))
	rep.Tables = append(rep.Tables, t)
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("The reference posts the same %d clients to a fresh sandbox with the same budget, %d per POST /clients/{location}/bulk, one call per %v: what the API allows with no queue in between.",
			c.Commands, commands.MaxBulkClients, time.Duration(float64(time.Second)*1.02/float64(max(c.Budget.PerSecond, 1)))),
	)
	return rep, nil
}

// bulkReference creates the scenario's clients on a fresh sandbox with
// direct bulk calls paced at the budget, and returns the time from the
// first call to the last answer and the number of calls.
func bulkReference(ctx context.Context, e *env, c BulkConfig) (time.Duration, int, error) {
	s, err := newStack(e, "bulk-reference")
	if err != nil {
		return 0, 0, err
	}
	defer s.close()
	if err := s.startSandbox(ctx, c.Budget); err != nil {
		return 0, 0, err
	}
	clients := make([]clientFields, c.Commands)
	for k := range clients {
		clients[k] = newClient(seriesMain, k)
	}
	start := time.Now()
	_, calls, err := s.api().bulkCreatePaced(ctx, 1, clients, c.Budget.PerSecond)
	if err != nil {
		return 0, 0, fmt.Errorf("reference: %w", err)
	}
	return time.Since(start), calls, nil
}
