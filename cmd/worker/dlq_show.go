package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/altegio-integrator/integrator/internal/dlq"
)

// dlqShow implements "worker dlq show".
func dlqShow(ctx context.Context, args []string, c cli) error {
	var o opFlags
	fs := newFlagSet("dlq show", "<id|seq> [--json]", "Show one dead-lettered command: the command, every failure detail, its replays.", c)
	o.define(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return usageErr("dlq show: want one command id or DLQ sequence")
	}
	svc, closeNATS, err := connect(ctx, o.common, c, "", 0)
	if err != nil {
		return err
	}
	defer closeNATS()
	entries, err := svc.Show(ctx, pos[0])
	if errors.Is(err, dlq.ErrNotFound) {
		return &exitError{exitNoMatch, err}
	}
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(c.stdout, dlq.ListResponse{Entries: entries, Summary: dlq.Summarize(entries)})
	}
	for i, e := range entries {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		printEntry(c.stdout, e)
	}
	return nil
}

// printEntry prints everything about one entry.
func printEntry(w io.Writer, e dlq.Entry) {
	r := e.Record
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "DLQ entry %d (%s)\n", e.Seq, statusText(e))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	row("command id", orDash(r.CommandID))
	row("type", orDash(string(r.Type)))
	row("location", strconv.FormatInt(r.LocationID, 10))
	row("client", orDash(e.Client())+keySuffix(r.ClientKey))
	if e.CorrelationID != "" {
		row("correlation id", e.CorrelationID)
	}
	row("received on", fmt.Sprintf("%s (COMMANDS seq %d)", r.Subject, r.StreamSeq))
	row("error class", orDash(string(r.ErrorClass)))
	row("http status", orDash(itoaNonZero(r.HTTPStatus)))
	row("reason", orDash(r.Reason))
	row("api message", orDash(r.APIMessage))
	for i, p := range r.FieldErrors {
		k := ""
		if i == 0 {
			k = "field errors"
		}
		row(k, orDash(p.Path)+": "+p.Reason)
	}
	row("attempts", strconv.Itoa(r.Attempts))
	row("replay generation", strconv.Itoa(r.Replay))
	row("first failure", ts(r.FirstFailureAt))
	row("last failure", ts(r.LastFailureAt))
	row("dead-lettered", ts(r.DeadLetteredAt))
	row("worker", orDash(r.WorkerID))
	if m := e.Mark; m != nil && m.Generation > 0 {
		row("replayed", fmt.Sprintf("generation %d at %s by %s (COMMANDS seq %d)", m.Generation, ts(m.ReplayedAt), m.By, m.CommandSeq))
	}
	if m := e.Mark; m != nil && m.State == dlq.MarkResolved {
		row("resolved", fmt.Sprintf("%s at %s", orDash(string(m.Outcome)), ts(m.ResolvedAt)))
	}
	if e.Problem != "" {
		row("problem", e.Problem)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "command:")
	if len(r.Command) > 0 {
		var v any
		if json.Unmarshal(r.Command, &v) == nil {
			b, _ := json.MarshalIndent(v, "  ", "  ")
			fmt.Fprintf(w, "  %s\n", b)
		}
	} else {
		fmt.Fprintf(w, "  (not JSON, %d bytes)\n", len(r.CommandRaw))
	}
	if len(r.Headers) > 0 {
		fmt.Fprintln(w, "headers:")
		h := nats.Header(r.Headers)
		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(h[k], ", "))
		}
	}
}

func keySuffix(k string) string {
	if k == "" {
		return ""
	}
	return " (key " + k + ")"
}
