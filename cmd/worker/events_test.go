package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// tailEnv is JetStream with the topology and events published by the test.
type tailEnv struct {
	t   *testing.T
	js  jetstream.JetStream
	env map[string]string
	n   int
}

func newTailEnv(t *testing.T) *tailEnv {
	t.Helper()
	n, js := jetStreamWithTopology(t)
	return &tailEnv{t: t, js: js, env: map[string]string{"NATS_URL": n.URL()}}
}

// publish publishes one succeeded event of location loc and returns its
// command id, evt-<n> with n counting from 1.
func (e *tailEnv) publish(loc int64) string {
	e.t.Helper()
	e.n++
	r := commands.Result{SchemaVersion: 1, CommandID: fmt.Sprintf("evt-%d", e.n), Type: commands.TypeClientUpdate, LocationID: loc,
		ClientID: 1, Outcome: commands.OutcomeSucceeded, Attempts: 1, CompletedAt: time.Now().UTC()}
	b, _ := json.Marshal(r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.Publish(ctx, commands.EventSubject(r), b); err != nil {
		e.t.Fatal(err)
	}
	return r.CommandID
}

// ids returns the command ids of the JSON lines out.
func ids(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r commands.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, r.CommandID)
	}
	return got
}

func evts(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("evt-%d", i))
	}
	return out
}

func (e *tailEnv) tail(args ...string) (got []string, exit int, stderr string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := runIO(ctx, append([]string{"events", "tail", "--json"}, args...), func(k string) string { return e.env[k] }, strings.NewReader(""), &out, &errb)
	if ctx.Err() != nil {
		e.t.Fatalf("events tail %q did not return: %v", args, err)
	}
	return ids(e.t, out.String()), code(err), errb.String()
}

// Without --since, a tail starts with the last --last events (10 by
// default), with --no-follow too, like tail(1) without -f.
func TestEventsTailLast(t *testing.T) {
	e := newTailEnv(t)
	for range 15 {
		e.publish(1)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
		exit int
	}{
		{"default is the last 10", []string{"--no-follow"}, evts(6, 15), 0},
		{"last 3", []string{"--no-follow", "--last", "3"}, evts(13, 15), 0},
		{"more than stored", []string{"--no-follow", "--last", "50"}, evts(1, 15), 0},
		{"all", []string{"--no-follow", "--all"}, evts(1, 15), 0},
		{"last 0 is new ones only", []string{"--no-follow", "--last", "0"}, nil, exitNoMatch},
		{"none match", []string{"--no-follow", "--location", "9"}, nil, exitNoMatch},
		{"last and since", []string{"--no-follow", "--last", "3", "--since", "1h"}, nil, exitUsage},
		{"since and all", []string{"--no-follow", "--all", "--since", "1h"}, nil, exitUsage},
		{"negative", []string{"--no-follow", "--last", "-1"}, nil, exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, exit, stderr := e.tail(tc.args...)
			if exit != tc.exit {
				t.Fatalf("exit %d, want %d\n%s", exit, tc.exit, stderr)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// A filter whose matches are few and old: the window doubles back from the
// end of the stream past the matches, and the surplus is skipped. The probe
// consumers do not stay.
func TestEventsTailLastOfARareFilter(t *testing.T) {
	e := newTailEnv(t)
	var want []string
	for i := 1; i <= 60; i++ {
		loc := int64(1)
		if (i >= 30 && i <= 33) || i == 58 { // four together, one late
			loc = 2
		}
		id := e.publish(loc)
		if loc == 2 {
			want = append(want, id)
		}
	}
	for _, n := range []int{1, 2, 3, 5, 6} {
		got, exit, stderr := e.tail("--no-follow", "--location", "2", "--last", fmt.Sprint(n))
		if exit != 0 {
			t.Fatalf("--last %d: exit %d\n%s", n, exit, stderr)
		}
		w := want[max(0, len(want)-n):]
		if strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("--last %d: got %v, want %v", n, got, w)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, topology.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range s.ConsumerNames(ctx).Name() {
		names = append(names, name)
	}
	// An ordered consumer may stay until its inactive threshold; one per run.
	if len(names) > 5 {
		t.Errorf("EVENTS has %d consumers after 5 tails, the probes stayed: %v", len(names), names)
	}
}

// Following, a tail prints the last events, then new ones as they come.
func TestEventsTailFollows(t *testing.T) {
	e := newTailEnv(t)
	for range 5 {
		e.publish(1)
	}
	lines := make(chan string, 10)
	out := &lineWriter{onLine: func(l string) { lines <- l }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runIO(ctx, []string{"events", "tail", "--json", "--last", "2"}, func(k string) string { return e.env[k] },
			strings.NewReader(""), out, io.Discard)
	}()
	next := func() string {
		t.Helper()
		select {
		case l := <-lines:
			return ids(t, l)[0]
		case <-time.After(10 * time.Second):
			t.Fatal("no event printed within 10s")
			return ""
		}
	}
	for _, want := range evts(4, 5) {
		if got := next(); got != want {
			t.Fatalf("printed %s, want %s", got, want)
		}
	}
	id := e.publish(1)
	if got := next(); got != id {
		t.Errorf("printed %s, want the new %s", got, id)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tail ended with %v, want nil on Ctrl-C", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tail did not stop after cancel")
	}
}
