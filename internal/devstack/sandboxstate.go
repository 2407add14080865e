package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// SandboxStateFile is where, in the data folder, the dev stack's sandbox
// keeps its clients, comments, files and ID counters across restarts, so
// that a client_ref mapped in NATS never points at a client the sandbox
// has since handed the same ID to.
const SandboxStateFile = "sandbox-state.json"

// sandboxStatePath returns the state file in dir and whether it exists.
func sandboxStatePath(dir string) (path string, exists bool, err error) {
	path = filepath.Join(dir, SandboxStateFile)
	switch _, err := os.Stat(path); {
	case err == nil:
		return path, true, nil
	case errors.Is(err, fs.ErrNotExist):
		return path, false, nil
	default:
		return path, false, fmt.Errorf("sandbox state (set --%s): %w", FlagDataDir, err)
	}
}

// skipMappedClientIDs protects an integrator's client refs from a sandbox
// that starts without state (the file was deleted, or the data folder comes
// from a version whose sandbox kept nothing): the sandbox hands out no
// client ID up to the largest one a ref maps to, so those refs point at
// missing clients (their commands dead-letter saying so) instead of at new
// clients that happen to get the same IDs. It returns that largest ID, 0
// when no ref is mapped.
func skipMappedClientIDs(ctx context.Context, js jetstream.JetStream, sb *sandbox.Server) (int64, error) {
	kv, err := js.KeyValue(ctx, topology.BucketClientRefs)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("client refs: %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("client refs: %w", err)
	}
	var largest int64
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // deleted meanwhile
		}
		var v struct {
			ClientID int64 `json:"client_id"`
		}
		if json.Unmarshal(e.Value(), &v) == nil {
			largest = max(largest, v.ClientID)
		}
	}
	if largest > 0 {
		sb.SkipClientIDs(largest)
	}
	return largest, nil
}
