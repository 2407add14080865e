// Package topotest applies the product topology in tests: the streams,
// consumers and buckets of deploy/nats/topology on a test server, as a
// worker applies them at start.
package topotest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/topology"
)

// Apply loads the product topology, applies it on js, and returns it; any
// failure ends the test.
func Apply(t testing.TB, js jetstream.JetStream) *topology.Topology {
	t.Helper()
	top, err := topology.Load()
	if err != nil {
		t.Fatalf("load topology: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topology.Apply(ctx, js, top); err != nil {
		t.Fatalf("apply topology: %v", err)
	}
	return top
}
