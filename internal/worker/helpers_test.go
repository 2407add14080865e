package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
)

const (
	testPartner = "partner-token"
	testUser    = "user-token"
	testLoc     = int64(1)
	// testAckWait is the worker consumers' AckWait in tests: short, so that
	// a crashed worker's messages come back quickly.
	testAckWait = 2 * time.Second
	// testPinTTL is the pinned consumers' priority timeout in tests: how
	// long after a crash another worker takes the partitions over.
	testPinTTL = 3 * time.Second
)

// errNotYet is what WaitFor conditions return while they wait.
var errNotYet = errors.New("not yet")

// short reports whether long soak variants must be skipped.
func short() bool { return testing.Short() || os.Getenv("CI") != "" }

// env is a JetStream server with the topology applied, a sandbox API over
// HTTP, and collectors of everything the workers publish.
type env struct {
	t    *testing.T
	nats *testenv.NATS
	nc   *nats.Conn
	js   jetstream.JetStream
	top  *topology.Topology
	sb   *sandbox.Server
	url  string // API base URL

	mu        sync.Mutex
	results   []commands.Result
	attention []AccountAttention
	dlq       []commands.DLQRecord
}

type envOpts struct {
	// maxDeliver overrides the worker consumers' MaxDeliver when > 0.
	maxDeliver int
	// pinnedTTL overrides the worker consumers' priority timeout
	// (testPinTTL) when > 0; workers may then use a HandlerTimeout up to it.
	pinnedTTL time.Duration
	// sandbox adjusts the sandbox config.
	sandbox func(*sandbox.Config)
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	n := testenv.RunJetStream(t)
	nc, js := testenv.Connect(t, n.URL())
	top := testTopology(t, o.maxDeliver)
	if o.pinnedTTL > 0 {
		for i := range top.Consumers {
			if top.Consumers[i].Stream == topology.StreamCommands {
				top.Consumers[i].Config.PinnedTTL = o.pinnedTTL
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topology.Apply(ctx, js, top); err != nil {
		t.Fatalf("apply topology: %v", err)
	}
	scfg := sandbox.Config{
		PartnerToken:  testPartner,
		Users:         []sandbox.User{{Login: "owner@example.com", Password: "secret", Token: testUser}},
		RatePerSecond: -1,
		RatePerMinute: -1,
		RetryAfter:    true,
	}
	if o.sandbox != nil {
		o.sandbox(&scfg)
	}
	sb, url := testenv.Sandbox(t, scfg)
	e := &env{t: t, nats: n, nc: nc, js: js, top: top, sb: sb, url: url}
	e.collect(topology.StreamEvents)
	e.collect(topology.StreamDLQ)
	return e
}

// testTopology is the product topology with test timings: a short AckWait,
// no consumer BackOff, a short pin timeout so that another worker takes a
// partition over quickly after a crash.
func testTopology(t *testing.T, maxDeliver int) *topology.Topology {
	t.Helper()
	prod, err := topology.Load()
	if err != nil {
		t.Fatalf("load topology: %v", err)
	}
	top := &topology.Topology{
		Streams:   append([]jetstream.StreamConfig(nil), prod.Streams...),
		Consumers: append([]topology.Consumer(nil), prod.Consumers...),
		Buckets:   append([]jetstream.KeyValueConfig(nil), prod.Buckets...),
	}
	for i := range top.Consumers {
		c := &top.Consumers[i].Config
		switch top.Consumers[i].Stream {
		case topology.StreamCommands:
			c.AckWait = testAckWait
			c.BackOff = nil
			c.PinnedTTL = testPinTTL
			if maxDeliver > 0 {
				c.MaxDeliver = maxDeliver
			}
		case topology.StreamAdvisories:
			c.AckWait = 5 * time.Second
		}
	}
	return top
}

// collect follows a stream from the start and keeps what it decodes.
func (e *env) collect(stream string) {
	t := e.t
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer on %s: %v", stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		e.mu.Lock()
		defer e.mu.Unlock()
		switch {
		case stream == topology.StreamDLQ && commands.IsDLQCommandSubject(m.Subject()):
			// A command stored beside its record (CommandRef), not a record.
		case stream == topology.StreamDLQ:
			var r commands.DLQRecord
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				t.Errorf("decode dlq record: %v", err)
			}
			e.dlq = append(e.dlq, r)
		case strings.HasSuffix(m.Subject(), ".account.needs_attention"):
			var a AccountAttention
			if err := json.Unmarshal(m.Data(), &a); err != nil {
				t.Errorf("decode account event: %v", err)
			}
			e.attention = append(e.attention, a)
		default:
			var r commands.Result
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				t.Errorf("decode result: %v", err)
			}
			e.results = append(e.results, r)
		}
	})
	if err != nil {
		t.Fatalf("consume %s: %v", stream, err)
	}
	t.Cleanup(cc.Stop)
}

// terminal returns the terminal results of a command, in stream order.
func (e *env) terminal(id string) []commands.Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []commands.Result
	for _, r := range e.results {
		if r.CommandID == id && r.Outcome.Terminal() {
			out = append(out, r)
		}
	}
	return out
}

// resultsOf returns every result event of a command, in stream order.
func (e *env) resultsOf(id string) []commands.Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []commands.Result
	for _, r := range e.results {
		if r.CommandID == id {
			out = append(out, r)
		}
	}
	return out
}

// dlqOf returns the DLQ records of a command.
func (e *env) dlqOf(id string) []commands.DLQRecord {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []commands.DLQRecord
	for _, r := range e.dlq {
		if r.CommandID == id {
			out = append(out, r)
		}
	}
	return out
}

// waitTerminal waits until every command has a terminal result and returns
// the first of each.
func (e *env) waitTerminal(timeout time.Duration, ids ...string) map[string]commands.Result {
	e.t.Helper()
	testenv.WaitFor(e.t, timeout, func() error {
		missing := 0
		for _, id := range ids {
			if len(e.terminal(id)) == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d commands without a terminal result", missing, len(ids))
		}
		return nil
	})
	out := make(map[string]commands.Result, len(ids))
	for _, id := range ids {
		out[id] = e.terminal(id)[0]
	}
	return out
}

// waitCommandsEmpty waits until the COMMANDS stream holds no message: every
// command was acked, terminated or swept.
func (e *env) waitCommandsEmpty(timeout time.Duration) {
	e.t.Helper()
	testenv.WaitFor(e.t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := e.js.Stream(ctx, topology.StreamCommands)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d commands left in the stream", info.State.Msgs)
		}
		return nil
	})
}

// assertOneTerminal checks that every command has exactly one terminal
// result event (after giving stragglers a moment to show up).
func (e *env) assertOneTerminal(ids ...string) {
	e.t.Helper()
	e.waitCommandsEmpty(20 * time.Second)
	for _, id := range ids {
		if n := len(e.terminal(id)); n != 1 {
			e.t.Errorf("command %s: %d terminal results, want 1: %+v", id, n, e.terminal(id))
		}
	}
}

// publish publishes a command as a producer does and returns its sequence.
func (e *env) publish(cmd commands.Command) uint64 {
	e.t.Helper()
	data, err := json.Marshal(cmd)
	if err != nil {
		e.t.Fatalf("encode command: %v", err)
	}
	return e.publishRaw(commands.CommandSubject(cmd), nats.Header(commands.CommandHeaders(cmd)), data)
}

// publishRaw publishes bytes on a command subject.
func (e *env) publishRaw(subject string, h nats.Header, data []byte) uint64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: h, Data: data})
	if err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// record reads a command's idempotency record.
func (e *env) record(id string) idem.Record {
	e.t.Helper()
	rec, err := e.loadRecord(id)
	if err != nil {
		e.t.Fatalf("record %s: %v", id, err)
	}
	return rec
}

// ref reads a client_ref mapping; ok is false when there is none.
func (e *env) ref(ref string) (int64, bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, topology.BucketClientRefs)
	if err != nil {
		e.t.Fatalf("bucket: %v", err)
	}
	id, ok, err := refStore{kv: kv}.get(ctx, testLoc, commands.Command{ClientRef: ref}.ClientKey())
	if err != nil {
		e.t.Fatalf("ref %s: %v", ref, err)
	}
	return id, ok
}

// runner is a worker running in the background on its own connection.
type runner struct {
	w      *Worker
	nc     *nats.Conn
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

type workerOpts struct {
	cfg       Config
	userToken string
	hooks     hooks
	// perSecond is the shared limiter's budget; 0 means 200.
	perSecond int
	// noLimiter leaves the client without the shared limiter.
	noLimiter bool
	// holdNothing makes the worker's subscriptions fetch only for free
	// handler slots (wmjetstream MaxHeld -1): a worker whose handlers are
	// busy then does not pull, as after a consumer leader move.
	holdNothing bool
	// authorizer replaces the fixed-token authorizer; it gets the worker's
	// connection.
	authorizer func(js jetstream.JetStream) altegio.Authorizer
}

// startWorker starts a worker on its own NATS connection, with a real
// Altegio client over the sandbox and the shared rate limiter. It is
// stopped in t.Cleanup.
func (e *env) startWorker(o workerOpts) *runner {
	t := e.t
	t.Helper()
	nc, js := testenv.Connect(t, e.nats.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketRateLimit)
	if err != nil {
		t.Fatalf("rate limit bucket: %v", err)
	}
	perSecond := o.perSecond
	if perSecond == 0 {
		perSecond = 200
	}
	lim, err := ratelimit.New(kv, ratelimit.Config{PerSecond: perSecond, PerMinute: -1,
		MaxPenalty: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("limiter: %v", err)
	}
	tok := o.userToken
	if tok == "" {
		tok = testUser
	}
	var limiter altegio.Limiter = lim
	if o.noLimiter {
		limiter = nil
	}
	var authz altegio.Authorizer = altegio.StaticAuthorizer{PartnerToken: testPartner, UserToken: tok}
	if o.authorizer != nil {
		authz = o.authorizer(js)
	}
	api, err := altegio.New(altegio.Config{BaseURL: e.url, Timeout: 10 * time.Second}, authz, limiter)
	if err != nil {
		t.Fatalf("altegio client: %v", err)
	}
	cfg := o.cfg
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if !o.noLimiter {
		cfg.Budget = lim
	}
	t.Cleanup(lim.Close)
	if cfg.RetryBase == 0 {
		cfg.RetryBase = 50 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = time.Second
	}
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = 5 * time.Second
	}
	if cfg.BookkeepingTimeout == 0 {
		cfg.BookkeepingTimeout = 3 * time.Second
	}
	if cfg.HandlerTimeout == 0 {
		cfg.HandlerTimeout = testPinTTL - 500*time.Millisecond
	}
	if cfg.PendingInterval == 0 {
		cfg.PendingInterval = 200 * time.Millisecond
	}
	if cfg.ShareInterval == 0 {
		cfg.ShareInterval = 200 * time.Millisecond
	}
	if cfg.Logger == nil && os.Getenv("WORKER_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := New(cfg, js, api, e.top)
	if err != nil {
		t.Fatalf("new worker: %v", err)
	}
	w.hooks = o.hooks
	if o.holdNothing {
		for p := range w.maxHeld {
			w.maxHeld[p] = -1
		}
	}
	rctx, rcancel := context.WithCancel(context.Background())
	r := &runner{w: w, nc: nc, reg: reg, cancel: rcancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(rctx) }()
	testenv.WaitFor(t, 10*time.Second, func() error {
		select {
		case err := <-r.done:
			r.done <- err
			return nil
		default:
		}
		if !w.running.Load() {
			return ErrNotRunning
		}
		return nil
	})
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop cancels Run and waits for it to return.
func (r *runner) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(60 * time.Second):
			r.err = fmt.Errorf("worker did not stop")
		}
	})
	return r.err
}

// counter returns the value of a counter with the given labels.
func (r *runner) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matchLabels(m, labels) {
				if c := m.GetCounter(); c != nil {
					total += c.GetValue()
				}
				if g := m.GetGauge(); g != nil {
					total += g.GetValue()
				}
				if h := m.GetHistogram(); h != nil {
					total += float64(h.GetSampleCount())
				}
			}
		}
	}
	return total
}

func matchLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Command builders.

func createCmd(ref, name, phone string) commands.Command {
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeClientCreate, LocationID: testLoc, ClientRef: ref}
	must(c.SetPayload(commands.ClientFields{Name: new(name), Phone: new(phone)}))
	return c
}

func updateCmd(ref string, f commands.ClientFields) commands.Command {
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeClientUpdate, LocationID: testLoc, ClientRef: ref}
	must(c.SetPayload(f))
	return c
}

func deleteCmd(ref string) commands.Command {
	return commands.Command{ID: commands.NewID(), Type: commands.TypeClientDelete, LocationID: testLoc, ClientRef: ref}
}

func commentCmd(ref, text string) commands.Command {
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeCommentAdd, LocationID: testLoc, ClientRef: ref}
	must(c.SetPayload(commands.CommentAddPayload{Text: text}))
	return c
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// phone returns a distinct valid phone for client i.
func phone(i int) string { return fmt.Sprintf("+1555%07d", i) }

// ids returns the command ids.
func ids(cmds ...commands.Command) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.ID
	}
	return out
}
