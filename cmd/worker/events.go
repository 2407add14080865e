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

const eventsUsage = `Usage: worker events tail [flags]

Follow result events (stream EVENTS) live, or from a point in time.
Run "worker events tail --help" for its flags.
`

// runEvents dispatches the events subcommands.
func runEvents(ctx context.Context, args []string, c cli) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, eventsUsage)
		return &exitError{exitUsage, errors.New("events: missing command")}
	}
	switch args[0] {
	case "tail":
		return eventsTail(ctx, args[1:], c)
	case "-h", "-help", "--help", "help":
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
		since    string
		location int64
		typ      string
		outcome  string
		noFollow bool
	)
	fs := newFlagSet("events tail", "[--since T] [--location N] [--type T] [--outcome O] [--json] [--no-follow]", c)
	o.define(fs)
	fs.StringVar(&since, "since", "", "start at this RFC 3339 time or duration ago (e.g. 1h); default: new events only (all with --no-follow)")
	fs.Int64Var(&location, "location", 0, "only this location id")
	fs.StringVar(&typ, "type", "", "only this command type, e.g. client.update")
	fs.StringVar(&outcome, "outcome", "", "only this outcome: succeeded, partially_succeeded, failed, dead_lettered, replayed, duplicate, superseded")
	fs.BoolVar(&noFollow, "no-follow", false, "print what is stored and exit instead of following")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("events tail: unexpected argument %q", pos[0])
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

	_, nc, js, err := cliConnect(o.common, c)
	if err != nil {
		return err
	}
	defer drainAndWait(nc)

	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{commands.EventFilter(location, op, commands.Outcome(outcome))}}
	switch {
	case !start.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	case noFollow:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	default:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := js.OrderedConsumer(cctx, topology.StreamEvents, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	if noFollow {
		if info := cons.CachedInfo(); info == nil || info.NumPending == 0 {
			return &exitError{exitNoMatch, errors.New("no events match")}
		}
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
