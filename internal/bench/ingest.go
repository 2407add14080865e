package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// IngestConfig configures the ingest scenario.
type IngestConfig struct {
	// Commands is the number of commands sent each way. Default 5000; 300
	// with Quick.
	Commands int
	// Producers is the number of concurrent HTTP producers. Default 16; 4
	// with Quick.
	Producers int
	// Batch is the commands per batched POST. Default 10.
	Batch int
	// TargetSingle and TargetBatched are the shares of the raw publish rate
	// to meet, for the report. Defaults 0.1 and 0.5.
	TargetSingle, TargetBatched float64
}

func (c *IngestConfig) setDefaults(quick bool) {
	setDefaultQuick(&c.Commands, 5000, 300, quick)
	setDefaultQuick(&c.Producers, 16, 4, quick)
	setDefault(&c.Batch, 10)
	setDefault(&c.TargetSingle, 0.1)
	setDefault(&c.TargetBatched, 0.5)
}

// runIngest reports the commands per second accepted by one ingest process
// (single and batched POSTs) against asynchronous JetStream publishes of
// the same commands from the bench to the same nats-server. No worker runs.
// Figures: "raw_rate", "single_rate", "batched_rate", "single_ratio",
// "batched_ratio".
func runIngest(ctx context.Context, e *env, cfg Config) (Report, error) {
	c := cfg.Ingest
	rep := Report{Title: fmt.Sprintf("%d client.create each way, %d HTTP producers, one ingest process, no worker", c.Commands, c.Producers)}
	s, err := newStack(e, "ingest")
	if err != nil {
		return rep, err
	}
	defer s.close()
	if err := s.startNATS(ctx); err != nil {
		return rep, err
	}
	if err := s.startIngest(ctx); err != nil {
		return rep, err
	}
	set := func(prefix string) []commands.Command { return spreadCreates(cfg, prefix, c.Commands, 1) }

	raw := set("raw")
	start := time.Now()
	if err := publishAll(ctx, s.js, raw); err != nil {
		return rep, err
	}
	rawRate := rate(len(raw), time.Since(start))
	e.logf("ingest: raw publish %s/s", num(rawRate))

	ic := newIngestClient(s.ingestURL, c.Producers)
	post := func(cmds []commands.Command, batch int) (float64, error) {
		start := time.Now()
		_, last, err := ic.postAll(ctx, cmds, batch, c.Producers)
		if err != nil {
			return 0, err
		}
		return rate(len(cmds), last.Sub(start)), nil
	}
	single, err := post(set("single"), 1)
	if err != nil {
		return rep, err
	}
	e.logf("ingest: single POSTs %s/s", num(single))
	batched, err := post(set("batched"), c.Batch)
	if err != nil {
		return rep, err
	}
	if err := s.checkAlive(); err != nil {
		return rep, err
	}

	rep.set("raw_rate", rawRate)
	rep.set("single_rate", single)
	rep.set("batched_rate", batched)
	rep.set("single_ratio", single/rawRate)
	rep.set("batched_ratio", batched/rawRate)
	t := Table{Header: []string{"path", "commands", "commands/s", "vs raw publish", "target"}}
	t.add("raw JetStream async publish, one process (reference)", strconv.Itoa(c.Commands), num(rawRate), "100 %", "—")
	t.add(fmt.Sprintf("ingest, 1 command per POST, %d producers", c.Producers), strconv.Itoa(c.Commands), num(single), pct(single/rawRate), "≥ "+pct(c.TargetSingle))
	t.add(fmt.Sprintf("ingest, %d commands per POST, %d producers", c.Batch, c.Producers), strconv.Itoa(c.Commands), num(batched), pct(batched/rawRate), "≥ "+pct(c.TargetBatched))
	rep.Tables = append(rep.Tables, t)
	rep.Notes = append(rep.Notes,
		"Each rate runs from the first send to the last PubAck (raw) or the last 202 (ingest); the three runs go one after another to the same nats-server, raw first, with the same subjects, headers and bodies (fresh command ids each run).",
	)
	return rep, nil
}
