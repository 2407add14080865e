package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// A client's whole life, addressed by client_ref after the create:
// create → ref stored → update by ref → comment → delete.
func TestLifecycleByRef(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	r := e.startWorker(workerOpts{})

	create := createCmd("crm-1", "Ann", "+1 555 000 0001")
	update := updateCmd("crm-1", commands.ClientFields{Name: new("Anna"), Phone: new("+15550000001"), Email: new("anna@example.com")})
	comment := commentCmd("crm-1", "prefers mornings")
	for _, c := range []commands.Command{create, update, comment} {
		e.publish(c)
	}
	res := e.waitTerminal(20*time.Second, create.ID, update.ID, comment.ID)
	for id, got := range res {
		if got.Outcome != commands.OutcomeSucceeded {
			t.Fatalf("command %s: outcome %s (%s), want succeeded", id, got.Outcome, got.APIMessage)
		}
	}
	clientID, ok := e.ref("crm-1")
	if !ok || clientID == 0 || res[create.ID].ClientID != clientID {
		t.Fatalf("ref crm-1 maps to %d (ok %v); create result client %d", clientID, ok, res[create.ID].ClientID)
	}
	got, ok := e.sb.Client(testLoc, clientID)
	if !ok || got.Name != "Anna" || got.Email != "anna@example.com" || got.Phone != "15550000001" {
		t.Fatalf("client after update: %+v (found %v)", got, ok)
	}
	if cs := e.sb.Comments(testLoc, clientID); len(cs) != 1 || cs[0].Text != "prefers mornings" {
		t.Fatalf("comments: %+v", cs)
	}
	if rec := e.record(create.ID); rec.State != idem.StateDone || rec.Attempts != 1 || rec.ClientID != clientID {
		t.Fatalf("create record: %+v", rec)
	}

	del := deleteCmd("crm-1")
	e.publish(del)
	if got := e.waitTerminal(10*time.Second, del.ID)[del.ID]; got.Outcome != commands.OutcomeSucceeded || got.ClientID != clientID {
		t.Fatalf("delete result: %+v", got)
	}
	if _, ok := e.sb.Client(testLoc, clientID); ok {
		t.Fatal("client still exists after delete")
	}
	if _, ok := e.ref("crm-1"); ok {
		t.Fatal("ref still mapped after delete")
	}
	e.assertOneTerminal(create.ID, update.ID, comment.ID, del.ID)
	if n := e.sb.Stats().CreatesByPhone["15550000001"]; n != 1 {
		t.Fatalf("creates for the phone: %d, want 1", n)
	}
	// The counters move when the handler returns, a moment after the
	// result event is out.
	testenv.WaitFor(t, 5*time.Second, func() error {
		if v := r.counter(t, "worker_commands_total", map[string]string{"outcome": "succeeded"}); v != 4 {
			return fmt.Errorf("worker_commands_total{outcome=succeeded} = %v, want 4", v)
		}
		if v := r.counter(t, "worker_handle_duration_seconds", map[string]string{"type": "client.create"}); v < 1 {
			return errors.New("no handle duration observed for client.create")
		}
		return nil
	})
	if err := r.w.Ready(context.Background()); err != nil {
		t.Errorf("Ready: %v", err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		mfs, err := r.reg.Gather()
		if err != nil {
			return err
		}
		for _, mf := range mfs {
			if mf.GetName() == "worker_consumer_pending" && len(mf.GetMetric()) == e.top.Partitions() {
				return nil
			}
		}
		return errors.New("worker_consumer_pending not polled for every partition")
	})
	if err := r.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := r.w.Ready(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Ready after stop: %v, want ErrNotRunning", err)
	}
}

// Deletes that find 404 succeed: the thing is gone, which is what was asked.
func TestDeletesFinding404Succeed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	id := e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Bob", Phone: "15550000002"})
	cid, ok := e.sb.SeedComment(testLoc, sandbox.Comment{ClientID: id, Type: "default", Text: "x"})
	if !ok {
		t.Fatal("seed comment")
	}
	fid, ok := e.sb.SeedFile(testLoc, sandbox.File{ClientID: id, Name: "a.txt", Mime: "text/plain", Size: 3})
	if !ok {
		t.Fatal("seed file")
	}
	mk := func(typ commands.Type, payload any) commands.Command {
		c := commands.Command{ID: commands.NewID(), Type: typ, LocationID: testLoc, ClientID: id}
		if payload != nil {
			must(c.SetPayload(payload))
		}
		return c
	}
	first := []commands.Command{
		mk(commands.TypeCommentDelete, commands.CommentDeletePayload{CommentID: cid}),
		mk(commands.TypeFileDelete, commands.FileDeletePayload{FileID: fid}),
	}
	// The same deletes again find 404, and the client delete twice too.
	second := []commands.Command{
		mk(commands.TypeCommentDelete, commands.CommentDeletePayload{CommentID: cid}),
		mk(commands.TypeFileDelete, commands.FileDeletePayload{FileID: fid}),
		mk(commands.TypeClientDelete, nil),
		mk(commands.TypeClientDelete, nil),
	}
	for _, c := range append(first, second...) {
		e.publish(c)
	}
	res := e.waitTerminal(20*time.Second, ids(append(first, second...)...)...)
	for _, c := range first {
		if r := res[c.ID]; r.Outcome != commands.OutcomeSucceeded || r.Note != "" {
			t.Errorf("%s: %s note %q, want succeeded without note", c.Type, r.Outcome, r.Note)
		}
	}
	for i, c := range second {
		r := res[c.ID]
		wantNote := noteDeleteMissing
		if i == 2 {
			wantNote = "" // the first client delete finds the client
		}
		if r.Outcome != commands.OutcomeSucceeded || r.Note != wantNote {
			t.Errorf("%s #%d: %s note %q, want succeeded with note %q", c.Type, i, r.Outcome, r.Note, wantNote)
		}
	}
	if _, ok := e.sb.Client(testLoc, id); ok {
		t.Error("client still exists")
	}
}

// A lost response after the create was applied (503 or a reset after the
// side effect) is retried, and the retry finds the client by phone instead
// of creating it again.
func TestLostCreateResponseIsReconciled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rule sandbox.Rule
	}{
		{"503 after apply", sandbox.Rule{Op: sandbox.OpClientCreate, Status: 503, AfterApply: true, Times: 1}},
		{"reset after apply", sandbox.Rule{Op: sandbox.OpClientCreate, Reset: true, AfterApply: true, Times: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.sb.Inject(tc.rule)
			r := e.startWorker(workerOpts{})
			c := createCmd("lost-1", "Cleo", phone(3))
			e.publish(c)
			got := e.waitTerminal(20*time.Second, c.ID)[c.ID]
			if got.Outcome != commands.OutcomeSucceeded || got.Note != noteCreateFound || got.Attempts != 2 {
				t.Fatalf("result: %s note %q attempts %d, want succeeded, %q, 2", got.Outcome, got.Note, got.Attempts, noteCreateFound)
			}
			if n := e.sb.Stats().CreatesByPhone[strings.TrimPrefix(phone(3), "+")]; n != 1 {
				t.Fatalf("creates for the phone: %d, want 1", n)
			}
			if id, ok := e.ref("lost-1"); !ok || id != got.ClientID {
				t.Fatalf("ref maps to %d (%v), result client %d", id, ok, got.ClientID)
			}
			failed := 0
			for _, ev := range e.resultsOf(c.ID) {
				if ev.Outcome == commands.OutcomeFailed {
					failed++
					if ev.ErrorClass != commands.ClassTransient {
						t.Errorf("failed event class %s, want transient", ev.ErrorClass)
					}
				}
			}
			if failed != 1 {
				t.Errorf("%d failed events, want 1", failed)
			}
			if v := r.counter(t, "worker_retries_total", map[string]string{"class": "transient"}); v != 1 {
				t.Errorf("worker_retries_total{class=transient} = %v, want 1", v)
			}
			e.assertOneTerminal(c.ID)
		})
	}
}

// A comment whose response was lost is found in the client's comments, not
// posted again.
func TestLostCommentResponseIsReconciled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	id := e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Dora", Phone: "15550000004"})
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpCommentAdd, Status: 502, AfterApply: true, Times: 1})
	e.startWorker(workerOpts{})
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeCommentAdd, LocationID: testLoc, ClientID: id}
	must(c.SetPayload(commands.CommentAddPayload{Text: "call back"}))
	e.publish(c)
	got := e.waitTerminal(20*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeSucceeded || got.Note != noteCommentFound {
		t.Fatalf("result: %s note %q", got.Outcome, got.Note)
	}
	if cs := e.sb.Comments(testLoc, id); len(cs) != 1 {
		t.Fatalf("%d comments, want 1", len(cs))
	}
	e.assertOneTerminal(c.ID)
}

// A bulk create whose response was lost creates only the clients that are
// missing.
func TestLostBulkResponseIsReconciled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientBulk, Reset: true, AfterApply: true, Times: 1})
	e.startWorker(workerOpts{})
	var p commands.BulkCreatePayload
	for i := range 3 {
		p.Clients = append(p.Clients, commands.ClientFields{Name: new("Bulk"), Phone: new(phone(100 + i))})
	}
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeClientBulkCreate, LocationID: testLoc}
	must(c.SetPayload(p))
	e.publish(c)
	got := e.waitTerminal(20*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeSucceeded {
		t.Fatalf("result: %s %s", got.Outcome, got.APIMessage)
	}
	var data bulkData
	if err := json.Unmarshal(got.Data, &data); err != nil {
		t.Fatalf("bulk data: %v", err)
	}
	if len(data.Items) != 3 {
		t.Fatalf("items: %+v", data.Items)
	}
	stats := e.sb.Stats()
	for i, it := range data.Items {
		if it.Status != "found" || it.ClientID == 0 {
			t.Errorf("item %d: %+v, want found", i, it)
		}
		if n := stats.CreatesByPhone[strings.TrimPrefix(phone(100+i), "+")]; n != 1 {
			t.Errorf("item %d created %d times", i, n)
		}
	}
	e.assertOneTerminal(c.ID)
}

// A crash after the API call and before anything is recorded: the message
// comes back to another worker, which reconciles instead of creating twice.
func TestCrashBetweenAPISuccessAndAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	reached := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	w1 := e.startWorker(workerOpts{hooks: hooks{afterAPI: func(cmd commands.Command, err error) {
		if cmd.Type == commands.TypeClientCreate {
			once.Do(func() {
				close(reached)
				<-release // the process is "dead" from here on
			})
		}
	}}})
	t.Cleanup(func() { close(release) }) // runs before w1 is stopped

	c := createCmd("crash-1", "Eve", phone(5))
	e.publish(c)
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("create not attempted")
	}
	w1.nc.Close() // the crash: no ack, no KV write, no pulls

	e.startWorker(workerOpts{})
	got := e.waitTerminal(30*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeSucceeded || got.Note != noteCreateFound {
		t.Fatalf("result: %s note %q", got.Outcome, got.Note)
	}
	if n := e.sb.Stats().CreatesByPhone[strings.TrimPrefix(phone(5), "+")]; n != 1 {
		t.Fatalf("creates for the phone: %d, want 1", n)
	}
	if rec := e.record(c.ID); rec.State != idem.StateDone || rec.Attempts != 2 {
		t.Fatalf("record: %+v", rec)
	}
	e.assertOneTerminal(c.ID)
}

// A crash after the record says done (or dead) and before the event (or
// DLQ record) is published: the redelivery publishes from the record,
// without calling the API again, and nothing is published twice.
func TestCrashAfterRecordBeforePublish(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		state idem.State
		seed  bool // seed a client with the phone, so that the create fails 422
	}{
		{"done", idem.StateDone, false},
		{"dead", idem.StateDead, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			if tc.seed {
				e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Taken", Phone: "15550001700"})
			}
			reached, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			w1 := e.startWorker(workerOpts{hooks: hooks{afterRecord: func(_ commands.Command, s idem.State) {
				if s == tc.state {
					once.Do(func() { close(reached); <-release })
				}
			}}})
			t.Cleanup(func() { close(release) })
			c := createCmd("car-1", "Rae", "15550001700")
			e.publish(c)
			select {
			case <-reached:
			case <-time.After(10 * time.Second):
				t.Fatal("record not written")
			}
			w1.nc.Close()
			calls := e.sb.Stats().Requests
			e.startWorker(workerOpts{})
			got := e.waitTerminal(30*time.Second, c.ID)[c.ID]
			wantOutcome := map[idem.State]commands.Outcome{idem.StateDone: commands.OutcomeSucceeded, idem.StateDead: commands.OutcomeDeadLettered}[tc.state]
			if got.Outcome != wantOutcome || got.Attempts != 1 {
				t.Fatalf("result: %+v", got)
			}
			e.assertOneTerminal(c.ID)
			if n := e.sb.Stats().Requests; n != calls {
				t.Errorf("%d API calls after the crash, want 0", n-calls)
			}
			if tc.state == idem.StateDead {
				testenv.WaitFor(t, 5*time.Second, func() error {
					if len(e.dlqOf(c.ID)) == 0 {
						return errNotYet
					}
					return nil
				})
				if n := len(e.dlqOf(c.ID)); n != 1 {
					t.Errorf("%d DLQ records", n)
				}
			}
		})
	}
}

// Two workers on the same commands: each command is carried out once.
func TestTwoWorkersSameStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	e.startWorker(workerOpts{})
	var all []commands.Command
	for i := range 20 {
		ref := "two-" + itoa(i)
		all = append(all, createCmd(ref, "Two", phone(200+i)),
			updateCmd(ref, commands.ClientFields{Name: new("Two " + itoa(i)), Phone: new(phone(200 + i))}))
	}
	for _, c := range all {
		e.publish(c)
	}
	res := e.waitTerminal(30*time.Second, ids(all...)...)
	for _, c := range all {
		if res[c.ID].Outcome != commands.OutcomeSucceeded {
			t.Fatalf("%s: %s %s", c.Type, res[c.ID].Outcome, res[c.ID].APIMessage)
		}
	}
	stats := e.sb.Stats()
	for i := range 20 {
		if n := stats.CreatesByPhone[strings.TrimPrefix(phone(200+i), "+")]; n != 1 {
			t.Errorf("client %d created %d times", i, n)
		}
		id, _ := e.ref("two-" + itoa(i))
		if got, ok := e.sb.Client(testLoc, id); !ok || got.Name != "Two "+itoa(i) {
			t.Errorf("client %d: %+v", i, got)
		}
	}
	e.assertOneTerminal(ids(all...)...)
}

// A command being retried parks its client: later commands of the client
// wait, other clients proceed.
func TestOrderPerClientWhileRetrying(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{cfg: Config{RetryBase: 300 * time.Millisecond, RetryMax: time.Second}})
	a := createCmd("ord-a", "A", phone(300))
	e.publish(a)
	e.waitTerminal(10*time.Second, a.ID)

	// The first two updates fail with 503 before anything is applied.
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientUpdate, Status: 503, Times: 2})
	u1 := updateCmd("ord-a", commands.ClientFields{Name: new("A1"), Phone: new(phone(300))})
	u2 := updateCmd("ord-a", commands.ClientFields{Name: new("A2"), Phone: new(phone(300))})
	e.publish(u1)
	e.publish(u2)
	var others []commands.Command
	for i := range 5 {
		others = append(others, createCmd("ord-o"+itoa(i), "O", phone(310+i)))
	}
	for _, c := range others {
		e.publish(c)
	}
	res := e.waitTerminal(20*time.Second, ids(append(others, u1, u2)...)...)
	if res[u1.ID].Attempts != 3 || res[u2.ID].Attempts != 1 {
		t.Fatalf("attempts: u1 %d, u2 %d, want 3 and 1", res[u1.ID].Attempts, res[u2.ID].Attempts)
	}
	if !res[u1.ID].CompletedAt.Before(res[u2.ID].CompletedAt) {
		t.Fatalf("u2 completed at %v, before u1 at %v", res[u2.ID].CompletedAt, res[u1.ID].CompletedAt)
	}
	for _, c := range others {
		if !res[c.ID].CompletedAt.Before(res[u1.ID].CompletedAt) {
			t.Errorf("other client %s completed after the parked update", c.ClientRef)
		}
	}
	id, _ := e.ref("ord-a")
	if got, _ := e.sb.Client(testLoc, id); got.Name != "A2" {
		t.Fatalf("final name %q, want A2", got.Name)
	}
	e.assertOneTerminal(ids(append(others, a, u1, u2)...)...)
}

func itoa(i int) string { return strconv.Itoa(i) }

// A command the sweeper cannot settle (here: the DLQ stream is gone) is
// retried, and reported at Error once, not at every retry (before: about 92
// ERROR lines a minute, without end).
func TestSweeperReportsAStuckCommandOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	var logs testenv.Buffer
	api, err := altegio.New(altegio.Config{BaseURL: e.url}, altegio.StaticAuthorizer{PartnerToken: testPartner, UserToken: testUser}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{Logger: slog.New(slog.NewTextHandler(&logs, nil)), BookkeepingTimeout: time.Second,
		RetryMax: time.Second, HandlerTimeout: time.Second}, e.js, api, e.top)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := w.bind(ctx); err != nil {
		t.Fatal(err)
	}
	if w.pub, err = wmjetstream.NewPublisher(e.js, wmjetstream.PublisherConfig{PublishTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	seq := e.publish(createCmd("stuck-1", "Stu", phone(7300)))
	if err := e.js.DeleteStream(ctx, topology.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	adv := fmt.Sprintf(`{"stream":%q,"consumer":"worker-p0","stream_seq":%d,"deliveries":50}`, topology.StreamCommands, seq)
	for range 3 {
		if err := w.sweep(message.NewMessage(watermill.NewUUID(), []byte(adv))); err != nil {
			t.Fatalf("sweep: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines for one stuck command, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("stream_seq=%d", seq)) {
		t.Errorf("the report does not name the command's stream sequence:\n%s", logs.String())
	}
}
