package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/ingest"
	"github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

func TestHelpListsEveryEnvVariable(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, io.Discard, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help: %v", err)
	}
	for _, want := range []string{"$NATS_URL", "$INGEST_ADDR", "$INGEST_PRODUCERS", "$INGEST_PRODUCERS_FILE", "$INGEST_OUTBOX", "$INGEST_INSECURE_NO_AUTH", "(default 1048576)", "(default 100)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	// The format of every binary (envflag.SetUsage).
	if !strings.HasPrefix(out.String(), "Usage: ingest [flags]\n\nAccept producers' commands over HTTP") {
		t.Errorf("--help does not start with the usage line and the description:\n%s", out.String())
	}
	for _, want := range []string{"\nFlags:\n", "\n  --nats-url string\n        NATS server URLs, comma-separated ($NATS_URL) (default \"nats://127.0.0.1:4222\")\n", "\n  --version\n", "\nExit codes: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("run --version: %v", err)
	}
	if want := "ingest " + stack.Version() + "\n"; out.String() != want {
		t.Errorf("--version printed %q, want %q", out.String(), want)
	}
}

// A bad setting fails before any network work, naming the flag or the
// variable to change.
func TestBadSettingsFailNamingTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad duration", map[string]string{"INGEST_PUBLISH_TIMEOUT": "soon"}, "$INGEST_PUBLISH_TIMEOUT"},
		{"no producers", map[string]string{}, "set --producers or $INGEST_PRODUCERS, or --producers-file or $INGEST_PRODUCERS_FILE"},
		{"bad producer json", map[string]string{"INGEST_PRODUCERS": "{"}, "--producers ($INGEST_PRODUCERS)"},
		{"producers twice", map[string]string{"INGEST_PRODUCERS": "[]", "INGEST_PRODUCERS_FILE": "p.json"}, "not both"},
		{"bad log level", map[string]string{"INGEST_INSECURE_NO_AUTH": "true", "LOG_LEVEL": "loud"}, "(set --log-level or $LOG_LEVEL)"},
		{"bad allow-list", map[string]string{"INGEST_INSECURE_NO_AUTH": "true", "INGEST_ALTEGIO_WEBHOOK_ALLOW": "nope"}, "(set --altegio-webhook-allow or $INGEST_ALTEGIO_WEBHOOK_ALLOW)"},
		{"bad operator digest", map[string]string{"INGEST_INSECURE_NO_AUTH": "true", "INGEST_OPERATOR_KEYS_SHA256": "abc"}, "(set --operator-keys-sha256 or $INGEST_OPERATOR_KEYS_SHA256)"},
		{"bad NATS URL", map[string]string{"INGEST_INSECURE_NO_AUTH": "true", "NATS_URL": "nats://alice:s3cret@[::1"}, "(set --nats-url or $NATS_URL)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{
				"INGEST_APPLY_TOPOLOGY": "false",
				"NATS_URL":              "nats://127.0.0.1:1",
				"INGEST_OUTBOX":         filepath.Join(t.TempDir(), "o.db"),
				"INGEST_ADDR":           "127.0.0.1:0",
			}
			for k, v := range tc.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// A taken port fails at once, before NATS is tried (it is not there),
// naming the flag that chooses another.
func TestBusyPortNamesTheFlag(t *testing.T) {
	busy := testenv.BusyAddr(t)
	env := map[string]string{
		"NATS_URL":                "nats://" + testenv.FreeAddr(t),
		"INGEST_ADDR":             busy,
		"INGEST_INSECURE_NO_AUTH": "true",
		"INGEST_OUTBOX":           filepath.Join(t.TempDir(), "o.db"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("run returned %v (ctx %v), want a listen error at once", err, ctx.Err())
	}
	testenv.ErrorSays(t, err, "address already in use", "--addr", busy)
}

// With the topology to apply, an unreachable NATS fails after
// --nats-connect-timeout naming the flag and the variable, not the password.
func TestUnreachableNATSNamesTheFlag(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens there
	env := map[string]string{
		"NATS_URL":                    "nats://alice:s3cret@" + addr,
		"INGEST_NATS_CONNECT_TIMEOUT": "300ms",
		"INGEST_ADDR":                 "127.0.0.1:0",
		"INGEST_INSECURE_NO_AUTH":     "true",
		"INGEST_OUTBOX":               filepath.Join(t.TempDir(), "o.db"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("err %v, ctx %v: want an error before the test's deadline", err, ctx.Err())
	}
	testenv.ErrorSays(t, err, "connect to NATS at nats://alice:xxxxx@"+addr, "connection refused", "--nats-url", "$NATS_URL", "--nats-connect-timeout")
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q shows the password", err)
	}
}

// TestRunServesAndShutsDown runs the binary's run against a real JetStream:
// it applies the topology, serves, accepts a command and stops on cancel.
func TestRunServesAndShutsDown(t *testing.T) {
	n := testenv.RunJetStream(t)
	addr := testenv.FreeAddr(t)
	env := map[string]string{
		"NATS_URL":         n.URL(),
		"INGEST_ADDR":      addr,
		"INGEST_OUTBOX":    filepath.Join(t.TempDir(), "outbox.db"),
		"INGEST_PRODUCERS": `[{"name":"crm","api_key_sha256":["` + sha("secret-key") + `"]}]`,
		"LOG_LEVEL":        "warn",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard, io.Discard) }()
	base := "http://" + addr
	testenv.WaitFor(t, 20*time.Second, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	req, _ := http.NewRequest("POST", base+"/v1/commands", strings.NewReader(`{"type":"client.delete","location_id":1,"client_id":2}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer secret-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("post: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func sha(key string) string {
	sum := ingest.HashAPIKey(key)
	return hex.EncodeToString(sum[:])
}
