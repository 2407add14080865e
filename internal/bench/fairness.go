package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// The locations of the fairness scenario.
const (
	locationA = 1 // the backlog
	locationB = 2 // one command a second
)

// FairnessConfig configures the fairness scenario.
type FairnessConfig struct {
	// Backlog is the number of commands preloaded at location A. Default
	// 5000; 200 with Quick.
	Backlog int
	// BacklogType is what they are: "comment" (default), "update" (both
	// addressing Clients clients created at the sandbox beforehand) or
	// "create".
	BacklogType string
	// Clients is how many clients the comments or updates address.
	// Default 300; 20 with Quick.
	Clients int
	// Reference is how long location B's commands are sent alone first,
	// for the reference latency. Default 10s; 3s with Quick.
	Reference time.Duration
	// Duration is how long B's commands are sent with the backlog. Default
	// 60s; 5s with Quick.
	Duration time.Duration
	// Settle bounds the wait for B's last commands after each phase.
	// Default 30s; 5s with Quick.
	Settle time.Duration
	// Workers is the number of worker processes. Default 1.
	Workers int
	// Budget is what the sandbox enforces and the workers share. Default
	// Documented.
	Budget Budget
	// Target is the p99 to meet, for the report. Default 5s.
	Target time.Duration
}

func (c *FairnessConfig) setDefaults(quick bool) {
	setDefaultQuick(&c.Backlog, 5000, 200, quick)
	setDefault(&c.BacklogType, "comment")
	setDefaultQuick(&c.Clients, 300, 20, quick)
	setDefaultQuick(&c.Reference, 10*time.Second, 3*time.Second, quick)
	setDefaultQuick(&c.Duration, 60*time.Second, 5*time.Second, quick)
	setDefaultQuick(&c.Settle, 30*time.Second, 5*time.Second, quick)
	setDefault(&c.Workers, 1)
	setDefault(&c.Budget, Documented)
	setDefault(&c.Target, 5*time.Second)
}

// runFairness sends one create a second at location B, first alone (the
// reference), then with a backlog preloaded at location A, and reports B's
// latency from accept (the 202) to its terminal result event. Figures:
// "reference_p50_seconds", "reference_p99_seconds", "p50_seconds",
// "p99_seconds" (a lower bound when unfinished), "b_sent", "b_unfinished",
// "a_finished", "api_requests", "rate_limited".
func runFairness(ctx context.Context, e *env, cfg Config) (Report, error) {
	c := cfg.Fairness
	rep := Report{Title: fmt.Sprintf("%d %s commands preloaded at location %d, one create a second at location %d, %d worker(s), budget %v",
		c.Backlog, c.BacklogType, locationA, locationB, c.Workers, c.Budget)}
	switch c.BacklogType {
	case "comment", "update", "create":
	default:
		return rep, fmt.Errorf("backlog type %q: want comment, update or create", c.BacklogType)
	}
	s, err := openStack(ctx, e, "fairness", c.Budget, withIngest)
	if err != nil {
		return rep, err
	}
	defer s.close()
	backlog, err := fairnessBacklog(ctx, s, cfg)
	if err != nil {
		return rep, err
	}
	if err := s.startWorkers(ctx, c.Workers, c.Budget); err != nil {
		return rep, err
	}
	ev, err := followEvents(ctx, s.js)
	if err != nil {
		return rep, err
	}
	defer ev.stop()
	ic := newIngestClient(s.ingestURL, 2)

	e.logf("fairness: location %d alone for %v", locationB, c.Reference)
	refLat, err := sendB(ctx, s, ev, ic, 0, c.Reference, c.Settle)
	if err != nil {
		return rep, err
	}

	before, err := s.stats(ctx)
	if err != nil {
		return rep, err
	}
	e.logf("fairness: preloading %d commands at location %d", len(backlog), locationA)
	start := time.Now()
	if err := publishAll(ctx, s.js, backlog); err != nil {
		return rep, err
	}
	preload := time.Since(start)
	e.logf("fairness: location %d with the backlog for %v", locationB, c.Duration)
	lat, err := sendB(ctx, s, ev, ic, len(refLat), c.Duration, c.Settle)
	if err != nil {
		return rep, err
	}
	window := time.Since(start)
	after, err := s.stats(ctx)
	if err != nil {
		return rep, err
	}
	d := after.sub(before)
	aFinished := 0
	for _, cmd := range backlog {
		if _, ok := ev.lookup(cmd.ID); ok {
			aFinished++
		}
	}

	t := Table{Header: []string{"location B", "commands", "p50 accept → result", "p99 accept → result", "unfinished", "location A finished"}}
	rp50, rp99 := percentile(refLat, 50), percentile(refLat, 99)
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	t.add("alone (reference)", strconv.Itoa(len(refLat)), rp50.String(), rp99.String(), strconv.Itoa(unfinished(refLat)), "—")
	t.add(fmt.Sprintf("with %d %ss preloaded at A", len(backlog), c.BacklogType), strconv.Itoa(len(lat)), p50.String(), p99.String(),
		strconv.Itoa(unfinished(lat)), fmt.Sprintf("%d of %d", aFinished, len(backlog)))
	rep.Tables = append(rep.Tables, t)
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("Target: B's p99 ≤ %v. Latency is from the 202 of ingest to the terminal result event, read by the bench; a command without one after %v of settling counts as unfinished, with its wait so far.", c.Target, c.Settle),
		fmt.Sprintf("With the backlog: %d API requests in %v (%s/s; budget %v), %d answered 429 (%s); backlog published straight to JetStream in %v.",
			d.Requests, dur(window), num(rate(d.Requests, window)), c.Budget, d.RateLimited, d.ops(), dur(preload)),
	)
	rep.set("reference_p50_seconds", rp50.d.Seconds())
	rep.set("reference_p99_seconds", rp99.d.Seconds())
	rep.set("p50_seconds", p50.d.Seconds())
	rep.set("p99_seconds", p99.d.Seconds())
	rep.set("b_sent", float64(len(lat)))
	rep.set("b_unfinished", float64(unfinished(lat)))
	rep.set("a_finished", float64(aFinished))
	rep.set("api_requests", float64(d.Requests))
	rep.set("rate_limited", float64(d.RateLimited))
	return rep, nil
}

func unfinished(ls []latency) int {
	n := 0
	for _, l := range ls {
		if !l.finished {
			n++
		}
	}
	return n
}

// fairnessBacklog builds the commands of location A, creating the clients
// they address at the sandbox first (bulk calls, a few requests).
func fairnessBacklog(ctx context.Context, s *stack, cfg Config) ([]commands.Command, error) {
	c := cfg.Fairness
	cmds := make([]commands.Command, c.Backlog)
	if c.BacklogType == "create" {
		for k := range cmds {
			cmds[k] = createCommand(locationA, cfg.ref("a", k), seriesMain, k)
		}
		return cmds, nil
	}
	seeds := make([]clientFields, c.Clients)
	for k := range seeds {
		seeds[k] = clientFields{Name: fmt.Sprintf("Seed %d", k), Phone: phone(seriesSeed, k)}
	}
	ids, _, err := s.api().bulkCreatePaced(ctx, locationA, seeds, c.Budget.PerSecond)
	if err != nil {
		return nil, fmt.Errorf("seed clients: %w", err)
	}
	for k := range cmds {
		i := k % len(ids)
		if c.BacklogType == "update" {
			cmds[k] = newCommand(commands.TypeClientUpdate, locationA, "", ids[i], clientFields{Name: fmt.Sprintf("Seed %d v%d", i, k), Phone: phone(seriesSeed, i)})
		} else {
			cmds[k] = newCommand(commands.TypeCommentAdd, locationA, "", ids[i], commands.CommentAddPayload{Text: fmt.Sprintf("backlog %d", k)})
		}
	}
	return cmds, nil
}

// sendB posts one create a second at location B for d, then waits up to
// settle for their results, and returns each one's latency. first numbers
// the clients.
func sendB(ctx context.Context, s *stack, ev *events, ic ingestClient, first int, d, settle time.Duration) ([]latency, error) {
	type sentCmd struct {
		id       string
		accepted time.Time
	}
	var sent []sentCmd
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.Now().Add(d)
	for k := first; time.Now().Before(end); k++ {
		cmd := createCommand(locationB, fmt.Sprintf("b-%d", k), seriesOther, k)
		if _, err := ic.post(ctx, []commands.Command{cmd}); err != nil {
			return nil, err
		}
		sent = append(sent, sentCmd{id: cmd.ID, accepted: time.Now()})
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ids := make([]string, len(sent))
	for i, c := range sent {
		ids[i] = c.id
	}
	// Unfinished commands after settle are reported, not an error, unless
	// the run ended or a process exited.
	settleCtx, cancel := context.WithTimeout(ctx, settle)
	err := ev.waitAll(settleCtx, s, ids, "fairness: location B")
	cancel()
	if err != nil && (ctx.Err() != nil || s.checkAlive() != nil) {
		return nil, err
	}
	now := time.Now()
	out := make([]latency, len(sent))
	for i, c := range sent {
		if t, ok := ev.lookup(c.id); ok {
			out[i] = latency{d: t.received.Sub(c.accepted), finished: true}
		} else {
			out[i] = latency{d: now.Sub(c.accepted)}
		}
	}
	return out, nil
}
