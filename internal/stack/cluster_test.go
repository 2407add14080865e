package stack

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/ingest"
	"github.com/altegio-integrator/integrator/internal/outbox"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/worker"
	"github.com/altegio-integrator/integrator/internal/workerstack"
)

const (
	clusterLocation    = 1
	clusterPartner     = "cluster-partner-token"
	clusterLogin       = "ops@example.com"
	clusterPassword    = "cluster-password"
	clusterProducerKey = "cluster-producer-key"
	// clusterAckWait replaces the worker consumers' ack wait (see the test).
	// The workers' RetryMax must stay below two thirds of it.
	clusterAckWait = 15 * time.Second
)

// clusterClient is one client of the load: a create and then, in order,
// zero to two updates, all under the same client_ref.
type clusterClient struct {
	ref, name, phone string
	createID         string
	updates          []clusterUpdate
}

type clusterUpdate struct {
	id, email, surname string
}

func (c clusterClient) createBody() string {
	return fmt.Sprintf(`{"id":%q,"type":"client.create","location_id":%d,"client_ref":%q,"payload":{"name":%q,"phone":%q}}`,
		c.createID, clusterLocation, c.ref, c.name, c.phone)
}

func (c clusterClient) updateBody(u clusterUpdate) string {
	return fmt.Sprintf(`{"id":%q,"type":"client.update","location_id":%d,"client_ref":%q,"payload":{"name":%q,"phone":%q,"email":%q,"surname":%q}}`,
		u.id, clusterLocation, c.ref, c.name, c.phone, u.email, u.surname)
}

// TestClusterSurvivesStreamLeaderLoss runs ingest and two workers against
// an in-process 3-node JetStream cluster with the topology at R3, shuts the
// COMMANDS stream leader down in the middle of the load and brings it back
// afterwards, and checks guarantees 1 and 2 of the architecture: every
// command ingest acknowledged ends in exactly one terminal result event
// (here: succeeded), and none is applied twice in the sandbox. The final
// client records must show each client's last update, so a command that
// overtakes an earlier one of its client (guarantee 3) fails it too.
func TestClusterSurvivesStreamLeaderLoss(t *testing.T) {
	began := time.Now()
	phase := began
	lap := func(what string) {
		now := time.Now()
		t.Logf("%-34s %6.2fs (total %6.2fs)", what, now.Sub(phase).Seconds(), now.Sub(began).Seconds())
		phase = now
	}
	n := 150
	if testing.Short() || os.Getenv("CI") != "" {
		n = 50
	}

	// Components log at debug level into a buffer; a failure report shows
	// the warnings and every line about the commands that went wrong.
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	cluster := testenv.RunCluster(t, 3)
	_, adminJS := testenv.Connect(t, cluster.URLs())
	ctx := t.Context()
	// On a cluster this young the first stream creates are sometimes not
	// answered at all (or refused: "no suitable peers for placement") while
	// the meta leader learns its peers; an unanswered request would use up
	// ApplyTopology's whole timeout, so each try gets 10 s.
	var top *topology.Topology
	testenv.WaitFor(t, 60*time.Second, func() error {
		var err error
		top, err = ApplyTopology(ctx, adminJS, 3, 10*time.Second, log)
		return err
	})
	for _, s := range top.Streams {
		if s.Replicas != 3 {
			t.Fatalf("stream %s has %d replicas, want 3", s.Name, s.Replicas)
		}
	}
	// One test knob on the definitions: the worker consumers' ack wait,
	// 60 s in production, is cut to clusterAckWait. A message the stopped
	// leader handed out that never reached a worker, or whose ack it never
	// confirmed, comes back only after the ack wait; with 60 s the test
	// would take over a minute. Re-applying also shows that Apply updates
	// what it created.
	for i := range top.Consumers {
		if top.Consumers[i].Stream == topology.StreamCommands {
			top.Consumers[i].Config.AckWait = clusterAckWait
		}
	}
	testenv.WaitFor(t, 20*time.Second, func() error { return topology.Apply(ctx, adminJS, top) })
	lap("cluster up, topology at R3")
	// With replicas, the order check's stream and the consistency-critical
	// buckets are read through their leaders, never by direct get.
	for _, name := range []string{topology.StreamCommands, "KV_" + topology.BucketIdempotency, "KV_" + topology.BucketClientRefs,
		"KV_" + topology.BucketTokens, "KV_" + topology.BucketRateLimit} {
		s, err := adminJS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if s.CachedInfo().Config.AllowDirect {
			t.Errorf("stream %s at R3 answers direct gets from any replica", name)
		}
	}

	sb, apiURL := testenv.Sandbox(t, sandbox.Config{
		PartnerToken:  clusterPartner,
		Users:         []sandbox.User{{Login: clusterLogin, Password: clusterPassword}},
		RatePerSecond: 400,
		RatePerMinute: -1,
	})

	// Every process gets its own connection, given every node's URL.
	type proc struct {
		name string
		run  func(context.Context) error
	}
	var procs []proc
	var workers []*worker.Worker
	for _, id := range []string{"worker-a", "worker-b"} {
		nc, js, err := ConnectNATS(NATSConfig{URL: cluster.URLs(), Name: id}, log.With("process", id))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		w, closeWorker, err := workerstack.NewWorker(ctx, js, top, workerstack.WorkerConfig{
			APIBaseURL: apiURL,
			Accounts:   []auth.Account{{Name: "cluster", PartnerToken: clusterPartner, Login: clusterLogin, Password: clusterPassword}},
			// The same key for both: one shared budget, raised for speed.
			RateLimit: ratelimit.Config{PerSecond: 200, PerMinute: -1, Key: "egress.cluster-test"},
			Worker: worker.Config{
				WorkerID:        id,
				RetryBase:       250 * time.Millisecond,
				RetryMax:        5 * time.Second,
				CloseTimeout:    5 * time.Second,
				PendingInterval: -1,
			},
			Logger:     log.With("process", id),
			Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
		procs = append(procs, proc{id, func(ctx context.Context) error {
			defer closeWorker()
			return w.Run(ctx)
		}})
	}

	inNC, inJS, err := ConnectNATS(NATSConfig{URL: cluster.URLs(), Name: "ingest", FailFastWhenDisconnected: true}, log.With("process", "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inNC.Close)
	ob, err := outbox.Open(filepath.Join(t.TempDir(), "ingest-outbox.db"), outbox.Config{
		Logger: log.With("process", "ingest", "component", "outbox"), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	in, err := ingest.New(ingest.Config{
		Producers:  []ingest.Producer{{Name: "crm", KeyHashes: [][sha256.Size]byte{sha256.Sum256([]byte(clusterProducerKey))}}},
		Logger:     log.With("process", "ingest"),
		Registerer: prometheus.NewRegistry(),
	}, inNC, inJS, ob)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ingestURL := "http://" + ln.Addr().String()
	procs = append(procs, proc{"ingest", func(ctx context.Context) error { return in.Serve(ctx, ln) }})

	// Start the processes; stop them (before the connections close and the
	// cluster stops: cleanups run last-in first-out) at the end or on
	// failure.
	runCtx, cancelRun := context.WithCancel(context.Background())
	runErrs := make(chan error, len(procs))
	var running sync.WaitGroup
	for _, p := range procs {
		running.Go(func() {
			if err := p.run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				runErrs <- fmt.Errorf("%s: %w", p.name, err)
			}
		})
	}
	stopAll := sync.OnceValue(func() error {
		cancelRun()
		done := make(chan struct{})
		go func() { running.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-time.After(40 * time.Second):
			return errors.New("ingest and workers did not stop within 40s")
		}
	})
	t.Cleanup(func() {
		if err := stopAll(); err != nil {
			t.Error(err)
		}
	})
	var diagMu sync.Mutex
	var suspects []string // commands to describe if the test fails
	setSuspects := func(ids []string) {
		diagMu.Lock()
		defer diagMu.Unlock()
		suspects = ids
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		diagMu.Lock()
		ids := suspects
		diagMu.Unlock()
		all := logs.String()
		if path := os.Getenv("CLUSTER_TEST_LOG"); path != "" {
			// The whole debug log, for what the excerpts below leave out.
			if err := os.WriteFile(path, []byte(all), 0o644); err != nil {
				t.Logf("write %s: %v", path, err)
			}
		}
		t.Logf("warnings logged by the stack (latest):\n%s", warnLines(all, 12<<10))
		t.Logf("state at failure:\n%s", clusterDiagnostics(context.Background(), adminJS, top.Partitions(), all, ids))
	})

	testenv.WaitFor(t, 20*time.Second, func() error {
		for i, w := range workers {
			if err := w.Ready(context.Background()); err != nil {
				return fmt.Errorf("worker %d: %w", i, err)
			}
		}
		resp, err := http.Get(ingestURL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ingest /readyz: %d", resp.StatusCode)
		}
		return nil
	})
	lap("ingest and two workers ready")

	// Which node leads which worker consumer (they move only on failure):
	// the stopped node's consumers get a new leader too, which matters for
	// the pinned priority groups.
	consumerLeaders := map[string]string{}
	for p := range top.Partitions() {
		name := topology.WorkerConsumer(p)
		testenv.WaitFor(t, 10*time.Second, func() error {
			l, err := consumerLeader(ctx, adminJS, topology.StreamCommands, name)
			consumerLeaders[name] = l
			return err
		})
	}

	// The load: n clients, each a create and, for half of them, one or two
	// updates. A producer keeps the commands of one client in order (the
	// next is posted once the previous got its 202); clients go in
	// parallel.
	clients := make([]clusterClient, n)
	total := 0
	for i := range clients {
		c := clusterClient{
			ref:      fmt.Sprintf("crm-%04d", i),
			name:     fmt.Sprintf("Client %d", i),
			phone:    fmt.Sprintf("+1315%07d", 5550000+i),
			createID: commands.NewID(),
		}
		for u := 0; u < updatesFor(i); u++ {
			c.updates = append(c.updates, clusterUpdate{
				id:      commands.NewID(),
				email:   fmt.Sprintf("c%d.u%d@example.com", i, u+1),
				surname: fmt.Sprintf("Update%d", u+1),
			})
		}
		clients[i] = c
		total += 1 + len(c.updates)
	}
	prod := newProducer(ingestURL, clusterProducerKey)
	loadDone := make(chan struct{})
	next := make(chan int)
	var posting sync.WaitGroup
	for range 12 {
		posting.Go(func() {
			for i := range next {
				c := clients[i]
				if !prod.post(runCtx, c.createID, c.createBody()) {
					continue // a producer sends no update for a client it could not create
				}
				for _, u := range c.updates {
					if !prod.post(runCtx, u.id, c.updateBody(u)) {
						break
					}
				}
			}
		})
	}
	go func() {
		for i := range clients {
			next <- i
		}
		close(next)
		posting.Wait()
		close(loadDone)
	}()

	// Mid-load: shut the COMMANDS stream leader down.
	killAt := total / 3
	testenv.WaitFor(t, 30*time.Second, func() error {
		if got := prod.acceptedCount(); got < killAt {
			return fmt.Errorf("%d of %d commands accepted, waiting for %d", got, total, killAt)
		}
		return nil
	})
	var leader string
	testenv.WaitFor(t, 10*time.Second, func() error {
		leader, err = streamLeader(ctx, adminJS, topology.StreamCommands)
		return err
	})
	victim, err := nodeNamed(cluster, leader)
	if err != nil {
		t.Fatal(err)
	}
	var victimLeads []string
	for name, l := range consumerLeaders {
		if l == leader {
			victimLeads = append(victimLeads, name)
		}
	}
	sort.Strings(victimLeads)
	acceptedAtKill := prod.acceptedCount()
	lap(fmt.Sprintf("%d/%d accepted, leader %s", acceptedAtKill, total, leader))
	victim.Stop()
	lap(fmt.Sprintf("stream leader %s stopped (it also led %v)", leader, victimLeads))
	var newLeader string
	testenv.WaitFor(t, 20*time.Second, func() error {
		l, err := streamLeader(ctx, adminJS, topology.StreamCommands)
		if err != nil {
			return err
		}
		if l == leader {
			return fmt.Errorf("stream still led by the stopped node %s", l)
		}
		newLeader = l
		return nil
	})
	lap("new COMMANDS leader " + newLeader)

	testenv.WaitFor(t, 60*time.Second, func() error {
		select {
		case <-loadDone:
			return nil
		default:
			return fmt.Errorf("producers still posting: %d of %d accepted", prod.acceptedCount(), total)
		}
	})
	lap(fmt.Sprintf("load posted (%d accepted, %d retried posts)", prod.acceptedCount(), prod.retries))
	if len(prod.refused) > 0 {
		t.Errorf("%d commands were never accepted, e.g. %s", len(prod.refused), prod.refused[0])
	}

	// Bring the old leader back; it catches up while the workers finish.
	victim.Start()
	lap("node " + leader + " restarted")

	// Wait until every accepted command has a terminal event and COMMANDS
	// holds nothing: after that no worker has anything left to do, so no
	// further event can appear.
	acceptedIDs := func() []string {
		var ids []string
		for _, c := range clients {
			for _, id := range append([]string{c.createID}, updateIDs(c)...) {
				if prod.wasAccepted(id) {
					ids = append(ids, id)
				}
			}
		}
		return ids
	}()
	partitions := top.Partitions()
	// The slowest recovery the failover can need: an ack sent while the
	// consumer's leader changes may go unconfirmed (5 s), and the
	// subscriber then parks the client's lane until the message would have
	// come back (ack wait) plus one more ack wait and a keep-alive tick
	// before it gives up waiting: about 3 × clusterAckWait.
	testenv.WaitFor(t, 4*clusterAckWait, throttle(500*time.Millisecond, func() error {
		ev, err := readEvents(ctx, adminJS)
		if err != nil {
			return err
		}
		var missing []string
		for _, id := range acceptedIDs {
			if len(ev.terminal(id)) == 0 {
				missing = append(missing, id)
			}
		}
		setSuspects(withSiblings(clients, missing))
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d accepted commands have no terminal event yet (e.g. %s)", len(missing), len(acceptedIDs), missing[0])
		}
		return commandsBacklog(ctx, adminJS, partitions)
	}))
	lap(fmt.Sprintf("%d commands settled", len(acceptedIDs)))

	// Guarantee 1: exactly one terminal event per accepted command, and it
	// is a success.
	var ev eventLog
	testenv.WaitFor(t, 10*time.Second, func() error {
		ev, err = readEvents(ctx, adminJS)
		return err
	})
	progress := map[commands.Outcome]int{}
	for _, rs := range ev.byID {
		for _, r := range rs {
			progress[r.Outcome]++
		}
	}
	var bad []string
	accepted := make(map[string]bool, len(acceptedIDs))
	for _, id := range acceptedIDs {
		accepted[id] = true
		term := ev.terminal(id)
		switch {
		case len(term) != 1:
			bad = append(bad, fmt.Sprintf("%s: %d terminal events %v", id, len(term), outcomes(term)))
		case term[0].Outcome != commands.OutcomeSucceeded:
			bad = append(bad, fmt.Sprintf("%s: %s (%s %d %q)", id, term[0].Outcome, term[0].ErrorClass, term[0].HTTPStatus, term[0].APIMessage))
		}
	}
	for id := range ev.byID {
		if !accepted[id] {
			bad = append(bad, fmt.Sprintf("%s: events for a command that was never accepted: %v", id, outcomes(ev.byID[id])))
		}
	}
	sort.Strings(bad)
	var badIDs []string
	for _, b := range bad {
		badIDs = append(badIDs, strings.SplitN(b, ":", 2)[0])
	}
	setSuspects(badIDs)
	if len(bad) > 0 {
		t.Errorf("%d commands break exactly-one-terminal-success:\n  %s", len(bad), strings.Join(first(bad, 20), "\n  "))
	}

	// Guarantee 2: nothing applied twice; the records show every update,
	// in order.
	stats := sb.Stats()
	created := 0
	for phone, k := range stats.CreatesByPhone {
		created += k
		if k != 1 {
			t.Errorf("phone %s created %d times", phone, k)
		}
	}
	records := map[string]sandbox.ClientRecord{}
	for _, r := range sb.Clients(clusterLocation) {
		records[r.Phone] = r
	}
	wantCreated := 0
	for _, c := range clients {
		if !prod.wasAccepted(c.createID) {
			continue
		}
		wantCreated++
		phone := commands.NormalizePhone(c.phone)
		if got := stats.CreatesByPhone[phone]; got != 1 {
			continue // reported above, or below when 0
		}
		r, ok := records[phone]
		if !ok {
			t.Errorf("%s: no client with phone %s in the sandbox", c.ref, phone)
			continue
		}
		wantEmail, wantSurname := "", ""
		for _, u := range c.updates {
			if prod.wasAccepted(u.id) {
				wantEmail, wantSurname = u.email, u.surname
			}
		}
		if r.Name != c.name || r.Email != wantEmail || r.Surname != wantSurname {
			diagMu.Lock()
			suspects = append(suspects, append([]string{c.createID}, updateIDs(c)...)...)
			diagMu.Unlock()
			t.Errorf("%s: record name %q email %q surname %q, want %q %q %q",
				c.ref, r.Name, r.Email, r.Surname, c.name, wantEmail, wantSurname)
		}
	}
	if created != wantCreated || len(records) != wantCreated {
		t.Errorf("sandbox created %d clients and holds %d, want %d", created, len(records), wantCreated)
	}

	// Nothing pending anywhere: not in COMMANDS (checked above), not in the
	// DLQ, not in the ingest outbox.
	dlq, err := adminJS.Stream(ctx, topology.StreamDLQ)
	if err == nil {
		di, ierr := dlq.Info(ctx)
		if ierr != nil {
			t.Errorf("DLQ info: %v", ierr)
		} else if di.State.Msgs != 0 {
			t.Errorf("DLQ holds %d records", di.State.Msgs)
		}
	} else {
		t.Errorf("DLQ stream: %v", err)
	}
	if d, err := ob.Depth(); err != nil || d != 0 {
		t.Errorf("ingest outbox depth %d (err %v), want 0", d, err)
	}
	if dead, err := ob.Dead(ctx, 10); err != nil || len(dead) != 0 {
		t.Errorf("ingest outbox dead entries %d (err %v), want 0", len(dead), err)
	}

	if err := stopAll(); err != nil {
		t.Error(err)
	}
	close(runErrs)
	for err := range runErrs {
		t.Errorf("process stopped with an error: %v", err)
	}
	lap("stopped")
	t.Logf("clients %d, commands %d (accepted %d; %d accepted before the leader stopped), events %d %v, "+
		"sandbox requests %d (creates attempted for %d phones more than once), 429s %d, logins %d",
		n, total, len(acceptedIDs), acceptedAtKill, ev.lastSeq, progress,
		stats.Requests, repeatedAttempts(stats), stats.RateLimited, stats.Logins)
}

// updatesFor is how many updates client i gets: two for every fourth,
// one for every other even one, none for the odd ones.
func updatesFor(i int) int {
	switch {
	case i%4 == 0:
		return 2
	case i%2 == 0:
		return 1
	default:
		return 0
	}
}

// withSiblings returns ids followed by the other commands of their clients
// (what held them up is usually an earlier command of the same client).
func withSiblings(clients []clusterClient, ids []string) []string {
	out := append([]string(nil), ids...)
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	for _, id := range ids {
		for _, c := range clients {
			all := append([]string{c.createID}, updateIDs(c)...)
			if !slices.Contains(all, id) {
				continue
			}
			for _, s := range all {
				if !seen[s] {
					seen[s] = true
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func updateIDs(c clusterClient) []string {
	ids := make([]string, len(c.updates))
	for i, u := range c.updates {
		ids[i] = u.id
	}
	return ids
}

func outcomes(rs []commands.Result) []commands.Outcome {
	out := make([]commands.Outcome, len(rs))
	for i, r := range rs {
		out[i] = r.Outcome
	}
	return out
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… and %d more", len(s)-n))
	}
	return s
}

// repeatedAttempts counts the phones whose create reached the sandbox more
// than once (a retry or a reconciliation that still had to create).
func repeatedAttempts(st sandbox.Stats) int {
	k := 0
	for _, v := range st.CreateAttemptsByPhone {
		if v > 1 {
			k++
		}
	}
	return k
}
