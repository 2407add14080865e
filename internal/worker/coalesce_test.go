package worker

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// Creates that wait for the budget at the same moment go out as bulk
// requests; each keeps its own record and terminal result, and nobody is
// created twice or refused with 429.
func TestCreatesCoalescedIntoBulk(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{sandbox: func(c *sandbox.Config) { c.RatePerSecond = 2 }})
	r := e.startWorker(workerOpts{perSecond: 2})
	var cmds []commands.Command
	for i := range 150 {
		cmds = append(cmds, createCmd("co-"+itoa(i), "Coal", phone(3000+i)))
	}
	for _, c := range cmds {
		e.publish(c)
	}
	res := e.waitTerminal(60*time.Second, ids(cmds...)...)
	bulkNotes := 0
	for _, c := range cmds {
		got := res[c.ID]
		if got.Outcome != commands.OutcomeSucceeded || got.ClientID == 0 || got.Attempts != 1 {
			t.Errorf("%s: %s client %d attempts %d (%s)", c.ClientRef, got.Outcome, got.ClientID, got.Attempts, got.APIMessage)
		}
		if strings.Contains(got.Note, "bulk request") {
			bulkNotes++
		}
		if rec := e.record(c.ID); rec.State != idem.StateDone || rec.Uncertain {
			t.Errorf("%s: record %+v", c.ClientRef, rec)
		}
	}
	st := e.sb.Stats()
	if st.RateLimited != 0 {
		t.Errorf("%d answers 429", st.RateLimited)
	}
	creates := st.ByOp[sandbox.OpClientBulk] + st.ByOp[sandbox.OpClientCreate]
	if creates > 15 {
		t.Errorf("%d create requests for 150 creates (%d bulk), want them coalesced", creates, st.ByOp[sandbox.OpClientBulk])
	}
	if bulkNotes < 100 {
		t.Errorf("%d results say they went in a bulk request, want most of 150", bulkNotes)
	}
	for i := range cmds {
		if n := st.CreatesByPhone[strings.TrimPrefix(phone(3000+i), "+")]; n != 1 {
			t.Errorf("client %d created %d times", i, n)
		}
	}
	if v := r.counter(t, "worker_create_batch_size", nil); v != float64(creates) {
		t.Errorf("worker_create_batch_size observations = %v, want %d", v, creates)
	}
	e.assertOneTerminal(ids(cmds...)...)
}

// An item the API refuses inside a bulk request fails that create alone,
// with the API's item error; the others succeed.
func TestCoalescedItemErrorFailsOnlyThatCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{sandbox: func(c *sandbox.Config) { c.RatePerSecond = 1 }})
	e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Already There", Phone: strings.TrimPrefix(phone(4005), "+")})
	e.startWorker(workerOpts{perSecond: 1})
	var cmds []commands.Command
	for i := range 10 {
		cmds = append(cmds, createCmd("ie-"+itoa(i), "Item", phone(4000+i)))
	}
	for _, c := range cmds {
		e.publish(c)
	}
	res := e.waitTerminal(30*time.Second, ids(cmds...)...)
	for i, c := range cmds {
		got := res[c.ID]
		if i == 5 {
			if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassPermanent || got.APIMessage == "" {
				t.Errorf("duplicate phone: %+v", got)
			}
			if len(e.dlqOf(c.ID)) != 1 {
				t.Errorf("duplicate phone: %d DLQ records, want 1", len(e.dlqOf(c.ID)))
			}
			continue
		}
		if got.Outcome != commands.OutcomeSucceeded {
			t.Errorf("%s: %s (%s)", c.ClientRef, got.Outcome, got.APIMessage)
		}
	}
	if e.sb.Stats().ByOp[sandbox.OpClientBulk] == 0 {
		t.Error("no bulk request made; the test did not exercise coalescing")
	}
	e.assertOneTerminal(ids(cmds...)...)
}

// A bulk request whose answer is lost after the API applied it leaves
// every create's outcome unknown: each reconciles by phone and adopts the
// client instead of creating it again.
func TestCoalescedUnknownOutcomeReconciles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{sandbox: func(c *sandbox.Config) { c.RatePerSecond = 1 }})
	e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientBulk, Reset: true, AfterApply: true, Times: 1})
	e.startWorker(workerOpts{perSecond: 1})
	var cmds []commands.Command
	for i := range 6 {
		cmds = append(cmds, createCmd("un-"+itoa(i), "Unknown", phone(5000+i)))
	}
	for _, c := range cmds {
		e.publish(c)
	}
	res := e.waitTerminal(60*time.Second, ids(cmds...)...)
	st := e.sb.Stats()
	if st.Resets == 0 {
		t.Fatal("no bulk request was reset; the test did not exercise an unknown outcome")
	}
	found := 0
	for i, c := range cmds {
		got := res[c.ID]
		if got.Outcome != commands.OutcomeSucceeded {
			t.Errorf("%s: %s (%s)", c.ClientRef, got.Outcome, got.APIMessage)
		}
		if got.Note == noteCreateFound {
			found++
		}
		if n := st.CreatesByPhone[strings.TrimPrefix(phone(5000+i), "+")]; n != 1 {
			t.Errorf("client %d created %d times", i, n)
		}
	}
	if found == 0 {
		t.Error("no create was reconciled by phone")
	}
	e.assertOneTerminal(ids(cmds...)...)
}

// A bulk create with refused items ends partially_succeeded, and each
// refused item is dead-lettered as a client.create of its own that can be
// replayed alone; a bulk create whose every item is refused is
// dead-lettered as a whole.
func TestBulkPartialSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Taken", Phone: strings.TrimPrefix(phone(6001), "+")})
	e.sb.SeedClient(testLoc, sandbox.ClientRecord{Name: "Taken Too", Phone: strings.TrimPrefix(phone(6010), "+")})
	e.startWorker(workerOpts{})
	bulk := func(phones ...int) commands.Command {
		var p commands.BulkCreatePayload
		for _, n := range phones {
			p.Clients = append(p.Clients, commands.ClientFields{Name: new("Part"), Phone: new(phone(n))})
		}
		c := commands.Command{ID: commands.NewID(), Type: commands.TypeClientBulkCreate, LocationID: testLoc, CorrelationID: "corr-bulk"}
		must(c.SetPayload(p))
		return c
	}
	partial, refused := bulk(6000, 6001, 6002), bulk(6010)
	e.publish(partial)
	e.publish(refused)
	res := e.waitTerminal(20*time.Second, partial.ID, refused.ID)

	got := res[partial.ID]
	if got.Outcome != commands.OutcomePartiallySucceeded {
		t.Fatalf("partial: %s (%s)", got.Outcome, got.APIMessage)
	}
	var data bulkData
	if err := json.Unmarshal(got.Data, &data); err != nil || len(data.Items) != 3 {
		t.Fatalf("items %+v: %v", data.Items, err)
	}
	itemID := commands.BulkItemCommandID(partial.ID, 1)
	if it := data.Items[1]; it.Status != "failed" || it.Error == "" || it.DLQCommandID != itemID {
		t.Errorf("refused item: %+v, want failed with dlq_command_id %s", it, itemID)
	}
	if data.Items[0].Status != "created" || data.Items[2].Status != "created" {
		t.Errorf("other items: %+v", data.Items)
	}
	var dl []commands.DLQRecord
	testenv.WaitFor(t, 5*time.Second, func() error {
		if dl = e.dlqOf(itemID); len(dl) != 1 {
			return errNotYet
		}
		return nil
	})
	rec := dl[0]
	if rec.Type != commands.TypeClientCreate || rec.BulkCommandID != partial.ID || rec.BulkIndex == nil || *rec.BulkIndex != 1 ||
		rec.ErrorClass != commands.ClassPermanent || rec.APIMessage == "" {
		t.Errorf("item DLQ record: %+v", rec)
	}
	item, err := commands.Decode(rec.CommandBytes())
	if err != nil {
		t.Fatalf("the item's command does not decode: %v", err)
	}
	if f, _ := item.ClientFields(); item.ID != itemID || f.Phone == nil || *f.Phone != phone(6001) || item.CorrelationID != "corr-bulk" {
		t.Errorf("item command: %+v", item)
	}
	if len(e.dlqOf(partial.ID)) != 0 {
		t.Error("the partially succeeded bulk itself was dead-lettered")
	}

	if got := res[refused.ID]; got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassPermanent {
		t.Errorf("all refused: %s %s (%s)", got.Outcome, got.ErrorClass, got.APIMessage)
	}
	e.assertOneTerminal(partial.ID, refused.ID)
}
