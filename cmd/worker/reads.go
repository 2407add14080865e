package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/readclient"
	"github.com/altegio-integrator/integrator/internal/worker"
)

// Both subcommands ask the workers' read service over NATS (a worker must
// run with --reads): they need no Altegio credentials, and their requests
// take the same budget as everything else.

const exportUsage = `Usage: worker export <command> [flags]

Export from the Altegio API through the workers' read service.

Commands:
  clients --location N [--after-id ID]   every client card of a location, as JSON lines

Run "worker export <command> --help" for its flags.
`

// exportClientsHelp describes "worker export clients".
const exportClientsHelp = `Write every client card of a location as JSON lines on standard output, in
ascending id, at the export share of the API budget, with a progress line
on standard error. Interrupted, resume with --after-id and the id of the
last line written (appending: >> clients.jsonl).`

// runExport implements "worker export clients".
func runExport(ctx context.Context, args []string, c cli) error {
	switch {
	case len(args) == 0:
		fmt.Fprint(c.stderr, exportUsage)
		return &exitError{exitUsage, errors.New("export: missing command")}
	case isHelp(args[0]):
		fmt.Fprint(c.stdout, exportUsage)
		return flag.ErrHelp
	case args[0] != "clients":
		fmt.Fprint(c.stderr, exportUsage)
		return &exitError{exitUsage, fmt.Errorf("export: unknown command %q", args[0])}
	}
	var (
		o        common
		location int64
		after    int64
	)
	fs := newFlagSet("export clients", "--location N [--after-id ID] > clients.jsonl", exportClientsHelp, c)
	o.define(fs, false)
	fs.Int64Var(&location, "location", 0, "the location id (required)")
	fs.Int64Var(&after, "after-id", 0, "export only the clients after this id (resume)")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErr("export clients: unexpected argument %q", pos[0])
	case location <= 0:
		return usageErr("export clients: --location is required")
	case after < 0:
		return usageErr("export clients: --after-id %d: want an id", after)
	}
	_, nc, _, err := cliConnect(ctx, o, c)
	if err != nil {
		return err
	}
	defer drainAndWait(nc)

	var last readclient.ExportProgress
	err = readclient.Export(ctx, nc, location, after, func(card json.RawMessage) error {
		_, err := fmt.Fprintf(c.stdout, "%s\n", card) // compact JSON: one line
		return err
	}, func(p readclient.ExportProgress) {
		last = p
		pages := "?"
		if p.Pages > 0 {
			pages = fmt.Sprint(p.Pages)
		}
		fmt.Fprintf(c.stderr, "\rexport: page %d/%s, %d clients, last id %d ", p.Page, pages, p.Exported, p.LastID)
	})
	fmt.Fprintln(c.stderr)
	switch {
	case err == nil:
		fmt.Fprintf(c.stderr, "export: done, %d clients\n", last.Exported)
		return nil
	case ctx.Err() != nil:
		fmt.Fprintf(c.stderr, "export: interrupted; resume with --after-id %d\n", last.LastID)
		return &exitError{exitInterrupted, ctx.Err()}
	}
	if last.LastID > after {
		fmt.Fprintf(c.stderr, "export: stopped; resume with --after-id %d\n", last.LastID)
	}
	return fmt.Errorf("export clients: %w", err)
}

// runCommands implements "worker commands": the commands of one client and
// their outcomes, newest first, from the workers' client history.
func runCommands(ctx context.Context, args []string, c cli) error {
	var (
		o        opFlags
		req      readclient.CommandsRequest
		location int64
		since    string
	)
	fs := newFlagSet("commands", "--location N (--client-ref R | --client-id ID) [--since T] [--limit N] [--cursor C] [--json]",
		"Print one client's commands and their outcomes, newest first (a worker must run with --reads).", c)
	o.define(fs)
	fs.Int64Var(&location, "location", 0, "the location id (required)")
	fs.StringVar(&req.ClientRef, "client-ref", "", "the client's client_ref")
	fs.Int64Var(&req.ClientID, "client-id", 0, "the Altegio client id")
	fs.StringVar(&since, "since", "", "only commands completed since this RFC 3339 time or duration ago (e.g. 24h)")
	fs.IntVar(&req.Limit, "limit", 50, "commands per page, at most 500")
	fs.StringVar(&req.Cursor, "cursor", "", "the cursor printed after the previous page")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErr("commands: unexpected argument %q", pos[0])
	case location <= 0:
		return usageErr("commands: --location is required")
	case (req.ClientRef == "") == (req.ClientID == 0):
		return usageErr("commands: name the client with --client-ref or --client-id (one of them)")
	}
	if since != "" {
		t, err := parseWhen(c, "since", since)
		if err != nil {
			return err
		}
		req.Since = t.UTC().Format(time.RFC3339Nano)
	}
	_, nc, _, err := cliConnect(ctx, o.common, c)
	if err != nil {
		return err
	}
	defer drainAndWait(nc)

	body, _ := json.Marshal(req)
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var page worker.HistoryPage
	if err := readclient.Ask(rctx, nc, location, commands.ReadCommands, body, &page); err != nil {
		return fmt.Errorf("commands: %w", err)
	}
	if len(page.Commands) == 0 {
		return &exitError{exitNoMatch, errors.New("no commands match")}
	}
	for _, r := range page.Commands {
		data, _ := json.Marshal(r)
		if err := printEvent(c, commands.EventSubject(r), data, o.json); err != nil {
			return err
		}
	}
	if page.Next != "" {
		fmt.Fprintf(c.stderr, "more: --cursor %s\n", page.Next)
	}
	return nil
}
