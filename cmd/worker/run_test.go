package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

func TestRunHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"run", "--help"}, func(string) string { return "" }, &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help: %v", err)
	}
	for _, want := range []string{"$NATS_URL", "$ALTEGIO_API_URL", "$WORKER_ADDR", "$ALTEGIO_RATE_PER_MINUTE", "$WORKER_MAX_ATTEMPTS", "(default 200)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestRunUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"run", "--no-such-flag"}, {"run", "extra"}, {"run", "--max-attempts", "many"}} {
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard)
		if got := exitCode(err); got != exitUsage {
			t.Errorf("run %q: exit %d (%v), want %d", args, got, err, exitUsage)
		}
	}
}

func TestRunWithoutAccountFails(t *testing.T) {
	err := run(context.Background(), []string{"run"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ALTEGIO_") {
		t.Fatalf("err = %v, want one naming the ALTEGIO_ variables", err)
	}
}

// TestRunCarriesOutAPublishedCommand runs the binary's run against a real
// JetStream and the sandbox, with credentials from the environment only: a
// command published straight to NATS ends in the sandbox and in one result
// event, and the ops endpoints answer.
func TestRunCarriesOutAPublishedCommand(t *testing.T) {
	n := testenv.RunJetStream(t)
	sb, apiURL := testenv.Sandbox(t, sandbox.Config{
		PartnerToken: "partner-secret",
		Users:        []sandbox.User{{Login: "ops@example.com", Password: "pw-secret"}},
	})
	addr := testenv.FreeAddr(t)
	env := map[string]string{
		"NATS_URL":              n.URL(),
		"ALTEGIO_API_URL":       apiURL,
		"ALTEGIO_PARTNER_TOKEN": "partner-secret",
		"ALTEGIO_LOGIN":         "ops@example.com",
		"ALTEGIO_PASSWORD":      "pw-secret",
		"WORKER_ADDR":           addr,
		"LOG_LEVEL":             "debug",
	}
	var logs testenv.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard, &logs) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not return after cancel")
		}
		for _, secret := range []string{"partner-secret", "pw-secret"} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("logs contain the secret %q", secret)
			}
		}
	}()
	testenv.WaitFor(t, 20*time.Second, func() error { return get("http://" + addr + "/readyz") })

	_, js := testenv.Connect(t, n.URL())
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeClientCreate, LocationID: 7, ClientRef: "crm-1"}
	if err := c.SetPayload(map[string]any{"name": "Ann", "phone": "+13155550100"}); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(c)
	msg := &nats.Msg{Subject: commands.CommandSubject(c), Data: data, Header: nats.Header{}}
	msg.Header.Set(commands.HeaderMsgID, c.ID)
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		if got := len(sb.Clients(7)); got != 1 {
			return fmt.Errorf("sandbox has %d clients, want 1", got)
		}
		return nil
	})
	if err := get("http://" + addr + "/metrics"); err != nil {
		t.Errorf("metrics: %v", err)
	}
}

func get(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return nil
}
