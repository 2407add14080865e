package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/reads"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/worker"
)

const readerKey = "reader-test-key-0123456789"

var readerSecret = []byte("reader-webhook-secret-32-bytes!!")

// Reads over HTTP go to the read service over NATS: every query, by id and
// by client_ref, only for a producer allowed to read in the location, with
// the service's errors as problems.
func TestReadsOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := e.start(t, ingestOpts{noOutbox: true, tweak: func(c *Config) {
		c.Producers = append(c.Producers, Producer{Name: "reader", KeyHashes: [][32]byte{HashAPIKey(readerKey)},
			WebhookSecrets: [][]byte{readerSecret}, Locations: []int64{1}, Read: true})
	}})

	sb, url := testenv.Sandbox(t, sandbox.Config{PartnerToken: "p", Users: []sandbox.User{{Login: "o@example.com", Password: "pw", Token: "u"}},
		RatePerSecond: -1, RatePerMinute: -1})
	id := sb.SeedClient(1, sandbox.ClientRecord{Name: "Ann", Phone: "15550000001"})
	if _, ok := sb.SeedComment(1, sandbox.Comment{ClientID: id, Text: "prefers mornings"}); !ok {
		t.Fatal("seed comment")
	}
	api, err := altegio.New(altegio.Config{BaseURL: url}, altegio.StaticAuthorizer{PartnerToken: "p", UserToken: "u"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := in.js.KeyValue(ctx, topology.BucketClientRefs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, worker.RefKey(1, "ref_crm-1"), fmt.Appendf(nil, `{"client_id":%d}`, id)); err != nil {
		t.Fatal(err)
	}
	history, err := in.js.KeyValue(ctx, topology.BucketCommandHistory)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := reads.Start(in.nc, api, func(ctx context.Context, loc int64, ref string) (int64, bool, error) {
		return worker.LookupClientRef(ctx, kv, loc, ref)
	}, reads.Config{History: func(ctx context.Context, loc int64, q worker.HistoryQuery) (worker.HistoryPage, error) {
		return worker.ClientHistory(ctx, history, loc, q)
	}})
	if err != nil {
		t.Fatal(err)
	}

	get := func(path, key string) response {
		return in.do(t, request{method: http.MethodGet, path: path, key: key})
	}
	for _, path := range []string{fmt.Sprintf("/v1/locations/1/clients/%d", id), "/v1/locations/1/clients-by-ref/crm-1"} {
		r := get(path, readerKey)
		var card altegio.ClientRecord
		if r.status != http.StatusOK || json.Unmarshal(r.body, &card) != nil || card.ID != id || card.Name != "Ann" {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
		if r := get(path+"/comments", readerKey); r.status != http.StatusOK || !strings.Contains(string(r.body), "prefers mornings") {
			t.Errorf("GET %s/comments: %d %s", path, r.status, r.body)
		}
		if r := get(path+"/files", readerKey); r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" {
			t.Errorf("GET %s/files: %d %s", path, r.status, r.body)
		}
	}
	r := in.do(t, request{method: http.MethodPost, path: "/v1/locations/1/search/clients", key: readerKey, body: []byte(`{"fields":["id","name"]}`)})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"Ann"`) {
		t.Errorf("search: %d %s", r.status, r.body)
	}
	r = in.do(t, request{method: http.MethodPost, path: "/v1/locations/1/search/visits", key: readerKey,
		body: []byte(`{"client_ref":"crm-1","from":"2026-01-01","to":"2026-12-31"}`)})
	if r.status != http.StatusOK {
		t.Errorf("visits: %d %s", r.status, r.body)
	}

	// The deprecated list, its query parameters checked.
	r = get("/v1/locations/1/clients?fullname=ann&count=10&id="+fmt.Sprint(id), readerKey)
	var list reads.ListResult
	if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil || len(list.Clients) != 1 || list.Clients[0].ID != id {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	if r := get("/v1/locations/1/clients?count=many&colour=red", readerKey); r.status != http.StatusBadRequest ||
		len(r.problem(t).Errors) != 2 {
		t.Errorf("list with bad parameters: %d %s, want 400 naming both", r.status, r.body)
	}

	// The export: JSON lines, resumable after an id.
	second := sb.SeedClient(1, sandbox.ClientRecord{Name: "Bea", Phone: "15550000002"})
	r = get("/v1/locations/1/export/clients", readerKey)
	if lines := strings.Split(strings.TrimSpace(string(r.body)), "\n"); r.status != http.StatusOK || len(lines) != 2 ||
		r.header.Get("Content-Type") != "application/x-ndjson" || !strings.Contains(lines[1], `"Bea"`) {
		t.Errorf("export: %d %s %q", r.status, r.header.Get("Content-Type"), r.body)
	}
	if r.trailer.Get("Altegio-Export-Complete") != "true" {
		t.Errorf("export trailer %v, want Altegio-Export-Complete: true", r.trailer)
	}
	r = get(fmt.Sprintf("/v1/locations/1/export/clients?after_id=%d", id), readerKey)
	var card altegio.ClientRecord
	if r.status != http.StatusOK || json.Unmarshal(r.body, &card) != nil || card.ID != second {
		t.Errorf("export after %d: %d %s, want only client %d", id, r.status, r.body, second)
	}

	// The commands of a client, from the workers' history.
	res := fmt.Appendf(nil, `{"schema_version":1,"command_id":"c-1","type":"client.update","location_id":1,"client_id":%d,"client_ref":"crm-1","outcome":"succeeded","attempts":1,"completed_at":"2026-12-07T10:00:00Z"}`, id)
	if _, err := history.Put(ctx, worker.HistoryKey(1, "ref_crm-1", time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC), "c-1"), res); err != nil {
		t.Fatal(err)
	}
	r = get("/v1/commands?location_id=1&client_ref=crm-1", readerKey)
	var page worker.HistoryPage
	if r.status != http.StatusOK || json.Unmarshal(r.body, &page) != nil || len(page.Commands) != 1 || page.Commands[0].CommandID != "c-1" {
		t.Errorf("commands of crm-1: %d %s", r.status, r.body)
	}
	if r := get("/v1/commands?location_id=1&client_ref=crm-1", crmKey); r.status != http.StatusForbidden {
		t.Errorf("commands by a producer that may not read: %d, want 403", r.status)
	}
	if r := get("/v1/commands?location_id=1&client_id=x", readerKey); r.status != http.StatusBadRequest {
		t.Errorf("commands with client_id=x: %d, want 400", r.status)
	}
	if r := get("/v1/commands?client_ref=crm-1", readerKey); r.status != http.StatusBadRequest || len(r.problem(t).Errors) != 1 {
		t.Errorf("commands without location_id: %d %s, want 400 naming it", r.status, r.body)
	}
	if r := get("/v1/commands?client_ref=crm-1", ""); r.status != http.StatusUnauthorized {
		t.Errorf("commands without a key: %d, want 401 first", r.status)
	}

	for _, tc := range []struct {
		name, method, path, key, body string
		status                        int
	}{
		{"writing does not imply reading", http.MethodGet, fmt.Sprintf("/v1/locations/1/clients/%d", id), crmKey, "", 403},
		{"another location", http.MethodGet, fmt.Sprintf("/v1/locations/2/clients/%d", id), readerKey, "", 403},
		{"no key", http.MethodGet, fmt.Sprintf("/v1/locations/1/clients/%d", id), "", "", 401},
		{"unknown ref", http.MethodGet, "/v1/locations/1/clients-by-ref/nobody", readerKey, "", 404},
		{"unknown client", http.MethodGet, "/v1/locations/1/clients/999999", readerKey, "", 404},
		{"bad search", http.MethodPost, "/v1/locations/1/search/clients", readerKey, `{"page":"one"}`, 400},
		{"a webhook signature instead of the key", http.MethodGet, fmt.Sprintf("/v1/locations/1/clients/%d", id), "", "", 401},
	} {
		req := request{method: tc.method, path: tc.path, key: tc.key, body: []byte(tc.body)}
		if strings.HasPrefix(tc.name, "a webhook signature") {
			// A valid signature of the reader: a signed read could be
			// replayed on another path, so reads refuse it.
			ts := time.Now().Unix()
			req.headers = map[string]string{"webhook-id": "msg_1", "webhook-timestamp": fmt.Sprint(ts),
				"webhook-signature": SignWebhook(readerSecret, "msg_1", ts, nil)}
		}
		r := in.do(t, req)
		if r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
		}
	}

	// No read service running: 503, not a hang.
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if r := get(fmt.Sprintf("/v1/locations/1/clients/%d", id), readerKey); r.status != http.StatusServiceUnavailable {
		t.Errorf("without the read service: %d %s, want 503", r.status, r.body)
	}
}
