package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/topology"
)

// storeError marks a failure of the KV itself (unreachable, timed out, no
// permission), as opposed to a missing key or a lost compare-and-set.
type storeError struct{ err error }

func (e *storeError) Error() string { return "token store: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// errNoStore is the cause of a process-local session without NATS.
var errNoStore = errors.New("no JetStream configured")

// bucket returns the token bucket, binding it (and creating it when it does
// not exist) on first use. After a failure it returns the same error
// without trying again for KVRetryInterval.
func (m *Manager) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if m.js == nil {
		return nil, errNoStore
	}
	m.kvMu.Lock()
	defer m.kvMu.Unlock()
	if m.now().Before(m.kvRetryAt) {
		return nil, m.kvErr
	}
	if m.kv != nil {
		return m.kv, nil
	}
	bctx, cancel := context.WithTimeout(ctx, m.cfg.KVTimeout)
	defer cancel()
	kv, err := topology.BindBucket(bctx, m.js, m.cfg.Bucket)
	if err != nil {
		m.kvRetryAt, m.kvErr = m.now().Add(m.cfg.KVRetryInterval), err
		return nil, err
	}
	m.kv, m.kvErr = kv, nil
	return kv, nil
}

// storeFailed leaves the KV alone for KVRetryInterval after err.
func (m *Manager) storeFailed(err error) {
	m.kvMu.Lock()
	defer m.kvMu.Unlock()
	m.kvRetryAt, m.kvErr = m.now().Add(m.cfg.KVRetryInterval), err
}

// kvErr classifies an error of one KV operation run under kctx, a child of
// ctx: the caller's own cancellation stays a context error, anything else is
// a *storeError.
func kvErr(ctx context.Context, op, key string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %w", op, key, ctx.Err())
	}
	return &storeError{err: fmt.Errorf("%s %s: %w", op, key, err)}
}

// kvGet returns the entry, or nil when the key does not exist.
func (m *Manager) kvGet(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	kctx, cancel := context.WithTimeout(ctx, m.cfg.KVTimeout)
	defer cancel()
	e, err := kv.Get(kctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, nil
	case err != nil:
		return nil, kvErr(ctx, "get", key, err)
	}
	return e, nil
}

// kvCreate creates key; a lost race gives an error for which isConflict is
// true.
func (m *Manager) kvCreate(ctx context.Context, kv jetstream.KeyValue, key string, value []byte) (uint64, error) {
	kctx, cancel := context.WithTimeout(ctx, m.cfg.KVTimeout)
	defer cancel()
	rev, err := kv.Create(kctx, key, value)
	if err != nil && !topology.IsKVConflict(err) {
		return 0, kvErr(ctx, "create", key, err)
	}
	return rev, err
}

// kvUpdate sets key if its revision is still rev; otherwise isConflict is
// true of the error.
func (m *Manager) kvUpdate(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	kctx, cancel := context.WithTimeout(ctx, m.cfg.KVTimeout)
	defer cancel()
	newRev, err := kv.Update(kctx, key, value, rev)
	if err != nil && !topology.IsKVConflict(err) {
		return 0, kvErr(ctx, "update", key, err)
	}
	return newRev, err
}
