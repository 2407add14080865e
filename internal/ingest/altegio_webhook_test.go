package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// hookSecret is the webhook secret of the tests; hookPath the URL Altegio
// would be given.
const (
	hookSecret = "altegio-hook-secret-0123456789"
	hookPath   = "/v1/altegio/webhooks/" + hookSecret
)

// startHooks runs an ingest with the webhook route on, then tweak.
func (e *env) startHooks(t testing.TB, tweak func(*Config)) *ingest {
	t.Helper()
	return e.start(t, ingestOpts{noOutbox: true, tweak: func(c *Config) {
		c.AltegioWebhookSecret = hookSecret
		if tweak != nil {
			tweak(c)
		}
	}})
}

// clientData is the data of a client webhook (reference §7).
func clientData(client int64, name string) string {
	return fmt.Sprintf(`{"id":%d,"name":%q,"surname":"","phone":"79001234567","email":"","categories":[{"id":1,"title":"VIP","color":"#ff0000"}],"last_change_date":"2026-11-30T10:00:00+0300","custom_fields":[]}`, client, name)
}

// clientHook is the body of a client webhook.
func clientHook(company, client int64, status commands.WebhookStatus, name string) []byte {
	return []byte(fmt.Sprintf(`{"company_id":%d,"resource":"client","resource_id":%d,"status":%q,"data":%s}`,
		company, client, status, clientData(client, name)))
}

// hook posts a webhook body to the route, as Altegio does.
func (in *ingest) hook(t testing.TB, body []byte) response {
	t.Helper()
	return in.do(t, request{path: hookPath, body: body})
}

// receipt decodes a 200 answer of the route.
func receipt(t testing.TB, r response) WebhookReceipt {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", r.status, r.body)
	}
	var rc WebhookReceipt
	r.decode(t, &rc)
	return rc
}

// webhookEvents returns every message of the EVENTS stream, in order.
func webhookEvents(t testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, topology.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// eventAt returns the event stored at seq, checked against the schema.
func eventAt(t testing.TB, msgs []*jetstream.RawStreamMsg, seq uint64) (*jetstream.RawStreamMsg, commands.WebhookEvent) {
	t.Helper()
	for _, m := range msgs {
		if m.Sequence != seq {
			continue
		}
		if err := validateWebhookEvent(m.Data); err != nil {
			t.Errorf("event %s does not match /schemas/webhook-event.json: %v", m.Data, err)
		}
		var ev commands.WebhookEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("decode event %s: %v", m.Data, err)
		}
		return m, ev
	}
	t.Fatalf("no event at sequence %d", seq)
	return nil, commands.WebhookEvent{}
}

// webhookSchema compiles the served event schema once, with format
// assertions.
var webhookSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	const url = "https://github.com/altegio-integrator/integrator/schema/v1/webhook.schema.json"
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(commands.WebhookEventSchema()))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(url, doc); err != nil {
		return nil, err
	}
	return c.Compile(url)
})

// validateWebhookEvent validates an event against the served schema.
func validateWebhookEvent(data []byte) error {
	s, err := webhookSchema()
	if err != nil {
		return fmt.Errorf("compile schema: %w", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// metricsHave fails the test unless /metrics has every line of want.
func metricsHave(t testing.TB, in *ingest, want ...string) {
	t.Helper()
	r := in.do(t, request{method: http.MethodGet, path: "/metrics"})
	for _, line := range want {
		if !bytes.Contains(r.body, []byte("\n"+line+"\n")) {
			t.Errorf("metrics lack %q", line)
		}
	}
}

// metricValue returns the value of one series on /metrics.
func metricValue(t testing.TB, in *ingest, series string) float64 {
	t.Helper()
	r := in.do(t, request{method: http.MethodGet, path: "/metrics"})
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s on /metrics", series)
	return 0
}

func TestAltegioWebhookPublishesEvent(t *testing.T) {
	e := newEnv(t)
	in := e.startHooks(t, nil)
	before := time.Now().UTC()
	tests := []struct {
		name   string
		body   []byte
		status commands.WebhookStatus
		client int64
		data   string
	}{
		{"create", clientHook(42, 1001, commands.WebhookCreate, "Ann"), commands.WebhookCreate, 1001, clientData(1001, "Ann")},
		{"update", clientHook(42, 1002, commands.WebhookUpdate, "Bob <&>"), commands.WebhookUpdate, 1002, clientData(1002, "Bob <&>")},
		{"delete", clientHook(42, 1003, commands.WebhookDelete, "Cid"), commands.WebhookDelete, 1003, clientData(1003, "Cid")},
		{"delete without data", []byte(`{"company_id":42,"resource":"client","resource_id":1004,"status":"delete"}`),
			commands.WebhookDelete, 1004, `{}`},
		{"ids as strings, indented data", []byte("{\"company_id\":\"42\",\"resource\":\"client\",\"resource_id\":\"1005\",\"status\":\"update\",\"data\":{\n  \"id\": 1005,\n  \"name\": \"Dee\"\n}}"),
			commands.WebhookUpdate, 1005, `{"id":1005,"name":"Dee"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := receipt(t, in.hook(t, tc.body))
			if rc.Status != WebhookPublished || rc.StreamSeq == 0 || len(rc.DeliveryID) != 64 {
				t.Fatalf("receipt %+v, want published with a stream sequence and a delivery id", rc)
			}
			m, ev := eventAt(t, webhookEvents(t, in.js), rc.StreamSeq)
			if want := "altegio.evt.42.webhook.client." + string(tc.status); m.Subject != want {
				t.Errorf("subject %q, want %q", m.Subject, want)
			}
			if got := m.Header.Get(commands.HeaderMsgID); got != rc.DeliveryID {
				t.Errorf("Nats-Msg-Id %q, want the delivery id %q", got, rc.DeliveryID)
			}
			if got := m.Header.Get(commands.HeaderSchemaVersion); got != "1" {
				t.Errorf("schema version header %q", got)
			}
			want := commands.WebhookEvent{SchemaVersion: 1, LocationID: 42, Resource: "client", ResourceID: tc.client,
				Status: tc.status, DeliveryID: rc.DeliveryID}
			got := ev
			got.Data, got.ReceivedAt = nil, time.Time{}
			if !equalJSON(t, got, want) {
				t.Errorf("event %+v, want %+v", got, want)
			}
			if string(ev.Data) != tc.data {
				t.Errorf("data %s, want %s", ev.Data, tc.data)
			}
			if ev.ReceivedAt.Before(before) || ev.ReceivedAt.After(time.Now()) {
				t.Errorf("received_at %v is not the time of receipt", ev.ReceivedAt)
			}
		})
	}
	if got := len(webhookEvents(t, in.js)); got != len(tests) {
		t.Errorf("EVENTS holds %d messages, want %d", got, len(tests))
	}
	r := in.do(t, request{method: http.MethodGet, path: "/schemas/webhook-event.json"})
	if r.status != 200 || !bytes.Equal(r.body, commands.WebhookEventSchema()) || r.header.Get("Content-Type") != "application/schema+json" {
		t.Errorf("GET /schemas/webhook-event.json: %d %s", r.status, r.header.Get("Content-Type"))
	}
	metricsHave(t, in, `ingest_altegio_webhooks_total{reason="external",result="published"} 5`)
}

// equalJSON compares two values by their JSON encoding.
func equalJSON(t testing.TB, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

func TestAltegioWebhookRetriesStoredOnce(t *testing.T) {
	e := newEnv(t)
	in := e.startHooks(t, nil)
	body := clientHook(7, 77, commands.WebhookUpdate, "Ann")
	first := receipt(t, in.hook(t, body))
	if first.Status != WebhookPublished {
		t.Fatalf("first delivery %+v", first)
	}
	// Altegio's retries, one of them formatted otherwise.
	var indented bytes.Buffer
	if err := json.Indent(&indented, body, "", "  "); err != nil {
		t.Fatal(err)
	}
	for i, retry := range [][]byte{body, indented.Bytes()} {
		rc := receipt(t, in.hook(t, retry))
		if rc.Status != WebhookDuplicate || rc.DeliveryID != first.DeliveryID || rc.StreamSeq != first.StreamSeq {
			t.Errorf("retry %d: %+v, want duplicate of %+v", i+1, rc, first)
		}
	}
	msgs := webhookEvents(t, in.js)
	if len(msgs) != 1 {
		t.Fatalf("EVENTS holds %d messages after three deliveries of one webhook, want 1", len(msgs))
	}
	// Another change of the same client is another event.
	other := receipt(t, in.hook(t, clientHook(7, 77, commands.WebhookUpdate, "Anna")))
	if other.Status != WebhookPublished || other.DeliveryID == first.DeliveryID {
		t.Errorf("a changed client: %+v, want a new event", other)
	}
	if got := len(webhookEvents(t, in.js)); got != 2 {
		t.Errorf("EVENTS holds %d messages, want 2", got)
	}
	metricsHave(t, in,
		`ingest_altegio_webhooks_total{reason="external",result="published"} 2`,
		`ingest_altegio_webhooks_total{reason="external",result="duplicate"} 2`)
}

// TestAltegioWebhookRefusalsLookLikeUnknownPath: a disabled route, a wrong
// secret and a source not allowed answer what an unknown path answers,
// and publish nothing; the right secret from an allowed source passes.
func TestAltegioWebhookRefusalsLookLikeUnknownPath(t *testing.T) {
	e := newEnv(t)
	body := clientHook(5, 55, commands.WebhookUpdate, "Ann")
	base := e.startHooks(t, nil)
	unknown := base.do(t, request{path: "/v1/no-such-endpoint", body: body})
	if unknown.status != http.StatusNotFound {
		t.Fatalf("unknown path answered %d", unknown.status)
	}
	prefixes := func(s string) []netip.Prefix {
		p, err := ParseCIDRs(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		tweak   func(*Config)
		path    string
		headers map[string]string
		pass    bool
	}{
		{name: "wrong secret", path: "/v1/altegio/webhooks/altegio-hook-secret-0123456788"},
		{name: "secret prefix", path: hookPath[:len(hookPath)-1]},
		{name: "secret longer", path: hookPath + "9"},
		{name: "disabled", tweak: func(c *Config) { c.AltegioWebhookSecret = "" }, path: hookPath},
		{name: "source not allowed", tweak: func(c *Config) { c.AltegioWebhookAllow = prefixes("10.0.0.0/8, 192.0.2.1") }, path: hookPath},
		{name: "forwarded for, no trusted proxy", path: hookPath,
			tweak:   func(c *Config) { c.AltegioWebhookAllow = prefixes("203.0.113.0/24") },
			headers: map[string]string{"X-Forwarded-For": "203.0.113.7"}},
		{name: "trusted proxy, client not allowed", path: hookPath,
			tweak: func(c *Config) {
				c.AltegioWebhookAllow, c.AltegioWebhookTrustedProxies = prefixes("203.0.113.0/24"), prefixes("127.0.0.0/8")
			},
			headers: map[string]string{"X-Forwarded-For": "203.0.113.7, 198.51.100.1"}},
		{name: "trusted proxy, garbage forwarded for", path: hookPath,
			tweak: func(c *Config) {
				c.AltegioWebhookAllow, c.AltegioWebhookTrustedProxies = prefixes("203.0.113.0/24"), prefixes("127.0.0.0/8")
			},
			headers: map[string]string{"X-Forwarded-For": "203.0.113.7, not-an-ip"}},
		{name: "allowed source", pass: true, path: hookPath,
			tweak: func(c *Config) { c.AltegioWebhookAllow = prefixes("10.0.0.0/8,127.0.0.0/8") }},
		{name: "trusted proxy forwards an allowed client", pass: true, path: hookPath,
			tweak: func(c *Config) {
				c.AltegioWebhookAllow, c.AltegioWebhookTrustedProxies = prefixes("203.0.113.0/24"), prefixes("127.0.0.1")
			},
			headers: map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}},
	}
	passed := 0
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := e.startHooks(t, tc.tweak)
			// Each case changes the client, so that a passing one is a new event.
			b := clientHook(5, 55, commands.WebhookUpdate, fmt.Sprintf("Ann %d", i))
			r := in.do(t, request{path: tc.path, body: b, headers: tc.headers})
			if tc.pass {
				if rc := receipt(t, r); rc.Status != WebhookPublished {
					t.Fatalf("receipt %+v", rc)
				}
				passed++
				return
			}
			if r.status != unknown.status {
				t.Fatalf("status %d, want %d like an unknown path: %s", r.status, unknown.status, r.body)
			}
			for _, h := range []string{"Content-Type", "Cache-Control", "Allow", "WWW-Authenticate", "Retry-After"} {
				if got, want := r.header.Get(h), unknown.header.Get(h); got != want {
					t.Errorf("header %s %q, want %q like an unknown path", h, got, want)
				}
			}
			if got, want := withoutInstance(t, r.body), withoutInstance(t, unknown.body); got != want {
				t.Errorf("body %s, want %s like an unknown path", got, want)
			}
		})
	}
	if got := len(webhookEvents(t, base.js)); got != passed || passed != 2 {
		t.Errorf("EVENTS holds %d messages, %d deliveries passed; want 2 and 2", got, passed)
	}
}

// withoutInstance returns a problem body without its per-request instance.
func withoutInstance(t testing.TB, body []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if m["instance"] == nil {
		t.Errorf("problem %s has no instance", body)
	}
	delete(m, "instance")
	b, _ := json.Marshal(m)
	return string(b)
}

func TestAltegioWebhookInvalidPayloads(t *testing.T) {
	e := newEnv(t)
	in := e.startHooks(t, nil)
	tests := []struct {
		name  string
		body  string
		typ   string
		paths []string
	}{
		{name: "malformed", body: `{"company_id":1,`, typ: "malformed-json"},
		{name: "not utf-8", body: "{\"company_id\":1,\"resource\":\"client\",\"resource_id\":2,\"status\":\"update\",\"data\":{\"name\":\"\xff\"}}", typ: "malformed-json"},
		{name: "empty", body: ``, typ: "malformed-json"},
		{name: "array", body: `[]`, typ: "invalid-webhook", paths: []string{""}},
		{name: "null", body: `null`, typ: "invalid-webhook", paths: []string{""}},
		{name: "no resource", body: `{"company_id":1,"resource_id":2,"status":"update","data":{}}`, typ: "invalid-webhook", paths: []string{"resource"}},
		{name: "resource not a string", body: `{"resource":7,"status":"update"}`, typ: "invalid-webhook",
			paths: []string{"company_id", "data", "resource", "resource_id"}},
		{name: "only the resource", body: `{"resource":"client"}`, typ: "invalid-webhook",
			paths: []string{"company_id", "data", "resource_id", "status"}},
		{name: "everything wrong", body: `{"company_id":0,"resource":"client","resource_id":-1,"status":"merge","data":"x"}`, typ: "invalid-webhook",
			paths: []string{"company_id", "data", "resource_id", "status"}},
		{name: "fraction and exponent", body: `{"company_id":1.5,"resource":"client","resource_id":1e3,"status":"update","data":{}}`, typ: "invalid-webhook",
			paths: []string{"company_id", "resource_id"}},
		{name: "too big and not digits", body: `{"company_id":99999999999999999999,"resource":"client","resource_id":"12a","status":"update","data":{}}`, typ: "invalid-webhook",
			paths: []string{"company_id", "resource_id"}},
		{name: "status case", body: `{"company_id":1,"resource":"client","resource_id":2,"status":"Update","data":{}}`, typ: "invalid-webhook",
			paths: []string{"status"}},
		{name: "update without data", body: `{"company_id":1,"resource":"client","resource_id":2,"status":"update"}`, typ: "invalid-webhook",
			paths: []string{"data"}},
		{name: "create with empty array", body: `{"company_id":1,"resource":"client","resource_id":2,"status":"create","data":[]}`, typ: "invalid-webhook",
			paths: []string{"data"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := in.hook(t, []byte(tc.body))
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			p := r.problem(t)
			if p.Type != problemTypePrefix+tc.typ {
				t.Errorf("type %q, want %q", p.Type, problemTypePrefix+tc.typ)
			}
			var paths []string
			for _, fp := range p.Errors {
				paths = append(paths, fp.Path)
			}
			slices.Sort(paths)
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("paths %q, want %q", paths, tc.paths)
			}
		})
	}
	// The decoder is not refusing everything: a delete with [] as data
	// and ids as strings passes.
	ok := receipt(t, in.hook(t, []byte(`{"company_id":"1","resource":"client","resource_id":"2","status":"delete","data":[]}`)))
	if ok.Status != WebhookPublished {
		t.Errorf("valid delete: %+v", ok)
	}
	if got := len(webhookEvents(t, in.js)); got != 1 {
		t.Errorf("EVENTS holds %d messages, want only the valid one", got)
	}
	metricsHave(t, in,
		`ingest_altegio_webhooks_total{reason="malformed_json",result="rejected"} 3`,
		fmt.Sprintf(`ingest_altegio_webhooks_total{reason="invalid",result="rejected"} %d`, len(tests)-3))

	small := e.startHooks(t, func(c *Config) { c.MaxBodyBytes = 128 })
	r := small.hook(t, clientHook(1, 2, commands.WebhookUpdate, strings.Repeat("x", 200)))
	if r.status != http.StatusRequestEntityTooLarge || r.problem(t).Type != problemTypePrefix+"too-large" {
		t.Errorf("oversized body: %d %s", r.status, r.body)
	}
}

func TestAltegioWebhookOtherResourceIgnored(t *testing.T) {
	e := newEnv(t)
	in := e.startHooks(t, nil)
	for _, body := range []string{
		`{"company_id":1,"resource":"record","resource_id":9,"status":"update","data":{"id":9}}`,
		`{"resource":"record"}`,
		`{"company_id":1,"resource":"goods_operations_sale","resource_id":3,"status":"create","data":{}}`,
		`{"company_id":1,"resource":"something_new","resource_id":3,"status":"archive","data":7}`,
	} {
		if rc := receipt(t, in.hook(t, []byte(body))); rc.Status != WebhookIgnored || rc.DeliveryID != "" || rc.StreamSeq != 0 {
			t.Errorf("%s: %+v, want ignored", body, rc)
		}
	}
	if got := len(webhookEvents(t, in.js)); got != 0 {
		t.Errorf("EVENTS holds %d messages, want none", got)
	}
	metricsHave(t, in,
		`ingest_altegio_webhooks_total{reason="record",result="ignored"} 2`,
		`ingest_altegio_webhooks_total{reason="goods_operations_sale",result="ignored"} 1`,
		`ingest_altegio_webhooks_total{reason="other",result="ignored"} 1`)
}

// fingerprint is altegio.CardFingerprint of a card that must be one.
func fingerprint(t testing.TB, card string) string {
	t.Helper()
	fp, ok := altegio.CardFingerprint(json.RawMessage(card))
	if !ok {
		t.Fatalf("not a card: %s", card)
	}
	return fp
}

// putOwnChange records an own change as a worker would.
func putOwnChange(t testing.TB, js jetstream.JetStream, location, client int64, c commands.OwnChange) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketOwnChanges)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	// Keyed by the status its type causes; a type that causes none is
	// stored under update, to be found by an update webhook and refused.
	status, ok := commands.OwnChangeStatus(c.Type)
	if !ok {
		status = commands.WebhookUpdate
	}
	if _, err := kv.Put(ctx, commands.OwnChangeKey(location, client, status), b); err != nil {
		t.Fatal(err)
	}
}

func TestAltegioWebhookOwnChanges(t *testing.T) {
	e := newEnv(t)
	mark := e.startHooks(t, nil)
	skip := e.startHooks(t, func(c *Config) { c.AltegioWebhookOwn = OwnChangeSkip })
	now := time.Now()
	const loc = 9
	tests := []struct {
		name   string
		in     *ingest
		client int64
		change *commands.OwnChange
		status commands.WebhookStatus
		want   string // WebhookPublished (marked or not) or WebhookSkipped
		marked bool
	}{
		{"mark: own update", mark, 1, &commands.OwnChange{CommandID: "c-1", Type: commands.TypeClientUpdate, At: now.Add(-10 * time.Second)},
			commands.WebhookUpdate, WebhookPublished, true},
		{"mark: own bulk create", mark, 2, &commands.OwnChange{CommandID: "c-2", Type: commands.TypeClientBulkCreate, At: now.Add(-time.Minute)},
			commands.WebhookCreate, WebhookPublished, true},
		{"mark: own delete, clocks a little apart", mark, 3, &commands.OwnChange{CommandID: "c-3", Type: commands.TypeClientDelete, At: now.Add(5 * time.Second)},
			commands.WebhookDelete, WebhookPublished, true},
		{"mark: old own change", mark, 4, &commands.OwnChange{CommandID: "c-4", Type: commands.TypeClientUpdate, At: now.Add(-5 * time.Minute)},
			commands.WebhookUpdate, WebhookPublished, false},
		{"mark: own create, update webhook", mark, 5, &commands.OwnChange{CommandID: "c-5", Type: commands.TypeClientCreate, At: now.Add(-10 * time.Second)},
			commands.WebhookUpdate, WebhookPublished, false},
		{"mark: no own change", mark, 6, nil, commands.WebhookUpdate, WebhookPublished, false},
		{"mark: own update, same card", mark, 11, &commands.OwnChange{CommandID: "c-11", Type: commands.TypeClientUpdate, At: now.Add(-10 * time.Second),
			Card: fingerprint(t, clientData(11, "Ann"))}, commands.WebhookUpdate, WebhookPublished, true},
		// Someone else changed the client after our update: their webhook
		// carries another card and is not ours.
		{"mark: own update, card changed since", mark, 12, &commands.OwnChange{CommandID: "c-12", Type: commands.TypeClientUpdate, At: now.Add(-10 * time.Second),
			Card: fingerprint(t, clientData(12, "Bo"))}, commands.WebhookUpdate, WebhookPublished, false},
		{"skip: own update", skip, 7, &commands.OwnChange{CommandID: "c-7", Type: commands.TypeClientUpdate, At: now.Add(-10 * time.Second)},
			commands.WebhookUpdate, WebhookSkipped, false},
		{"skip: own delete", skip, 8, &commands.OwnChange{CommandID: "c-8", Type: commands.TypeClientDelete, At: now.Add(-90 * time.Second)},
			commands.WebhookDelete, WebhookSkipped, false},
		{"skip: old own change", skip, 9, &commands.OwnChange{CommandID: "c-9", Type: commands.TypeClientUpdate, At: now.Add(-3 * time.Minute)},
			commands.WebhookUpdate, WebhookPublished, false},
		{"skip: own update, delete webhook", skip, 10, &commands.OwnChange{CommandID: "c-10", Type: commands.TypeClientUpdate, At: now.Add(-10 * time.Second)},
			commands.WebhookDelete, WebhookPublished, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.change != nil {
				putOwnChange(t, tc.in.js, loc, tc.client, *tc.change)
			}
			rc := receipt(t, tc.in.hook(t, clientHook(loc, tc.client, tc.status, "Ann")))
			if rc.Status != tc.want {
				t.Fatalf("receipt %+v, want %s", rc, tc.want)
			}
			if tc.want == WebhookSkipped {
				for _, m := range webhookEvents(t, tc.in.js) {
					if m.Header.Get(commands.HeaderMsgID) == rc.DeliveryID {
						t.Errorf("skipped webhook stored at %d", m.Sequence)
					}
				}
				return
			}
			m, ev := eventAt(t, webhookEvents(t, tc.in.js), rc.StreamSeq)
			want := commands.WebhookOrigin{}
			if tc.marked {
				want = commands.WebhookOrigin{Integrator: true, CommandID: tc.change.CommandID, CommandType: tc.change.Type}
			}
			if ev.Origin != want {
				t.Errorf("origin %+v, want %+v", ev.Origin, want)
			}
			if got := m.Header.Get(commands.HeaderCommandID); got != want.CommandID {
				t.Errorf("command id header %q, want %q", got, want.CommandID)
			}
		})
	}
	metricsHave(t, mark,
		`ingest_altegio_webhooks_total{reason="own",result="published"} 4`,
		`ingest_altegio_webhooks_total{reason="external",result="published"} 4`,
		`ingest_altegio_webhook_own_lookups_total{result="own"} 4`,
		`ingest_altegio_webhook_own_lookups_total{result="changed_since"} 1`,
		`ingest_altegio_webhook_own_lookups_total{result="stale"} 1`,
		// The own create is kept under create: the update webhook finds none.
		`ingest_altegio_webhook_own_lookups_total{result="none"} 2`)
	metricsHave(t, skip,
		`ingest_altegio_webhooks_total{reason="own_change",result="skipped"} 2`,
		`ingest_altegio_webhooks_total{reason="external",result="published"} 2`)
}

// TestAltegioWebhookOwnChangesUnreadable: without the bucket, deliveries
// are still published, unmarked.
func TestAltegioWebhookOwnChangesUnreadable(t *testing.T) {
	e := newEnv(t)
	in := e.startHooks(t, nil)
	putOwnChange(t, in.js, 3, 4, commands.OwnChange{CommandID: "c-1", Type: commands.TypeClientUpdate, At: time.Now()})
	// The first lookup finds the bucket and marks the event.
	first := receipt(t, in.hook(t, clientHook(3, 4, commands.WebhookUpdate, "Ann")))
	if _, ev := eventAt(t, webhookEvents(t, in.js), first.StreamSeq); !ev.Origin.Integrator {
		t.Fatalf("own change not marked while the bucket exists: %+v", ev.Origin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := in.js.DeleteKeyValue(ctx, topology.BucketOwnChanges); err != nil {
		t.Fatal(err)
	}
	rc := receipt(t, in.hook(t, clientHook(3, 4, commands.WebhookUpdate, "Anna")))
	if rc.Status != WebhookPublished {
		t.Fatalf("receipt %+v", rc)
	}
	if _, ev := eventAt(t, webhookEvents(t, in.js), rc.StreamSeq); ev.Origin.Integrator {
		t.Errorf("origin %+v without a bucket", ev.Origin)
	}
	metricsHave(t, in, `ingest_altegio_webhook_own_lookups_total{result="error"} 1`)
}

// TestAltegioWebhookUnavailable: while JetStream cannot store the event
// the answer is 503 with Retry-After (Altegio retries); the retry once it
// is back is stored once.
func TestAltegioWebhookUnavailable(t *testing.T) {
	e := newEnv(t)
	in := e.startHooks(t, func(c *Config) { c.ReadyTimeout = 500 * time.Millisecond })
	body := clientHook(2, 3, commands.WebhookCreate, "Ann")
	e.nats.Stop()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if in.nc.IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	r := in.hook(t, body)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "5" || r.problem(t).Type != problemTypePrefix+"unavailable" {
		t.Fatalf("while NATS is down: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	e.nats.Start()
	var rc WebhookReceipt
	testenv.WaitFor(t, 20*time.Second, func() error {
		r, err := in.send(request{path: hookPath, body: body})
		if err != nil {
			return err
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("status %d: %s", r.status, r.body)
		}
		return json.Unmarshal(r.body, &rc)
	})
	if rc.Status != WebhookPublished {
		t.Errorf("first stored delivery: %+v", rc)
	}
	if again := receipt(t, in.hook(t, body)); again.Status != WebhookDuplicate {
		t.Errorf("second retry: %+v", again)
	}
	if got := len(webhookEvents(t, in.js)); got != 1 {
		t.Errorf("EVENTS holds %d messages, want 1", got)
	}
	if got := metricValue(t, in, `ingest_altegio_webhooks_total{reason="unavailable",result="failed"}`); got < 1 {
		t.Errorf("%v deliveries counted as failed, want at least 1", got)
	}
}

func TestAltegioWebhookConfig(t *testing.T) {
	valid := Config{AuthDisabled: true, AltegioWebhookSecret: hookSecret, AltegioWebhookOwn: OwnChangeSkip,
		AltegioWebhookOwnWindow: time.Minute, AltegioWebhookAllow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, c := range map[string]Config{
		"short secret":    {AltegioWebhookSecret: "short-secret"},
		"secret with '/'": {AltegioWebhookSecret: "altegio/hook/secret/0123"},
		"secret with '%'": {AltegioWebhookSecret: "altegio-hook-secret-%2F0123"},
		"unknown mode":    {AltegioWebhookOwn: "drop"},
		"negative window": {AltegioWebhookOwnWindow: -time.Second},
		"invalid prefix":  {AltegioWebhookAllow: []netip.Prefix{{}}},
		"invalid proxy":   {AltegioWebhookTrustedProxies: []netip.Prefix{{}}},
	} {
		c.AuthDisabled = true
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if c.AltegioWebhookSecret != "" && strings.Contains(err.Error(), c.AltegioWebhookSecret) {
			t.Errorf("%s: the error repeats the secret: %v", name, err)
		}
	}
	var c Config
	c.setDefaults()
	if c.AltegioWebhookOwn != OwnChangeMark || c.AltegioWebhookOwnWindow != 2*time.Minute || c.AltegioWebhookSecret != "" {
		t.Errorf("defaults: own %q, window %v, secret set %v", c.AltegioWebhookOwn, c.AltegioWebhookOwnWindow, c.AltegioWebhookSecret != "")
	}

	for in, want := range map[string]string{
		"":                              "[]",
		"10.0.0.0/8, 203.0.113.7 ,::1,": "[10.0.0.0/8 203.0.113.7/32 ::1/128]",
		"10.1.2.3/8":                    "[10.0.0.0/8]",
		"::ffff:192.0.2.1":              "[192.0.2.1/32]",
	} {
		got, err := ParseCIDRs(in)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("ParseCIDRs(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"nope", "10.0.0.0/33", "10.0.0.0/8;192.0.2.0/24"} {
		if got, err := ParseCIDRs(in); err == nil {
			t.Errorf("ParseCIDRs(%q) = %v, want an error", in, got)
		}
	}
}
