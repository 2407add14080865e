package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

const eventsUsage = `Usage: worker events <command> [flags]

Result events (stream EVENTS): one per command carried out.

Commands:
  tail   print the last events, then follow new ones

Run "worker events <command> --help" for its flags.
`

// runEvents dispatches the events subcommands.
func runEvents(ctx context.Context, args []string, c cli) error {
	switch {
	case len(args) == 0:
		fmt.Fprint(c.stderr, eventsUsage)
		return &exitError{exitUsage, errors.New("events: missing command")}
	case args[0] == "tail":
		return eventsTail(ctx, args[1:], c)
	case isHelp(args[0]):
		fmt.Fprint(c.stdout, eventsUsage)
		return flag.ErrHelp
	}
	fmt.Fprint(c.stderr, eventsUsage)
	return &exitError{exitUsage, fmt.Errorf("events: unknown command %q", args[0])}
}

// eventsTail implements "worker events tail": an ordered consumer on the
// EVENTS stream, filtered on the subject altegio.evt.<location>.<op>.<outcome>.
func eventsTail(ctx context.Context, args []string, c cli) error {
	var (
		o        opFlags
		last     int
		all      bool
		since    string
		location int64
		typ      string
		outcome  string
		noFollow bool
	)
	fs := newFlagSet("events tail", "[--last N | --since T | --all] [--location N] [--type T] [--outcome O] [--json] [--no-follow]",
		"Print the last stored result events (stream EVENTS) that match, then follow\nnew ones until Ctrl-C; with --no-follow, print the stored ones and exit.", c)
	o.define(fs)
	fs.IntVar(&last, "last", 10, "start with the last N stored events that match (0: only new ones)")
	fs.StringVar(&since, "since", "", "instead, start at this RFC 3339 time or duration ago (e.g. 1h)")
	fs.BoolVar(&all, "all", false, "instead, start with the first stored event")
	fs.Int64Var(&location, "location", 0, "only this location id")
	fs.StringVar(&typ, "type", "", "only this command type, e.g. client.update")
	fs.StringVar(&outcome, "outcome", "", "only this outcome: succeeded, partially_succeeded, failed, dead_lettered, replayed, duplicate, superseded")
	fs.BoolVar(&noFollow, "no-follow", false, "print the stored events that --last, --since or --all choose, then exit (3 when there are none)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("events tail: unexpected argument %q", pos[0])
	}
	lastGiven := false
	fs.Visit(func(f *flag.Flag) { lastGiven = lastGiven || f.Name == "last" })
	if (lastGiven && since != "") || (lastGiven && all) || (since != "" && all) {
		return usageErr("events tail: choose one of --last, --since and --all")
	}
	if last < 0 {
		return usageErr("--last %d: want 0 or more", last)
	}
	start, err := parseWhen(c, "since", since)
	if err != nil {
		return err
	}
	var op string
	if location < 0 {
		return usageErr("--location %d: want a positive id", location)
	}
	if typ != "" {
		if !commands.Type(typ).Valid() {
			return usageErr("--type %q is not a command type", typ)
		}
		op = commands.Type(typ).Op()
	}
	if outcome != "" && !commands.Outcome(outcome).Valid() {
		return usageErr("--outcome %q is not an outcome", outcome)
	}

	_, nc, js, err := cliConnect(ctx, o.common, c)
	if err != nil {
		return err
	}
	defer drainAndWait(nc)

	filter := commands.EventFilter(location, op, commands.Outcome(outcome))
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch {
	case !start.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	case all:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case last == 0:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	default:
		seq, err := lastStart(cctx, js, filter, uint64(last))
		if err != nil {
			return fmt.Errorf("find the last %d events: %w", last, err)
		}
		if seq == 0 { // nothing stored
			cfg.DeliverPolicy = jetstream.DeliverNewPolicy
		} else {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
		}
	}
	cons, err := js.OrderedConsumer(cctx, topology.StreamEvents, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	var pending uint64
	if info := cons.CachedInfo(); info != nil {
		pending = info.NumPending
	}
	if noFollow && pending == 0 {
		return &exitError{exitNoMatch, errors.New("no events match")}
	}
	// From lastStart's sequence at least --last events match: skip the
	// surplus, counted when the consumer was created.
	var skip uint64
	if cfg.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && pending > uint64(last) {
		skip = pending - uint64(last)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C ends a tail
			}
			return fmt.Errorf("follow events: %w", err)
		}
		if skip > 0 {
			skip--
			continue
		}
		if err := printEvent(c, m.Subject(), m.Data(), o.json); err != nil {
			return err
		}
		if noFollow {
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				return nil
			}
		}
	}
}

// lastStart returns a sequence of the EVENTS stream from which at least n
// stored events match filter (all of them when fewer do), so that a tail
// started there and skipping the surplus prints the last n; 0 when the
// stream is empty.
//
// JetStream has no "last n of a filter" deliver policy (DeliverLast is the
// last one, DeliverLastPerSubject the last of every subject, one per
// location, op and outcome). But a consumer's info counts the matching
// messages from its start sequence to the end (NumPending), and the server
// counts them from its subject index without reading them. So lastStart
// probes: a consumer from the stream's last sequence − w + 1, the window w
// doubling from n until it counts n matches or reaches the first sequence.
// A common filter needs one probe and no skip; a rare one about
// log2(stream/n) probes and skips at most the matches of the last window's
// older half; no probe reads a message. Each probe is an ephemeral consumer
// deleted at once (an inactive threshold removes it should the delete
// fail), which the deploy/nats audit user may create and delete.
func lastStart(ctx context.Context, js jetstream.JetStream, filter string, n uint64) (uint64, error) {
	s, err := js.Stream(ctx, topology.StreamEvents)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	first, end := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 {
		return 0, nil
	}
	for w := n; ; w *= 2 {
		if end-first+1 <= w {
			return first, nil
		}
		from := end - w + 1
		matches, err := countFrom(ctx, s, filter, from)
		if err != nil {
			return 0, err
		}
		if matches >= n {
			return from, nil
		}
	}
}

// countFrom returns how many messages of s from seq on match filter.
func countFrom(ctx context.Context, s jetstream.Stream, filter string, seq uint64) (uint64, error) {
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       seq,
		FilterSubject:     filter,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return 0, err
	}
	info := cons.CachedInfo()
	_ = s.DeleteConsumer(ctx, info.Name) // else gone after the inactive threshold
	return info.NumPending, nil
}

// printEvent prints one event: the body as one JSON line with --json,
// else one readable line.
func printEvent(c cli, subject string, data []byte, asJSON bool) error {
	if asJSON {
		_, err := fmt.Fprintf(c.stdout, "%s\n", strings.TrimSpace(string(data)))
		return err
	}
	if strings.HasSuffix(subject, ".account.needs_attention") {
		var a struct {
			LocationID int64     `json:"location_id"`
			Account    string    `json:"account"`
			Reason     string    `json:"reason"`
			CommandID  string    `json:"command_id"`
			At         time.Time `json:"at"`
		}
		_ = json.Unmarshal(data, &a)
		_, err := fmt.Fprintf(c.stdout, "%s  %-13s  account %s  loc %d  %s  %s\n", a.At.UTC().Format(time.RFC3339),
			"attention", orDash(a.Account), a.LocationID, a.CommandID, oneLine(a.Reason, 80))
		return err
	}
	var r commands.Result
	if err := json.Unmarshal(data, &r); err != nil {
		_, err := fmt.Fprintf(c.stdout, "(undecodable event on %s)\n", subject)
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-13s  %-21s  loc %d", r.CompletedAt.UTC().Format(time.RFC3339), r.Outcome, r.Type, r.LocationID)
	switch {
	case r.ClientRef != "":
		fmt.Fprintf(&b, "  ref %s", r.ClientRef)
	case r.ClientID > 0:
		fmt.Fprintf(&b, "  id %d", r.ClientID)
	}
	fmt.Fprintf(&b, "  %s", r.CommandID)
	if r.Replay > 0 {
		fmt.Fprintf(&b, "  replay %d", r.Replay)
	}
	if r.ErrorClass != "" {
		fmt.Fprintf(&b, "  %s", r.ErrorClass)
		if r.HTTPStatus > 0 {
			fmt.Fprintf(&b, " %d", r.HTTPStatus)
		}
	}
	if msg := cmpStr(r.APIMessage, r.Note); msg != "" {
		fmt.Fprintf(&b, "  %s", oneLine(msg, 80))
	}
	_, err := fmt.Fprintln(c.stdout, b.String())
	return err
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
