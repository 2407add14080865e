package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/testenv"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestRunServesAndShutsDown(t *testing.T) {
	addr := freeAddr(t)
	env := map[string]string{
		"ALTEGIO_SANDBOX_PARTNER_TOKEN": "from-env",
		"ALTEGIO_SANDBOX_ADDR":          "127.0.0.1:1", // overridden by the flag
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", addr, "-user-password", "pw"}, func(k string) string { return env[k] }, &logs)
	}()

	base := "http://" + addr
	testenv.WaitFor(t, 5*time.Second, func() error {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})

	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/auth",
		strings.NewReader(`{"login":"owner@example.com","password":"pw"}`))
	req.Header.Set("Accept", "application/vnd.api.v2+json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer from-env")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /auth status = %d, want 201", resp.StatusCode)
	}

	resp, err = http.Get(base + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats statsView
	err = json.NewDecoder(resp.Body).Decode(&stats)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	if stats.Requests != 1 || stats.Logins != 1 || stats.ByOp["auth"] != 1 || stats.ByStatus[http.StatusCreated] != 1 {
		t.Errorf("GET /stats = %+v, want the one login counted", stats)
	}

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

func TestHelpListsSettings(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("run --help: %v", err)
	}
	for _, want := range []string{"-addr", "ALTEGIO_SANDBOX_PARTNER_TOKEN", "ALTEGIO_SANDBOX_RATE_PER_MINUTE", "-error-rate", "-reset-rate", "-slow-body", "-latency"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBadEnvironment(t *testing.T) {
	env := map[string]string{"ALTEGIO_SANDBOX_RATE_PER_SECOND": "fast"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "ALTEGIO_SANDBOX_RATE_PER_SECOND") {
		t.Fatalf("run = %v, want an error naming the variable", err)
	}
	if got := envName("user-login"); got != "ALTEGIO_SANDBOX_USER_LOGIN" {
		t.Errorf("envName = %q", got)
	}
}
