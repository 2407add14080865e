package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/altegio-integrator/integrator/internal/dlq"
)

// dlqReplay implements "worker dlq replay".
func dlqReplay(ctx context.Context, args []string, c cli) error {
	var (
		o      opFlags
		f      filterFlags
		dryRun bool
		yes    bool
		rate   float64
		by     string
	)
	fs := newFlagSet("dlq replay", "(<id|seq>... | filters | --all) [--dry-run] [--yes] [--rate N]",
		"Republish dead-lettered commands to the command stream, after asking (no: exit 4).", c)
	o.define(fs)
	f.define(fs, true)
	fs.BoolVar(&dryRun, "dry-run", false, "only show what would be replayed")
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	fs.Float64(&rate, "rate", "DLQ_REPLAY_RATE", dlq.DefaultRate, "entries republished per second (keep well below the API budget)")
	fs.String(&by, "operator", "DLQ_OPERATOR", "", "who replays, recorded in marks and events (default user@host)")
	filter, err := f.parse(fs, args, c)
	if err != nil {
		return err
	}
	if rate <= 0 {
		return usageErr("--rate %v: want more than 0", rate)
	}
	svc, closeNATS, err := connect(ctx, o.common, c, by, rate)
	if err != nil {
		return err
	}
	defer closeNATS()
	plan, err := svc.Replay(ctx, filter, dlq.ReplayOptions{DryRun: true})
	if errors.Is(err, dlq.ErrEmptySelection) {
		return usageErr("dlq replay: give ids, sequences or filters, or --all")
	}
	if err != nil {
		return err
	}
	if o.json && dryRun {
		if err := writeJSON(c.stdout, plan); err != nil {
			return err
		}
		return noneLeft(plan)
	}
	fmt.Fprintf(c.stdout, "%d %s matched: %d to replay, %d skipped\n", plan.Matched, plural(plan.Matched, "entry", "entries"),
		len(plan.Planned), len(plan.Skipped))
	for _, s := range plan.Skipped {
		fmt.Fprintf(c.stdout, "  skip %d: %s\n", s.Seq, s.Reason)
	}
	if dryRun {
		if len(plan.Planned) > 0 {
			fmt.Fprintln(c.stdout, "would replay:")
			printTable(c.stdout, plan.Planned)
		}
		return noneLeft(plan)
	}
	if err := noneLeft(plan); err != nil {
		return err
	}
	if !yes {
		ok, err := confirm(ctx, c, fmt.Sprintf("Replay %d %s at %g/s?", len(plan.Planned), plural(len(plan.Planned), "entry", "entries"), rate))
		if err != nil {
			return &exitError{exitInterrupted, err}
		}
		if !ok {
			return &exitError{exitDeclined, errors.New("not confirmed; nothing replayed (use --yes in scripts)")}
		}
	}
	rep, err := svc.Replay(ctx, filter, dlq.ReplayOptions{Progress: func(p dlq.Progress) {
		if o.json {
			return
		}
		note := ""
		if p.Last.Duplicate {
			note = " (already published by an interrupted run)"
		}
		fmt.Fprintf(c.stdout, "[%d/%d] replayed seq %d as generation %d (command %s, COMMANDS seq %d)%s\n",
			p.Done, p.Total, p.Last.Seq, p.Last.Generation, p.Last.CommandID, p.Last.CommandSeq, note)
	}})
	if o.json {
		if jerr := writeJSON(c.stdout, rep); jerr != nil && err == nil {
			err = jerr
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{exitInterrupted, fmt.Errorf("interrupted after %d of %d; run the same command again to continue", len(rep.Replayed), len(rep.Replayed)+rep.Remaining)}
		}
		return fmt.Errorf("replay stopped after %d of %d (run again to continue): %w", len(rep.Replayed), len(rep.Replayed)+rep.Remaining, err)
	}
	if !o.json {
		fmt.Fprintf(c.stdout, "replayed %d %s; follow the outcomes with: worker events tail --outcome succeeded\n",
			len(rep.Replayed), plural(len(rep.Replayed), "entry", "entries"))
	}
	return nil
}

// noneLeft returns exit code 3 when a replay plan has nothing to replay.
func noneLeft(plan dlq.ReplayReport) error {
	switch {
	case plan.Matched == 0:
		return &exitError{exitNoMatch, errors.New("no entries match")}
	case len(plan.Planned) == 0:
		return &exitError{exitNoMatch, errors.New("nothing to replay: every matching entry is replayed or resolved")}
	}
	return nil
}
