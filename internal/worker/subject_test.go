package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// A command whose subject does not say what its body says (another
// client's subject) is dead-lettered as invalid with its command id, never
// carried out, and does not hold back the client's next command; one
// published straight on a partitioned subject (which would skip the
// stream's partition transform) is refused at publish.
func TestSubjectMustMatchTheCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	r := e.startWorker(workerOpts{})
	publishOn := func(subject string, c commands.Command) {
		data, _ := json.Marshal(c)
		e.publishRaw(subject, nats.Header(commands.CommandHeaders(c)), data)
	}
	other := createCmd("mm-body", "Body", phone(7000))
	publishOn("altegio.cmd.2.ref_other.delete", other)
	// A partitioned subject published straight is not even stored: the
	// stream takes only altegio.cmd.<location>.<client-key>.<op>.
	wrongPart := createCmd("mm-part", "Part", phone(7001))
	data, _ := json.Marshal(wrongPart)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: "altegio.cmd.3.1." + wrongPart.ClientKey() + ".create", Data: data}); err == nil {
		t.Error("a command published on a partitioned subject was stored")
	} else if !strings.Contains(err.Error(), "COMMANDS takes") {
		t.Errorf("a JetStream publisher on a refused subject is told %q, not why", err)
	}
	// Refused, but counted: every other form, published as a core message
	// (the JetStream publish above was one more).
	for _, subject := range []string{"altegio.cmd", "altegio.cmd.x", "altegio.cmd.x.y", "altegio.cmd.9.1.a.b.c"} {
		if err := e.nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := r.counter(t, "worker_refused_subjects_total", nil); n != 5 {
			return fmt.Errorf("worker_refused_subjects_total = %v, want 5", n)
		}
		return nil
	})
	next := createCmd("mm-body", "Body", phone(7000)) // the client's next, on its own subject
	e.publish(next)

	res := e.waitTerminal(20*time.Second, other.ID, next.ID)
	for _, c := range []commands.Command{other} {
		got := res[c.ID]
		if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassInvalid ||
			!strings.Contains(got.APIMessage, "subject does not match") {
			t.Errorf("%s: %+v", c.ClientRef, got)
		}
		dl := e.dlqOf(c.ID)
		if len(dl) != 1 || dl[0].CommandID != c.ID {
			t.Errorf("%s: DLQ records %+v, want one with the command id", c.ClientRef, dl)
		}
	}
	if got := res[next.ID]; got.Outcome != commands.OutcomeSucceeded {
		t.Errorf("the client's next command: %+v", got)
	}
	if n := e.sb.Stats().ByOp[sandbox.OpClientCreate] + e.sb.Stats().ByOp[sandbox.OpClientBulk]; n != 1 {
		t.Errorf("%d create requests, want 1 (only the command on its own subject)", n)
	}
	e.assertOneTerminal(other.ID, next.ID)
}

// A command too large to decode is dead-lettered with its command id: the
// DLQ record, the result event and the status record all name it.
func TestTooLargeCommandKeepsItsID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	c := createCmd("huge-1", "Huge", phone(7100))
	body := []byte(`{"id":"` + c.ID + `","type":"client.create","location_id":1,"client_ref":"huge-1",` +
		`"payload":{"name":"Huge","phone":"` + phone(7100) + `","custom_fields":{"x":"` +
		strings.Repeat("<", commands.MaxCommandSize) + `"}}}`)
	e.publishRaw(commands.CommandSubject(c), nats.Header(commands.CommandHeaders(c)), body)
	got := e.waitTerminal(20*time.Second, c.ID)[c.ID]
	if got.Outcome != commands.OutcomeDeadLettered || got.ErrorClass != commands.ClassInvalid ||
		!strings.Contains(got.APIMessage, "too large") {
		t.Fatalf("result: %+v", got)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if len(e.dlqOf(c.ID)) != 1 {
			return errNotYet
		}
		return nil
	})
	if rec := e.record(c.ID); rec.State != idem.StateDead {
		t.Errorf("record %+v, want dead", rec)
	}
	e.assertOneTerminal(c.ID)
}

// An invalid message whose id is not a command id is dead-lettered at its
// first delivery (no record under a key that cannot exist); one that
// reuses the id of another command is dead-lettered without that id and
// gives the command no second terminal event.
func TestInvalidMessagesDoNotTouchOtherCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	r := e.startWorker(workerOpts{})
	ok := createCmd("inv-ok", "Ok", phone(7200))
	e.publish(ok)
	e.waitTerminal(10*time.Second, ok.ID)

	subject := commands.CommandSubject(ok)
	e.publishRaw(subject, nil, []byte(`{"id":"not a uuid","type":"client.create","location_id":1,"client_ref":"inv-ok"}`))
	e.publishRaw(subject, nil, []byte(`{"id":"`+ok.ID+`","type":"client.create","location_id":1,"client_ref":"inv-ok","payload":{}}`))
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := r.counter(t, "worker_dlq_writes_total", map[string]string{"class": "invalid"}); n < 2 {
			return errNotYet
		}
		return nil
	})
	if n := r.counter(t, "worker_retries_total", map[string]string{"class": "infrastructure"}); n != 0 {
		t.Errorf("%v infrastructure retries, want none", n)
	}
	if dl := e.dlqOf(ok.ID); len(dl) != 0 {
		t.Errorf("DLQ records under the succeeded command's id: %d, want 0", len(dl))
	}
	if rec := e.record(ok.ID); rec.State != idem.StateDone {
		t.Errorf("the succeeded command's record became %s", rec.State)
	}
	e.assertOneTerminal(ok.ID)
}

// A command so large that its DLQ record would not fit in one message (a
// non-JSON body grows by a third as base64) is stored by reference.
func TestHugeNonJSONBodyIsStoredByReference(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	c := createCmd("huge-raw", "Raw", phone(7300))
	body := []byte(strings.Repeat("\x01", 900_000))
	e.publishRaw(commands.CommandSubject(c), nil, body)
	testenv.WaitFor(t, 20*time.Second, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, r := range e.dlq {
			if r.CommandRef != nil && r.CommandRef.Size == len(body) {
				return nil
			}
		}
		return errNotYet
	})
	e.waitCommandsEmpty(10 * time.Second)
}
