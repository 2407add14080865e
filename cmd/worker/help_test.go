package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// runNoEnv runs the binary's run in-process with an empty environment.
func runNoEnv(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = runIO(ctx, args, func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

// worker --help lists the commands (testdata/worker_help.golden is the text
// of the README), and so do help and -h.
func TestHelpListsTheCommands(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}} {
		stdout, stderr, err := runNoEnv(t, args...)
		if !errors.Is(err, flag.ErrHelp) || code(err) != 0 {
			t.Fatalf("worker %q: %v, want flag.ErrHelp (exit 0)", args, err)
		}
		if stderr != "" {
			t.Errorf("worker %q wrote to stderr: %q", args, stderr)
		}
		golden(t, "worker_help", stdout)
	}
}

// An unknown command is a usage error that lists the commands, for the
// binary and for every group of commands; help on a group lists its own.
func TestUnknownCommandListsTheCommands(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
		list    []string // lines of the list on stderr
	}{
		{[]string{"foo"}, `unknown command "foo"`, []string{"  run ", "  dlq list|show|replay|purge ", "  events tail ", "  version "}},
		{[]string{"help", "foo"}, `unknown command "foo"`, []string{"  run "}},
		{[]string{"dlq", "frobnicate"}, `dlq: unknown command "frobnicate"`, []string{"  list ", "  purge "}},
		{[]string{"dlq"}, "dlq: missing command", []string{"  show <id|seq> "}},
		{[]string{"webhooks", "frobnicate"}, `webhooks: unknown command "frobnicate"`, []string{"  list ", "  register --url URL ", "  unregister --url URL "}},
		{[]string{"events", "frobnicate"}, `events: unknown command "frobnicate"`, []string{"  tail "}},
		{[]string{"events"}, "events: missing command", []string{"  tail "}},
		{[]string{"export", "frobnicate"}, `export: unknown command "frobnicate"`, []string{"  clients "}},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			stdout, stderr, err := runNoEnv(t, tc.args...)
			if code(err) != exitUsage || err.Error() != tc.wantErr {
				t.Fatalf("err %v (exit %d), want %q (exit %d)", err, code(err), tc.wantErr, exitUsage)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			for _, want := range tc.list {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
		})
	}
}

func TestGroupHelpListsItsCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"dlq", "--help"}, []string{"Usage: worker dlq <command>", "  replay "}},
		{[]string{"help", "dlq"}, []string{"Usage: worker dlq <command>", "  replay "}},
		{[]string{"webhooks", "-h"}, []string{"Usage: worker webhooks <command>", "  unregister "}},
		{[]string{"events", "help"}, []string{"Usage: worker events <command>", "  tail "}},
		{[]string{"export", "--help"}, []string{"Usage: worker export <command>", "  clients "}},
	} {
		stdout, _, err := runNoEnv(t, tc.args...)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("worker %q: %v, want flag.ErrHelp", tc.args, err)
		}
		for _, want := range tc.want {
			if !strings.Contains(stdout, want) {
				t.Errorf("worker %q: stdout lacks %q:\n%s", tc.args, want, stdout)
			}
		}
	}
}

// Every command's --help has the one format of envflag.SetUsage: the usage
// line, a description, the flags with two dashes and the exit codes.
func TestCommandHelpHasOneFormat(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--help"}, {"help", "run"}, {"dlq", "list", "--help"}, {"dlq", "show", "--help"}, {"dlq", "replay", "--help"},
		{"dlq", "purge", "--help"}, {"events", "tail", "--help"}, {"export", "clients", "--help"}, {"commands", "--help"},
		{"webhooks", "list", "--help"}, {"webhooks", "register", "--help"}, {"webhooks", "unregister", "--help"},
	} {
		_, stderr, err := runNoEnv(t, args...)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("worker %q: %v, want flag.ErrHelp", args, err)
			continue
		}
		name := "worker " + strings.Join(args[:len(args)-1], " ")
		if args[0] == "help" {
			name = "worker " + args[1]
		}
		lines := strings.Split(stderr, "\n")
		if len(lines) < 5 || !strings.HasPrefix(lines[0], "Usage: "+name+" ") || lines[1] != "" || lines[2] == "" {
			t.Errorf("worker %q: help does not start with the usage line and a description:\n%s", args, stderr)
		}
		for _, want := range []string{"\nFlags:\n", "\n  --nats-url string\n", "($NATS_URL) (default \"nats://127.0.0.1:4222\")", "\nExit codes: 0 "} {
			if !strings.Contains(stderr, want) {
				t.Errorf("worker %q: help lacks %q:\n%s", args, want, stderr)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		stdout, _, err := runNoEnv(t, args...)
		if err != nil {
			t.Fatalf("worker %q: %v", args, err)
		}
		if want := "worker " + stack.Version() + "\n"; stdout != want {
			t.Errorf("worker %q printed %q, want %q", args, stdout, want)
		}
	}
	if _, _, err := runNoEnv(t, "version", "extra"); code(err) != exitUsage {
		t.Errorf("worker version extra: %v, want a usage error", err)
	}
}

// The flags of run still come first without the word run.
func TestFlagsFirstAreRun(t *testing.T) {
	_, stderr, err := runNoEnv(t, "--max-attempts", "many")
	if code(err) != exitUsage || !strings.Contains(err.Error(), "worker run:") {
		t.Fatalf("err %v (exit %d), want a usage error of run", err, code(err))
	}
	if !strings.Contains(stderr, "Usage: worker run [flags]") {
		t.Errorf("stderr lacks run's usage:\n%s", stderr)
	}
}

// A taken ops port fails at once, before NATS is tried (it is not there),
// naming the flag that chooses another.
func TestRunBusyPortNamesTheFlag(t *testing.T) {
	busy := testenv.BusyAddr(t)
	env := map[string]string{
		"NATS_URL":              "nats://" + testenv.FreeAddr(t),
		"WORKER_ADDR":           busy,
		"ALTEGIO_PARTNER_TOKEN": "partner",
		"ALTEGIO_USER_TOKEN":    "user",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	err := run(ctx, []string{"run"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("run returned %v after %v, want a listen error at once", err, time.Since(start))
	}
	testenv.ErrorSays(t, err, "address already in use", "--addr", busy)
}

// An unreachable NATS fails after --nats-connect-timeout with an error that
// names the flag and the variable, and not the password in the URL.
func TestUnreachableNATSNamesTheFlag(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens there
	env := map[string]string{
		"NATS_URL":                    "nats://alice:s3cret@" + addr,
		"WORKER_NATS_CONNECT_TIMEOUT": "300ms",
		"WORKER_ADDR":                 "127.0.0.1:0",
		"ALTEGIO_PARTNER_TOKEN":       "partner",
		"ALTEGIO_USER_TOKEN":          "user",
	}
	for _, args := range [][]string{{"run"}, {"dlq", "list"}, {"events", "tail"}} {
		t.Run(args[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := runIO(ctx, args, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
			if err == nil || ctx.Err() != nil {
				t.Fatalf("err %v, ctx %v: want an error before the test's deadline", err, ctx.Err())
			}
			testenv.ErrorSays(t, err, "connect to NATS at nats://alice:xxxxx@"+addr, "connection refused", "--nats-url", "$NATS_URL", "--nats-connect-timeout")
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
			if code(err) != exitFailure {
				t.Errorf("exit %d, want %d", code(err), exitFailure)
			}
		})
	}
}

func TestBadSettingNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"LOG_LEVEL": "loud"}, "(set --log-level or $LOG_LEVEL)"},
		{map[string]string{"LOG_FORMAT": "xml"}, "(set --log-format or $LOG_FORMAT)"},
		{map[string]string{"NATS_URL": "nats://alice:s3cret@[::1"}, "(set --nats-url or $NATS_URL)"},
		{map[string]string{"NATS_CREDS": "/no/such.creds"}, "(set --nats-creds or $NATS_CREDS)"},
		{map[string]string{"WORKER_RETRY_FOR": "soon"}, "$WORKER_RETRY_FOR"},
		{map[string]string{"ALTEGIO_LOCATION_WEIGHTS": "main"}, "(set --location-weights or $ALTEGIO_LOCATION_WEIGHTS)"},
		{map[string]string{"ALTEGIO_PARTNER_TOKEN": ""}, "ALTEGIO_PARTNER_TOKEN"},
	} {
		env := map[string]string{"ALTEGIO_PARTNER_TOKEN": "partner", "ALTEGIO_USER_TOKEN": "user", "WORKER_ADDR": "127.0.0.1:0",
			"NATS_URL": "nats://" + testenv.FreeAddr(t), "WORKER_NATS_CONNECT_TIMEOUT": "100ms"}
		for k, v := range tc.env {
			env[k] = v
		}
		err := run(context.Background(), []string{"run"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want one saying %q", tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: error %q shows the password", tc.env, err)
		}
	}
}
