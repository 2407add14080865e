package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/worker"
)

// syncBuffer is the log and output capture the stack tests share.
type syncBuffer = testenv.Buffer

// startDev runs the dev stack on free ports with its data in dir and returns
// where it listens and a function that stops it and returns RunDev's error.
func startDev(t *testing.T, dir string, out io.Writer) (DevStack, func() error) {
	return startDevWith(t, DevConfig{DataDir: dir, Out: out})
}

// startDevWith is startDev with more settings; addresses, logger and the
// ready hook are set here.
func startDevWith(t *testing.T, cfg DevConfig) (DevStack, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan DevStack, 1)
	done := make(chan error, 1)
	go func() {
		cfg.NATSListen, cfg.SandboxAddr, cfg.IngestAddr, cfg.OpsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.Progress = 50 * time.Millisecond
		cfg.Logger = testLogger()
		cfg.Ready = func(s DevStack) { ready <- s }
		done <- RunDev(ctx, cfg)
	}()
	select {
	case st := <-ready:
		stopped := false
		stop := func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			return <-done
		}
		t.Cleanup(func() { stop() })
		return st, stop
	case err := <-done:
		cancel()
		t.Fatalf("dev stack did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("dev stack did not start within 30s")
	}
	return DevStack{}, nil
}

// post sends one command to ingest with the dev producer key and returns its
// id.
func post(t *testing.T, st DevStack, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, st.IngestURL+"/v1/commands", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+DevProducerKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Commands []struct{ ID, Status string } `json:"commands"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted || len(out.Commands) != 1 {
		t.Fatalf("post: status %d, body %+v, err %v", resp.StatusCode, out, err)
	}
	return out.Commands[0].ID
}

// status returns the command's status as ingest reports it.
func status(st DevStack, id string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, st.IngestURL+"/v1/commands/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+DevProducerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	return out.Status, nil
}

func waitStatus(t *testing.T, st DevStack, id, want string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, func() error {
		got, err := status(st, id)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("command %s is %q, want %q", id, got, want)
		}
		return nil
	})
}

func TestDevStackRunsTheREADMETour(t *testing.T) {
	out := &syncBuffer{}
	st, stop := startDevWith(t, DevConfig{DataDir: t.TempDir(), Out: out, WebhookDelay: 100 * time.Millisecond})
	if st.Sandbox == nil {
		t.Fatal("no sandbox started")
	}
	if !strings.Contains(out.String(), "curl -sS -X POST "+st.IngestURL+"/v1/commands") {
		t.Errorf("banner has no ready-to-paste curl for %s:\n%s", st.IngestURL, out.String())
	}
	create := post(t, st, `{"type":"client.create","location_id":1,"client_ref":"crm-42","payload":{"name":"James","phone":"+13155550175"}}`)
	update := post(t, st, `{"type":"client.update","location_id":1,"client_ref":"crm-42","payload":{"name":"James","phone":"+13155550175","email":"j@example.com"}}`)
	waitStatus(t, st, update, "succeeded")
	waitStatus(t, st, create, "succeeded")

	clients := st.Sandbox.Clients(DevLocationID)
	if len(clients) != 1 || clients[0].Email != "j@example.com" {
		t.Fatalf("sandbox clients = %+v, want one with the updated email", clients)
	}
	// The client read back over NATS by its client_ref, through the
	// worker's session and budget.
	nc, _ := testenv.Connect(t, st.NATSURL)
	m, err := nc.Request(commands.ReadSubject(DevLocationID, commands.ReadClient), []byte(`{"client_ref":"crm-42"}`), 10*time.Second)
	if err != nil {
		t.Fatalf("read client: %v", err)
	}
	var card altegio.ClientRecord
	if err := json.Unmarshal(m.Data, &card); err != nil || card.Email != "j@example.com" || card.ID != clients[0].ID {
		t.Errorf("read client crm-42: %s (%v)", m.Data, err)
	}
	// And over HTTP on ingest, with the dev producer's key.
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/locations/%d/clients-by-ref/crm-42", st.IngestURL, DevLocationID), nil)
	req.Header.Set("Authorization", "Bearer "+DevProducerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&card)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || card.Email != "j@example.com" {
		t.Errorf("GET clients-by-ref/crm-42: %d %+v (%v)", resp.StatusCode, card, err)
	}
	// The export of the location, as JSON lines.
	req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/locations/%d/export/clients", st.IngestURL, DevLocationID), nil)
	req.Header.Set("Authorization", "Bearer "+DevProducerKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Count(string(body), "\n") != 1 || !strings.Contains(string(body), `"j@example.com"`) {
		t.Errorf("export: %d %s", resp.StatusCode, body)
	}
	// The sandbox's webhooks about both changes come back through ingest
	// as events, marked as the integrator's own.
	testenv.WaitFor(t, 10*time.Second, func() error {
		s := out.String()
		for _, want := range []string{"event  succeeded     client.create", "event  succeeded     client.update", "progress  accepted 2",
			"webhook client.create   location=1 client_id=" + fmt.Sprint(clients[0].ID) + " origin=integrator command=" + create,
			"webhook client.update   location=1 client_id=" + fmt.Sprint(clients[0].ID) + " origin=integrator command=" + update} {
			if !strings.Contains(s, want) {
				return fmt.Errorf("output lacks %q", want)
			}
		}
		return nil
	})

	// A change made elsewhere (here: straight through the API as the dev
	// user) comes back as a webhook event that is not the integrator's.
	elsewhere(t, st, clients[0].ID)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if want := fmt.Sprintf("webhook client.update   location=1 client_id=%d origin=elsewhere", clients[0].ID); !strings.Contains(out.String(), want) {
			return fmt.Errorf("output lacks %q", want)
		}
		return nil
	})

	// A comment for a client the API does not know is dead-lettered at once
	// and shows in the operators' HTTP view of the DLQ.
	bad := post(t, st, `{"type":"client.comment.add","location_id":1,"client_id":999,"payload":{"text":"hello"}}`)
	waitStatus(t, st, bad, "dead_lettered")
	// The status record says dead a moment before the DLQ record is
	// published: poll.
	testenv.WaitFor(t, 10*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodGet, st.IngestURL+"/v1/dlq?type=client.comment.add", nil)
		req.Header.Set("Authorization", "Bearer "+DevOperatorKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var list struct {
			Entries []struct {
				Record struct {
					CommandID string `json:"command_id"`
				} `json:"record"`
			} `json:"entries"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v1/dlq: status %d, err %v", resp.StatusCode, err)
		}
		if len(list.Entries) != 1 || list.Entries[0].Record.CommandID != bad {
			return fmt.Errorf("DLQ entries = %+v, want the one comment %s", list.Entries, bad)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestDevStackResumesUnfinishedCommands(t *testing.T) {
	dir := t.TempDir()
	// The retry delay outlasts the first run, so the command is parked on
	// the server when the stack stops.
	st, stop := startDevWith(t, DevConfig{DataDir: dir, Out: io.Discard, Worker: worker.Config{RetryBase: 10 * time.Second}})
	st.Sandbox.Inject(sandbox.Rule{Op: sandbox.OpClientCreate, Status: http.StatusServiceUnavailable})
	id := post(t, st, `{"type":"client.create","location_id":1,"client_ref":"crm-7","payload":{"name":"Ada","phone":"+13155550111"}}`)
	testenv.WaitFor(t, 30*time.Second, func() error {
		if n := st.Sandbox.Stats().ByOp[sandbox.OpClientCreate]; n < 1 {
			return fmt.Errorf("no create attempt yet")
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// The next start, on the same data, finishes the command against a
	// healthy API.
	st, _ = startDev(t, dir, io.Discard)
	waitStatus(t, st, id, "succeeded")
	if got := st.Sandbox.Stats().CreatesByPhone["13155550111"]; got != 1 {
		t.Errorf("creates for the phone = %d, want 1", got)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("DEV_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// elsewhere changes client id's email straight through the sandbox's API,
// as another system would: logs in as the dev user, then PUTs. It shares
// the sandbox's per-IP budget with the integrator without sharing its
// schedule, so a 429 is possible: it retries, as such a system must.
func elsewhere(t *testing.T, st DevStack, id int64) {
	t.Helper()
	call := func(method, path, auth, body string) []byte {
		var out []byte
		testenv.WaitFor(t, 10*time.Second, func() error {
			req, _ := http.NewRequest(method, st.APIURL+path, strings.NewReader(body))
			req.Header.Set("Authorization", auth)
			req.Header.Set("Accept", "application/vnd.api.v2+json")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			switch resp.StatusCode {
			case http.StatusOK, http.StatusCreated:
				out = b
				return nil
			case http.StatusTooManyRequests:
				return fmt.Errorf("%s %s: 429", method, path)
			}
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
			return nil
		})
		return out
	}
	var login struct {
		Data struct {
			UserToken string `json:"user_token"`
		} `json:"data"`
	}
	if err := json.Unmarshal(call(http.MethodPost, "/auth", "Bearer "+DevPartnerToken,
		fmt.Sprintf(`{"login":%q,"password":%q}`, DevLogin, DevPassword)), &login); err != nil || login.Data.UserToken == "" {
		t.Fatalf("login: %v", err)
	}
	call(http.MethodPut, fmt.Sprintf("/client/%d/%d", DevLocationID, id), "Bearer "+DevPartnerToken+", User "+login.Data.UserToken,
		`{"name":"James","phone":"13155550175","email":"james@elsewhere.example"}`)
}
