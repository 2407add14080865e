package auth

import (
	"context"
	"errors"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/backoff"
)

// obtainLocal logs in without the KV.
func (m *Manager) obtainLocal(ctx context.Context, a *account, cause error) (altegio.Credentials, error) {
	m.log.Warn("token store unavailable; using a process-local session",
		"account", a.cfg.Name, "bucket", m.cfg.Bucket, "error", cause)
	if err := m.checkBackoff(a); err != nil {
		return altegio.Credentials{}, err
	}
	tok, err := m.doLogin(ctx, a)
	if err != nil {
		return altegio.Credentials{}, m.loginFailed(a, err)
	}
	s := &session{
		creds:      altegio.Credentials{PartnerToken: a.cfg.PartnerToken, UserToken: tok},
		obtainedAt: m.now(),
	}
	m.adopt(a, s)
	a.mu.Lock()
	a.nextSync = m.now().Add(m.cfg.KVRetryInterval)
	a.mu.Unlock()
	return s.creds, nil
}

// doLogin calls POST /auth for the account and records the outcome.
func (m *Manager) doLogin(ctx context.Context, a *account) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.LoginTimeout)
	defer cancel()
	res, err := m.login.Login(ctx, a.cfg.PartnerToken, a.cfg.Login, a.cfg.Password)
	if err == nil && (res.UserToken == "" || !validToken(res.UserToken)) {
		err = errors.New("POST /auth returned no usable user token")
	}
	if err != nil {
		reason := loginReason(err)
		m.metrics.logins.WithLabelValues(a.cfg.Name, reason).Inc()
		if reason == reasonTwoFactor {
			err = twoFactorHint(err)
		}
		if reason == reasonUnavailable {
			m.log.Warn("altegio login failed", "account", a.cfg.Name, "error", err)
		} else {
			m.log.Error("altegio login rejected; the account needs attention", "account", a.cfg.Name, "error", err)
		}
		return "", err
	}
	m.metrics.logins.WithLabelValues(a.cfg.Name, "success").Inc()
	m.log.Info("altegio login", "account", a.cfg.Name)
	return res.UserToken, nil
}

// loginFailed arms the back-off after a failed login and returns the error
// for the callers.
func (m *Manager) loginFailed(a *account, err error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures++
	a.backoffUntil = m.now().Add(backoff.Delay(m.cfg.LoginBackoffMin, m.cfg.LoginBackoffMax, a.failures))
	a.lastErr = err
	return &AccountError{Account: a.cfg.Name, Err: err}
}

// checkBackoff returns the back-off error when logins are suspended.
func (m *Manager) checkBackoff(a *account) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.backoffErrLocked(m.now())
}

func (a *account) backoffErrLocked(now time.Time) error {
	if a.lastErr == nil || !now.Before(a.backoffUntil) {
		return nil
	}
	return &AccountError{Account: a.cfg.Name, Err: &BackoffError{RetryAfter: a.backoffUntil.Sub(now), Err: a.lastErr}}
}
