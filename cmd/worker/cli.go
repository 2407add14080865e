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
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// opFlags are the flags every operator subcommand shares.
type opFlags struct {
	common
	json bool
}

func (o *opFlags) define(fs *envflag.Set) {
	o.common.define(fs, false)
	fs.BoolVar(&o.json, "json", false, "print JSON instead of text")
}

// newFlagSet returns the flag set of "worker <name>", whose --help prints
// synopsis, description, flags and the exit codes (envflag.SetUsage).
func newFlagSet(name, synopsis, description string, c cli) *envflag.Set {
	fs := envflag.New("worker "+name, c.getenv, c.stderr)
	fs.SetUsage(synopsis, description, exitCodesHelp)
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

// cliConnect connects a subcommand to NATS as "worker-cli", logging with
// cliLogger, and fails after --nats-connect-timeout when NATS does not
// answer; close the connection with drainAndWait.
func cliConnect(ctx context.Context, o common, c cli) (*slog.Logger, *nats.Conn, jetstream.JetStream, error) {
	log, err := cliLogger(o, c)
	if err != nil {
		return nil, nil, nil, &exitError{exitUsage, err}
	}
	o.nats.Name = "worker-cli"
	nc, js, err := connectNATS(ctx, o, log)
	if err != nil && ctx.Err() != nil {
		return nil, nil, nil, &exitError{exitInterrupted, err}
	}
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

// orDash returns s, or "-" when it is empty: a cell that says "none".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// itoaNonZero returns n in decimal, or "" for 0 (no status, no count).
func itoaNonZero(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
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
