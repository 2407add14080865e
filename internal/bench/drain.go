package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// The bare consumer's stream, apart from the integrator's.
const (
	bareStream  = "BENCH_BARE"
	bareSubject = "bench.bare.cmd"
)

// DrainConfig configures the drain scenario: preloaded creates with no
// budget and a sandbox without latency.
type DrainConfig struct {
	// Commands is the number of preloaded creates. Default 20000; 500 with
	// Quick.
	Commands int
	// Locations spreads the creates over this many locations, so the
	// sandbox's per-location phone check stays small. Default 10.
	Locations int
	// Workers is the number of worker processes. Default 1.
	Workers int
	// BareConcurrency is how many commands the bare consumer handles at
	// once. Default 32, the worker's default (8 partitions × 4 in flight).
	BareConcurrency int
	// CreateBatch is the worker's --create-batch. Default 1: each create
	// is its own request, the same HTTP call the bare consumer makes, so
	// the ratio compares the machinery around the call. Set 100 to see
	// what coalescing adds.
	CreateBatch int
	// Target is the worker/bare ratio to meet, for the report. Default 0.5.
	Target float64
}

func (c *DrainConfig) setDefaults(quick bool) {
	setDefaultQuick(&c.Commands, 20000, 500, quick)
	setDefault(&c.Locations, 10)
	setDefault(&c.Workers, 1)
	setDefault(&c.BareConcurrency, 32)
	setDefault(&c.Target, 0.5)
	setDefault(&c.CreateBatch, 1)
}

// runDrain reports the worker's commands per second against the bare
// consumer's, each on a fresh nats-server and sandbox. Figures:
// "bare_rate", "worker_rate", "ratio", "bare_requests", "worker_requests".
func runDrain(ctx context.Context, e *env, cfg Config) (Report, error) {
	c := cfg.Drain
	rep := Report{Title: fmt.Sprintf("%d creates preloaded over %d locations, no budget, sandbox without latency", c.Commands, c.Locations)}
	cmds := spreadCreates(cfg, "drain", c.Commands, c.Locations)

	bare, bareReq, err := drainBare(ctx, e, c, cmds)
	if err != nil {
		return rep, err
	}
	bareRate := rate(bare.Acked-1, time.Duration(bare.LastAck-bare.FirstAck))

	s, err := openStack(ctx, e, "drain-worker", Unlimited, noIngest)
	if err != nil {
		return rep, err
	}
	defer s.close()
	e.logf("drain: preloading %d commands for the worker", len(cmds))
	if err := publishAll(ctx, s.js, cmds); err != nil {
		return rep, err
	}
	ev, err := followEvents(ctx, s.js)
	if err != nil {
		return rep, err
	}
	defer ev.stop()
	s.workerArgs = []string{"--create-batch", strconv.Itoa(c.CreateBatch)}
	if err := s.startWorkers(ctx, c.Workers, Unlimited); err != nil {
		return rep, err
	}
	ids := commandIDs(cmds)
	if err := ev.waitAll(ctx, s, ids, "drain: worker"); err != nil {
		return rep, err
	}
	first, last, n := ev.completionSpan(ids)
	workerRate := rate(n-1, last.Sub(first))
	st, err := s.stats(ctx)
	if err != nil {
		return rep, err
	}
	counts := ev.counts()
	ratio := workerRate / bareRate

	rep.set("bare_rate", bareRate)
	rep.set("worker_rate", workerRate)
	rep.set("ratio", ratio)
	rep.set("bare_requests", float64(bareReq))
	rep.set("worker_requests", float64(st.Requests))
	t := Table{Header: []string{"consumer", "commands", "commands/s", "API requests", "vs bare"}}
	t.add(fmt.Sprintf("bare pull consumer, %d at once (reference)", c.BareConcurrency), strconv.Itoa(bare.Acked), num(bareRate), strconv.Itoa(bareReq), "100 %")
	t.add(fmt.Sprintf("%d worker process(es), budget %v, create batch %d", c.Workers, s.workerBudget, c.CreateBatch), fmt.Sprintf("%d (succeeded %d, dead-lettered %d)", n, counts.succeeded, counts.deadLettered),
		num(workerRate), fmt.Sprintf("%d: %s", st.Requests, st.ops()), fmt.Sprintf("%s (target ≥ %s)", pct(ratio), pct(c.Target)))
	rep.Tables = append(rep.Tables, t)
	rep.Notes = append(rep.Notes,
		"Rates are (commands − 1) over the time from the first to the last completion: the worker's CompletedAt of its result events, the bare consumer's acknowledgements; process start-up is left out of both.",
		"The bare consumer (`bench bare`, a separate process) reads the same command bodies from a plain JetStream pull consumer on a stream of its own, posts each payload to POST /clients/{location_id} with the API client's headers over one shared keep-alive HTTP transport, and acknowledges with DoubleAck; each consumer runs against its own fresh nats-server and sandbox.",
	)
	if bare.APIErrors > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("The bare consumer got %d answers other than 201.", bare.APIErrors))
	}
	return rep, nil
}

// drainBare runs the bare consumer over cmds' bodies and returns its report
// and the API requests the sandbox answered.
func drainBare(ctx context.Context, e *env, c DrainConfig, cmds []commands.Command) (BareReport, int, error) {
	var rep BareReport
	s, err := openStack(ctx, e, "drain-bare", Unlimited, noIngest)
	if err != nil {
		return rep, 0, err
	}
	defer s.close()
	if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: bareStream, Subjects: []string{bareSubject}, Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		return rep, 0, fmt.Errorf("bare stream: %w", err)
	}
	bodies := make([][]byte, len(cmds))
	for i, cmd := range cmds {
		bodies[i] = mustJSON(cmd)
	}
	e.logf("drain: preloading %d commands for the bare consumer", len(cmds))
	if err := publishRaw(ctx, s.js, bareSubject, bodies); err != nil {
		return rep, 0, err
	}
	// Read only once the process has exited (p.done), when nothing
	// writes to it any more.
	var out bytes.Buffer
	p, err := s.start(procSpec{name: "bare", path: s.bin(binBench), stdout: &out,
		env: childEnv("BENCH_BARE_PARTNER_TOKEN="+benchPartnerToken, "BENCH_BARE_USER_TOKEN="+benchUserToken),
		args: []string{"bare", "--nats-url", s.natsURL, "--stream", bareStream, "--api-url", s.apiURL(),
			"--count", strconv.Itoa(len(cmds)), "--concurrency", strconv.Itoa(c.BareConcurrency)},
	})
	if err != nil {
		return rep, 0, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return rep, 0, fmt.Errorf("bare consumer: %w", ctx.Err())
	}
	if p.waitErr != nil {
		return rep, 0, p.exitError()
	}
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &rep); err != nil {
		return rep, 0, fmt.Errorf("bare consumer report %q: %w", out.Bytes(), err)
	}
	st, err := s.stats(ctx)
	if err != nil {
		return rep, 0, err
	}
	return rep, st.Requests, nil
}
