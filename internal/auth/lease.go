package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// obtainShared is the cross-process protocol: use a newer token from the
// KV, or take the login lease and log in, or wait for the lease holder.
func (m *Manager) obtainShared(ctx context.Context, kv jetstream.KeyValue, a *account, rejected altegio.Credentials) (altegio.Credentials, error) {
	name := a.cfg.Name
	for {
		cur, _, err := m.readToken(ctx, kv, a)
		if err != nil {
			return altegio.Credentials{}, err
		}
		if cur != nil && newer(cur.creds, rejected) {
			m.adopt(a, cur)
			return cur.creds, nil
		}

		leaseRev, held, err := m.takeLease(ctx, kv, a)
		if err != nil {
			return altegio.Credentials{}, err
		}
		if !held {
			continue // lost a race or waited for the holder: read the token again
		}

		// The previous holder may have written a token between our read
		// and taking the lease.
		cur, tokRev, err := m.readToken(ctx, kv, a)
		if err != nil {
			return altegio.Credentials{}, err
		}
		if cur != nil && newer(cur.creds, rejected) {
			m.releaseLease(kv, a, leaseRev)
			m.adopt(a, cur)
			return cur.creds, nil
		}

		tok, err := m.doLogin(ctx, a)
		if err != nil {
			if rev, uerr := m.kvUpdate(ctx, kv, leaseKey(name), encodeLease(leaseRecord{
				Owner: m.id, State: leaseFailed, Reason: loginReason(err),
			}), leaseRev); uerr == nil {
				a.seenFailRev = rev
			}
			return altegio.Credentials{}, m.loginFailed(a, err)
		}

		obtained := m.now()
		rec := encodeToken(tokenRecord{UserToken: tok, ObtainedAt: obtained.UTC()})
		var rev uint64
		if tokRev == 0 {
			rev, err = m.kvCreate(ctx, kv, tokenKey(name), rec)
		} else {
			rev, err = m.kvUpdate(ctx, kv, tokenKey(name), rec, tokRev)
		}
		s := &session{
			creds:      altegio.Credentials{PartnerToken: a.cfg.PartnerToken, UserToken: tok, Version: rev},
			obtainedAt: obtained,
			shared:     true,
		}
		switch {
		case topology.IsKVConflict(err):
			// Someone else wrote a token meanwhile (a stale-lease takeover
			// race): both are fresh; converge on the stored one.
			if other, _, rerr := m.readToken(ctx, kv, a); rerr == nil && other != nil {
				s = other
			} else {
				s.creds.Version, s.shared = 0, false
			}
		case err != nil:
			m.log.Warn("store the new user token; using it process-locally", "account", name, "error", err)
			s.creds.Version, s.shared = 0, false
		}
		m.releaseLease(kv, a, leaseRev)
		m.adopt(a, s)
		m.log.Info("altegio session renewed", "account", name, "revision", s.creds.Version)
		return s.creds, nil
	}
}

// takeLease tries to take the account's login lease. It returns held=false
// after waiting one poll interval for another holder, or after losing a
// race; the caller then reads the token again.
func (m *Manager) takeLease(ctx context.Context, kv jetstream.KeyValue, a *account) (rev uint64, held bool, err error) {
	key := leaseKey(a.cfg.Name)
	mine := encodeLease(leaseRecord{Owner: m.id, State: leaseLogin})
	e, err := m.kvGet(ctx, kv, key)
	if err != nil {
		return 0, false, err
	}
	if e == nil {
		if err := m.checkBackoff(a); err != nil {
			return 0, false, err
		}
		rev, err := m.kvCreate(ctx, kv, key, mine)
		if topology.IsKVConflict(err) {
			return 0, false, nil
		}
		return rev, err == nil, err
	}

	rec, derr := decodeLease(e.Value())
	takeOver := false
	switch {
	case derr != nil:
		m.log.Warn("replace unreadable login lease", "account", a.cfg.Name, "error", derr)
		takeOver = true
	case rec.State == leaseFailed:
		if e.Revision() != a.seenFailRev {
			// Another process failed to log in: back off with it.
			a.seenFailRev = e.Revision()
			return 0, false, m.loginFailed(a, remoteFailure(rec.Reason))
		}
		if err := m.checkBackoff(a); err != nil {
			return 0, false, err
		}
		takeOver = true
	case rec.Owner == m.id:
		// Only one flight per account runs in this process, so a login
		// lease of ours is left over from a release that failed.
		takeOver = true
	default:
		now := m.now()
		if e.Revision() != a.leaseSeenRev {
			a.leaseSeenRev, a.leaseSeenAt = e.Revision(), now
		}
		if now.Sub(a.leaseSeenAt) >= m.cfg.LeaseTimeout {
			m.log.Warn("take over a stale login lease", "account", a.cfg.Name, "revision", e.Revision())
			takeOver = true
		}
	}
	if takeOver {
		rev, err := m.kvUpdate(ctx, kv, key, mine, e.Revision())
		if topology.IsKVConflict(err) {
			return 0, false, nil
		}
		return rev, err == nil, err
	}
	t := time.NewTimer(m.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-t.C:
		return 0, false, nil
	case <-ctx.Done():
		return 0, false, fmt.Errorf("wait for another worker to log in: %w", ctx.Err())
	}
}

// releaseLease deletes the lease if it is still at rev. Failure is logged:
// the lease then goes stale and is taken over.
func (m *Manager) releaseLease(kv jetstream.KeyValue, a *account, rev uint64) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.KVTimeout)
	defer cancel()
	if err := kv.Delete(ctx, leaseKey(a.cfg.Name), jetstream.LastRevision(rev)); err != nil && !topology.IsKVConflict(err) {
		m.log.Warn("release login lease", "account", a.cfg.Name, "error", err)
	}
}

// readToken returns the account's token in the KV (nil when absent or
// unreadable) and the key's revision (0 when absent).
func (m *Manager) readToken(ctx context.Context, kv jetstream.KeyValue, a *account) (*session, uint64, error) {
	e, err := m.kvGet(ctx, kv, tokenKey(a.cfg.Name))
	if err != nil || e == nil {
		return nil, 0, err
	}
	rec, err := decodeToken(e.Value())
	if err != nil {
		m.log.Warn("ignore unreadable token record", "account", a.cfg.Name, "revision", e.Revision(), "error", err)
		return nil, e.Revision(), nil
	}
	obtained := rec.ObtainedAt
	if obtained.IsZero() {
		obtained = e.Created()
	}
	return &session{
		creds:      altegio.Credentials{PartnerToken: a.cfg.PartnerToken, UserToken: rec.UserToken, Version: e.Revision()},
		obtainedAt: obtained,
		shared:     true,
	}, e.Revision(), nil
}

// adopt makes s the account's current session and ends any back-off.
func (m *Manager) adopt(a *account, s *session) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cur.Store(s)
	a.failures, a.backoffUntil, a.lastErr = 0, time.Time{}, nil
}

// maybeSync offers a process-local token to the KV in the background, at
// most every KVRetryInterval.
func (m *Manager) maybeSync(a *account, s *session) {
	now := m.now()
	a.mu.Lock()
	if a.syncing || now.Before(a.nextSync) {
		a.mu.Unlock()
		return
	}
	a.syncing = true
	a.nextSync = now.Add(m.cfg.KVRetryInterval)
	a.mu.Unlock()
	if !m.spawn(func() { m.sync(a, s) }) {
		a.mu.Lock()
		a.syncing = false
		a.mu.Unlock()
	}
}

// sync publishes the local session s to the KV, or adopts the token there
// when it is newer, so that the session is shared again.
func (m *Manager) sync(a *account, s *session) {
	defer func() {
		a.mu.Lock()
		a.syncing = false
		a.mu.Unlock()
	}()
	ctx := m.ctx
	kv, err := m.bucket(ctx)
	if err != nil {
		return
	}
	stored, rev, err := m.readToken(ctx, kv, a)
	if err != nil {
		m.storeFailed(err)
		return
	}
	var next *session
	switch {
	case stored != nil && stored.creds.UserToken == s.creds.UserToken:
		next = stored // the same token: learn its revision
	case stored != nil && !stored.obtainedAt.Before(s.obtainedAt):
		next = stored // another process logged in after us: use its token
	default:
		rec := encodeToken(tokenRecord{UserToken: s.creds.UserToken, ObtainedAt: s.obtainedAt.UTC()})
		var newRev uint64
		if rev == 0 {
			newRev, err = m.kvCreate(ctx, kv, tokenKey(a.cfg.Name), rec)
		} else {
			newRev, err = m.kvUpdate(ctx, kv, tokenKey(a.cfg.Name), rec, rev)
		}
		if err != nil {
			if !topology.IsKVConflict(err) {
				m.storeFailed(err)
			}
			return // try again later
		}
		next = &session{creds: s.creds, obtainedAt: s.obtainedAt, shared: true}
		next.creds.Version = newRev
	}
	if a.cur.CompareAndSwap(s, next) {
		m.log.Info("altegio session shared again", "account", a.cfg.Name, "revision", next.creds.Version)
	}
}
