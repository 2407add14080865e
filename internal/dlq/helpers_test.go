package dlq

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/topology/topotest"
	"github.com/altegio-integrator/integrator/internal/worker"
)

const (
	testPartner = "partner-token"
	testUser    = "user-token"
	testLoc     = int64(1)
)

// env is a JetStream server with the topology applied, a sandbox, a
// Service, and a collector of result events.
type env struct {
	t    *testing.T
	nats *testenv.NATS
	js   jetstream.JetStream
	top  *topology.Topology
	sb   *sandbox.Server
	url  string
	svc  *Service
	reg  *prometheus.Registry

	mu     sync.Mutex
	events []commands.Result
}

func newEnv(t *testing.T) *env {
	t.Helper()
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	top := topotest.Apply(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sb, url := testenv.Sandbox(t, sandbox.Config{
		PartnerToken:  testPartner,
		Users:         []sandbox.User{{Login: "owner@example.com", Password: "secret", Token: testUser}},
		RatePerSecond: -1, RatePerMinute: -1,
	})
	reg := prometheus.NewRegistry()
	svc, err := New(ctx, js, Config{Rate: 200, Operator: "tester", Registerer: reg})
	if err != nil {
		t.Fatalf("dlq service: %v", err)
	}
	e := &env{t: t, nats: n, js: js, top: top, sb: sb, url: url, svc: svc, reg: reg}
	cons, err := js.OrderedConsumer(ctx, topology.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r commands.Result
		if json.Unmarshal(m.Data(), &r) == nil && r.CommandID != "" {
			e.mu.Lock()
			e.events = append(e.events, r)
			e.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return e
}

// startWorker runs a real worker against the sandbox until the test ends
// or the returned stop is called.
func (e *env) startWorker() (stop func()) {
	t := e.t
	t.Helper()
	_, js := testenv.Connect(t, e.nats.URL())
	api, err := altegio.New(altegio.Config{BaseURL: e.url, Timeout: 5 * time.Second},
		altegio.StaticAuthorizer{PartnerToken: testPartner, UserToken: testUser}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{
		RetryBase: 50 * time.Millisecond, RetryMax: time.Second, CloseTimeout: 2 * time.Second,
		BookkeepingTimeout: 3 * time.Second, PendingInterval: -1, Registerer: prometheus.NewRegistry(),
	}, js, api, e.top)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if err := w.Ready(context.Background()); err != nil {
			return err
		}
		return nil
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// publish sends a command as a producer does.
func (e *env) publish(c commands.Command) {
	e.t.Helper()
	data, _ := json.Marshal(c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: commands.CommandSubject(c),
		Header: nats.Header(commands.CommandHeaders(c)), Data: data}); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
}

// eventsOf returns the events of a command with an outcome.
func (e *env) eventsOf(id string, o commands.Outcome) []commands.Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []commands.Result
	for _, r := range e.events {
		if r.CommandID == id && r.Outcome == o {
			out = append(out, r)
		}
	}
	return out
}

// waitEvent waits until a command has an event with the outcome (and the
// replay generation, when gen >= 0).
func (e *env) waitEvent(id string, o commands.Outcome, gen int) commands.Result {
	e.t.Helper()
	var got commands.Result
	testenv.WaitFor(e.t, 15*time.Second, func() error {
		for _, r := range e.eventsOf(id, o) {
			if gen < 0 || r.Replay == gen {
				got = r
				return nil
			}
		}
		return fmt.Errorf("command %s has no %s event (replay %d)", id, o, gen)
	})
	return got
}

// waitList waits until the filter lists n entries.
func (e *env) waitList(f Filter, n int) []Entry {
	e.t.Helper()
	var got []Entry
	testenv.WaitFor(e.t, 15*time.Second, func() error {
		entries, _, err := e.svc.List(context.Background(), f)
		if err != nil {
			return err
		}
		if len(entries) != n {
			return fmt.Errorf("%d entries, want %d", len(entries), n)
		}
		got = entries
		return nil
	})
	return got
}

// streamMsgs returns the number of messages in a stream.
func (e *env) streamMsgs(name string) uint64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

// gauge returns the value of an unlabelled gauge or the sum of a counter.
func (e *env) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == k && lp.GetValue() == v)
				}
				if !found {
					continue next
				}
			}
			total += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return total
}

func createCmd(ref, name, phone string) commands.Command {
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeClientCreate, LocationID: testLoc, ClientRef: ref}
	if err := c.SetPayload(commands.ClientFields{Name: &name, Phone: &phone}); err != nil {
		panic(err)
	}
	return c
}

func updateCmd(ref, name, phone string) commands.Command {
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeClientUpdate, LocationID: testLoc, ClientRef: ref}
	if err := c.SetPayload(commands.ClientFields{Name: &name, Phone: &phone}); err != nil {
		panic(err)
	}
	return c
}

func phone(i int) string { return "+1555" + fmt.Sprintf("%07d", i) }

func digits(p string) string { return p[1:] }

// seqs returns the sequences of entries.
func seqs(entries []Entry) []uint64 {
	out := make([]uint64, len(entries))
	for i, e := range entries {
		out[i] = e.Seq
	}
	return out
}

// publishRecord stores a synthetic DLQ record, as a worker would.
func publishRecord(t *testing.T, js jetstream.JetStream, r commands.DLQRecord) uint64 {
	t.Helper()
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	subject := "altegio.dlq." + strconv.FormatInt(r.LocationID, 10) + "." + r.Type.Op()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: body,
		Header: nats.Header{commands.HeaderMsgID: {r.MsgID()}}})
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}
