package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// The fault suite: real processes (nats-server, the sandbox, ingest, two
// workers) under a mixed load, one fault per phase, and the same check at
// the end of each phase (see check):
//
//   - every accepted command has exactly one terminal event;
//   - no client and no comment exists twice in the sandbox;
//   - each client's final state is its accepted commands applied in order;
//   - every valid command succeeded, every invalid one was dead-lettered as
//     invalid.
//
// Phases: kill (kill -9 of a worker at random moments, a replacement
// started at once, and the time until a probe on every partition finished),
// nats (nats-server killed and restarted mid-load), cluster (a three-node
// cluster loses the COMMANDS stream leader, then a second node for two
// seconds, and both come back), api (5xx, latency,
// answers lost after the change, a 429 storm, a token rotation, then half
// the writes losing their answer), outbox (nats-server down while the
// ingest outbox's file cannot grow: 503, and every 202 ends once), audit (a
// stuck and a slow consumer of EVENTS). Invalid commands and commands on
// another client's subject, published straight to NATS, are mixed into
// every phase.

// FaultsConfig configures the fault suite.
type FaultsConfig struct {
	// Runs is how many times each phase runs. Default 3; 1 with Quick.
	Runs int
	// Clients is the number of clients each phase's load creates and
	// changes. Default 120; 24 with Quick.
	Clients int
	// Load is how long the load is spread over. Default 30s; 8s with Quick.
	Load time.Duration
	// Kills is the number of kill -9 per run of the kill phase. Default 12;
	// 3 with Quick.
	Kills int
	// Phases lists the phases to run. Default all of FaultPhases.
	Phases []string
	// Settle bounds the wait for every accepted command to end, after the
	// last fault. Default 4m; 2m with Quick.
	Settle time.Duration
}

// FaultPhases are the phases of the fault suite, in order.
var FaultPhases = []string{"kill", "nats", "cluster", "api", "outbox", "audit"}

func (c *FaultsConfig) setDefaults(quick bool) {
	setDefaultQuick(&c.Runs, 3, 1, quick)
	setDefaultQuick(&c.Clients, 120, 24, quick)
	setDefaultQuick(&c.Load, 30*time.Second, 8*time.Second, quick)
	setDefaultQuick(&c.Kills, 12, 3, quick)
	setDefaultQuick(&c.Settle, 4*time.Minute, 2*time.Minute, quick)
	if len(c.Phases) == 0 {
		c.Phases = FaultPhases
	}
}

// faultBudget is what the sandbox enforces during the fault suite, and
// workerFaultBudget what the workers share: the suite is about faults, not
// the budget, and must not take long.
var (
	faultBudget       = Budget{PerSecond: 50, PerMinute: -1}
	workerFaultBudget = Budget{PerSecond: 40, PerMinute: -1}
)

// resumeTarget is the most a killed worker's partitions may take to resume.
const resumeTarget = 10 * time.Second

// runFaults runs every phase Runs times and reports, per phase: runs,
// commands accepted, faults injected, lost, doubled, out of order, wrong
// outcomes and, for kill, the longest time to resume. Figures:
// "<phase>/accepted", "…/faults", "…/lost", "…/doubled", "…/out_of_order",
// "…/wrong_outcome", "kill/resume_max_seconds", and the totals "lost",
// "doubled", "out_of_order", "wrong_outcome".
func runFaults(ctx context.Context, e *env, cfg Config) (Report, error) {
	c := cfg.Faults
	rep := Report{
		Title: fmt.Sprintf("%d run(s) of each phase, %d clients per run over %v, %d kills per kill run; separate processes over loopback",
			c.Runs, c.Clients, c.Load, c.Kills),
		Figures: map[string]float64{},
	}
	t := Table{Header: []string{"phase", "runs", "commands accepted", "faults injected", "reconciled", "lost", "doubled", "out of order", "wrong outcome", "time to resume (max)"}}
	for _, phase := range c.Phases {
		var total faultResult
		for run := range c.Runs {
			e.logf("faults: %s, run %d of %d", phase, run+1, c.Runs)
			res, err := faultPhase(ctx, e, c, phase, run)
			if err != nil {
				return rep, fmt.Errorf("%s run %d: %w", phase, run+1, err)
			}
			total.add(res)
		}
		resume := "—"
		if phase == "kill" {
			resume = fmt.Sprintf("%.1f s (target ≤ %v)", total.resume.Seconds(), resumeTarget)
			rep.Figures["kill/resume_max_seconds"] = total.resume.Seconds()
		}
		t.add(phase, strconv.Itoa(c.Runs), strconv.Itoa(total.accepted), total.faultList(), strconv.Itoa(total.reconciled), strconv.Itoa(total.lost),
			strconv.Itoa(total.doubled), strconv.Itoa(total.outOfOrder), strconv.Itoa(total.wrong), resume)
		if phase == "outbox" {
			rep.Figures["outbox/refused"] = float64(total.refused)
			rep.Notes = append(rep.Notes, fmt.Sprintf("outbox: with nats-server down and the outbox file at its limit, ingest answered 503 for %d commands (not accepted, not counted above).", total.refused))
		}
		rep.Figures[phase+"/reconciled"] = float64(total.reconciled)
		for k, v := range map[string]int{"accepted": total.accepted, "faults": total.faultCount(), "lost": total.lost,
			"doubled": total.doubled, "out_of_order": total.outOfOrder, "wrong_outcome": total.wrong} {
			rep.Figures[phase+"/"+k] = float64(v)
			if k != "accepted" && k != "faults" {
				rep.Figures[k] += float64(v)
			}
		}
		rep.Notes = append(rep.Notes, total.problems...)
	}
	rep.Tables = append(rep.Tables, t)
	rep.Notes = append(rep.Notes,
		"Load per run: each client is created with a client_ref, updated twice, commented once or twice, every fifth deleted, sent through ingest as one POST per client (in order); every tenth client brings a bulk create of 3; every eighth an invalid create and a create on another client's subject straight to NATS (they must be dead-lettered as invalid).",
		"lost: an accepted command without a terminal event; doubled: a command with more than one terminal event, or a client or comment that exists twice; out of order: a client whose final state is not its commands applied in acceptance order; wrong outcome: a valid command not succeeded, or an invalid one not dead-lettered as invalid.",
		"reconciled: commands whose outcome a later attempt found already applied (create by phone, comment by text, update already on the card, client already gone): an earlier answer was lost to a kill between the API's answer and the ack, or to a reset after the change. The kill phase also resets 5 % of the API's connections before the change, and the sandbox writes each answer over 300 ms, so that kills land between the change and the ack.",
		"Time to resume: after each kill -9 a replacement worker is started at once and a fresh create is sent to every partition; the figure is the longest time from the kill to the first attempt of the last of them (the worker's first_attempt_at), when every partition was being worked again.",
		"Reference: none is better than 0 lost, 0 doubled, 0 out of order, 0 wrong; the time to resume has the target ≤ 10 s.")
	return rep, nil
}

// faultResult is what one phase run found.
type faultResult struct {
	accepted                         int
	refused                          int // commands ingest answered 503 for (outbox full)
	reconciled                       int // commands whose outcome was found by reconciliation
	faults                           map[string]int
	lost, doubled, outOfOrder, wrong int
	resume                           time.Duration
	problems                         []string // the first few, for the notes
}

func (r *faultResult) fault(kind string) {
	if r.faults == nil {
		r.faults = map[string]int{}
	}
	r.faults[kind]++
}

func (r *faultResult) problem(format string, args ...any) {
	if len(r.problems) < 10 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

func (r *faultResult) add(o faultResult) {
	r.accepted += o.accepted
	r.refused += o.refused
	r.reconciled += o.reconciled
	if r.faults == nil {
		r.faults = map[string]int{}
	}
	for k, v := range o.faults {
		r.faults[k] += v
	}
	r.lost += o.lost
	r.doubled += o.doubled
	r.outOfOrder += o.outOfOrder
	r.wrong += o.wrong
	r.resume = max(r.resume, o.resume)
	for _, p := range o.problems {
		r.problem("%s", p)
	}
}

func (r faultResult) faultCount() int {
	n := 0
	for _, v := range r.faults {
		n += v
	}
	return n
}

func (r faultResult) faultList() string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range r.faults {
			if !yield(k) {
				return
			}
		}
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.faults[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// faultPhase runs one phase on a fresh stack.
func faultPhase(ctx context.Context, e *env, c FaultsConfig, phase string, run int) (faultResult, error) {
	var res faultResult
	s, err := newStack(e, fmt.Sprintf("faults-%s-%d", phase, run))
	if err != nil {
		return res, err
	}
	defer s.close()
	// Whatever the phase starts ends with it (before its processes stop).
	ctx, cancelPhase := context.WithCancel(ctx)
	defer cancelPhase()
	s.sandboxArgs = []string{"-control", "-seed", strconv.Itoa(run + 1)}
	if phase == "kill" {
		// Kills and connection resets together, as in the livelock report
		// of issue 11 (resets before the change). Answers written slowly
		// (300 ms a body, after the change is made) widen the window
		// between the API's change and the worker's ack, so that kills land
		// in it too.
		s.sandboxArgs = append(s.sandboxArgs, "-reset-rate", "0.05", "-slow-body", "300ms")
	}
	s.workerArgs = []string{"--log-level", "debug"} // partition moves and takeovers, for the post-mortem
	if phase == "outbox" {
		prlimit, err := exec.LookPath("prlimit")
		if err != nil {
			return res, fmt.Errorf("the outbox phase runs ingest under prlimit (util-linux): %w", err)
		}
		// Room for the outbox's schema and a few hundred spooled commands;
		// then every write fails with "file too large", as on a full disk.
		s.ingestPrefix = []string{prlimit, "--fsize=" + strconv.Itoa(outboxFileLimit)}
	}
	if phase == "cluster" {
		err = s.startCluster(ctx)
	} else {
		err = s.startNATS(ctx)
	}
	if err != nil {
		return res, err
	}
	if err := s.startSandbox(ctx, faultBudget); err != nil {
		return res, err
	}
	if err := s.startIngest(ctx); err != nil {
		return res, err
	}
	if err := s.startWorkers(ctx, 2, workerFaultBudget); err != nil {
		return res, err
	}
	ev, err := followEvents(ctx, s.js)
	if err != nil {
		return res, err
	}
	defer ev.stop()

	l := newFaultLoad(s, c, run)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan error, 1)
	go func() { loadDone <- l.send(loadCtx) }()

	if err := injectFaults(ctx, s, l, ev, c, phase, run, &res); err != nil {
		return res, err
	}
	if err := <-loadDone; err != nil {
		return res, fmt.Errorf("load: %w", err)
	}
	settle, cancel := context.WithTimeout(ctx, c.Settle)
	defer cancel()
	ids := l.acceptedIDs()
	if err := ev.waitAll(settle, s, ids, phase); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return res, err
	}
	// A second terminal event of a command would come soon after the first
	// (a redelivery racing the ack): wait until EVENTS has been quiet for a
	// while before counting.
	if err := ev.waitQuiet(ctx, 2*time.Second, time.Minute); err != nil {
		return res, err
	}
	res.accepted = len(ids)
	res.reconciled = ev.counts().reconciled
	return res, l.check(ctx, ev, &res)
}

// outboxFileLimit is the largest file the ingest process may write in the
// outbox phase (prlimit --fsize).
const outboxFileLimit = 192 << 10

// injectFaults runs the phase's faults while the load is being sent.
func injectFaults(ctx context.Context, s *stack, l *faultLoad, ev *events, c FaultsConfig, phase string, run int, res *faultResult) error {
	sleep := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rng := rand.New(rand.NewPCG(uint64(run), uint64(len(phase))))
	switch phase {
	case "kill":
		gap := c.Load / time.Duration(c.Kills+1)
		for k := range c.Kills {
			if err := sleep(gap/2 + time.Duration(rng.Int64N(int64(gap)))); err != nil {
				return err
			}
			killed := time.Now()
			s.killWorker(rng.IntN(len(s.workers)))
			res.fault("kill -9 worker")
			if err := s.startWorker(ctx, workerFaultBudget); err != nil {
				return err
			}
			d, err := l.probe(ctx, ev, k, killed)
			if err != nil {
				return err
			}
			s.env.logf("faults: kill %d: every partition resumed %.1fs after the kill", k+1, d.Seconds())
			res.resume = max(res.resume, d)
		}
	case "nats", "outbox":
		if err := sleep(c.Load / 3); err != nil {
			return err
		}
		s.killNATS()
		res.fault("kill -9 nats-server")
		if phase == "outbox" {
			// Spool until the outbox's file cannot grow: ingest must answer
			// 503, and every command it answered 202 for must end once.
			refused, err := l.fill(ctx)
			if err != nil {
				return err
			}
			res.refused += refused
		}
		if err := sleep(c.Load / 4); err != nil {
			return err
		}
		if err := s.restartNATS(ctx); err != nil {
			return err
		}

	case "cluster":
		if err := sleep(c.Load / 4); err != nil {
			return err
		}
		leader, err := s.streamLeader(ctx, topology.StreamCommands)
		if err != nil {
			return err
		}
		s.cluster[leader].proc.kill()
		res.fault("kill -9 the COMMANDS leader")
		if err := sleep(c.Load / 4); err != nil {
			return err
		}
		// A second node, briefly: no quorum until it is back.
		second := (leader + 1) % clusterSize
		s.cluster[second].proc.kill()
		res.fault("kill -9 a second node for 2 s")
		if err := sleep(2 * time.Second); err != nil {
			return err
		}
		if err := s.startNode(second); err != nil {
			return err
		}
		if err := sleep(c.Load / 4); err != nil {
			return err
		}
		if err := s.startNode(leader); err != nil {
			return err
		}
		return waitJetStream(ctx, s.cluster[leader].proc, s.js)
	case "api":
		steps := []struct {
			name string
			body string
		}{
			{"20 % 5xx and 20 % answers lost after the change", `{"error_rate":0.2,"after_apply_rate":0.2}`},
			{"latency 1.5 s", `{"latency":"1500ms","error_rate":0.05}`},
			{"429 storm 3 s", `{"storm":"3s"}`},
			{"token rotation", ""},
			{"50 % answers lost after the change", `{"after_apply_rate":0.5}`},
			{"", `{}`},
		}
		gap := c.Load / time.Duration(len(steps))
		for _, st := range steps {
			var err error
			if st.body == "" {
				err = s.control(ctx, http.MethodPost, "/control/rotate-token", "", nil)
			} else {
				err = s.control(ctx, http.MethodPut, "/control/faults", st.body, nil)
			}
			if err != nil {
				return err
			}
			if st.name != "" {
				res.fault(st.name)
			}
			if err := sleep(gap); err != nil {
				return err
			}
		}
	case "audit":
		if err := stuckAuditConsumers(ctx, s.js); err != nil {
			return err
		}
		res.fault("stuck and slow audit consumers")
	default:
		return fmt.Errorf("unknown phase %q", phase)
	}
	return nil
}

// fill posts creates of fresh clients, 50 a request, while nats-server is
// down, until ingest refuses a request (its outbox is full) or 60 requests
// were made, and returns how many commands were refused.
func (l *faultLoad) fill(ctx context.Context) (int, error) {
	for b := range 60 {
		var cmds []commands.Command
		for j := range 50 {
			k := 800000 + l.run*10000 + b*50 + j
			cmds = append(cmds, newCommand(commands.TypeClientCreate, 2, fmt.Sprintf("fill%d-%d", l.run, k), 0, newClient(seriesSeed, k)))
		}
		ids, err := l.ingest.send(ctx, cmds, true)
		if err != nil {
			return 0, err
		}
		l.accept(ids, false)
		l.mu.Lock()
		for i, c := range cmds {
			fc := &faultClient{ref: c.ClientRef, loc: 2, cmds: []commands.Command{c}}
			if i < len(ids) {
				fc.accepted = 1
			}
			l.clients = append(l.clients, fc)
		}
		l.mu.Unlock()
		if len(ids) < len(cmds) {
			l.s.env.logf("faults: the outbox is full after %d requests: %d of %d commands refused", b+1, len(cmds)-len(ids), len(cmds))
			return len(cmds) - len(ids), nil
		}
	}
	return 0, errors.New("the outbox never filled up: ingest accepted every command with nats-server down")
}

// control calls one of the sandbox's /control endpoints and, when out is
// not nil, decodes the answer into it.
func (s *stack) control(ctx context.Context, method, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.sandboxURL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("sandbox %s: status %d: %s", path, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// stuckAuditConsumers creates two durable consumers of EVENTS: one that
// takes a message and never acks it, one that acks a message a second.
func stuckAuditConsumers(ctx context.Context, js jetstream.JetStream) error {
	for _, name := range []string{"audit-stuck", "audit-slow"} {
		cons, err := js.CreateOrUpdateConsumer(ctx, topology.StreamEvents, jetstream.ConsumerConfig{
			Durable: name, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1, AckWait: time.Hour,
		})
		if err != nil {
			return fmt.Errorf("audit consumer %s: %w", name, err)
		}
		slow := name == "audit-slow"
		go func() {
			for {
				m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
				switch {
				case ctx.Err() != nil:
					return
				case err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages):
					return // the connection is gone: the phase is over
				case err != nil || !slow:
					continue // the stuck one holds its message and waits
				}
				select {
				case <-time.After(time.Second):
					_ = m.Ack()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return nil
}

// faultLoad is one phase's load and what it expects.
type faultLoad struct {
	s       *stack
	c       FaultsConfig
	run     int
	ingest  ingestClient
	mu      sync.Mutex
	clients []*faultClient
	// accepted are the commands ingest answered 202 for (or JetStream
	// acknowledged), with whether each must be dead-lettered as invalid.
	accepted map[string]bool
	bulk     [][]clientFields // clients of accepted bulk creates
}

// faultClient is one client of the load and its accepted commands, in
// acceptance order.
type faultClient struct {
	ref      string
	loc      int64
	cmds     []commands.Command
	accepted int // how many of cmds were accepted, a prefix
}

func newFaultLoad(s *stack, c FaultsConfig, run int) *faultLoad {
	return &faultLoad{s: s, c: c, run: run, ingest: newIngestClient(s.ingestURL, 8), accepted: map[string]bool{}}
}

// chain builds client k's commands: create, two updates, comments and, for
// every fifth, a delete.
func (l *faultLoad) chain(k int) *faultClient {
	fc := &faultClient{ref: fmt.Sprintf("f%d-%d", l.run, k), loc: int64(1 + k%2)}
	f := newClient(seriesMain, k)
	fc.cmds = append(fc.cmds, newCommand(commands.TypeClientCreate, fc.loc, fc.ref, 0, f))
	for v := 1; v <= 2; v++ {
		name, email := fmt.Sprintf("%s v%d", f.Name, v), fmt.Sprintf("c%d-v%d@example.com", k, v)
		fc.cmds = append(fc.cmds, newCommand(commands.TypeClientUpdate, fc.loc, fc.ref, 0,
			commands.UpdatePayload{ClientFields: commands.ClientFields{Name: &name, Phone: &f.Phone, Email: &email}}))
	}
	for n := range 1 + k%2 {
		fc.cmds = append(fc.cmds, newCommand(commands.TypeCommentAdd, fc.loc, fc.ref, 0,
			commands.CommentAddPayload{Text: fmt.Sprintf("note %d of %s", n, fc.ref)}))
	}
	if k%5 == 4 {
		fc.cmds = append(fc.cmds, newCommand(commands.TypeClientDelete, fc.loc, fc.ref, 0, nil))
	}
	return fc
}

// send posts the chains spread over the load duration, four at a time.
func (l *faultLoad) send(ctx context.Context) error {
	gap := l.c.Load / time.Duration(l.c.Clients)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	next := time.Now()
	for k := range l.c.Clients {
		select {
		case <-time.After(time.Until(next)):
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		next = next.Add(gap)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := l.sendClient(ctx, k); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	return firstErr
}

// sendClient sends client k's chain in one POST, and its extras.
func (l *faultLoad) sendClient(ctx context.Context, k int) error {
	fc := l.chain(k)
	l.mu.Lock()
	l.clients = append(l.clients, fc)
	l.mu.Unlock()
	ids, err := l.ingest.send(ctx, fc.cmds, true)
	if err != nil {
		return err
	}
	fc.accepted = len(ids) // the answer lists the accepted prefix
	l.accept(ids, false)
	if k%10 == 9 {
		var clients []clientFields
		for j := range 3 {
			clients = append(clients, newClient(seriesOther, l.run*100000+k*10+j))
		}
		b := newCommand(commands.TypeClientBulkCreate, 1, "", 0, struct {
			Clients []clientFields `json:"clients"`
		}{clients})
		ids, err := l.ingest.send(ctx, []commands.Command{b}, true)
		if err != nil {
			return err
		}
		if len(ids) == 1 {
			l.accept(ids, false)
			l.mu.Lock()
			l.bulk = append(l.bulk, clients)
			l.mu.Unlock()
		}
	}
	if k%8 == 7 {
		return l.poison(ctx, k)
	}
	return nil
}

// poison publishes, straight to NATS as a producer would, an invalid create
// and a valid create on another client's subject; both must be
// dead-lettered as invalid. Not accepted when NATS is down (no PubAck).
func (l *faultLoad) poison(ctx context.Context, k int) error {
	bad := newCommand(commands.TypeClientCreate, 1, fmt.Sprintf("bad%d-%d", l.run, k), 0, map[string]string{"email": "not-an-email"})
	wrong := newCommand(commands.TypeClientCreate, 1, fmt.Sprintf("wrong%d-%d", l.run, k), 0, newClient(seriesSeed, l.run*1000+k))
	other := wrong
	other.ClientRef = fmt.Sprintf("f%d-%d", l.run, k) // a real client's subject
	for _, m := range []struct {
		cmd     commands.Command
		subject string
	}{{bad, commands.CommandSubject(bad)}, {wrong, commands.CommandSubject(other)}} {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := l.s.js.PublishMsg(pctx, &nats.Msg{Subject: m.subject, Header: nats.Header(commands.CommandHeaders(m.cmd)), Data: mustJSON(m.cmd)},
			jetstream.WithMsgID(m.cmd.ID))
		cancel()
		if err == nil {
			l.accept([]string{m.cmd.ID}, true)
		}
	}
	return nil
}

func (l *faultLoad) accept(ids []string, invalid bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.accepted[id] = invalid
	}
}

func (l *faultLoad) acceptedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.accepted))
	for id := range l.accepted {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// probe sends a fresh create to every partition and returns how long after
// since the last of them was first attempted: when every partition was
// being worked again (not when it finished, which API faults on the probe
// itself would lengthen).
func (l *faultLoad) probe(ctx context.Context, ev *events, kill int, since time.Time) (time.Duration, error) {
	parts := l.s.top.Partitions()
	byPart := map[string]commands.Command{}
	for n := 0; len(byPart) < parts && n < 1000; n++ {
		c := newCommand(commands.TypeClientCreate, 1, fmt.Sprintf("probe%d-%d-%d", l.run, kill, n), 0,
			newClient(seriesSeed, 500000+l.run*50000+kill*1000+n))
		p := commands.StoredPartition("1", c.ClientKey(), parts)
		if _, ok := byPart[p]; !ok {
			byPart[p] = c
		}
	}
	var cmds []commands.Command
	for _, c := range byPart {
		cmds = append(cmds, c)
	}
	ids, err := l.ingest.send(ctx, cmds, true)
	if err != nil {
		return 0, err
	}
	if len(ids) != len(cmds) {
		return 0, fmt.Errorf("probe: %d of %d accepted", len(ids), len(cmds))
	}
	l.accept(ids, false)
	l.mu.Lock()
	for _, c := range cmds { // each probe is a client of one create
		l.clients = append(l.clients, &faultClient{ref: c.ClientRef, loc: 1, cmds: []commands.Command{c}, accepted: 1})
	}
	l.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 2*resumeTarget+time.Minute)
	defer cancel()
	if err := ev.waitAll(wctx, l.s, ids, "probe"); err != nil {
		return 0, fmt.Errorf("%w; consumers: %s", err, l.s.consumerReport(ctx))
	}
	var last time.Time
	for _, id := range ids {
		t, _ := ev.lookup(id)
		if t.started.After(last) {
			last = t.started
		}
	}
	return last.Sub(since), nil
}

// sandboxClient is a client as GET /control/clients shows it.
type sandboxClient struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	Phone    string   `json:"phone"`
	Email    string   `json:"email"`
	Comments []string `json:"comments"`
}

// check compares the events and the sandbox with what the load expects.
func (l *faultLoad) check(ctx context.Context, ev *events, res *faultResult) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, invalid := range l.accepted {
		t, ok := ev.lookup(id)
		switch {
		case !ok:
			res.lost++
			res.problem("lost: command %s has no terminal event", id)
			continue
		case t.count > 1:
			res.doubled++
			res.problem("doubled: command %s has %d terminal events", id, t.count)
		}
		switch {
		case invalid && (t.outcome != commands.OutcomeDeadLettered || t.class != commands.ClassInvalid):
			res.wrong++
			res.problem("wrong outcome: invalid command %s ended %s %s", id, t.outcome, t.class)
		case !invalid && t.outcome != commands.OutcomeSucceeded:
			res.wrong++
			res.problem("wrong outcome: command %s ended %s %s", id, t.outcome, t.class)
		}
	}
	byPhone := map[string][]sandboxClient{}
	for _, loc := range []int64{1, 2} {
		var clients []sandboxClient
		if err := l.s.control(ctx, http.MethodGet, fmt.Sprintf("/control/clients?location=%d", loc), "", &clients); err != nil {
			return err
		}
		for _, c := range clients {
			key := fmt.Sprintf("%d/%s", loc, c.Phone)
			byPhone[key] = append(byPhone[key], c)
			seen := map[string]bool{}
			for _, text := range c.Comments {
				if seen[text] {
					res.doubled++
					res.problem("doubled: comment %q on client %d", text, c.ID)
				}
				seen[text] = true
			}
		}
	}
	for key, cs := range byPhone {
		if len(cs) > 1 {
			res.doubled++
			res.problem("doubled: %d clients with phone %s", len(cs), key)
		}
	}
	for _, fc := range l.clients {
		if fc.accepted == 0 {
			continue
		}
		want, exists := fc.expected()
		key := fmt.Sprintf("%d/%s", fc.loc, strings.TrimPrefix(want.Phone, "+"))
		got := byPhone[key]
		switch {
		case !exists && len(got) > 0:
			res.outOfOrder++
			res.problem("out of order: client %s exists after its delete", fc.ref)
		case exists && len(got) == 0:
			res.outOfOrder++
			res.problem("out of order: client %s is missing", fc.ref)
		case exists && (got[0].Name != want.Name || got[0].Email != want.Email ||
			!sameSet(got[0].Comments, want.Comments)):
			res.outOfOrder++
			res.problem("out of order: client %s is %+v, want %+v", fc.ref, got[0], want)
		}
	}
	for _, clients := range l.bulk {
		for _, c := range clients {
			if len(byPhone["1/"+strings.TrimPrefix(c.Phone, "+")]) == 0 {
				res.lost++
				res.problem("lost: bulk client %s missing", c.Phone)
			}
		}
	}
	return nil
}

// expected is the client's state after its accepted commands, in order, and
// whether it exists.
func (fc *faultClient) expected() (sandboxClient, bool) {
	var want sandboxClient
	exists := false
	want.Comments = []string{}
	for _, c := range fc.cmds[:fc.accepted] {
		switch c.Type {
		case commands.TypeClientCreate:
			var f clientFields
			_ = json.Unmarshal(c.Payload, &f)
			want.Name, want.Phone, exists = f.Name, f.Phone, true
		case commands.TypeClientUpdate:
			p, _ := c.ClientUpdate()
			want.Name, want.Email = *p.Name, *p.Email
		case commands.TypeCommentAdd:
			p, _ := c.CommentAdd()
			want.Comments = append(want.Comments, p.Text)
		case commands.TypeClientDelete:
			exists = false
		}
	}
	return want, exists
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// consumerReport describes the worker consumers, for the post-mortem of a
// stalled partition: pending, waiting for an ack, the pin.
func (s *stack) consumerReport(ctx context.Context) string {
	var parts []string
	for p := range s.top.Partitions() {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := s.js.Consumer(cctx, topology.StreamCommands, topology.WorkerConsumer(p))
		cancel()
		if err != nil {
			parts = append(parts, fmt.Sprintf("p%d: %v", p, err))
			continue
		}
		i := c.CachedInfo()
		pin := ""
		for _, g := range i.PriorityGroups {
			pin = g.PinnedClientID
		}
		parts = append(parts, fmt.Sprintf("p%d pending %d ack_pending %d waiting %d redelivered %d pin %q",
			p, i.NumPending, i.NumAckPending, i.NumWaiting, i.NumRedelivered, pin))
	}
	return strings.Join(parts, "; ")
}
