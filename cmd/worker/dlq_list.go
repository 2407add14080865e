package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/dlq"
)

// dlqList implements "worker dlq list".
func dlqList(ctx context.Context, args []string, c cli) error {
	var (
		o opFlags
		f filterFlags
	)
	fs := newFlagSet("dlq list", "[filters] [--json]", "List the dead-lettered commands that match the filters, with counts per reason.", c)
	o.define(fs)
	f.define(fs, false)
	filter, err := f.parse(fs, args, c)
	if err != nil {
		return err
	}
	svc, closeNATS, err := connect(ctx, o.common, c, "", 0)
	if err != nil {
		return err
	}
	defer closeNATS()
	entries, sum, err := svc.List(ctx, filter)
	if err != nil {
		return err
	}
	if o.json {
		if entries == nil {
			entries = []dlq.Entry{}
		}
		if err := writeJSON(c.stdout, dlq.ListResponse{Entries: entries, Summary: sum}); err != nil {
			return err
		}
	} else {
		printTable(c.stdout, entries)
		printSummary(c.stdout, sum)
	}
	if len(entries) == 0 {
		return &exitError{exitNoMatch, errors.New("no entries match")}
	}
	return nil
}

// printTable prints entries as a table.
func printTable(w io.Writer, entries []dlq.Entry) {
	if len(entries) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED\tLOC\tTYPE\tCLIENT\tCLASS\tHTTP\tSTATUS\tREASON")
	for _, e := range entries {
		r := e.Record
		status := orDash(itoaNonZero(r.HTTPStatus))
		reason := r.Reason
		if e.Problem != "" {
			reason = e.Problem
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.DeadLetteredAt().UTC().Format(time.RFC3339),
			r.LocationID, orDash(string(r.Type)), orDash(e.Client()),
			orDash(string(r.ErrorClass)), status, statusText(e), oneLine(reason, 60))
	}
	_ = tw.Flush()
}

// printSummary prints the counts after a list.
func printSummary(w io.Writer, s dlq.Summary) {
	if s.Total == 0 {
		fmt.Fprintln(w, "no entries")
		return
	}
	var parts []string
	for _, st := range dlq.Statuses() {
		if n := s.ByStatus[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	fmt.Fprintf(w, "\n%d %s: %s\n", s.Total, plural(s.Total, "entry", "entries"), strings.Join(parts, ", "))
	fmt.Fprintln(w, "by reason:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range s.ByReason {
		reason := orDash(string(r.Class))
		if r.HTTPStatus > 0 {
			reason += " " + strconv.Itoa(r.HTTPStatus)
		}
		fmt.Fprintf(tw, "  %s\t%d\n", reason, r.Count)
	}
	_ = tw.Flush()
}

func statusText(e dlq.Entry) string {
	if e.Status == dlq.StatusResolved && e.Outcome != "" && e.Outcome != commands.OutcomeSucceeded {
		return string(e.Status) + " (" + string(e.Outcome) + ")"
	}
	return string(e.Status)
}
