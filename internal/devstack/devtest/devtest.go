// Package devtest runs the development stack (devstack.RunDev: embedded
// NATS, the sandbox, ingest and a worker, as `go run ./cmd/dev` runs them)
// for tests: on free loopback ports, with its data in a temporary folder,
// quiet, and stopped when the test ends.
//
// The tests of package devstack itself cannot use it (it imports devstack);
// they have their own startDevWith.
package devtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/devstack"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// StartTimeout is how long Start and Run wait for the stack to listen.
const StartTimeout = 60 * time.Second

// Start runs the dev stack with cfg until t ends and returns where it
// listens. The test fails at once if the stack does not start within
// StartTimeout, and at its end if RunDev returns an error. cfg is completed
// as Run completes it.
func Start(t testing.TB, cfg devstack.DevConfig) devstack.DevStack {
	t.Helper()
	st, stop, err := Run(cfg)
	if err != nil {
		t.Fatalf("dev stack: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("dev stack: %v", err)
		}
	})
	return st
}

// Run is Start for a stack that outlives one test (started on first use,
// stopped in TestMain). It returns where the stack listens and stop, which
// stops it, removes the temporary data folder Run made, and returns
// RunDev's error the first time it is called and nil after; stop is safe
// for concurrent use.
//
// Run listens on free loopback ports (cfg's addresses are replaced) and
// sets cfg.Ready. Of the rest of cfg, an empty DataDir is a fresh temporary
// folder, a nil Out and a nil Logger discard, and a zero Progress is an
// hour (no progress lines); every other setting is kept.
//
// The error says that the stack did not start: RunDev's error, or that it
// did not listen within StartTimeout.
func Run(cfg devstack.DevConfig) (devstack.DevStack, func() error, error) {
	removeDir := func() error { return nil }
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "devstack-")
		if err != nil {
			return devstack.DevStack{}, nil, err
		}
		cfg.DataDir = dir
		removeDir = func() error { return os.RemoveAll(dir) }
	}
	cfg.NATSListen, cfg.SandboxAddr, cfg.IngestAddr, cfg.OpsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Progress == 0 {
		cfg.Progress = time.Hour
	}
	ready := make(chan devstack.DevStack, 1)
	cfg.Ready = func(st devstack.DevStack) { ready <- st }

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- devstack.RunDev(ctx, cfg) }()
	select {
	case st := <-ready:
		var once sync.Once
		stop := func() error {
			var err error
			once.Do(func() {
				cancel()
				err = errors.Join(<-done, removeDir())
			})
			return err
		}
		return st, stop, nil
	case err := <-done:
		cancel()
		return devstack.DevStack{}, nil, errors.Join(fmt.Errorf("did not start: %w", err), removeDir())
	case <-time.After(StartTimeout):
		cancel()
		go func() { // the data folder is removed once the stack gave up
			<-done
			removeDir()
		}()
		return devstack.DevStack{}, nil, fmt.Errorf("did not start within %v", StartTimeout)
	}
}

// Post sends body to st's ingest as the dev producer, expects 202 with one
// command, and returns its id.
func Post(t testing.TB, st devstack.DevStack, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, st.IngestURL+"/v1/commands", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+devstack.DevProducerKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Commands []struct{ ID string } `json:"commands"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted || len(out.Commands) != 1 {
		t.Fatalf("post %s: status %d, %+v, %v", body, resp.StatusCode, out, err)
	}
	return out.Commands[0].ID
}

// WaitStatus waits, at most 30 s, until st's ingest reports the status of
// command id as want (GET /v1/commands/{id}).
func WaitStatus(t testing.TB, st devstack.DevStack, id, want string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodGet, st.IngestURL+"/v1/commands/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+devstack.DevProducerKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out struct {
			Status string `json:"status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return fmt.Errorf("status of %s: %d, %w", id, resp.StatusCode, err)
		}
		if out.Status != want {
			return fmt.Errorf("command %s is %q, want %q", id, out.Status, want)
		}
		return nil
	})
}
