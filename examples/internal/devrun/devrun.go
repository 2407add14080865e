// Package devrun starts the development stack (embedded NATS, the
// sandbox, ingest and a worker, as `go run ./cmd/dev` runs them) for the
// tests of the example programs: on free ports, with its data in a
// temporary folder, stopped when the test ends.
package devrun

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/devstack"
)

// Start runs the dev stack until t ends and returns where it listens.
func Start(t *testing.T) devstack.DevStack {
	t.Helper()
	dir := t.TempDir() // removed after the stack stopped: cleanups run last first
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan devstack.DevStack, 1)
	done := make(chan error, 1)
	go func() {
		done <- devstack.RunDev(ctx, devstack.DevConfig{
			DataDir: dir, NATSListen: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", IngestAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0",
			Out: io.Discard, Logger: slog.New(slog.DiscardHandler), Progress: time.Hour,
			Ready: func(s devstack.DevStack) { ready <- s },
		})
	}()
	select {
	case st := <-ready:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("dev stack: %v", err)
			}
		})
		return st
	case err := <-done:
		cancel()
		t.Fatalf("dev stack did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("dev stack did not start within 60s")
	}
	return devstack.DevStack{}
}
