package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestJetStreamSurvivesRestart(t *testing.T) {
	n := RunJetStream(t)
	_, js := Connect(t, n.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "t.1", []byte("x")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	n.Stop()
	n.Start()

	WaitFor(t, 10*time.Second, func() error {
		s, err := js.Stream(ctx, "T")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 1 {
			return errors.New("message not recovered")
		}
		return nil
	})
}

func TestClusterHasMetaLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start-up in -short mode")
	}
	c := RunCluster(t, 3)
	_, js := Connect(t, c.URLs())
	// Electing a meta leader can take long on a loaded 2-core machine (CI
	// runs the packages' tests side by side): poll for up to a minute, each
	// try with its own timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	WaitFor(t, 60*time.Second, func() error {
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		defer tcancel()
		_, err := js.CreateStream(tctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
		return err
	})
	ack, err := js.Publish(ctx, "r3.x", []byte("x"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if got, want := ack.Sequence, uint64(1); got != want {
		t.Fatalf("sequence = %d, want %d", got, want)
	}
}
