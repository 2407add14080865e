package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/ingest"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

func TestHelpListsEveryEnvVariable(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help: %v", err)
	}
	for _, want := range []string{"$NATS_URL", "$INGEST_ADDR", "$INGEST_PRODUCERS", "$INGEST_PRODUCERS_FILE", "$INGEST_OUTBOX", "$INGEST_INSECURE_NO_AUTH", "(default 1048576)", "(default 100)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestBadSettingsFail(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"bad duration":      {"INGEST_PUBLISH_TIMEOUT": "soon"},
		"no producers":      {},
		"bad producer json": {"INGEST_PRODUCERS": "{"},
		"bad log level":     {"INGEST_INSECURE_NO_AUTH": "true", "LOG_LEVEL": "loud"},
	} {
		t.Run(name, func(t *testing.T) {
			env["INGEST_APPLY_TOPOLOGY"] = "false"
			env["NATS_URL"] = "nats://127.0.0.1:1"
			env["INGEST_OUTBOX"] = filepath.Join(t.TempDir(), "o.db")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard); err == nil {
				t.Error("run succeeded")
			}
		})
	}
}

// TestRunServesAndShutsDown runs the binary's run against a real JetStream:
// it applies the topology, serves, accepts a command and stops on cancel.
func TestRunServesAndShutsDown(t *testing.T) {
	n := testenv.RunJetStream(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	env := map[string]string{
		"NATS_URL":         n.URL(),
		"INGEST_ADDR":      addr,
		"INGEST_OUTBOX":    filepath.Join(t.TempDir(), "outbox.db"),
		"INGEST_PRODUCERS": `[{"name":"crm","api_key_sha256":["` + sha("secret-key") + `"]}]`,
		"LOG_LEVEL":        "warn",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard) }()
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
