package dlq

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

const operatorKey = "op-key-1"

func TestHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var s []uint64
	for _, r := range fixture() {
		s = append(s, publishRecord(t, e.js, r))
	}
	srv := httptest.NewServer(Handler(e.svc, [][sha256.Size]byte{sha256.Sum256([]byte("other")), sha256.Sum256([]byte(operatorKey))}))
	t.Cleanup(srv.Close)

	do := func(method, path, key, body string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	problem := func(t *testing.T, resp *http.Response, body []byte, status int, slug string) {
		t.Helper()
		var p Problem
		if resp.StatusCode != status || resp.Header.Get("Content-Type") != ProblemContentType ||
			json.Unmarshal(body, &p) != nil || p.Status != status || !strings.HasSuffix(p.Type, ":"+slug) {
			t.Errorf("got %d %s %s, want %d problem %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, status, slug)
		}
	}

	t.Run("unauthenticated", func(t *testing.T) {
		for _, key := range []string{"", "wrong"} {
			resp, body := do("GET", "/v1/dlq", key, "")
			problem(t, resp, body, 401, "unauthenticated")
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate")
			}
			resp, body = do("POST", "/v1/dlq/replay", key, `{"all":true}`)
			problem(t, resp, body, 401, "unauthenticated")
		}
		if n := e.streamMsgs("COMMANDS"); n != 0 {
			t.Errorf("an unauthenticated replay published %d commands", n)
		}
	})

	t.Run("list", func(t *testing.T) {
		resp, body := do("GET", "/v1/dlq?location=1&class=permanent", operatorKey, "")
		var got ListResponse
		if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if len(got.Entries) != 2 || got.Entries[0].Seq != s[0] || got.Summary.Total != 2 {
			t.Errorf("list: %s", body)
		}
		resp, body = do("GET", "/v1/dlq?seq="+strconv.FormatUint(s[2], 10)+","+strconv.FormatUint(s[3], 10)+"&q=ATTENTION", operatorKey, "")
		if json.Unmarshal(body, &got) != nil || len(got.Entries) != 1 || got.Entries[0].Seq != s[2] {
			t.Errorf("list by seq and text: %d %s", resp.StatusCode, body)
		}
		resp, body = do("GET", "/v1/dlq?since=2026-11-30T11:00:00Z&until=2026-11-30T12:00:00Z", operatorKey, "")
		if json.Unmarshal(body, &got) != nil || len(got.Entries) != 1 || got.Entries[0].Seq != s[2] {
			t.Errorf("list by time: %d %s", resp.StatusCode, body)
		}
		resp, body = do("GET", "/v1/dlq?status=resolved", operatorKey, "")
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"entries":[]`) {
			t.Errorf("empty list: %d %s", resp.StatusCode, body)
		}
		resp, body = do("GET", "/v1/dlq?clas=permanent", operatorKey, "")
		problem(t, resp, body, 400, "invalid-filter")
		resp, body = do("GET", "/v1/dlq?since=yesterday", operatorKey, "")
		problem(t, resp, body, 400, "invalid-filter")
		resp, body = do("GET", "/v1/dlq/"+strconv.FormatUint(s[1], 10), operatorKey, "")
		if resp.StatusCode != 200 || !strings.Contains(string(body), "crm-2") {
			t.Errorf("show: %d %s", resp.StatusCode, body)
		}
		resp, body = do("GET", "/v1/dlq/9999", operatorKey, "")
		problem(t, resp, body, 404, "not-found")
		resp, body = do("DELETE", "/v1/dlq", operatorKey, "")
		problem(t, resp, body, 405, "method-not-allowed")
	})

	t.Run("replay", func(t *testing.T) {
		resp, body := do("POST", "/v1/dlq/replay", operatorKey, `{}`)
		problem(t, resp, body, 400, "empty-selection")
		resp, body = do("POST", "/v1/dlq/replay", operatorKey, `{"class":"permanent"}`)
		problem(t, resp, body, 400, "malformed-json")
		resp, body = do("POST", "/v1/dlq/replay", operatorKey, `{"error_class":"nope"}`)
		problem(t, resp, body, 400, "invalid-filter")

		resp, body = do("POST", "/v1/dlq/replay", operatorKey, `{"error_class":"permanent","dry_run":true}`)
		var rep ReplayReport
		if resp.StatusCode != 200 || json.Unmarshal(body, &rep) != nil || !rep.DryRun || len(rep.Planned) != 2 || len(rep.Replayed) != 0 {
			t.Fatalf("dry run: %d %s", resp.StatusCode, body)
		}
		if n := e.streamMsgs("COMMANDS"); n != 0 {
			t.Fatalf("dry run published %d commands", n)
		}
		// max 1: one now, the rest on the next call.
		resp, body = do("POST", "/v1/dlq/replay", operatorKey, `{"error_class":"permanent","max":1}`)
		if json.Unmarshal(body, &rep) != nil || len(rep.Replayed) != 1 || rep.Remaining != 1 {
			t.Fatalf("replay max 1: %d %s", resp.StatusCode, body)
		}
		resp, body = do("POST", "/v1/dlq/replay", operatorKey, `{"error_class":"permanent"}`)
		if json.Unmarshal(body, &rep) != nil || len(rep.Replayed) != 1 || rep.Remaining != 0 || len(rep.Skipped) != 1 {
			t.Fatalf("replay rest: %d %s", resp.StatusCode, body)
		}
		if n := e.streamMsgs("COMMANDS"); n != 2 {
			t.Errorf("COMMANDS holds %d, want 2", n)
		}
		// The replay is audited with the key's fingerprint.
		sum := sha256.Sum256([]byte(operatorKey))
		testenv.WaitFor(t, 5*time.Second, func() error {
			for _, r := range e.eventsOf(fixture()[0].CommandID, commands.OutcomeReplayed) {
				if strings.Contains(r.Note, "http:"+hex.EncodeToString(sum[:4])) {
					return nil
				}
			}
			return io.EOF
		})
	})
}

// An empty key list refuses every request.
func TestHTTPWithoutKeysRefusesAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := httptest.NewServer(Handler(e.svc, nil))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+"/v1/dlq", nil)
	req.Header.Set("Authorization", "Bearer anything")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
}

// A client that hangs up while its listing runs is not a server error.
func TestHTTPClientGoneIsNotAServerError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := Handler(e.svc, [][sha256.Size]byte{sha256.Sum256([]byte(operatorKey))})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone before the DLQ is read
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/dlq", nil)
	req.Header.Set("Authorization", "Bearer "+operatorKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != StatusClientClosedRequest {
		t.Errorf("status %d, want %d (client closed request)", rec.Code, StatusClientClosedRequest)
	}
}
