package worker

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/sandbox"
)

// A command whose subject does not say what its body says (another
// client's subject, or a partitioned subject published straight, which
// skips the stream's partition transform) is dead-lettered as invalid with
// its command id, never carried out, and does not hold back the client's
// next command.
func TestSubjectMustMatchTheCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	publishOn := func(subject string, c commands.Command) {
		data, _ := json.Marshal(c)
		e.publishRaw(subject, nats.Header(commands.CommandHeaders(c)), data)
	}
	other := createCmd("mm-body", "Body", phone(7000))
	publishOn("altegio.cmd.2.ref_other.delete", other)
	wrongPart := createCmd("mm-part", "Part", phone(7001))
	p := commands.StoredPartition("1", wrongPart.ClientKey(), 8)
	bad := "0"
	if p == "0" {
		bad = "1"
	}
	wrongPart.LocationID = 1
	publishOn("altegio.cmd."+bad+".1."+wrongPart.ClientKey()+".create", wrongPart)
	next := createCmd("mm-body", "Body", phone(7000)) // the client's next, on its own subject
	e.publish(next)

	res := e.waitTerminal(20*time.Second, other.ID, wrongPart.ID, next.ID)
	for _, c := range []commands.Command{other, wrongPart} {
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
	e.assertOneTerminal(other.ID, wrongPart.ID, next.ID)
}
