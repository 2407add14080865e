package worker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
)

func TestClientFilter(t *testing.T) {
	for _, tc := range []struct {
		subject, want string
	}{
		{"altegio.cmd.3.42.ref_crm-7.update", "altegio.cmd.3.42.ref_crm-7.*"},
		{"altegio.cmd.0.1.id_17.client_delete", "altegio.cmd.0.1.id_17.*"},
		{"altegio.cmd.5.1.cmd_0190a1b2-0000-7000-8000-000000000000.create", ""}, // no client to wait for
		{"altegio.cmd.5.1.cmdh_abc.bulk_create", ""},
		{"altegio.cmd.1.ref_x.update", ""}, // not a stored subject
		{"altegio.evt.3.42.ref_x.update", ""},
	} {
		got, ok := clientFilter(tc.subject)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("clientFilter(%q) = %q, %v; want %q", tc.subject, got, ok, tc.want)
		}
	}
}

// partitionOf returns the partition a published command was stored in.
func (e *env) partitionOf(seq uint64) int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, topology.StreamCommands)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		e.t.Fatalf("get command %d: %v", seq, err)
	}
	var p int
	if _, err := fmt.Sscanf(strings.TrimPrefix(m.Subject, "altegio.cmd."), "%d.", &p); err != nil {
		e.t.Fatalf("stored subject %q: %v", m.Subject, err)
	}
	return p
}

// unpin releases a worker consumer's pin, as the server does (with no
// release at all) when the consumer's leader moves: the next process that
// pulls gets the partition.
func (e *env) unpin(partition int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, topology.StreamCommands)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := s.UnpinConsumer(ctx, topology.WorkerConsumer(partition), topology.PriorityGroup); err != nil {
		e.t.Fatalf("unpin partition %d: %v", partition, err)
	}
}

// TestOrderAcrossProcessesWhenThePinMoves reproduces what a consumer leader
// change does on a cluster (the new leader has no pin): worker A is in the
// middle of a client's create when the partition moves to worker B, which
// then receives the client's update. The update must wait for the create
// (before the stream check, B dead-lettered it as "unknown client_ref"),
// also when the create fails once in A and its retry is delivered to B.
func TestOrderAcrossProcessesWhenThePinMoves(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// failOnce makes the create's first attempt in A fail with a 503,
		// so that its retry is delivered to B, the new pin holder, where
		// the update is waiting.
		failOnce bool
	}{
		{name: "older command slow in A"},
		{name: "older command retried into B", failOnce: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testOrderAcrossProcesses(t, tc.failOnce)
		})
	}
}

func testOrderAcrossProcesses(t *testing.T, failOnce bool) {
	// A long pin timeout, so that nothing but the explicit unpin moves a
	// partition, and handlers may take their time.
	e := newEnv(t, envOpts{pinnedTTL: time.Minute})
	create := createCmd("pin-1", "Pia", phone(1100))
	update := updateCmd("pin-1", commands.ClientFields{Name: new("Pia Updated"), Phone: new(phone(1100)), Email: new("pia@example.com")})

	inCreate := make(chan struct{})
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseA := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseA)
	// Worker A has one handler slot per partition and holds nothing beyond
	// it: while the create holds it, A does not pull that partition (as
	// after a leader move, which drops A's pull requests), so after the
	// unpin only B does.
	e.startWorker(workerOpts{
		holdNothing: true,
		// No partition sharing: both workers pull every partition, so
		// that only the unpin decides who holds it (as with a leader move).
		cfg: Config{WorkerID: "worker-a", MaxInFlight: 1, HandlerTimeout: 20 * time.Second, ShareInterval: -1},
		hooks: hooks{beforeAPI: func(c commands.Command, attempt int) {
			if c.ID == create.ID && attempt == 1 {
				close(inCreate)
				<-release
			}
		}},
	})
	seq := e.publish(create)
	select {
	case <-inCreate:
	case <-time.After(10 * time.Second):
		t.Fatal("worker A did not start the create")
	}
	b := e.startWorker(workerOpts{cfg: Config{WorkerID: "worker-b", HandlerTimeout: 20 * time.Second, ShareInterval: -1}})

	e.publish(update)
	e.unpin(e.partitionOf(seq))

	// B receives the update and must defer it (twice, to see it come back
	// and wait again): the create is still in the stream, unsettled in A.
	// Without the check B carries the update out at once and dead-letters
	// it: the client_ref is not mapped yet.
	testenv.WaitFor(t, 10*time.Second, func() error {
		if b.counter(t, "worker_retries_total", map[string]string{"class": retryClassOrder}) < 2 &&
			len(e.resultsOf(update.ID)) == 0 && e.sb.Stats().ByOp[sandbox.OpClientUpdate] == 0 {
			return errNotYet
		}
		return nil
	})
	if n := e.sb.Stats().ByOp[sandbox.OpClientUpdate]; n != 0 || len(e.terminal(update.ID)) != 0 {
		t.Fatalf("the update ran before the create finished: %d update calls, results %+v", n, e.resultsOf(update.ID))
	}
	if rec, err := e.loadRecord(update.ID); err == nil {
		t.Fatalf("a deferral recorded an attempt of the update: %+v", rec)
	}

	if failOnce {
		e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientCreate, Status: 503, Times: 1})
	}
	releaseA()

	res := e.waitTerminal(30*time.Second, create.ID, update.ID)
	for _, c := range []commands.Command{create, update} {
		if got := res[c.ID]; got.Outcome != commands.OutcomeSucceeded {
			t.Fatalf("%s: %s %s %q", c.Type, got.Outcome, got.ErrorClass, got.APIMessage)
		}
	}
	wantCreateAttempts := 1
	if failOnce {
		wantCreateAttempts = 2
	}
	if got := res[create.ID].Attempts; got != wantCreateAttempts {
		t.Errorf("create attempts %d, want %d", got, wantCreateAttempts)
	}
	if got := res[update.ID].Attempts; got != 1 {
		t.Errorf("update attempts %d, want 1 (deferrals are not attempts)", got)
	}
	if first := e.record(update.ID).FirstAttemptAt; !first.After(res[create.ID].CompletedAt) {
		t.Errorf("update first attempted at %v, before the create completed at %v", first, res[create.ID].CompletedAt)
	}
	id, ok := e.ref("pin-1")
	if got, found := e.sb.Client(testLoc, id); !ok || !found || got.Name != "Pia Updated" || got.Email != "pia@example.com" {
		t.Errorf("client after both commands: %+v (ref %v, found %v)", got, ok, found)
	}
	if n := e.sb.Stats().CreatesByPhone[strings.TrimPrefix(phone(1100), "+")]; n != 1 {
		t.Errorf("client created %d times", n)
	}
	e.assertOneTerminal(create.ID, update.ID)
}

// loadRecord reads a command's idempotency record, or returns the error
// (jetstream.ErrKeyNotFound, wrapped, when there is none).
func (e *env) loadRecord(id string) (idem.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, topology.BucketIdempotency)
	if err != nil {
		return idem.Record{}, err
	}
	rec, _, err := idem.Load(ctx, kv, id)
	return rec, err
}
