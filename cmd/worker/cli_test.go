package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/topology/topotest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixedDay is the day of every fixture time; other times are the test's
// own clock and are replaced by <time> before comparing.
const fixedDay = "2025-01-15"

var timeRE = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`)

func normalize(s string) string {
	return timeRE.ReplaceAllStringFunc(s, func(t string) string {
		if strings.HasPrefix(t, fixedDay) {
			return t
		}
		return "<time>"
	})
}

// golden compares got with testdata/<name>.golden, or rewrites it with
// -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	got = normalize(got)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// code is the exit code main would use for err.
func code(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	default:
		return exitCode(err)
	}
}

// cliEnv is a JetStream server with the topology and fixture DLQ entries
// and events.
type cliEnv struct {
	t   *testing.T
	js  jetstream.JetStream
	env map[string]string
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	n, js := jetStreamWithTopology(t)
	e := &cliEnv{t: t, js: js, env: map[string]string{"NATS_URL": n.URL(), "DLQ_OPERATOR": "tester"}}
	for _, r := range fixtureRecords() {
		e.publish("altegio.dlq."+itoa(r.LocationID)+"."+r.Type.Op(), r.MsgID(), r)
	}
	for _, r := range fixtureEvents() {
		e.publish(commands.EventSubject(r), r.MsgID(), r)
	}
	return e
}

// jetStreamWithTopology runs a JetStream server with the product topology
// applied, as a worker applies it at start.
func jetStreamWithTopology(t *testing.T) (*testenv.NATS, jetstream.JetStream) {
	t.Helper()
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	topotest.Apply(t, js)
	return n, js
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (e *cliEnv) publish(subject, id string, v any) {
	e.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: b, Header: nats.Header{"Nats-Msg-Id": {id}}}); err != nil {
		e.t.Fatal(err)
	}
}

// run runs the worker binary's run in-process with stdin.
func (e *cliEnv) run(stdin string, args ...string) (stdout, stderr string, exit int) {
	e.t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runIO(ctx, args, func(k string) string { return e.env[k] }, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code(err)
}

func at(h int) time.Time { return time.Date(2025, 1, 15, h, 0, 0, 0, time.UTC) }

func fixtureRecords() []commands.DLQRecord {
	rec := func(n int, t commands.Type, loc int64, ref string, clientID int64, class commands.ErrorClass, status int, reason, msg string, h int) commands.DLQRecord {
		id := "0193f3c2-0000-7000-8000-00000000000" + string(rune('0'+n))
		c := map[string]any{"id": id, "type": t, "location_id": loc}
		if ref != "" {
			c["client_ref"] = ref
		}
		if clientID > 0 {
			c["client_id"] = clientID
		}
		if t != commands.TypeClientDelete {
			c["payload"] = map[string]any{"name": "Ann", "phone": "+13155550100"}
		}
		b, _ := json.Marshal(c)
		cmd := commands.Command{ID: id, ClientRef: ref, ClientID: clientID}
		return commands.DLQRecord{SchemaVersion: 1, Command: b, StreamSeq: uint64(10 + n), CommandID: id, Type: t, LocationID: loc,
			Subject:   "altegio.cmd.3." + itoa(loc) + "." + cmd.ClientKey() + "." + t.Op(),
			ClientKey: cmd.ClientKey(), ErrorClass: class, Reason: reason, HTTPStatus: status, APIMessage: msg,
			Attempts: 1, FirstFailureAt: at(h), LastFailureAt: at(h), DeadLetteredAt: at(h), WorkerID: "worker-a",
			Headers: map[string][]string{commands.HeaderCommandType: {string(t)}, commands.HeaderCommandID: {id}, "Nats-Msg-Id": {id}}}
	}
	withFields := rec(1, commands.TypeClientCreate, 1, "crm-1", 0, commands.ClassPermanent, 422,
		"create client: status 422: Client with this phone already exists", "Client with this phone already exists", 9)
	withFields.FieldErrors = []commands.Problem{{Path: "phone", Reason: "already taken"}}
	return []commands.DLQRecord{
		withFields,
		rec(2, commands.TypeClientUpdate, 1, "crm-2", 0, commands.ClassPermanent, 404, `unknown client_ref "crm-2" in location 1`, "", 10),
		rec(3, commands.TypeClientDelete, 2, "", 77, commands.ClassAuth, 401, "account needs attention: user token rejected", "Unauthorized", 11),
		rec(4, commands.TypeClientCreate, 2, "crm-4", 0, commands.ClassExhausted, 503, "8 attempts made, last: status 503 Service Unavailable", "", 12),
	}
}

func fixtureEvents() []commands.Result {
	ev := func(n int, o commands.Outcome, t commands.Type, ref string, class commands.ErrorClass, status int, msg string, h int) commands.Result {
		return commands.Result{SchemaVersion: 1, CommandID: "0193f3c2-0000-7000-8000-00000000009" + string(rune('0'+n)), Type: t,
			LocationID: 1, ClientRef: ref, Outcome: o, ErrorClass: class, HTTPStatus: status, APIMessage: msg,
			Attempts: 1, CompletedAt: at(h), StreamSeq: uint64(n)}
	}
	return []commands.Result{
		ev(1, commands.OutcomeSucceeded, commands.TypeClientCreate, "crm-9", "", 0, "", 8),
		ev(2, commands.OutcomeFailed, commands.TypeClientUpdate, "crm-9", commands.ClassTransient, 503, "status 503", 8),
		ev(3, commands.OutcomeSucceeded, commands.TypeClientUpdate, "crm-9", "", 0, "", 9),
	}
}

func TestCLI(t *testing.T) {
	e := newCLIEnv(t)
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		exit   int
		stderr string // a substring of stderr, when set
		// goldenErr compares stderr instead of stdout.
		goldenErr bool
		// noEnv runs without environment (help shows the defaults).
		noEnv bool
	}{
		{name: "dlq_help", args: []string{"dlq", "--help"}},
		{name: "dlq_replay_help", noEnv: true, args: []string{"dlq", "replay", "--help"}, goldenErr: true},
		{name: "events_tail_help", noEnv: true, args: []string{"events", "tail", "--help"}, goldenErr: true},
		{name: "dlq_list", args: []string{"dlq", "list"}},
		{name: "dlq_list_permanent_json", args: []string{"dlq", "list", "--class", "permanent", "--json"}},
		{name: "dlq_list_filters", args: []string{"dlq", "list", "--location", "2", "--since", "2025-01-15T11:30:00Z", "--grep", "ATTEMPTS"}},
		{name: "dlq_list_none", args: []string{"dlq", "list", "--location", "9"}, exit: exitNoMatch},
		{name: "dlq_list_bad_flag", args: []string{"dlq", "list", "--bogus"}, exit: exitUsage, stderr: "flag provided but not defined"},
		{name: "dlq_list_bad_class", args: []string{"dlq", "list", "--class", "nope"}, exit: exitUsage},
		{name: "dlq_show", args: []string{"dlq", "show", "1"}},
		{name: "dlq_show_by_id", args: []string{"dlq", "show", "0193f3c2-0000-7000-8000-000000000003", "--json"}},
		{name: "dlq_show_missing", args: []string{"dlq", "show", "99"}, exit: exitNoMatch},
		{name: "dlq_show_no_arg", args: []string{"dlq", "show"}, exit: exitUsage},
		{name: "dlq_replay_no_selection", args: []string{"dlq", "replay"}, exit: exitUsage},
		{name: "dlq_replay_dry_run", args: []string{"dlq", "replay", "--class", "permanent", "--dry-run"}},
		{name: "dlq_replay_not_confirmed", stdin: "n\n", args: []string{"dlq", "replay", "--class", "permanent"}, exit: exitDeclined, stderr: "Replay 2 entries at 2/s? [y/N]"},
		{name: "dlq_replay_confirmed", stdin: "y\n", args: []string{"dlq", "replay", "1", "--rate", "50"}},
		{name: "dlq_replay_yes", args: []string{"dlq", "replay", "--class", "permanent", "--yes", "--rate", "50"}},
		{name: "dlq_replay_nothing_left", args: []string{"dlq", "replay", "--class", "permanent", "--yes"}, exit: exitNoMatch},
		{name: "dlq_list_after_replay", args: []string{"dlq", "list", "--status", "replayed"}},
		{name: "dlq_show_replayed", args: []string{"dlq", "show", "2"}},
		{name: "dlq_purge_no_selection", args: []string{"dlq", "purge"}, exit: exitUsage},
		{name: "dlq_purge_not_confirmed", stdin: "\n", args: []string{"dlq", "purge", "--class", "auth"}, exit: exitDeclined},
		{name: "dlq_purge", args: []string{"dlq", "purge", "--class", "auth", "--yes"}},
		{name: "dlq_purge_none", args: []string{"dlq", "purge", "3", "--yes"}, exit: exitNoMatch},
		{name: "events_tail", args: []string{"events", "tail", "--no-follow"}},
		{name: "events_tail_filtered_json", args: []string{"events", "tail", "--no-follow", "--type", "client.update", "--outcome", "succeeded", "--json"}},
		{name: "events_tail_since", args: []string{"events", "tail", "--no-follow", "--since", "1h", "--outcome", "replayed"}},
		{name: "events_tail_none", args: []string{"events", "tail", "--no-follow", "--location", "9"}, exit: exitNoMatch},
		{name: "events_bad_outcome", args: []string{"events", "tail", "--outcome", "won"}, exit: exitUsage},
		{name: "unknown_dlq_command", args: []string{"dlq", "frobnicate"}, exit: exitUsage},
	} {
		// Sequential: the cases share the server and build on each other.
		t.Run(tc.name, func(t *testing.T) {
			env := e.env
			if tc.noEnv {
				e.env = nil
			}
			stdout, stderr, exit := e.run(tc.stdin, tc.args...)
			e.env = env
			if exit != tc.exit {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", exit, tc.exit, stdout, stderr)
			}
			if tc.stderr != "" && !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
			if tc.exit == 0 || tc.exit == exitNoMatch {
				if tc.goldenErr {
					golden(t, tc.name, stderr)
				} else {
					golden(t, tc.name, stdout)
				}
			}
		})
	}
}

// Ctrl-C during a replay stops it cleanly (exit 130) and running the same
// command again replays only what is left.
func TestCLIReplayInterruptedResumes(t *testing.T) {
	e := newCLIEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out lineWriter
	out.onLine = func(line string) {
		if strings.HasPrefix(line, "[2/4]") {
			cancel()
		}
	}
	err := runIO(ctx, []string{"dlq", "replay", "--all", "--yes", "--rate", "20"}, func(k string) string { return e.env[k] },
		strings.NewReader(""), &out, &bytes.Buffer{})
	if code(err) != exitInterrupted {
		t.Fatalf("exit %d (%v), want %d\n%s", code(err), err, exitInterrupted, out.String())
	}
	stdout, _, exit := e.run("", "dlq", "replay", "--all", "--yes", "--rate", "20")
	if exit != 0 || !strings.Contains(stdout, "4 entries matched: 2 to replay, 2 skipped") || !strings.Contains(stdout, "replayed 2 entries") {
		t.Fatalf("resumed replay: exit %d\n%s", exit, stdout)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	s, _ := e.js.Stream(ctx2, topology.StreamCommands)
	info, _ := s.Info(ctx2)
	if info.State.Msgs != 4 {
		t.Errorf("COMMANDS holds %d republished commands, want 4", info.State.Msgs)
	}
}

// lineWriter calls onLine for every complete line written.
type lineWriter struct {
	bytes.Buffer
	onLine func(string)
	part   string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.Buffer.Write(p)
	w.part += string(p)
	for {
		i := strings.IndexByte(w.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.onLine(w.part[:i])
		w.part = w.part[i+1:]
	}
}
