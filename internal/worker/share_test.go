package worker

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

func TestAssignIsBalancedAndStable(t *testing.T) {
	t.Parallel()
	members := func(n int) []string {
		var ms []string
		for i := range n {
			ms = append(ms, fmt.Sprintf("member-%d", i))
		}
		return ms
	}
	for _, n := range []int{1, 2, 3, 5, 8, 9} {
		owners := assign(8, members(n))
		load := make(map[string]int)
		for p, o := range owners {
			if o == "" {
				t.Fatalf("%d members: partition %d has no owner", n, p)
			}
			load[o]++
		}
		most := (8 + n - 1) / n
		for m, l := range load {
			if l > most {
				t.Errorf("%d members: %s owns %d partitions, more than %d", n, m, l, most)
			}
		}
		// The same members in another order: the same assignment.
		rev := members(n)
		slices.Reverse(rev)
		if got := assign(8, rev); !slices.Equal(got, owners) {
			t.Errorf("%d members: assignment depends on the order of the members: %v vs %v", n, got, owners)
		}
	}
	// A member joining or leaving moves about its share, not everything
	// (staying balanced may move one more between the others).
	for n := 1; n < 6; n++ {
		before, after := assign(8, members(n)), assign(8, members(n+1))
		moved, gained := 0, 0
		for p := range before {
			if before[p] != after[p] {
				moved++
			}
			if after[p] == fmt.Sprintf("member-%d", n) {
				gained++
			}
		}
		if moved > gained+1 {
			t.Errorf("member %d joining %d took %d partitions and moved %d", n+1, n, gained, moved)
		}
	}
	if got := assign(8, nil); len(got) != 8 || got[0] != "" {
		t.Errorf("no members: %v", got)
	}
}

// Two workers share the partitions: each pulls its half, and both carry out
// commands.
func TestPartitionsSpreadOverWorkers(t *testing.T) {
	t.Parallel()
	// A long pin timeout: only the sharing moves a partition.
	e := newEnv(t, envOpts{pinnedTTL: time.Minute})
	a := e.startWorker(workerOpts{cfg: Config{WorkerID: "worker-a"}})
	waitOwned(t, a, 8)
	b := e.startWorker(workerOpts{cfg: Config{WorkerID: "worker-b"}})
	waitOwned(t, a, 4)
	waitOwned(t, b, 4)

	ids := e.publishCreates("spread", 64, 7000)
	res := e.waitTerminal(30*time.Second, ids...)
	for id, r := range res {
		if r.Outcome != commands.OutcomeSucceeded {
			t.Fatalf("%s: %s %s", id, r.Outcome, r.APIMessage)
		}
	}
	done := map[string]string{"outcome": "succeeded"}
	if na, nb := a.counter(t, "worker_commands_total", done), b.counter(t, "worker_commands_total", done); na == 0 || nb == 0 {
		t.Errorf("one worker did all the work: a %v, b %v", na, nb)
	}
	// A clean shutdown hands its partitions over: b takes them at once,
	// and a releases its own pins (b has none to take for orphans).
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	waitOwned(t, b, 8)
	more := e.publishCreates("after-stop", 32, 7400)
	e.waitTerminal(30*time.Second, more...)
	if n := b.counter(t, "worker_partition_takeovers_total", nil); n != 0 {
		t.Errorf("b released %v pins of a worker that stopped cleanly, want 0", n)
	}
	e.assertOneTerminal(append(ids, more...)...)
}

// A starting worker asks who is there (hello) and the others answer at
// once, so it takes only its share, not every partition until their next
// announcement. The interval is an hour here: without the answer, b would
// know only itself and keep all eight.
func TestJoiningWorkerHearsTheOthersAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{pinnedTTL: time.Minute})
	a := e.startWorker(workerOpts{cfg: Config{WorkerID: "worker-a", ShareInterval: time.Hour}})
	waitOwned(t, a, 8)
	b := e.startWorker(workerOpts{cfg: Config{WorkerID: "worker-b", ShareInterval: time.Hour}})
	waitOwned(t, b, 4)
	waitOwned(t, a, 4)
}

// A crashed worker's partitions resume in the survivor within seconds, not
// after the pin's priority timeout (a minute here).
func TestCrashedWorkersPartitionsResumeElsewhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{pinnedTTL: time.Minute})
	a := e.startWorker(workerOpts{cfg: Config{WorkerID: "worker-a"}})
	b := e.startWorker(workerOpts{cfg: Config{WorkerID: "worker-b"}})
	waitOwned(t, a, 4)
	waitOwned(t, b, 4)
	// Let a hold its pins: every partition gets a command.
	e.waitTerminal(30*time.Second, e.publishCreates("warm", 32, 7100)...)

	a.nc.Close() // the crash: no hand-back, no unpin, no goodbye
	ids := e.publishCreates("after", 32, 7200)
	// Well inside the minute the dead pins would last.
	e.waitTerminal(15*time.Second, ids...)
	waitOwned(t, b, 8)
	if n := b.counter(t, "worker_partition_takeovers_total", nil); n == 0 {
		t.Errorf("no pin released by the survivor")
	}
	e.assertOneTerminal(ids...)
}

func waitOwned(t *testing.T, r *runner, n int) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, func() error {
		if got := r.counter(t, "worker_partitions_owned", nil); got != float64(n) {
			return fmt.Errorf("%s owns %v partitions, want %d", r.w.cfg.WorkerID, got, n)
		}
		return nil
	})
}

// publishCreates publishes n creates of clients prefix-0… with phones from
// phone(firstPhone) on, and returns their ids.
func (e *env) publishCreates(prefix string, n, firstPhone int) []string {
	var ids []string
	for i := range n {
		c := createCmd(fmt.Sprintf("%s-%d", prefix, i), "Client", phone(firstPhone+i))
		e.publish(c)
		ids = append(ids, c.ID)
	}
	return ids
}
