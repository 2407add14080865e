package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
)

func TestLoginThenCacheHitAcrossProcesses(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	p1 := f.process(Config{})

	var first altegio.Credentials
	for i := range 50 {
		c, err := p1.m.Credentials(ctx, location)
		if err != nil {
			t.Fatalf("credentials %d: %v", i, err)
		}
		if i == 0 {
			first = c
		}
		if c != first {
			t.Fatalf("credentials %d = %v, want %v", i, c, first)
		}
	}
	if got, want := f.authCalls.Load(), int64(1); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}
	if first.UserToken != initialToken || first.PartnerToken != partnerToken || first.Version == 0 {
		t.Fatalf("credentials = %v (token match %t), want the sandbox token with a KV revision", first, first.UserToken == initialToken)
	}
	if err := p1.search(ctx, location); err != nil {
		t.Fatalf("search: %v", err)
	}

	p2 := f.process(Config{})
	c2, err := p2.m.Credentials(ctx, location)
	if err != nil {
		t.Fatalf("second process credentials: %v", err)
	}
	if c2 != first {
		t.Fatalf("second process credentials = %v, want %v", c2, first)
	}
	if got, want := f.authCalls.Load(), int64(1); got != want {
		t.Fatalf("POST /auth calls after second process = %d, want %d", got, want)
	}
	if got := testutil.ToFloat64(p1.m.metrics.logins.WithLabelValues(DefaultAccountName, "success")); got != 1 {
		t.Fatalf("logins{success} in first process = %v, want 1", got)
	}
	if got := testutil.ToFloat64(p2.m.metrics.logins.WithLabelValues(DefaultAccountName, "success")); got != 0 {
		t.Fatalf("logins{success} in second process = %v, want 0", got)
	}
	if n, err := testutil.GatherAndCount(p2.reg, "altegio_auth_token_age_seconds"); err != nil || n != 1 {
		t.Fatalf("token age series = %d, %v; want 1", n, err)
	}
}

func TestFixedUserToken(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	p := f.process(Config{Accounts: []Account{{Name: "app", PartnerToken: partnerToken, UserToken: initialToken}}})

	if err := p.search(ctx, location); err != nil {
		t.Fatalf("search: %v", err)
	}
	if got := f.authCalls.Load(); got != 0 {
		t.Fatalf("POST /auth calls = %d, want 0", got)
	}
	if _, err := f.sb.RotateUserToken(login); err != nil {
		t.Fatal(err)
	}
	err := p.search(ctx, location)
	if !errors.Is(err, ErrFixedTokenRejected) {
		t.Fatalf("search after rotation: %v, want ErrFixedTokenRejected", err)
	}
	if got, want := altegio.ClassOf(err), altegio.ClassAuth; got != want {
		t.Fatalf("class = %v, want %v", got, want)
	}
	var ae *AccountError
	if !errors.As(err, &ae) || ae.Account != "app" || !ae.Permanent() {
		t.Fatalf("error %v: want a permanent *AccountError for account app", err)
	}
	if got := f.authCalls.Load(); got != 0 {
		t.Fatalf("POST /auth calls = %d, want 0", got)
	}
	if got := testutil.ToFloat64(p.m.metrics.unauthorized.WithLabelValues("app")); got != 1 {
		t.Fatalf("unauthorized = %v, want 1", got)
	}
}

func TestRotationReloginsOnce(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	p := f.process(Config{})

	if err := p.search(ctx, location); err != nil {
		t.Fatalf("search: %v", err)
	}
	before, _ := p.m.Credentials(ctx, location)
	newToken, err := f.sb.RotateUserToken(login)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.search(ctx, location); err != nil {
		t.Fatalf("search after rotation: %v", err)
	}
	after, err := p.m.Credentials(ctx, location)
	if err != nil {
		t.Fatal(err)
	}
	if after.UserToken != newToken || after.Version <= before.Version {
		t.Fatalf("after rotation: version %d (was %d), token is new: %t", after.Version, before.Version, after.UserToken == newToken)
	}
	if got, want := f.authCalls.Load(), int64(2); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}
	if got := testutil.ToFloat64(p.m.metrics.unauthorized.WithLabelValues(DefaultAccountName)); got != 1 {
		t.Fatalf("unauthorized = %v, want 1", got)
	}
	// A late Refresh with the old credentials uses the new token without a login.
	again, err := p.m.Refresh(ctx, location, before)
	if err != nil || again != after {
		t.Fatalf("late refresh = %v, %v; want %v", again, err, after)
	}
	if got, want := f.authCalls.Load(), int64(2); got != want {
		t.Fatalf("POST /auth calls after late refresh = %d, want %d", got, want)
	}
}

// Several processes (separate NATS connections), each with several
// goroutines, hit a rotated token at the same moment: one POST /auth.
func TestConcurrentRotationOneLogin(t *testing.T) {
	const processes, goroutines = 4, 8
	f := newFixture(t)
	ctx := testCtx(t)
	procs := make([]*proc, processes)
	for i := range procs {
		procs[i] = f.process(Config{})
		if _, err := procs[i].m.Credentials(ctx, location); err != nil {
			t.Fatalf("warm process %d: %v", i, err)
		}
	}
	if got, want := f.authCalls.Load(), int64(1); got != want {
		t.Fatalf("POST /auth calls while warming = %d, want %d", got, want)
	}
	newToken, err := f.sb.RotateUserToken(login)
	if err != nil {
		t.Fatal(err)
	}

	start := make(chan struct{})
	errs := make(chan error, processes*goroutines)
	var wg sync.WaitGroup
	for i, p := range procs {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := p.search(ctx, location); err != nil {
					errs <- fmt.Errorf("process %d goroutine %d: %w", i, g, err)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := f.authCalls.Load(), int64(2); got != want {
		t.Fatalf("POST /auth calls = %d, want %d (one for warming, one after rotation)", got, want)
	}
	var version uint64
	for i, p := range procs {
		// Every process held the old token, so each saw at least one 401.
		if got := testutil.ToFloat64(p.m.metrics.unauthorized.WithLabelValues(DefaultAccountName)); got < 1 {
			t.Errorf("process %d saw %v 401s, want at least 1", i, got)
		}
		c, err := p.m.Credentials(ctx, location)
		if err != nil {
			t.Fatal(err)
		}
		if c.UserToken != newToken {
			t.Errorf("process %d does not hold the new token", i)
		}
		if i == 0 {
			version = c.Version
		} else if c.Version != version {
			t.Errorf("process %d version = %d, want %d", i, c.Version, version)
		}
	}
}

func TestTwoFactorIsPermanentAndShared(t *testing.T) {
	f := newFixture(t, sandbox.User{Login: login, Password: password, Token: initialToken, TwoFactor: true})
	ctx := testCtx(t)
	clk := testenv.NewClock()
	p1 := f.process(Config{Now: clk.Now})

	_, err := p1.m.Credentials(ctx, location)
	if !errors.Is(err, altegio.ErrTwoFactorRequired) {
		t.Fatalf("credentials: %v, want ErrTwoFactorRequired", err)
	}
	var ae *AccountError
	if !errors.As(err, &ae) || ae.Account != DefaultAccountName || !ae.Permanent() {
		t.Fatalf("error %v: want a permanent *AccountError naming the account", err)
	}
	if got, want := altegio.ClassOf(err), altegio.ClassAuth; got != want {
		t.Fatalf("class = %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), `account "default"`) || !strings.Contains(err.Error(), "two-factor") {
		t.Fatalf("error %q should name the account and two-factor authentication", err)
	}
	// The API client surfaces the same error class.
	if err := p1.search(ctx, location); altegio.ClassOf(err) != altegio.ClassAuth {
		t.Fatalf("search: %v (class %v), want class auth", err, altegio.ClassOf(err))
	}

	// Another process adopts the failure instead of trying /auth itself.
	p2 := f.process(Config{Now: clk.Now})
	_, err = p2.m.Credentials(ctx, location)
	if !errors.Is(err, altegio.ErrTwoFactorRequired) || !errors.As(err, &ae) || !ae.Permanent() {
		t.Fatalf("second process: %v, want a permanent two-factor error", err)
	}
	if got, want := f.authCalls.Load(), int64(1); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}
	if got := testutil.ToFloat64(p1.m.metrics.logins.WithLabelValues(DefaultAccountName, reasonTwoFactor)); got != 1 {
		t.Fatalf("logins{two_factor} = %v, want 1", got)
	}
}

func TestWrongPassword(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	acct := loginAccount()
	acct.Password = "pw-SECRET-wrong-9d2c"
	p := f.process(Config{Accounts: []Account{acct}, Now: testenv.NewClock().Now})

	_, err := p.m.Credentials(ctx, location)
	if !errors.Is(err, altegio.ErrInvalidCredentials) {
		t.Fatalf("credentials: %v, want ErrInvalidCredentials", err)
	}
	var ae *AccountError
	if !errors.As(err, &ae) || ae.Account != DefaultAccountName || !ae.Permanent() {
		t.Fatalf("error %v: want a permanent *AccountError naming the account", err)
	}
	if strings.Contains(err.Error(), acct.Password) {
		t.Fatal("error contains the password")
	}
	// Within the back-off: the last error at once, no /auth call.
	_, err = p.m.Credentials(ctx, location)
	var be *BackoffError
	if !errors.As(err, &be) || be.RetryAfter <= 0 || !errors.Is(err, altegio.ErrInvalidCredentials) {
		t.Fatalf("second credentials: %v, want a *BackoffError wrapping ErrInvalidCredentials", err)
	}
	if got, want := f.authCalls.Load(), int64(1); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}
}

func TestAuthDownIsRetryableAndBacksOff(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	clk := testenv.NewClock()
	cfg := Config{Now: clk.Now, LoginBackoffMin: time.Second, LoginBackoffMax: 8 * time.Second}
	p := f.process(cfg)
	if err := p.search(ctx, location); err != nil {
		t.Fatalf("search: %v", err)
	}
	old, _ := p.m.Credentials(ctx, location)
	if _, err := f.sb.RotateUserToken(login); err != nil {
		t.Fatal(err)
	}
	remove := f.sb.Inject(sandbox.Rule{Op: sandbox.OpAuth, Status: 503})

	_, err := p.m.Refresh(ctx, location, old)
	var ae *AccountError
	if !errors.As(err, &ae) || ae.Permanent() {
		t.Fatalf("refresh with /auth down: %v, want a retryable *AccountError", err)
	}
	if got, want := altegio.ClassOf(err), altegio.ClassTransient; got != want {
		t.Fatalf("class = %v, want %v", got, want)
	}
	if got, want := f.authCalls.Load(), int64(2); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}

	// Within the back-off: no further /auth call, the last error at once,
	// both for Refresh and for a real API call.
	_, err = p.m.Refresh(ctx, location, old)
	var be *BackoffError
	if !errors.As(err, &be) || be.RetryAfter <= 0 || be.RetryAfter > cfg.LoginBackoffMin {
		t.Fatalf("refresh during back-off: %v, want a *BackoffError within %v", err, cfg.LoginBackoffMin)
	}
	if err := p.search(ctx, location); !altegio.ClassOf(err).Retryable() {
		t.Fatalf("search during back-off: %v, want a retryable error", err)
	}
	if got := loginBackoff(t, p.m); got <= 0 || got > cfg.LoginBackoffMin.Seconds() {
		t.Errorf("altegio_auth_login_backoff_seconds during the back-off = %v, want in (0, %v]", got, cfg.LoginBackoffMin.Seconds())
	}
	if got, want := f.authCalls.Load(), int64(2); got != want {
		t.Fatalf("POST /auth calls during back-off = %d, want %d", got, want)
	}

	// After the back-off one more attempt, which fails and doubles it.
	clk.Advance(cfg.LoginBackoffMin)
	if _, err := p.m.Refresh(ctx, location, old); err == nil {
		t.Fatal("refresh succeeded with /auth down")
	}
	if got, want := f.authCalls.Load(), int64(3); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}
	clk.Advance(cfg.LoginBackoffMin / 2)
	_, err = p.m.Refresh(ctx, location, old)
	if !errors.As(err, &be) || be.RetryAfter <= 0 {
		t.Fatalf("refresh during the second back-off: %v, want a *BackoffError", err)
	}
	if got := testutil.ToFloat64(p.m.metrics.logins.WithLabelValues(DefaultAccountName, reasonUnavailable)); got != 2 {
		t.Fatalf("logins{unavailable} = %v, want 2", got)
	}

	// /auth is back: after the back-off the call succeeds.
	remove()
	clk.Advance(cfg.LoginBackoffMax)
	if err := p.search(ctx, location); err != nil {
		t.Fatalf("search after recovery: %v", err)
	}
	if got, want := f.authCalls.Load(), int64(4); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}
	if got := loginBackoff(t, p.m); got != 0 {
		t.Errorf("altegio_auth_login_backoff_seconds after a login = %v, want 0", got)
	}
}

// loginBackoff returns the default account's altegio_auth_login_backoff_seconds.
func loginBackoff(t *testing.T, m *Manager) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.metrics)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "altegio_auth_login_backoff_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "account" && l.GetValue() == DefaultAccountName {
					return mt.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatal("no altegio_auth_login_backoff_seconds for the default account")
	return 0
}

func TestStaleLeaseIsTakenOver(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	clk := testenv.NewClock()
	p := f.process(Config{Now: clk.Now, LeaseTimeout: 5 * time.Second})

	// A worker that died while logging in left its lease behind.
	_, js := testenv.Connect(t, f.nats.URL())
	kv, err := topology.BindBucket(ctx, js, DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, leaseKey(DefaultAccountName), encodeLease(leaseRecord{Owner: "dead", State: leaseLogin})); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := p.m.Credentials(ctx, location)
		done <- err
	}()
	var advanced time.Duration
	testenv.WaitFor(t, 10*time.Second, func() error {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("credentials: %v", err)
			}
			return nil
		default:
			if f.authCalls.Load() == 0 {
				clk.Advance(time.Second)
				advanced += time.Second
			}
			return errors.New("still waiting for the stale lease")
		}
	})
	if advanced < 5*time.Second {
		t.Fatalf("logged in after %v, before the lease went stale", advanced)
	}
	if got, want := f.authCalls.Load(), int64(1); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}
	if _, err := kv.Get(ctx, leaseKey(DefaultAccountName)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease after login: %v, want released", err)
	}
}

func TestKVUnavailableAtStart(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	f.nats.Stop()

	p := f.process(Config{KVTimeout: 200 * time.Millisecond, KVRetryInterval: 50 * time.Millisecond})
	c, err := p.m.Credentials(ctx, location)
	if err != nil {
		t.Fatalf("credentials with NATS down: %v", err)
	}
	if c.Version != 0 || c.UserToken != initialToken {
		t.Fatalf("credentials = %v, want the process-local token with version 0", c)
	}
	if err := p.search(ctx, location); err != nil {
		t.Fatalf("search with NATS down: %v", err)
	}
	if !strings.Contains(f.logs.String(), "process-local session") {
		t.Fatal("no warning about the process-local session")
	}

	f.nats.Start()
	testenv.WaitFor(t, 10*time.Second, func() error {
		c, err := p.m.Credentials(ctx, location)
		if err != nil {
			return err
		}
		if c.Version == 0 {
			return errors.New("session not shared yet")
		}
		return nil
	})
	// Another process now finds the token in the KV.
	p2 := f.process(Config{})
	c2, err := p2.m.Credentials(ctx, location)
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := p.m.Credentials(ctx, location)
	if c2 != c1 {
		t.Fatalf("second process = %v, want %v", c2, c1)
	}
	if got, want := f.authCalls.Load(), int64(1); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}
}

func TestLocalOnlyWithoutJetStream(t *testing.T) {
	f := newFixture(t)
	ctx := testCtx(t)
	m, err := New(Config{Accounts: []Account{loginAccount()}}, nil, f.apiClient(altegio.StaticAuthorizer{}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	api := f.apiClient(m)
	if _, err := api.SearchClients(ctx, location, altegio.SearchClientsRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sb.RotateUserToken(login); err != nil {
		t.Fatal(err)
	}
	if _, err := api.SearchClients(ctx, location, altegio.SearchClientsRequest{}); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if got, want := f.authCalls.Load(), int64(2); got != want {
		t.Fatalf("POST /auth calls = %d, want %d", got, want)
	}
}

func TestAccountSelection(t *testing.T) {
	accounts := []Account{
		{Name: "main", PartnerToken: "p", UserToken: "u1", Locations: []int64{1, 2}},
		{Name: "rest", PartnerToken: "p", UserToken: "u2"},
		{Name: "eu", PartnerToken: "p", UserToken: "u3", Locations: []int64{3}},
	}
	m, err := New(Config{Accounts: accounts}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, tc := range []struct {
		loc  int64
		want string
	}{{1, "main"}, {2, "main"}, {3, "eu"}, {99, "rest"}} {
		got, err := m.AccountName(tc.loc)
		if err != nil || got != tc.want {
			t.Errorf("AccountName(%d) = %q, %v; want %q", tc.loc, got, err, tc.want)
		}
	}
	c, err := m.Credentials(context.Background(), 3)
	if err != nil || c.UserToken != "u3" {
		t.Fatalf("credentials for 3: %v, %v", c, err)
	}

	m2, err := New(Config{Accounts: accounts[:1]}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	_, err = m2.Credentials(context.Background(), 99)
	if !errors.Is(err, ErrNoAccount) {
		t.Fatalf("credentials for 99: %v, want ErrNoAccount", err)
	}
	if got, want := altegio.ClassOf(err), altegio.ClassPermanent; got != want {
		t.Fatalf("class = %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), "99") {
		t.Fatalf("error %q should name the location", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no accounts":           {},
		"login without Loginer": {Accounts: []Account{loginAccount()}},
		"negative timeout":      {Accounts: []Account{{Name: "a", PartnerToken: "p", UserToken: "u"}}, KVTimeout: -1},
		"backoff max < min":     {Accounts: []Account{{Name: "a", PartnerToken: "p", UserToken: "u"}}, LoginBackoffMin: time.Minute, LoginBackoffMax: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg, nil, nil); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestClose(t *testing.T) {
	f := newFixture(t)
	p := f.process(Config{})
	if err := p.m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.m.Credentials(testCtx(t), location); !errors.Is(err, ErrClosed) {
		t.Fatalf("credentials after close: %v, want ErrClosed", err)
	}
}
