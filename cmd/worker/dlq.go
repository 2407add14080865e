package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/envflag"
)

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

` + exitCodesHelp + `
An interrupted replay continues where it stopped when run again.
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
	}
	if isHelp(args[0]) {
		fmt.Fprint(c.stdout, dlqUsage)
		return flag.ErrHelp
	}
	fmt.Fprint(c.stderr, dlqUsage)
	return &exitError{exitUsage, fmt.Errorf("dlq: unknown command %q", args[0])}
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

// parse parses args with fs, on which f is defined, and returns the
// dlq.Filter of the flags and the positional ids or seqs. Errors are those
// of parse, and a filter that does not validate is a usage error (exit 2).
func (f *filterFlags) parse(fs *envflag.Set, args []string, c cli) (dlq.Filter, error) {
	refs, err := parse(fs, args)
	if err != nil {
		return dlq.Filter{}, err
	}
	out := dlq.Filter{
		LocationID: f.location, Type: commands.Type(f.typ), Class: commands.ErrorClass(f.class),
		HTTPStatus: f.httpStatus, ClientID: f.clientID, ClientRef: f.clientRef, Text: f.grep,
		Status: dlq.Status(f.status), All: f.all,
	}
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

// connect opens NATS and the DLQ service. The returned function closes
// the connection.
func connect(ctx context.Context, o common, c cli, operator string, rate float64) (*dlq.Service, func(), error) {
	log, nc, js, err := cliConnect(ctx, o, c)
	if err != nil {
		return nil, nil, err
	}
	svc, err := dlq.New(ctx, js, dlq.Config{Logger: log, Operator: operator, Rate: rate}) // no Registerer: the CLI exports no metrics
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return svc, func() { drainAndWait(nc) }, nil
}
