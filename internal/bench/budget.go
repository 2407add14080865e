package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// BudgetConfig configures the budget scenario: a steady stream of mixed
// commands (creates; updates and comments, by client_ref, of clients
// created earlier in the run) through ingest, handled by one set of
// workers after another, each set on a fresh stack.
type BudgetConfig struct {
	// Duration is how long commands are sent to each set. Default 60s; 5s
	// with Quick.
	Duration time.Duration
	// Workers lists the worker counts, one phase each. Default 1 and 3.
	Workers []int
	// OfferedRate is the commands per second sent through ingest. Default
	// 10: more than the budget can serve, so the workers always have work.
	OfferedRate float64
	// Budget is what the sandbox enforces and the workers share. Default
	// Documented.
	Budget Budget
}

func (c *BudgetConfig) setDefaults(quick bool) {
	setDefaultQuick(&c.Duration, 60*time.Second, 5*time.Second, quick)
	if len(c.Workers) == 0 {
		c.Workers = []int{1, 3}
	}
	setDefault(&c.OfferedRate, 10)
	setDefault(&c.Budget, Documented)
}

// runBudget reports, per worker count, the API requests the sandbox answered
// in the window against what the budget allows in it, the 429s, and the
// commands that failed or were dead-lettered only for waiting. Figures:
// "workers=<n>/api_requests", "…/allowance", "…/share", "…/rate_limited",
// "…/waiting_failures", "…/dead_lettered", "…/sent", "…/finished".
func runBudget(ctx context.Context, e *env, cfg Config) (Report, error) {
	c := cfg.Budget
	rep := Report{Title: fmt.Sprintf("%v of mixed commands at %s/s through ingest, budget %v (sandbox and workers)",
		c.Duration, num(c.OfferedRate), c.Budget)}
	t := Table{Header: []string{"workers", "window", "API requests answered (per s)", "budget in the window (reference)", "share of budget used", "429 answers", "commands sent / finished", "failed waiting for the limiter", "dead-lettered", "requests by operation"}}
	for _, n := range c.Workers {
		row, err := budgetPhase(ctx, e, cfg, n, &rep)
		if err != nil {
			return rep, err
		}
		t.add(row...)
	}
	rep.Tables = append(rep.Tables, t)
	rep.Notes = append(rep.Notes,
		"Mix: 5 creates, 3 updates and 2 comments in 10 commands, one POST each; updates and comments name a client created earlier in the run by client_ref.",
		fmt.Sprintf("Budget in the window: what %v allows from empty windows, %s (5/s for the first 40 s, then the minute window); the sandbox's counters give the requests (logins included) and 429s.", c.Budget, allowanceRule(c.Budget)),
		"Failed waiting for the limiter: `failed` result events whose api_message mentions the rate limiter; dead-lettered: every `dead_lettered` event. Both should be 0: waiting for the budget is not a failure.",
	)
	return rep, nil
}

func allowanceRule(b Budget) string {
	if b.PerMinute < 0 || b.PerSecond < 0 {
		return "the limit times the window"
	}
	return fmt.Sprintf("min(%d×t, %d) in each minute", b.PerSecond, b.PerMinute)
}

func budgetPhase(ctx context.Context, e *env, cfg Config, workers int, rep *Report) ([]string, error) {
	c := cfg.Budget
	s, err := openStack(ctx, e, fmt.Sprintf("budget-%dw", workers), c.Budget, withIngest)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.startWorkers(ctx, workers, c.Budget); err != nil {
		return nil, err
	}
	ev, err := followEvents(ctx, s.js)
	if err != nil {
		return nil, err
	}
	defer ev.stop()
	before, err := s.stats(ctx)
	if err != nil {
		return nil, err
	}
	e.logf("budget: %d worker(s), sending for %v", workers, c.Duration)

	ic := newIngestClient(s.ingestURL, 2)
	rng := rand.New(rand.NewPCG(1, uint64(workers)))
	type client struct {
		ref string
		k   int
	}
	var created []client
	sent := 0
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.OfferedRate))
	defer tick.Stop()
	start := time.Now()
	end := start.Add(c.Duration)
	for i := 0; time.Now().Before(end); i++ {
		var cmd commands.Command
		switch slot := i % 10; {
		case slot < 5 || len(created) == 0:
			cl := client{ref: "budget-" + strconv.Itoa(i), k: i}
			cmd = createCommand(1, cl.ref, seriesMain, cl.k)
			created = append(created, cl)
		case slot < 8:
			cl := created[rng.IntN(len(created))]
			cmd = newCommand(commands.TypeClientUpdate, 1, cl.ref, 0,
				clientFields{Name: fmt.Sprintf("Client %d v%d", cl.k, i), Phone: phone(seriesMain, cl.k)})
		default:
			cl := created[rng.IntN(len(created))]
			cmd = newCommand(commands.TypeCommentAdd, 1, cl.ref, 0, commands.CommentAddPayload{Text: fmt.Sprintf("note %d", i)})
		}
		if _, err := ic.post(ctx, []commands.Command{cmd}); err != nil {
			return nil, err
		}
		sent++
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := s.checkAlive(); err != nil {
			return nil, err
		}
	}
	window := time.Since(start)
	after, err := s.stats(ctx)
	if err != nil {
		return nil, err
	}
	counts := ev.counts()
	d := after.sub(before)
	allow := c.Budget.Allowance(window)
	share := float64(d.Requests) / allow

	key := fmt.Sprintf("workers=%d/", workers)
	rep.set(key+"api_requests", float64(d.Requests))
	rep.set(key+"allowance", allow)
	rep.set(key+"share", share)
	rep.set(key+"rate_limited", float64(d.RateLimited))
	rep.set(key+"waiting_failures", float64(counts.waiting))
	rep.set(key+"dead_lettered", float64(counts.deadLettered))
	rep.set(key+"sent", float64(sent))
	rep.set(key+"finished", float64(counts.terminal))
	failed := strconv.Itoa(counts.waiting)
	if other := counts.failed - counts.waiting; other > 0 {
		failed += fmt.Sprintf(" (other failed events: %d; classes: %s)", other, counts.classList())
	}
	return []string{
		strconv.Itoa(workers),
		dur(window),
		fmt.Sprintf("%d (%s/s)", d.Requests, num(rate(d.Requests, window))),
		fmt.Sprintf("%.0f (%s/s)", allow, num(allow/window.Seconds())),
		pct(share),
		strconv.Itoa(d.RateLimited),
		fmt.Sprintf("%d / %d", sent, counts.terminal),
		failed,
		strconv.Itoa(counts.deadLettered),
		strings.ReplaceAll(d.ops(), "client.", ""),
	}, nil
}
