package worker

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// replayDead republishes a dead-lettered command as the DLQ tooling does,
// with its original acceptance order.
func (e *env) replayDead(c commands.Command, gen int) {
	e.t.Helper()
	dl := e.dlqOf(c.ID)
	if len(dl) == 0 {
		e.t.Fatalf("no DLQ record of %s", c.ID)
	}
	last := dl[len(dl)-1]
	h := nats.Header{}
	for k, v := range last.Headers {
		h[k] = append([]string(nil), v...)
	}
	h.Set(commands.HeaderMsgID, commands.ReplayMsgID(c.ID, gen))
	h.Set(commands.HeaderReplay, strconv.Itoa(gen))
	h.Set(commands.HeaderReplayOf, "1")
	if h.Get(commands.HeaderOriginalSeq) == "" {
		h.Set(commands.HeaderOriginalSeq, strconv.FormatUint(last.StreamSeq, 10))
	}
	e.publishRaw(commands.CommandSubject(c), h, last.CommandBytes())
}

// waitOutcome waits for a terminal result of a command's replay gen.
func (e *env) waitOutcome(id string, gen int) commands.Result {
	e.t.Helper()
	var got commands.Result
	testenv.WaitFor(e.t, 10*time.Second, func() error {
		for _, r := range e.terminal(id) {
			if r.Replay == gen {
				got = r
				return nil
			}
		}
		return errNotYet
	})
	return got
}

// A replayed update older than the last applied update of its client does
// not overwrite the newer state: it ends as superseded without an API
// call. A replay of the newest change is carried out.
func TestReplaySupersededByNewerCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})

	create := createCmd("sup-1", "Ann", phone(1200))
	e.publish(create)
	e.waitTerminal(10*time.Second, create.ID)

	remove := e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientUpdate, Status: http.StatusUnprocessableEntity, Times: 1})
	old := updateCmd("sup-1", commands.ClientFields{Name: new("Old"), Phone: new(phone(1200))})
	e.publish(old)
	if got := e.waitTerminal(10*time.Second, old.ID)[old.ID]; got.Outcome != commands.OutcomeDeadLettered {
		t.Fatalf("old update: %+v", got)
	}
	remove()
	newer := updateCmd("sup-1", commands.ClientFields{Name: new("New"), Phone: new(phone(1200))})
	e.publish(newer)
	e.waitTerminal(10*time.Second, newer.ID)
	updatesBefore := e.sb.Stats().ByOp[sandbox.OpClientUpdate]

	e.replayDead(old, 1)
	got := e.waitOutcome(old.ID, 1)
	if got.Outcome != commands.OutcomeSuperseded || got.Note == "" {
		t.Fatalf("replay of the old update: %+v, want superseded", got)
	}
	if n := e.sb.Stats().ByOp[sandbox.OpClientUpdate]; n != updatesBefore {
		t.Errorf("update calls %d → %d: the superseded replay called the API", updatesBefore, n)
	}
	id, _ := e.ref("sup-1")
	if c, _ := e.sb.Client(testLoc, id); c.Name != "New" {
		t.Errorf("client name %q, want the newer update's %q", c.Name, "New")
	}
	if rec := e.record(old.ID); rec.State != idem.StateDone || rec.Result == nil || rec.Result.Outcome != commands.OutcomeSuperseded {
		t.Errorf("record after supersede: %+v", rec)
	}
	// Replaying the superseded command again re-publishes the stored
	// outcome; still no API call.
	e.replayDead(old, 2)
	if got := e.waitOutcome(old.ID, 2); got.Outcome != commands.OutcomeSuperseded {
		t.Errorf("second replay: %+v", got)
	}

	// The newest change of a client is not superseded by older ones: a
	// failed latest update replayed after the fix is applied.
	remove = e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientUpdate, Status: http.StatusUnprocessableEntity, Times: 1})
	latest := updateCmd("sup-1", commands.ClientFields{Name: new("Latest"), Phone: new(phone(1200))})
	e.publish(latest)
	e.waitTerminal(10*time.Second, latest.ID)
	remove()
	e.replayDead(latest, 1)
	if got := e.waitOutcome(latest.ID, 1); got.Outcome != commands.OutcomeSucceeded {
		t.Fatalf("replay of the latest update: %+v, want succeeded", got)
	}
	if c, _ := e.sb.Client(testLoc, id); c.Name != "Latest" {
		t.Errorf("client name %q, want %q", c.Name, "Latest")
	}
	e.assertOneTerminal(create.ID, newer.ID)
}
