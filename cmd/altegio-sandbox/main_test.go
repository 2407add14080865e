package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// startRun runs the sandbox with args in a goroutine, waits until it
// answers /healthz on addr, and returns its base URL and stop, which ends
// the run and fails the test unless run returns nil within 5 s. The end of
// the test ends a run that was not stopped.
func startRun(t *testing.T, addr string, args []string, getenv func(string) string) (base string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, getenv, io.Discard, io.Discard) }()
	base = "http://" + addr
	testenv.WaitFor(t, 5*time.Second, func() error {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	return base, func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("run did not return after cancel")
		}
	}
}

// apiDo sends body to url as the API clients do (JSON, API v2), with the
// Authorization header auth unless it is empty. The caller closes the
// answer's body.
func apiDo(t *testing.T, method, url, auth, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.api.v2+json")
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// apiStatus is apiDo returning the answer's status.
func apiStatus(t *testing.T, method, url, auth, body string) int {
	t.Helper()
	resp := apiDo(t, method, url, auth, body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// getJSON decodes the JSON answer to a GET of url into v.
func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func TestRunServesAndShutsDown(t *testing.T) {
	addr := testenv.FreeAddr(t)
	env := map[string]string{
		"ALTEGIO_SANDBOX_PARTNER_TOKEN": "from-env",
		"ALTEGIO_SANDBOX_ADDR":          "127.0.0.1:1", // overridden by the flag
	}
	base, stop := startRun(t, addr, []string{"-addr", addr, "-user-password", "pw"}, func(k string) string { return env[k] })

	if got := apiStatus(t, http.MethodPost, base+"/api/v1/auth", "Bearer from-env", `{"login":"owner@example.com","password":"pw"}`); got != http.StatusCreated {
		t.Fatalf("POST /auth status = %d, want 201", got)
	}

	var stats statsView
	if err := getJSON(base+"/stats", &stats); err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	if stats.Requests != 1 || stats.Logins != 1 || stats.ByOp["auth"] != 1 || stats.ByStatus[http.StatusCreated] != 1 {
		t.Errorf("GET /stats = %+v, want the one login counted", stats)
	}
	stop()
}

func TestHelpListsSettings(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, io.Discard, &out); err != nil {
		t.Fatalf("run --help: %v", err)
	}
	for _, want := range []string{"-addr", "ALTEGIO_SANDBOX_PARTNER_TOKEN", "ALTEGIO_SANDBOX_RATE_PER_MINUTE", "-error-rate", "-reset-rate", "-slow-body", "-latency",
		`(default "127.0.0.1:8081")`, "-state-file", "ALTEGIO_SANDBOX_STATE_FILE", "-version"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBadEnvironment(t *testing.T) {
	env := map[string]string{"ALTEGIO_SANDBOX_RATE_PER_SECOND": "fast"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ALTEGIO_SANDBOX_RATE_PER_SECOND") {
		t.Fatalf("run = %v, want an error naming the variable", err)
	}
	if got := envName("user-login"); got != "ALTEGIO_SANDBOX_USER_LOGIN" {
		t.Errorf("envName = %q", got)
	}
}

// The control endpoints steer a sandbox running as its own process: a 429
// storm, a token rotation, and the state read back.
func TestControlEndpoints(t *testing.T) {
	addr := testenv.FreeAddr(t)
	base, stop := startRun(t, addr, []string{"-addr", addr, "-control", "-user-token", "tok-1", "-partner-token", "p", "-log-level", "error"},
		func(string) string { return "" })
	call := func(method, path, token, body string) int {
		t.Helper()
		auth := ""
		if token != "" {
			auth = "Bearer p, User " + token
		}
		return apiStatus(t, method, base+path, auth, body)
	}
	if got := call(http.MethodPost, "/api/v1/clients/1", "tok-1", `{"name":"Ann","phone":"+15550001234"}`); got != http.StatusCreated {
		t.Fatalf("create: %d", got)
	}
	if got := call(http.MethodPut, "/control/faults", "", `{"storm":"1h"}`); got != http.StatusNoContent {
		t.Fatalf("PUT /control/faults: %d", got)
	}
	if got := call(http.MethodGet, "/api/v1/client/1/1", "tok-1", ""); got != http.StatusTooManyRequests {
		t.Errorf("during the storm: %d, want 429", got)
	}
	if got := call(http.MethodPut, "/control/faults", "", `{}`); got != http.StatusNoContent {
		t.Fatalf("PUT /control/faults: %d", got)
	}
	if got := call(http.MethodPost, "/control/rotate-token", "", ""); got != http.StatusNoContent {
		t.Fatalf("rotate: %d", got)
	}
	if got := call(http.MethodGet, "/api/v1/client/1/1", "tok-1", ""); got != http.StatusUnauthorized {
		t.Errorf("old token after the rotation: %d, want 401", got)
	}
	var clients []struct {
		Name  string `json:"name"`
		Phone string `json:"phone"`
	}
	if err := getJSON(base+"/control/clients?location=1", &clients); err != nil || len(clients) != 1 || clients[0].Name != "Ann" {
		t.Errorf("GET /control/clients: %+v, %v", clients, err)
	}
	stop()
}

// Webhook settings written through the API send client events to a
// receiver, with the flags' delay and bearer, and /control/webhooks lists
// the delivery.
func TestWebhooksAndControl(t *testing.T) {
	var help bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, io.Discard, &help); err != nil {
		t.Fatalf("run --help: %v", err)
	}
	for _, want := range []string{"ALTEGIO_SANDBOX_WEBHOOK_DELAY", "ALTEGIO_SANDBOX_WEBHOOK_RETRY_DELAY", "ALTEGIO_SANDBOX_WEBHOOK_BEARER", `default 5s`, `default 1.5s`} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}

	auths := make(chan string, 4)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auths <- r.Header.Get("Authorization")
	}))
	defer receiver.Close()
	addr := testenv.FreeAddr(t)
	env := map[string]string{"ALTEGIO_SANDBOX_WEBHOOK_BEARER": "hook-tok"}
	base, stop := startRun(t, addr, []string{"-addr", addr, "-control", "-user-token", "tok-1", "-partner-token", "p",
		"-log-level", "error", "-webhook-delay", "1ms", "-webhook-retry-delay", "1ms"}, func(k string) string { return env[k] })
	const user = "Bearer p, User tok-1"
	if got := apiStatus(t, http.MethodPost, base+"/api/v1/hooks_settings/1", user, `{"urls":["`+receiver.URL+`/hook"],"active":1,"client":1,"self_sending":1}`); got != http.StatusCreated {
		t.Fatalf("POST hooks_settings: %d", got)
	}
	if got := apiStatus(t, http.MethodPost, base+"/api/v1/clients/1", user, `{"name":"Ann","phone":"+15550001234"}`); got != http.StatusCreated {
		t.Fatalf("create: %d", got)
	}
	select {
	case got := <-auths:
		if got != "Bearer hook-tok" {
			t.Errorf("webhook Authorization = %q, want the bearer from the environment", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook arrived")
	}
	type delivery struct {
		URL      string         `json:"url"`
		Status   string         `json:"status"`
		Attempts int            `json:"attempts"`
		Payload  map[string]any `json:"payload"`
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		var got []delivery
		if err := getJSON(base+"/control/webhooks", &got); err != nil {
			return err
		}
		if len(got) != 1 || got[0].Status != "delivered" || got[0].Attempts != 1 || got[0].URL != receiver.URL+"/hook" ||
			got[0].Payload["status"] != "create" || got[0].Payload["resource"] != "client" {
			return fmt.Errorf("GET /control/webhooks = %+v", got)
		}
		return nil
	})
	stop()
}

// The binary alone listens where the dev stack serves the sandbox.
func TestDefaultAddrIsTheDevStacks(t *testing.T) {
	c, err := parseConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != "127.0.0.1:8081" {
		t.Errorf("default addr = %q, want 127.0.0.1:8081", c.addr)
	}
	if c.stateFile != "" {
		t.Errorf("default state file = %q, want none (in memory)", c.stateFile)
	}
}

// --version prints the binary's name and version on stdout and serves
// nothing.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("run --version: %v", err)
	}
	if want := "altegio-sandbox " + stack.Version() + "\n"; stdout.String() != want {
		t.Errorf("stdout = %q, want %q", stdout.String(), want)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", stderr.String())
	}
}

// A port that is taken fails at once, saying so and naming the flag.
func TestBusyPortFailsAtOnce(t *testing.T) {
	busy := testenv.BusyAddr(t)
	stateFile := filepath.Join(t.TempDir(), "state.json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, []string{"-addr", busy, "-state-file", stateFile}, func(string) string { return "" }, io.Discard, io.Discard)
	testenv.ErrorSays(t, err, "address already in use", "--addr", busy)
	if _, err := os.Stat(stateFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file touched before the port was held: %v", err)
	}
}

// With a state file (here from the environment) clients survive a restart
// of the process, and the restarted sandbox hands out new IDs.
func TestStateFileSurvivesRestart(t *testing.T) {
	env := map[string]string{"ALTEGIO_SANDBOX_STATE_FILE": filepath.Join(t.TempDir(), "sandbox-state.json")}
	getenv := func(k string) string { return env[k] }
	args := func(addr string) []string {
		return []string{"-addr", addr, "-control", "-user-token", "tok-1", "-partner-token", "p", "-log-level", "error"}
	}
	create := func(base, name, phone string) int64 {
		t.Helper()
		resp := apiDo(t, http.MethodPost, base+"/api/v1/clients/1", "Bearer p, User tok-1", `{"name":"`+name+`","phone":"`+phone+`"}`)
		defer resp.Body.Close()
		var body struct {
			Data struct {
				ID int64 `json:"id"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: status %d, %v", name, resp.StatusCode, err)
		}
		return body.Data.ID
	}

	addr := testenv.FreeAddr(t)
	base, stop := startRun(t, addr, args(addr), getenv)
	first := create(base, "Ann", "+15550001234")
	stop()

	addr = testenv.FreeAddr(t)
	base, stop = startRun(t, addr, args(addr), getenv)
	var clients []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	err := getJSON(base+"/control/clients?location=1", &clients)
	if err != nil || len(clients) != 1 || clients[0].ID != first || clients[0].Name != "Ann" {
		t.Errorf("clients after the restart: %+v, %v; want Ann with id %d", clients, err, first)
	}
	if second := create(base, "Bob", "+15550001235"); second <= first {
		t.Errorf("id after the restart %d, want above %d", second, first)
	}
	stop()
}
