package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/envflag"
	"github.com/altegio-integrator/integrator/internal/stack"
)

// cli is what an operator subcommand talks to.
type cli struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// now tells the time for relative --since values; time.Now if nil.
	now func() time.Time
}

func (c cli) timeNow() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

const dlqUsage = `Usage: worker dlq <command> [arguments] [flags]

Inspect, replay and purge dead-lettered commands.

Commands:
  list                        list entries (filters below), with counts per reason
  show <id|seq>               one entry: the command, every failure detail
  replay (<id|seq>... | filters | --all)
                              republish entries to the command stream
  purge (<id|seq>... | filters | --all)
                              delete entries from the DLQ

Run "worker dlq <command> --help" for its flags.

Exit codes: 0 ok, 1 error, 2 usage, 3 nothing matched, 130 interrupted
(a replay continues where it stopped when run again).
`

// runDLQ dispatches the dlq subcommands.
func runDLQ(ctx context.Context, args []string, c cli) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, dlqUsage)
		return &exitError{exitUsage, errors.New("dlq: missing command")}
	}
	switch args[0] {
	case "list":
		return dlqList(ctx, args[1:], c)
	case "show":
		return dlqShow(ctx, args[1:], c)
	case "replay":
		return dlqReplay(ctx, args[1:], c)
	case "purge":
		return dlqPurge(ctx, args[1:], c)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, dlqUsage)
		return flag.ErrHelp
	}
	fmt.Fprint(c.stderr, dlqUsage)
	return &exitError{exitUsage, fmt.Errorf("dlq: unknown command %q", args[0])}
}

// opFlags are the flags every operator subcommand shares.
type opFlags struct {
	common
	json bool
}

func (o *opFlags) define(fs *envflag.Set) {
	o.common.define(fs)
	fs.BoolVar(&o.json, "json", false, "print JSON instead of text")
}

// newFlagSet returns a flag set whose --help prints synopsis and flags.
func newFlagSet(name, synopsis string, c cli) *envflag.Set {
	fs := envflag.New("worker "+name, c.getenv, c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: worker %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nExit codes: 0 ok, 1 error, 2 usage, 3 nothing matched, 130 interrupted.\n")
	}
	return fs
}

// parse parses flags anywhere among the arguments and returns the
// positional ones. Errors other than --help are usage errors (exit 2).
func parse(fs *envflag.Set, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(io.Discard)
				return nil, err
			}
			return nil, &exitError{exitUsage, err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageErr is a usage error (exit 2).
func usageErr(format string, a ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, a...)}
}

// filterFlags are the selection flags of list, replay and purge.
type filterFlags struct {
	location   int64
	typ        string
	class      string
	httpStatus int
	since      string
	until      string
	clientID   int64
	clientRef  string
	grep       string
	status     string
	all        bool
}

func (f *filterFlags) define(fs *envflag.Set, withAll bool) {
	fs.Int64Var(&f.location, "location", 0, "only this location id")
	fs.StringVar(&f.typ, "type", "", "only this command type, e.g. client.create")
	fs.StringVar(&f.class, "class", "", "only this error class: "+joinClasses())
	fs.IntVar(&f.httpStatus, "http-status", 0, "only this HTTP status of the API's last answer")
	fs.StringVar(&f.since, "since", "", "dead-lettered at or after: RFC 3339 time, or a duration ago (e.g. 2h)")
	fs.StringVar(&f.until, "until", "", "dead-lettered before: RFC 3339 time, or a duration ago")
	fs.Int64Var(&f.clientID, "client-id", 0, "only this Altegio client id")
	fs.StringVar(&f.clientRef, "client-ref", "", "only this client_ref")
	fs.StringVar(&f.grep, "grep", "", "only entries whose error text contains this (case-insensitive)")
	fs.StringVar(&f.status, "status", "", "only this status: dead, replayed, failed_again, resolved")
	if withAll {
		fs.BoolVar(&f.all, "all", false, "select every entry (required when no id, seq or filter is given)")
	}
}

func joinClasses() string {
	var s []string
	for _, c := range commands.ErrorClasses() {
		s = append(s, string(c))
	}
	return strings.Join(s, ", ")
}

// filter builds the dlq.Filter of the flags and positional ids or seqs.
func (f *filterFlags) filter(c cli, refs []string) (dlq.Filter, error) {
	out := dlq.Filter{
		LocationID: f.location, Type: commands.Type(f.typ), Class: commands.ErrorClass(f.class),
		HTTPStatus: f.httpStatus, ClientID: f.clientID, ClientRef: f.clientRef, Text: f.grep,
		Status: dlq.Status(f.status), All: f.all,
	}
	var err error
	if out.Since, err = parseWhen(c, "since", f.since); err != nil {
		return dlq.Filter{}, err
	}
	if out.Until, err = parseWhen(c, "until", f.until); err != nil {
		return dlq.Filter{}, err
	}
	for _, r := range refs {
		if n, err := strconv.ParseUint(r, 10, 64); err == nil {
			out.Seqs = append(out.Seqs, n)
		} else {
			out.IDs = append(out.IDs, r)
		}
	}
	if err := out.Validate(); err != nil {
		return dlq.Filter{}, &exitError{exitUsage, err}
	}
	return out, nil
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(c cli, name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return c.timeNow().Add(-d), nil
	}
	return time.Time{}, usageErr("--%s %q: want an RFC 3339 time or a duration such as 2h", name, v)
}

// connect opens NATS and the DLQ service. The returned function closes
// the connection.
func connect(ctx context.Context, o common, c cli, operator string, rate float64) (*dlq.Service, func(), error) {
	log, nc, js, err := cliConnect(o, c)
	if err != nil {
		return nil, nil, err
	}
	svc, err := dlq.New(ctx, js, dlq.Config{Logger: log, Registerer: prometheus.NewRegistry(), Operator: operator, Rate: rate})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return svc, func() { drainAndWait(nc) }, nil
}

// cliConnect connects a subcommand to NATS as "worker-cli", logging with
// cliLogger; close the connection with drainAndWait.
func cliConnect(o common, c cli) (*slog.Logger, *nats.Conn, jetstream.JetStream, error) {
	log, err := cliLogger(o, c)
	if err != nil {
		return nil, nil, nil, &exitError{exitUsage, err}
	}
	o.nats.Name = "worker-cli"
	nc, js, err := stack.ConnectNATS(o.nats, log)
	return log, nc, js, err
}

// drainAndWait drains nc and waits, at most 2 s, until it is closed.
func drainAndWait(nc *nats.Conn) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if nc.Drain() != nil {
		return // already closed
	}
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
	}
}

// cliLogger logs to stderr; at the default level "info" the CLI logs
// warnings only, so that its own output stays readable.
func cliLogger(o common, c cli) (*slog.Logger, error) {
	level := o.logLevel
	if level == "info" {
		level = "warn"
	}
	return stack.NewLogger(level, o.logFormat, c.stderr)
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// dlqList implements "worker dlq list".
func dlqList(ctx context.Context, args []string, c cli) error {
	var (
		o opFlags
		f filterFlags
	)
	fs := newFlagSet("dlq list", "[filters] [--json]", c)
	o.define(fs)
	f.define(fs, false)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	filter, err := f.filter(c, pos)
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
		status := dash(strconv.Itoa(r.HTTPStatus), r.HTTPStatus == 0)
		reason := r.Reason
		if e.Problem != "" {
			reason = e.Problem
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.DeadLetteredAt().UTC().Format(time.RFC3339),
			r.LocationID, dash(string(r.Type), r.Type == ""), dash(e.Client(), e.Client() == ""),
			dash(string(r.ErrorClass), r.ErrorClass == ""), status, statusText(e), oneLine(reason, 60))
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
		reason := dash(string(r.Class), r.Class == "")
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

func dash(s string, empty bool) string {
	if empty {
		return "-"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// oneLine shortens s to n runes on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// dlqShow implements "worker dlq show".
func dlqShow(ctx context.Context, args []string, c cli) error {
	var o opFlags
	fs := newFlagSet("dlq show", "<id|seq> [--json]", c)
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
	row("command id", dash(r.CommandID, r.CommandID == ""))
	row("type", dash(string(r.Type), r.Type == ""))
	row("location", strconv.FormatInt(r.LocationID, 10))
	row("client", dash(e.Client(), e.Client() == "")+keySuffix(r.ClientKey))
	if e.CorrelationID != "" {
		row("correlation id", e.CorrelationID)
	}
	row("received on", fmt.Sprintf("%s (COMMANDS seq %d)", r.Subject, r.StreamSeq))
	row("error class", dash(string(r.ErrorClass), r.ErrorClass == ""))
	row("http status", dash(strconv.Itoa(r.HTTPStatus), r.HTTPStatus == 0))
	row("reason", dash(r.Reason, r.Reason == ""))
	row("api message", dash(r.APIMessage, r.APIMessage == ""))
	for i, p := range r.FieldErrors {
		k := ""
		if i == 0 {
			k = "field errors"
		}
		row(k, dash(p.Path, p.Path == "")+": "+p.Reason)
	}
	row("attempts", strconv.Itoa(r.Attempts))
	row("replay generation", strconv.Itoa(r.Replay))
	row("first failure", ts(r.FirstFailureAt))
	row("last failure", ts(r.LastFailureAt))
	row("dead-lettered", ts(r.DeadLetteredAt))
	row("worker", dash(r.WorkerID, r.WorkerID == ""))
	if m := e.Mark; m != nil && m.Generation > 0 {
		row("replayed", fmt.Sprintf("generation %d at %s by %s (COMMANDS seq %d)", m.Generation, ts(m.ReplayedAt), m.By, m.CommandSeq))
	}
	if m := e.Mark; m != nil && m.State == dlq.MarkResolved {
		row("resolved", fmt.Sprintf("%s at %s", dash(string(m.Outcome), m.Outcome == ""), ts(m.ResolvedAt)))
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

// confirm asks a yes/no question on stderr and reads the answer from
// stdin; anything but y or yes is no. It gives up when ctx ends.
func confirm(ctx context.Context, c cli, question string) (bool, error) {
	fmt.Fprintf(c.stderr, "%s [y/N] ", question)
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(c.stdin).ReadString('\n')
		answer <- strings.ToLower(strings.TrimSpace(line))
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(c.stderr)
		return false, ctx.Err()
	case a := <-answer:
		return a == "y" || a == "yes", nil
	}
}

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
	fs := newFlagSet("dlq replay", "(<id|seq>... | filters | --all) [--dry-run] [--yes] [--rate N]", c)
	o.define(fs)
	f.define(fs, true)
	fs.BoolVar(&dryRun, "dry-run", false, "only show what would be replayed")
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	fs.Float64(&rate, "rate", "DLQ_REPLAY_RATE", dlq.DefaultRate, "entries republished per second (keep well below the API budget)")
	fs.String(&by, "operator", "DLQ_OPERATOR", "", "who replays, recorded in marks and events (default user@host)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	filter, err := f.filter(c, pos)
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
			return errors.New("not confirmed; nothing replayed (use --yes in scripts)")
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

// dlqPurge implements "worker dlq purge".
func dlqPurge(ctx context.Context, args []string, c cli) error {
	var (
		o   opFlags
		f   filterFlags
		yes bool
	)
	fs := newFlagSet("dlq purge", "(<id|seq>... | filters | --all) [--yes]", c)
	o.define(fs)
	f.define(fs, true)
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	filter, err := f.filter(c, pos)
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
			return errors.New("not confirmed; nothing deleted (use --yes in scripts)")
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
