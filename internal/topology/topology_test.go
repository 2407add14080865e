package topology

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"

	"github.com/altegio-integrator/integrator/internal/testenv"
)

func TestLoadDefinitions(t *testing.T) {
	top, err := Load()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if got, want := top.Partitions(), 8; got != want {
		t.Errorf("partitions = %d, want %d", got, want)
	}
	cmds, _ := top.Stream(StreamCommands)
	if cmds.Retention != jetstream.WorkQueuePolicy || cmds.Discard != jetstream.DiscardNew {
		t.Errorf("COMMANDS retention/discard = %v/%v, want workqueue/new", cmds.Retention, cmds.Discard)
	}
	if cmds.Duplicates < time.Minute {
		t.Errorf("COMMANDS duplicate window = %v, want at least a minute", cmds.Duplicates)
	}
	for _, c := range top.Consumers {
		if c.Stream != StreamCommands {
			continue
		}
		// Retry delays (at most 30 s) stay below the ack wait and the pinned
		// TTL covers ack wait plus the longest retry delay, so that after a
		// crash a parked command is redelivered before the later commands of
		// its client. A consumer BackOff would shift every NakWithDelay by
		// BackOff[n]-AckWait, so there is none (see docs/design.md).
		if c.Config.AckWait < time.Minute || c.Config.PinnedTTL < c.Config.AckWait+30*time.Second || len(c.Config.BackOff) > 0 {
			t.Errorf("%s ack wait %v pinned TTL %v backoff %v, want >= 1m, >= ack wait + 30s, none",
				c.Config.Durable, c.Config.AckWait, c.Config.PinnedTTL, c.Config.BackOff)
		}
	}
}

func TestApplyIsIdempotentAndPartitions(t *testing.T) {
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	top, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := Apply(ctx, js, top); err != nil {
			t.Fatalf("apply #%d: %v", i+1, err)
		}
	}
	// With one replica the leader is the only copy: the consistency-critical
	// buckets and COMMANDS keep the cheap direct gets (the cluster test
	// checks that they are off at R3).
	for _, name := range []string{StreamCommands, "KV_" + BucketIdempotency, "KV_" + BucketClientRefs, "KV_" + BucketTokens, "KV_" + BucketRateLimit} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !s.CachedInfo().Config.AllowDirect {
			t.Errorf("stream %s at R1 reads through the API instead of direct gets", name)
		}
	}

	// A command published without a partition is stored with one, and the
	// same client always lands in the same partition.
	for i := range 3 {
		if _, err := js.Publish(ctx, "altegio.cmd.42.r-crm-7.update", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	s, err := js.Stream(ctx, StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var part int
	if _, err := fmt.Sscanf(first.Subject, "altegio.cmd.%d.42.r-crm-7.update", &part); err != nil {
		t.Fatalf("stored subject %q has no partition: %v", first.Subject, err)
	}
	c, err := js.Consumer(ctx, StreamCommands, WorkerConsumer(part))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.NumPending; got != 3 {
		t.Errorf("pending on %s = %d, want all 3 commands of the client", WorkerConsumer(part), got)
	}

	// The worker recomputes the stream's partition to check a command's
	// subject: it must agree with the server's transform for every client.
	for i := range 40 {
		cmd := commands.Command{Type: commands.TypeClientUpdate, LocationID: int64(1 + i%3), ClientRef: fmt.Sprintf("crm-%d", i)}
		ack, err := js.Publish(ctx, commands.CommandSubject(cmd), []byte("{}"))
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		m, err := s.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.CheckStoredSubject(m.Subject, top.Partitions()); err != nil {
			t.Errorf("stored as %s: %v", m.Subject, err)
		}
	}
}

func TestWithReplicas(t *testing.T) {
	top, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	r3 := top.WithReplicas(3)
	for _, s := range r3.Streams {
		if s.Replicas != 3 {
			t.Errorf("stream %s replicas = %d, want 3", s.Name, s.Replicas)
		}
	}
	for _, s := range top.Streams {
		if s.Replicas != 1 {
			t.Errorf("original stream %s changed to %d replicas", s.Name, s.Replicas)
		}
	}
}
