package auth

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// Secrets used by the tests; the redaction test scans output for them.
const (
	partnerToken = "ptok-SECRET-partner-4f1d9c"
	password     = "pw-SECRET-hunter2-77aa"
	initialToken = "utok-SECRET-initial-0b3e"
	login        = "owner@example.com"
	location     = int64(101)
)

// fixture is a sandbox behind httptest and an in-process JetStream.
type fixture struct {
	t         *testing.T
	sb        *sandbox.Server
	baseURL   string
	nats      *testenv.NATS
	logs      *testenv.Buffer
	logger    *slog.Logger
	authCalls atomic.Int64 // POST /auth requests, whatever their answer
}

func newFixture(t *testing.T, users ...sandbox.User) *fixture {
	t.Helper()
	if len(users) == 0 {
		users = []sandbox.User{{Login: login, Password: password, Token: initialToken}}
	}
	sb, err := sandbox.New(sandbox.Config{
		PartnerToken:  partnerToken,
		Users:         users,
		RatePerSecond: -1,
		RatePerMinute: -1,
	})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	f := &fixture{t: t, sb: sb, logs: &testenv.Buffer{}}
	f.logger = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == sandbox.BasePath+"/auth" {
			f.authCalls.Add(1)
		}
		sb.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.baseURL = srv.URL + sandbox.BasePath
	f.nats = testenv.RunJetStream(t)
	return f
}

// loginAccount is the default account logging in as the sandbox user.
func loginAccount() Account {
	return Account{Name: DefaultAccountName, PartnerToken: partnerToken, Login: login, Password: password}
}

// apiClient returns a real client using authz.
func (f *fixture) apiClient(authz altegio.Authorizer) *altegio.Client {
	f.t.Helper()
	c, err := altegio.New(altegio.Config{BaseURL: f.baseURL, Logger: f.logger}, authz, nil)
	if err != nil {
		f.t.Fatalf("altegio client: %v", err)
	}
	return c
}

// proc is one simulated worker process: its own NATS connection, Manager,
// registry and API client.
type proc struct {
	m   *Manager
	reg *prometheus.Registry
	api *altegio.Client
}

// process starts a Manager on its own NATS connection. cfg.Accounts
// defaults to loginAccount(); the logger and registry are set here.
func (f *fixture) process(cfg Config) *proc {
	f.t.Helper()
	_, js := testenv.Connect(f.t, f.nats.URL())
	if cfg.Accounts == nil {
		cfg.Accounts = []Account{loginAccount()}
	}
	if cfg.Logger == nil {
		cfg.Logger = f.logger
	}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	m, err := New(cfg, js, f.apiClient(altegio.StaticAuthorizer{}))
	if err != nil {
		f.t.Fatalf("new manager: %v", err)
	}
	f.t.Cleanup(func() { _ = m.Close() })
	return &proc{m: m, reg: reg, api: f.apiClient(m)}
}

// search makes one real API call on loc through p's client.
func (p *proc) search(ctx context.Context, loc int64) error {
	_, err := p.api.SearchClients(ctx, loc, altegio.SearchClientsRequest{})
	return err
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
