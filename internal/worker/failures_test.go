package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// A 422 goes to the DLQ at once, with everything an operator needs.
func TestPermanent422ToDLQ(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Taken", Phone: "15550000400"})
	r := e.startWorker(workerOpts{})
	c := createCmd("dup-1", "Second", "+1 555 000 0400")
	c.CorrelationID = "corr-422"
	raw, _ := json.Marshal(c)
	seq := e.publish(c)

	got := e.waitTerminal(10*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassPermanent ||
		got.HTTPStatus != 422 || got.Attempts != 1 || got.CorrelationID != "corr-422" {
		t.Fatalf("result: %+v", got)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if len(e.dlqOf(c.ID)) == 0 {
			return errNotYet
		}
		return nil
	})
	dl := e.dlqOf(c.ID)
	if len(dl) != 1 {
		t.Fatalf("%d DLQ records, want 1", len(dl))
	}
	d := dl[0]
	if d.ErrorClass != commands.ClassPermanent || d.HTTPStatus != 422 || d.APIMessage == "" ||
		d.Attempts != 1 || d.StreamSeq != seq || d.Type != commands.TypeClientCreate || d.LocationID != testLoc ||
		d.ClientKey != "ref_dup-1" || d.FirstFailureAt.IsZero() || d.LastFailureAt.IsZero() || d.WorkerID == "" {
		t.Errorf("DLQ record: %+v", d)
	}
	if !strings.HasPrefix(d.Subject, "altegio.cmd.") || !strings.HasSuffix(d.Subject, ".1.ref_dup-1.create") {
		t.Errorf("DLQ subject %q", d.Subject)
	}
	if string(d.CommandBytes()) != string(raw) {
		t.Errorf("command bytes:\n got %s\nwant %s", d.CommandBytes(), raw)
	}
	if h := d.Headers[commands.HeaderMsgID]; len(h) != 1 || h[0] != c.ID {
		t.Errorf("original headers: %v", d.Headers)
	}
	if len(d.FieldErrors) == 0 && !strings.Contains(d.APIMessage, "phone") {
		t.Errorf("no field errors or message about the phone: %+v", d)
	}
	if rec := e.record(c.ID); rec.State != idem.StateDead || rec.DeadLetter == nil {
		t.Errorf("record: %+v", rec)
	}
	if n := e.sb.Stats().CreateAttemptsByPhone["15550000400"]; n != 1 {
		t.Errorf("create attempts: %d, want 1 (no retry of a permanent failure)", n)
	}
	// The counter moves once the result event is out too, a moment after
	// the DLQ record.
	testenv.WaitFor(t, 5*time.Second, func() error {
		if v := r.counter(t, "worker_dlq_writes_total", map[string]string{"class": "permanent"}); v != 1 {
			return fmt.Errorf("worker_dlq_writes_total{class=permanent} = %v", v)
		}
		return nil
	})
	e.assertOneTerminal(c.ID)
}

// Invalid JSON and invalid commands go to the DLQ at once, class invalid.
func TestInvalidCommandsToDLQ(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	seqJSON := e.publishRaw("altegio.cmd.1.ref_bad.create", nats.Header{"Nats-Msg-Id": {"bad-json"}}, []byte(`{"id": "x",`))
	bad := commands.Command{ID: commands.NewID(), Type: commands.TypeClientCreate, LocationID: testLoc, ClientRef: "bad-2"}
	must(bad.SetPayload(map[string]any{"name": "No phone"}))
	seqInvalid := e.publish(bad)
	noID := createCmd("bad-3", "No id", phone(401))
	noID.ID = ""
	data, _ := json.Marshal(noID)
	seqNoID := e.publishRaw(commands.CommandSubject(noID), nil, data)

	testenv.WaitFor(t, 10*time.Second, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if len(e.dlq) < 3 || len(e.results) < 3 {
			return errNotYet
		}
		return nil
	})
	e.mu.Lock()
	recs := slices.Clone(e.dlq)
	results := slices.Clone(e.results)
	e.mu.Unlock()
	bySeq := map[uint64]commands.DLQRecord{}
	for _, r := range recs {
		bySeq[r.StreamSeq] = r
		if r.ErrorClass != commands.ClassInvalid || r.Attempts != 0 || len(r.FieldErrors) == 0 {
			t.Errorf("DLQ record: %+v", r)
		}
	}
	if r := bySeq[seqJSON]; string(r.CommandRaw) != `{"id": "x",` || r.Command != nil {
		t.Errorf("undecodable command kept as %q / %q", r.CommandRaw, r.Command)
	}
	if r := bySeq[seqInvalid]; r.CommandID != bad.ID || !slices.ContainsFunc(r.FieldErrors, func(p commands.Problem) bool {
		return strings.Contains(p.Path, "phone")
	}) {
		t.Errorf("invalid command record: %+v", r)
	}
	if r := bySeq[seqNoID]; !slices.ContainsFunc(r.FieldErrors, func(p commands.Problem) bool { return p.Path == "id" }) {
		t.Errorf("command without id: %+v", r)
	}
	dead := 0
	for _, r := range results {
		if r.Outcome == commands.OutcomeDeadLettered && r.ErrorClass == commands.ClassInvalid {
			dead++
		}
	}
	if dead != 3 {
		t.Errorf("%d dead_lettered invalid results, want 3", dead)
	}
	e.waitCommandsEmpty(10 * time.Second)
	if n := e.sb.Stats().Requests; n != 0 {
		t.Errorf("%d API requests for invalid commands", n)
	}
}

// Credentials rejected after the one re-login: the command waits for the
// account (not as an attempt), an event says the account needs attention,
// and once the credentials work the command goes on without a replay.
func TestAuthFailurePausesUntilCredentialsWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	authz := &switchableAuth{token: "revoked-token"}
	r := e.startWorker(workerOpts{cfg: Config{RetryMax: 200 * time.Millisecond},
		authorizer: func(jetstream.JetStream) altegio.Authorizer { return authz }})
	c := createCmd("auth-1", "Fay", phone(500))
	e.publish(c)
	testenv.WaitFor(t, 10*time.Second, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if len(e.attention) == 0 || r.counter(t, "worker_account_paused_total", nil) < 2 {
			return errNotYet
		}
		return nil
	})
	if res := e.resultsOf(c.ID); len(res) != 0 {
		t.Fatalf("a command of a broken account reached %s; want it waiting", res[0].Outcome)
	}
	e.mu.Lock()
	a := e.attention[0]
	e.mu.Unlock()
	if a.Kind != AccountAttentionKind || !a.Paused || a.CommandID != c.ID || a.LocationID != testLoc || a.Reason == "" {
		t.Errorf("account event: %+v", a)
	}
	if strings.Contains(a.Reason, "revoked-token") || strings.Contains(a.Reason, testPartner) {
		t.Errorf("account event leaks a token: %q", a.Reason)
	}

	authz.set(testUser) // the operator fixed the credentials
	got := e.waitTerminal(10*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeSucceeded || got.Attempts != 1 {
		t.Fatalf("result after the fix: %+v, want succeeded at the first real attempt", got)
	}
	if dl := e.dlqOf(c.ID); len(dl) != 0 {
		t.Errorf("DLQ: %+v", dl)
	}
	e.assertOneTerminal(c.ID)
}

// A command whose account never works again is dead-lettered (class auth)
// on the consumer's last delivery, not before.
func TestAuthFailureDeadLettersOnLastDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{maxDeliver: 3})
	// The refusal names no account; the label comes from AccountOf.
	accountOf := func(loc int64) string { return fmt.Sprintf("acct-%d", loc) }
	r := e.startWorker(workerOpts{userToken: "revoked-token", cfg: Config{RetryMax: 100 * time.Millisecond, AccountOf: accountOf}})
	c := createCmd("auth-2", "Gil", phone(501))
	e.publish(c)
	got := e.waitTerminal(10*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassAuth || got.HTTPStatus != 401 {
		t.Fatalf("result: %+v", got)
	}
	if n := r.counter(t, "worker_account_paused_total", map[string]string{"account": accountOf(testLoc)}); n != 2 {
		t.Errorf("paused %v times for account %s before the last delivery, want 2", n, accountOf(testLoc))
	}
	if dl := e.dlqOf(c.ID); len(dl) != 1 || dl[0].ErrorClass != commands.ClassAuth {
		t.Errorf("DLQ: %+v", dl)
	}
	e.assertOneTerminal(c.ID)
}

// switchableAuth hands out a fixed partner token and a user token the test
// can change (an operator fixing the credentials).
type switchableAuth struct {
	mu    sync.Mutex
	token string
}

func (a *switchableAuth) set(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.token = tok
}

func (a *switchableAuth) Credentials(context.Context, int64) (altegio.Credentials, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return altegio.Credentials{PartnerToken: testPartner, UserToken: a.token, Version: 1}, nil
}

func (a *switchableAuth) Refresh(ctx context.Context, loc int64, _ altegio.Credentials) (altegio.Credentials, error) {
	return a.Credentials(ctx, loc)
}

// Retries that never succeed end in the DLQ as exhausted after
// MaxAttempts real attempts.
func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientUpdate, Status: 500})
	id := e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Gus", Phone: "15550000600"})
	e.startWorker(workerOpts{cfg: Config{MaxAttempts: 3, RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}})
	c := updateByID(id, "Gus 2", "15550000600")
	e.publish(c)
	got := e.waitTerminal(10*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassExhausted ||
		got.Attempts != 3 || got.HTTPStatus != 500 {
		t.Fatalf("result: %+v", got)
	}
	if n := e.sb.Stats().ByOp[sandbox.OpClientUpdate]; n != 3 {
		t.Errorf("%d update calls, want 3", n)
	}
	e.assertOneTerminal(c.ID)
}

// A create whose earlier attempt may have been applied, where a client with
// the phone but another name exists: the outcome cannot be told, so the
// command goes to the DLQ as ambiguous instead of guessing.
func TestAmbiguousCreateToDLQ(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Somebody Else", Phone: "15550000700"})
	// The first create gets a 504 before anything is applied; for the
	// worker the outcome is unknown.
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientCreate, Status: 504, Times: 1})
	e.startWorker(workerOpts{})
	c := createCmd("amb-1", "Hal", "15550000700")
	e.publish(c)
	got := e.waitTerminal(10*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassAmbiguous || got.Attempts != 2 {
		t.Fatalf("result: %+v", got)
	}
	if rec := e.record(c.ID); !rec.Uncertain {
		t.Errorf("record lost the uncertain mark a replay needs: %+v", rec)
	}
	e.assertOneTerminal(c.ID)
}

// A 429 storm defers commands (not counted as attempts) until it passes.
func TestRateLimitStormThenRecovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.sb.SetFaults(sandbox.Faults{RateLimitStormUntil: time.Now().Add(1500 * time.Millisecond)})
	r := e.startWorker(workerOpts{})
	var cmds []commands.Command
	for i := range 5 {
		cmds = append(cmds, createCmd("storm-"+itoa(i), "Storm", phone(800+i)))
	}
	for _, c := range cmds {
		e.publish(c)
	}
	res := e.waitTerminal(30*time.Second, ids(cmds...)...)
	deferrals := 0
	for _, c := range cmds {
		got := res[c.ID]
		if got.Outcome != commands.OutcomeSucceeded || got.Attempts != 1 {
			t.Errorf("%s: %s attempts %d (%s)", c.ClientRef, got.Outcome, got.Attempts, got.APIMessage)
		}
		deferrals += e.record(c.ID).Deferrals
	}
	if deferrals == 0 || e.sb.Stats().RateLimited == 0 {
		t.Fatalf("no deferrals recorded (%d 429s)", e.sb.Stats().RateLimited)
	}
	if v := r.counter(t, "worker_retries_total", map[string]string{"class": "rate_limited"}); v == 0 {
		t.Error("worker_retries_total{class=rate_limited} = 0")
	}
	stats := e.sb.Stats()
	for i := range cmds {
		if n := stats.CreatesByPhone[strings.TrimPrefix(phone(800+i), "+")]; n != 1 {
			t.Errorf("client %d created %d times", i, n)
		}
	}
	e.assertOneTerminal(ids(cmds...)...)
}

// A command that runs out of deliveries without a verdict (here the handler
// panics every time, as a crash on the last delivery would) is
// dead-lettered by the sweeper and removed from the stream.
func TestSweeperDeadLettersMaxDeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{maxDeliver: 2})
	c := createCmd("sweep-1", "Ida", phone(900))
	e.startWorker(workerOpts{hooks: hooks{beforeAPI: func(cmd commands.Command, _ int) {
		if cmd.ID == c.ID {
			panic("worker dies on this command")
		}
	}}})
	ok := createCmd("sweep-2", "Jo", phone(901))
	e.publish(c)
	e.publish(ok)
	res := e.waitTerminal(20*time.Second, c.ID, ok.ID)
	got := res[c.ID]
	if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassExhausted ||
		!strings.Contains(got.APIMessage, ReasonMaxDeliveries) || got.Attempts != 2 {
		t.Fatalf("result: %+v", got)
	}
	if res[ok.ID].Outcome != commands.OutcomeSucceeded {
		t.Fatalf("other command: %+v", res[ok.ID])
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if len(e.dlqOf(c.ID)) == 0 {
			return errNotYet
		}
		return nil
	})
	if dl := e.dlqOf(c.ID); len(dl) != 1 || dl[0].ErrorClass != commands.ClassExhausted || !strings.HasPrefix(dl[0].Reason, ReasonMaxDeliveries) {
		t.Fatalf("DLQ: %+v", dl)
	}
	e.assertOneTerminal(c.ID, ok.ID)
	if n := e.sb.Stats().CreateAttemptsByPhone[strings.TrimPrefix(phone(900), "+")]; n != 0 {
		t.Errorf("%d create calls for the poisoned command", n)
	}
}

// A copy of a finished command is not carried out again; a replay of a
// dead-lettered command starts over and succeeds once the cause is fixed.
func TestDuplicateAndReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})

	// Update by a ref nobody created yet: permanent.
	upd := updateCmd("rep-1", commands.ClientFields{Name: new("Kim 2"), Phone: new(phone(1000))})
	e.publish(upd)
	if got := e.waitTerminal(10*time.Second, upd.ID)[upd.ID]; got.ErrorClass != commands.ClassPermanent ||
		!strings.Contains(got.APIMessage, "unknown client_ref") {
		t.Fatalf("update by unknown ref: %+v", got)
	}

	create := createCmd("rep-1", "Kim", phone(1000))
	e.publish(create)
	e.waitTerminal(10*time.Second, create.ID)

	// The same create again under another message id (outside the dedup
	// window): a duplicate event, no API call.
	data, _ := json.Marshal(create)
	h := nats.Header(commands.CommandHeaders(create))
	h.Set(commands.HeaderMsgID, create.ID+":again")
	e.publishRaw(commands.CommandSubject(create), h, data)
	testenv.WaitFor(t, 10*time.Second, func() error {
		for _, r := range e.resultsOf(create.ID) {
			if r.Outcome == commands.OutcomeDuplicate {
				return nil
			}
		}
		return errNotYet
	})

	// Replay the dead-lettered update as the DLQ tooling does.
	dl := e.dlqOf(upd.ID)
	if len(dl) != 1 {
		t.Fatalf("DLQ records of the update: %d", len(dl))
	}
	h = nats.Header(dl[0].Headers)
	h.Set(commands.HeaderMsgID, commands.ReplayMsgID(upd.ID, 1))
	h.Set(commands.HeaderReplay, "1")
	h.Set(commands.HeaderReplayOf, "1")
	e.publishRaw(commands.CommandSubject(upd), h, dl[0].CommandBytes())
	testenv.WaitFor(t, 10*time.Second, func() error {
		for _, r := range e.terminal(upd.ID) {
			if r.Outcome == commands.OutcomeSucceeded {
				return nil
			}
		}
		return errNotYet
	})
	term := e.terminal(upd.ID)
	if len(term) != 2 || term[1].Replay != 1 {
		t.Fatalf("terminal results of the update: %+v", term)
	}
	if n := e.sb.Stats().CreatesByPhone[strings.TrimPrefix(phone(1000), "+")]; n != 1 {
		t.Fatalf("created %d times", n)
	}
	id, _ := e.ref("rep-1")
	if got, _ := e.sb.Client(testLoc, id); got.Name != "Kim 2" {
		t.Fatalf("client after replay: %+v", got)
	}
	if n := len(e.terminal(create.ID)); n != 1 {
		t.Fatalf("create has %d terminal results", n)
	}
}

// Run cancelled mid-batch (SIGTERM): in-flight commands finish, the rest go
// back to the stream; after a restart every command ends in exactly one
// terminal result and none is applied twice.
func TestShutdownMidBatchThenRestart(t *testing.T) {
	t.Parallel()
	// Every answer takes a second, so that the stop below certainly comes
	// while requests are on the wire and later commands wait behind them.
	e := newEnv(t, envOpts{sandbox: func(c *sandbox.Config) { c.Faults.Latency = time.Second }})
	r := e.startWorker(workerOpts{})
	const n = 30
	var all []commands.Command
	for i := range n {
		ref := "term-" + itoa(i)
		all = append(all, createCmd(ref, "Lee", phone(1100+i)),
			commentCmd(ref, "hello "+itoa(i)))
	}
	for _, c := range all {
		e.publish(c)
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		if r.counter(t, "worker_in_flight", nil) < 1 {
			return errNotYet
		}
		return nil
	})
	start := time.Now()
	if err := r.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	done := 0
	for _, c := range all {
		if len(e.terminal(c.ID)) > 0 {
			done++
		}
	}
	// A comment waits for its client's create, which was on the wire at
	// the stop: the restart has work to do.
	if done == len(all) {
		t.Fatalf("all %d commands finished before the shutdown: it was not mid-batch", done)
	}
	t.Logf("%d of %d commands finished before the shutdown", done, len(all))
	e.sb.SetFaults(sandbox.Faults{})

	e.startWorker(workerOpts{})
	res := e.waitTerminal(30*time.Second, ids(all...)...)
	for _, c := range all {
		if res[c.ID].Outcome != commands.OutcomeSucceeded {
			t.Errorf("%s %s: %s %s", c.Type, c.ClientRef, res[c.ID].Outcome, res[c.ID].APIMessage)
		}
	}
	e.assertOneTerminal(ids(all...)...)
	stats := e.sb.Stats()
	for i := range n {
		if k := stats.CreatesByPhone[strings.TrimPrefix(phone(1100+i), "+")]; k != 1 {
			t.Errorf("client %d created %d times", i, k)
		}
		id, _ := e.ref("term-" + itoa(i))
		if cs := e.sb.Comments(testLoc, id); len(cs) != 1 {
			t.Errorf("client %d has %d comments", i, len(cs))
		}
	}
}

// Several worker processes (separate connections) share many clients'
// create → update → comment → delete, interleaved across clients, with
// random 5xx and connection resets before the API applies anything.
func TestManyClientsThreeWorkers(t *testing.T) {
	clients := 200
	if short() {
		clients = 30
	}
	e := newEnv(t, envOpts{})
	e.sb.SetFaults(sandbox.Faults{ErrorRate: 0.03, ResetRate: 0.02, Seed: 42})
	// The API budget is proved by TestWorkersStayWithinAPIBudget; here the
	// shared limiter's KV round trips would only slow the soak down.
	var runners []*runner
	for range 3 {
		runners = append(runners, e.startWorker(workerOpts{noLimiter: true}))
	}
	type client struct {
		ref  string
		cmds []commands.Command
	}
	cs := make([]client, clients)
	for i := range cs {
		ref := "many-" + itoa(i)
		cs[i] = client{ref: ref, cmds: []commands.Command{
			createCmd(ref, "Many", phone(2000+i)),
			updateCmd(ref, commands.ClientFields{Name: new("Many " + itoa(i)), Phone: new(phone(2000 + i)), Email: new("m" + itoa(i) + "@example.com")}),
			commentCmd(ref, "note "+itoa(i)),
		}}
		if i%2 == 0 {
			cs[i].cmds = append(cs[i].cmds, deleteCmd(ref))
		}
	}
	var all []commands.Command
	for step := range 4 { // interleaved: every client's step k before any step k+1
		for _, c := range cs {
			if step < len(c.cmds) {
				e.publish(c.cmds[step])
				all = append(all, c.cmds[step])
			}
		}
	}
	res := e.waitTerminal(60*time.Second, ids(all...)...)
	for _, c := range all {
		if res[c.ID].Outcome != commands.OutcomeSucceeded {
			t.Fatalf("%s %s: %s %s", c.Type, c.ClientRef, res[c.ID].Outcome, res[c.ID].APIMessage)
		}
	}
	e.assertOneTerminal(ids(all...)...)
	stats := e.sb.Stats()
	for i, c := range cs {
		if n := stats.CreatesByPhone[strings.TrimPrefix(phone(2000+i), "+")]; n != 1 {
			t.Errorf("%s created %d times", c.ref, n)
		}
		createRes := res[c.cmds[0].ID]
		got, ok := e.sb.Client(testLoc, createRes.ClientID)
		switch {
		case i%2 == 0 && ok:
			t.Errorf("%s not deleted", c.ref)
		case i%2 == 1 && (!ok || got.Name != "Many "+itoa(i) || got.Email != "m"+itoa(i)+"@example.com"):
			t.Errorf("%s: %+v (found %v)", c.ref, got, ok)
		case i%2 == 1:
			if cm := e.sb.Comments(testLoc, got.ID); len(cm) != 1 || cm[0].Text != "note "+itoa(i) {
				t.Errorf("%s comments: %+v", c.ref, cm)
			}
		}
	}
	if live := len(e.sb.Clients(testLoc)); live != clients/2 {
		t.Errorf("%d clients left, want %d", live, clients/2)
	}
	handled := 0.0
	for _, r := range runners {
		handled += r.counter(t, "worker_commands_total", map[string]string{"outcome": "succeeded"})
	}
	if int(handled) != len(all) {
		t.Errorf("workers report %v successes, want %d", handled, len(all))
	}
	t.Logf("%d commands, %d API requests, %d resets, %d 5xx", len(all), stats.Requests, stats.Resets,
		stats.ByStatus[500]+stats.ByStatus[502]+stats.ByStatus[503]+stats.ByStatus[504])
}

// A late max-deliveries advisory for a command that already settled is
// consumed without a second terminal result or a DLQ record.
func TestSweeperSkipsSettledCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	c := createCmd("sk-1", "Max", phone(1300))
	seq := e.publish(c)
	e.waitTerminal(10*time.Second, c.ID)
	// A late advisory for a command that is gone changes nothing.
	adv, _ := json.Marshal(maxDeliveriesAdvisory{Stream: topology.StreamCommands, Consumer: "worker-p0", StreamSeq: seq, Deliveries: 25})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.Publish(ctx, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.COMMANDS.worker-p0", adv); err != nil {
		t.Fatalf("publish advisory: %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		s, err := e.js.Stream(ctx, topology.StreamAdvisories)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return errNotYet
		}
		return nil
	})
	if n := len(e.terminal(c.ID)); n != 1 {
		t.Fatalf("%d terminal results", n)
	}
	if len(e.dlqOf(c.ID)) != 0 {
		t.Fatal("a settled command was dead-lettered")
	}
}

// All workers together stay inside the API budget: the sandbox enforces
// 10 requests/s per IP and the workers share a limiter of 10/s through KV,
// so no request is answered 429.
func TestWorkersStayWithinAPIBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{sandbox: func(c *sandbox.Config) { c.RatePerSecond = 10 }})
	// One create per request, so that the budget, not coalescing, decides.
	e.startWorker(workerOpts{perSecond: 10, cfg: Config{CreateBatch: 1}})
	e.startWorker(workerOpts{perSecond: 10, cfg: Config{CreateBatch: 1}})
	var cmds []commands.Command
	for i := range 24 {
		cmds = append(cmds, createCmd("budget-"+itoa(i), "Ned", phone(1400+i)))
	}
	start := time.Now()
	for _, c := range cmds {
		e.publish(c)
	}
	res := e.waitTerminal(30*time.Second, ids(cmds...)...)
	elapsed := time.Since(start)
	for _, c := range cmds {
		if res[c.ID].Outcome != commands.OutcomeSucceeded {
			t.Errorf("%s: %s", c.ClientRef, res[c.ID].Outcome)
		}
	}
	st := e.sb.Stats()
	if st.RateLimited != 0 {
		t.Errorf("%d requests answered 429; the workers overran the budget", st.RateLimited)
	}
	// 24 requests at 10/s cannot take less than about 1.4 s (the first 10
	// go at once).
	if elapsed < 1300*time.Millisecond {
		t.Errorf("24 requests done in %v: the limiter did not pace them", elapsed)
	}
	t.Logf("%d requests in %v, max %d concurrent", st.Requests, elapsed, st.MaxConcurrent)
}

// The worker with the real auth manager: a login that works, and a wrong
// password, which dead-letters with class auth and names the account.
func TestAuthManager(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		password string
		outcome  commands.Outcome
	}{
		{"login works", "secret", commands.OutcomeSucceeded},
		// Waits for the account until the last delivery (3 here).
		{"wrong password", "not-the-s3cret", commands.OutcomeDeadLettered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{maxDeliver: 3})
			e.startWorker(workerOpts{cfg: Config{RetryMax: 100 * time.Millisecond}, authorizer: func(js jetstream.JetStream) altegio.Authorizer {
				loginer, err := altegio.New(altegio.Config{BaseURL: e.url}, nil, nil)
				if err != nil {
					t.Fatalf("login client: %v", err)
				}
				m, err := auth.New(auth.Config{Accounts: []auth.Account{{Name: "main", PartnerToken: testPartner,
					Login: "owner@example.com", Password: tc.password}}, Bucket: topology.BucketTokens}, js, loginer)
				if err != nil {
					t.Fatalf("auth manager: %v", err)
				}
				t.Cleanup(func() { _ = m.Close() })
				return m
			}})
			c := createCmd("am-1", "Quinn", phone(1600))
			e.publish(c)
			got := e.waitTerminal(20*time.Second, c.ID)[c.ID]
			if got.Outcome != tc.outcome {
				t.Fatalf("result: %+v", got)
			}
			if tc.outcome == commands.OutcomeSucceeded {
				return
			}
			if got.ErrorClass != commands.ClassAuth {
				t.Fatalf("class %s, want auth", got.ErrorClass)
			}
			testenv.WaitFor(t, 5*time.Second, func() error {
				e.mu.Lock()
				defer e.mu.Unlock()
				if len(e.attention) == 0 {
					return errNotYet
				}
				return nil
			})
			e.mu.Lock()
			a := e.attention[0]
			e.mu.Unlock()
			if a.Account != "main" || strings.Contains(a.Reason, tc.password) {
				t.Errorf("account event: %+v", a)
			}
			e.assertOneTerminal(c.ID)
		})
	}
}

// Retries are bounded by time, and an uncertain command is checked once
// more before it is given up: an update whose every PUT is applied and
// then loses its answer ends as succeeded, not as exhausted.
func TestUncertainUpdateIsVerifiedBeforeDeadLetter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientUpdate, Reset: true, AfterApply: true})
	id := e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Ivy", Phone: "15550000610"})
	e.startWorker(workerOpts{cfg: Config{RetryFor: 500 * time.Millisecond, RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}})
	c := updateByID(id, "Ivy 2", "15550000610")
	e.publish(c)
	got := e.waitTerminal(15*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeSucceeded || got.Note != noteUpdateFound || got.Attempts < 2 {
		t.Fatalf("result: %+v", got)
	}
	if len(e.dlqOf(c.ID)) != 0 {
		t.Errorf("dead-lettered although applied: %+v", e.dlqOf(c.ID))
	}
	e.assertOneTerminal(c.ID)
}

// The last check finds nothing when nothing was applied: the command is
// dead-lettered as exhausted once its time is over, whatever the count.
func TestRetriesBoundedByTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientUpdate, Status: 503})
	id := e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Jo", Phone: "15550000620"})
	e.startWorker(workerOpts{cfg: Config{RetryFor: 500 * time.Millisecond, RetryBase: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond}})
	c := updateByID(id, "Jo 2", "15550000620")
	e.publish(c)
	got := e.waitTerminal(15*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassExhausted {
		t.Fatalf("result: %+v", got)
	}
	rec := e.record(c.ID)
	if d := rec.LastFailureAt.Sub(rec.RetryingSince); d < 500*time.Millisecond {
		t.Errorf("gave up %v after the first failure, before RetryFor", d)
	}
	if cl, _ := e.sb.Client(testLoc, id); cl.Name != "Jo" {
		t.Errorf("client changed: %+v", cl)
	}
	e.assertOneTerminal(c.ID)
}

// updateByID is a client.update of client id (by id, not by ref) setting
// name and phone.
func updateByID(id int64, name, phone string) commands.Command {
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeClientUpdate, LocationID: testLoc, ClientID: id}
	must(c.SetPayload(commands.ClientFields{Name: new(name), Phone: new(phone)}))
	return c
}

// Waiting is not failing: 429 deferrals longer than RetryFor do not use up
// the retries of the transient failure that follows them.
func TestRetryTimeStartsAtTheFirstRealFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	id := e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Kim", Phone: "15550000630"})
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientUpdate, Status: 429, Times: 6})
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientUpdate, Status: 503, Times: 1})
	e.startWorker(workerOpts{noLimiter: true, cfg: Config{RetryFor: 300 * time.Millisecond, RetryBase: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond}})
	c := updateByID(id, "Kim 2", "15550000630")
	e.publish(c)
	got := e.waitTerminal(15*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeSucceeded {
		t.Fatalf("result: %+v", got)
	}
	if rec := e.record(c.ID); rec.Deferrals < 6 || rec.RetryingSince.IsZero() {
		t.Errorf("record: %+v, want 6 deferrals and a retry", rec)
	}
}

// A client_ref whose client was deleted behind the worker's back (in the
// API, not by a delete command) dead-letters an update and a comment with
// a reason that names the ref and the mapped id; a delete by the same ref
// still succeeds, and a command with an explicit client_id keeps the API's
// own message.
func TestStaleClientRefToDLQ(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	create := createCmd("crm-42", "Kim", phone(4200))
	e.publish(create)
	if got := e.waitTerminal(10*time.Second, create.ID)[create.ID]; got.Outcome != commands.OutcomeSucceeded {
		t.Fatalf("create: %+v", got)
	}
	id, ok := e.ref("crm-42")
	if !ok || !e.sb.DeleteClient(testLoc, id) {
		t.Fatalf("ref crm-42 maps to %d (%v), which the sandbox could not delete", id, ok)
	}

	upd := updateCmd("crm-42", commands.ClientFields{Name: new("Kim 2")})
	comment := commentCmd("crm-42", "called back")
	byID := updateCmd("", commands.ClientFields{Name: new("Kim 3")})
	byID.ClientID = id
	del := deleteCmd("crm-42")
	for _, c := range []commands.Command{upd, comment, byID, del} {
		e.publish(c)
	}
	res := e.waitTerminal(10*time.Second, upd.ID, comment.ID, byID.ID, del.ID)

	want := fmt.Sprintf(`client_ref "crm-42" points at client %d, which the API does not have (404)`, id)
	for _, c := range []commands.Command{upd, comment} {
		got := res[c.ID]
		if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassPermanent ||
			got.HTTPStatus != http.StatusNotFound || got.APIMessage != want {
			t.Errorf("%s by the stale ref: %+v", c.Type, got)
		}
		testenv.WaitFor(t, 5*time.Second, func() error {
			if len(e.dlqOf(c.ID)) == 0 {
				return errNotYet
			}
			return nil
		})
		dl := e.dlqOf(c.ID)
		if len(dl) != 1 || dl[0].Reason != want || dl[0].ErrorClass != commands.ClassPermanent ||
			dl[0].HTTPStatus != http.StatusNotFound || dl[0].ClientKey != "ref_crm-42" {
			t.Errorf("%s DLQ record: %+v, want reason %q", c.Type, dl, want)
		}
	}
	if got := res[byID.ID]; got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassPermanent ||
		strings.Contains(got.APIMessage, "client_ref") || !strings.Contains(got.APIMessage, "404") {
		t.Errorf("update by client_id: %+v, want the API's 404 message", got)
	}
	if got := res[del.ID]; got.Outcome != commands.OutcomeSucceeded {
		t.Errorf("delete by the stale ref: %+v, want succeeded (404 means gone)", got)
	}
	e.assertOneTerminal(upd.ID, comment.ID, byID.ID, del.ID)
}
