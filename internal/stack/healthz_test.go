package stack

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The worker's /healthz answers like ingest's (internal/ingest healthz):
// JSON {"status":"ok"}, not cached.
func TestOpsHealthzAnswersJSONLikeIngest(t *testing.T) {
	srv := httptest.NewServer(OpsHandler(func(context.Context) error { return nil }, prometheus.NewRegistry()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil || len(got) != 1 || got["status"] != "ok" {
		t.Errorf("body %q (%v), want {\"status\":\"ok\"}", body, err)
	}
}
