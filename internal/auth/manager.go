package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/altegio"
)

// Defaults applied by [New] to a zero [Config] field.
const (
	// DefaultLoginTimeout bounds one POST /auth.
	DefaultLoginTimeout = 10 * time.Second
	// DefaultLeaseTimeout is when an unchanged login lease counts as stale.
	DefaultLeaseTimeout = 20 * time.Second
	// DefaultRefreshTimeout bounds one refresh, waiting included.
	DefaultRefreshTimeout = 45 * time.Second
	// DefaultPollInterval is how often a waiting process reads the KV.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultKVTimeout bounds one KV operation.
	DefaultKVTimeout = 2 * time.Second
	// DefaultKVRetryInterval is the pause after a KV failure.
	DefaultKVRetryInterval = 10 * time.Second
	// DefaultLoginBackoffMin is the first back-off after a failed login.
	DefaultLoginBackoffMin = time.Second
	// DefaultLoginBackoffMax caps the back-off after failed logins.
	DefaultLoginBackoffMax = 2 * time.Minute
)

// Loginer exchanges a login and password for a user token (POST /auth).
// *altegio.Client implements it. It must be safe for concurrent use and
// must keep secrets out of its errors.
type Loginer interface {
	Login(ctx context.Context, partnerToken, login, password string) (altegio.LoginResult, error)
}

var _ Loginer = (*altegio.Client)(nil)

// Config configures a [Manager].
type Config struct {
	// Accounts are the accounts to serve; see [ValidateAccounts]. Required.
	Accounts []Account
	// Bucket is the KV bucket holding the shared tokens, one the topology
	// defines; default DefaultBucket. The Manager binds it lazily on first
	// use; a missing bucket is created from its definition with one
	// replica (topology.Apply chooses the replicas).
	Bucket string
	// Logger receives warnings about logins and the token store; default
	// discards. Secrets are never logged.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now tells the time (token age, back-off, lease staleness); default
	// time.Now.
	Now func() time.Time
	// LoginTimeout bounds one POST /auth; default 10s.
	LoginTimeout time.Duration
	// LeaseTimeout is how long a login lease may stay unchanged before
	// another process takes it over; default 20s. Keep it above
	// LoginTimeout.
	LeaseTimeout time.Duration
	// RefreshTimeout bounds one refresh (waiting for another process's
	// login included); default 45s. Callers stop waiting earlier when
	// their context ends.
	RefreshTimeout time.Duration
	// PollInterval is how often a process waiting for another's login
	// reads the KV; default 100ms.
	PollInterval time.Duration
	// KVTimeout bounds each KV operation; default 2s.
	KVTimeout time.Duration
	// KVRetryInterval is how long the KV is left alone after it failed,
	// and how often a process-local token is offered to it; default 10s.
	KVRetryInterval time.Duration
	// LoginBackoffMin and LoginBackoffMax bound the back-off after failed
	// logins: it starts at Min, doubles per consecutive failure up to Max,
	// with jitter (each delay is drawn from [d/2, d]). Defaults 1s and 2m.
	LoginBackoffMin, LoginBackoffMax time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	def(&c.LoginTimeout, DefaultLoginTimeout)
	def(&c.LeaseTimeout, DefaultLeaseTimeout)
	def(&c.RefreshTimeout, DefaultRefreshTimeout)
	def(&c.PollInterval, DefaultPollInterval)
	def(&c.KVTimeout, DefaultKVTimeout)
	def(&c.KVRetryInterval, DefaultKVRetryInterval)
	def(&c.LoginBackoffMin, DefaultLoginBackoffMin)
	def(&c.LoginBackoffMax, DefaultLoginBackoffMax)
}

// Validate reports the first problem with c (after defaults).
func (c *Config) Validate() error {
	if err := ValidateAccounts(c.Accounts); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"login timeout", c.LoginTimeout}, {"lease timeout", c.LeaseTimeout},
		{"refresh timeout", c.RefreshTimeout}, {"poll interval", c.PollInterval},
		{"KV timeout", c.KVTimeout}, {"KV retry interval", c.KVRetryInterval},
		{"login back-off min", c.LoginBackoffMin}, {"login back-off max", c.LoginBackoffMax},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s %v is negative", d.name, d.v)
		}
	}
	if c.LoginBackoffMax < c.LoginBackoffMin {
		return fmt.Errorf("login back-off max %v is below min %v", c.LoginBackoffMax, c.LoginBackoffMin)
	}
	return nil
}

// Manager provides the credentials of every account and implements
// [altegio.Authorizer]. It keeps the user tokens in a shared KV bucket and in
// memory, logs in when no usable token exists, and re-logs in once after a
// 401 across all processes; see the package documentation for the session
// model. All methods are safe for concurrent use.
type Manager struct {
	cfg     Config
	js      jetstream.JetStream
	login   Loginer
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	id      string // owner of the leases this Manager takes

	accounts []*account
	byLoc    map[int64]*account
	catchAll *account

	kvMu      sync.Mutex // guards the fields below
	kv        jetstream.KeyValue
	kvRetryAt time.Time // the store is not tried before this after a failure
	kvErr     error     // why the store failed

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	goMu   sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
}

var _ altegio.Authorizer = (*Manager)(nil)

// account is the state of one configured account.
type account struct {
	cfg Account
	cur atomic.Pointer[session] // nil: no usable token in memory

	mu           sync.Mutex // guards the fields below
	flight       *flight
	lastRejected altegio.Credentials
	failures     int
	backoffUntil time.Time
	lastErr      error
	syncing      bool
	nextSync     time.Time

	// Used only by the account's single running flight.
	seenFailRev  uint64    // failed lease revision already backed off on
	leaseSeenRev uint64    // lease revision being watched for staleness
	leaseSeenAt  time.Time // when leaseSeenRev was first seen
}

// session is a user token in memory.
type session struct {
	creds      altegio.Credentials
	obtainedAt time.Time
	shared     bool // read from or written to the KV
}

// flight is one refresh shared by the callers of a process.
type flight struct {
	done  chan struct{}
	creds altegio.Credentials
	err   error
}

// New validates cfg, applies defaults and returns a Manager. It does not
// touch NATS: the bucket is bound on first use, so New succeeds while NATS
// is down. js may be nil for a process-local session (development without
// NATS). login may be nil only when every account has a fixed user token.
// It returns an error for an invalid configuration or when the metrics
// cannot be registered.
func New(cfg Config, js jetstream.JetStream, login Loginer) (*Manager, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("auth config: %w", err)
	}
	m := &Manager{
		cfg:   cfg,
		js:    js,
		login: login,
		log:   cfg.Logger,
		now:   cfg.Now,
		id:    uuid.NewString(),
		byLoc: make(map[int64]*account),
	}
	for _, ac := range cfg.Accounts {
		ac.Locations = append([]int64(nil), ac.Locations...)
		a := &account{cfg: ac}
		if ac.fixed() {
			a.cur.Store(&session{
				creds:      altegio.Credentials{PartnerToken: ac.PartnerToken, UserToken: ac.UserToken},
				obtainedAt: m.now(),
			})
		} else if login == nil {
			return nil, fmt.Errorf("auth config: account %q logs in, but no Loginer was given", ac.Name)
		}
		m.accounts = append(m.accounts, a)
		if len(ac.Locations) == 0 {
			m.catchAll = a
		}
		for _, loc := range ac.Locations {
			m.byLoc[loc] = a
		}
	}
	met, err := newMetrics(cfg.Registerer, m)
	if err != nil {
		return nil, fmt.Errorf("auth config: %w", err)
	}
	m.metrics = met
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Close stops background work and waits for it; refreshes in progress end
// with [ErrClosed]. Calls after Close fail with ErrClosed. It does not
// close the NATS connection. It always returns nil.
func (m *Manager) Close() error {
	m.goMu.Lock()
	m.closed = true
	m.goMu.Unlock()
	m.cancel()
	m.wg.Wait()
	return nil
}

// spawn runs fn in a goroutine that Close waits for. It reports false when
// the Manager is closed.
func (m *Manager) spawn(fn func()) bool {
	m.goMu.Lock()
	defer m.goMu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
	return true
}

// AccountName returns the name of the account serving locationID, for
// labelling events such as "account needs attention". It returns an error
// wrapping [ErrNoAccount] when no account serves it.
func (m *Manager) AccountName(locationID int64) (string, error) {
	a, err := m.account(locationID)
	if err != nil {
		return "", err
	}
	return a.cfg.Name, nil
}

// account selects the account for a location: an exact match, else the
// catch-all.
func (m *Manager) account(loc int64) (*account, error) {
	if a, ok := m.byLoc[loc]; ok {
		return a, nil
	}
	if m.catchAll != nil {
		return m.catchAll, nil
	}
	return nil, &noAccountError{location: loc}
}

// Credentials returns the credentials for a call on locationID. With a warm
// cache it does no I/O. Otherwise it reads the shared token from the KV, or
// logs in (single-flight, see Refresh). Errors: [ErrNoAccount] (permanent),
// [*AccountError] for a failed login or a back-off in progress, ErrClosed.
func (m *Manager) Credentials(ctx context.Context, locationID int64) (altegio.Credentials, error) {
	a, err := m.account(locationID)
	if err != nil {
		return altegio.Credentials{}, err
	}
	if s := a.cur.Load(); s != nil {
		if !s.shared && !a.cfg.fixed() {
			m.maybeSync(a, s)
		}
		return s.creds, nil
	}
	a.mu.Lock()
	rejected := a.lastRejected
	a.mu.Unlock()
	return m.refresh(ctx, a, rejected)
}

// Refresh is called after the API answered 401 to rejected. It returns
// credentials newer than rejected: from memory when another caller already
// refreshed, from the KV when another process did, or from exactly one new
// login across all processes. Concurrent callers for an account share one
// attempt; a caller whose ctx ends stops waiting, the attempt goes on.
//
// Errors, all [*AccountError] except the first: [ErrNoAccount]; for a fixed
// token, [ErrFixedTokenRejected] (permanent); a permanent login failure
// (two-factor, invalid credentials); a retryable one (/auth 5xx or
// transport); a [*BackoffError] while logins are suspended; the caller's
// context error.
func (m *Manager) Refresh(ctx context.Context, locationID int64, rejected altegio.Credentials) (altegio.Credentials, error) {
	a, err := m.account(locationID)
	if err != nil {
		return altegio.Credentials{}, err
	}
	m.metrics.unauthorized.WithLabelValues(a.cfg.Name).Inc()
	if a.cfg.fixed() {
		return altegio.Credentials{}, &AccountError{Account: a.cfg.Name, Err: ErrFixedTokenRejected}
	}
	a.mu.Lock()
	if rejected.UserToken != "" && !newer(a.lastRejected, rejected) {
		a.lastRejected = rejected
	}
	a.mu.Unlock()
	return m.refresh(ctx, a, rejected)
}

// newer reports whether c is a usable token that replaces rejected: a higher
// KV revision when both have one, else a different token.
func newer(c, rejected altegio.Credentials) bool {
	if c.UserToken == "" {
		return false
	}
	if c.Version != 0 && rejected.Version != 0 {
		return c.Version > rejected.Version
	}
	return c.UserToken != rejected.UserToken
}

// refresh returns a token newer than rejected, joining or starting the
// account's flight.
func (m *Manager) refresh(ctx context.Context, a *account, rejected altegio.Credentials) (altegio.Credentials, error) {
	a.mu.Lock()
	if s := a.cur.Load(); s != nil && newer(s.creds, rejected) {
		a.mu.Unlock()
		return s.creds, nil
	}
	f := a.flight
	if f == nil {
		if err := a.backoffErrLocked(m.now()); err != nil {
			a.mu.Unlock()
			return altegio.Credentials{}, err
		}
		f = &flight{done: make(chan struct{})}
		if !m.spawn(func() { m.runFlight(a, f, rejected) }) {
			a.mu.Unlock()
			return altegio.Credentials{}, ErrClosed
		}
		a.flight = f
	}
	a.mu.Unlock()
	select {
	case <-f.done:
		return f.creds, f.err
	case <-ctx.Done():
		return altegio.Credentials{}, &AccountError{Account: a.cfg.Name, Err: fmt.Errorf("wait for credentials: %w", ctx.Err())}
	}
}

// runFlight runs one flight (a login or token refresh) to completion and hands its result to the waiters.
func (m *Manager) runFlight(a *account, f *flight, rejected altegio.Credentials) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RefreshTimeout)
	defer cancel()
	creds, err := m.obtain(ctx, a, rejected)
	if err != nil {
		if m.ctx.Err() != nil {
			err = ErrClosed
		}
		var ae *AccountError
		if !errors.As(err, &ae) && !errors.Is(err, ErrClosed) {
			err = &AccountError{Account: a.cfg.Name, Err: err}
		}
	}
	a.mu.Lock()
	if s := a.cur.Load(); err != nil && s != nil && !newer(s.creds, rejected) {
		a.cur.Store(nil) // do not hand out the rejected token again
	}
	f.creds, f.err = creds, err
	a.flight = nil
	a.mu.Unlock()
	close(f.done)
}

// obtain finds or makes a token newer than rejected, through the KV when it
// is reachable and process-locally otherwise.
func (m *Manager) obtain(ctx context.Context, a *account, rejected altegio.Credentials) (altegio.Credentials, error) {
	kv, err := m.bucket(ctx)
	if err != nil {
		return m.obtainLocal(ctx, a, err)
	}
	creds, err := m.obtainShared(ctx, kv, a, rejected)
	var se *storeError
	if errors.As(err, &se) {
		m.storeFailed(se.err)
		return m.obtainLocal(ctx, a, se.err)
	}
	return creds, err
}
