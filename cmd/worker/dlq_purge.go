package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/altegio-integrator/integrator/internal/dlq"
)

// dlqPurge implements "worker dlq purge".
func dlqPurge(ctx context.Context, args []string, c cli) error {
	var (
		o   opFlags
		f   filterFlags
		yes bool
	)
	fs := newFlagSet("dlq purge", "(<id|seq>... | filters | --all) [--yes]", "Delete dead-lettered commands from the DLQ, after asking (no: exit 4).", c)
	o.define(fs)
	f.define(fs, true)
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	filter, err := f.parse(fs, args, c)
	if err != nil {
		return err
	}
	if !filter.All && !filter.Selective() {
		return usageErr("dlq purge: give ids, sequences or filters, or --all")
	}
	svc, closeNATS, err := connect(ctx, o.common, c, "", 0)
	if err != nil {
		return err
	}
	defer closeNATS()
	entries, _, err := svc.List(ctx, filter)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return &exitError{exitNoMatch, errors.New("no entries match")}
	}
	if !yes {
		printTable(c.stderr, entries)
		ok, err := confirm(ctx, c, fmt.Sprintf("Delete %d %s from the DLQ? This cannot be undone.", len(entries), plural(len(entries), "entry", "entries")))
		if err != nil {
			return &exitError{exitInterrupted, err}
		}
		if !ok {
			return &exitError{exitDeclined, errors.New("not confirmed; nothing deleted (use --yes in scripts)")}
		}
	}
	// Purge exactly what was shown.
	sel := dlq.Filter{}
	for _, e := range entries {
		sel.Seqs = append(sel.Seqs, e.Seq)
	}
	rep, err := svc.Purge(ctx, sel)
	if o.json {
		if jerr := writeJSON(c.stdout, rep); jerr != nil && err == nil {
			err = jerr
		}
	} else {
		fmt.Fprintf(c.stdout, "purged %d %s\n", len(rep.Deleted), plural(len(rep.Deleted), "entry", "entries"))
	}
	if err != nil && ctx.Err() != nil {
		return &exitError{exitInterrupted, err}
	}
	return err
}
