package reads_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/reads"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/topology/topotest"
	"github.com/altegio-integrator/integrator/internal/worker"
)

const (
	partner = "partner-token"
	user    = "user-token"
)

type fixture struct {
	nc  *nats.Conn
	sb  *sandbox.Server
	loc int64
	id  int64 // a seeded client, mapped from client_ref "crm-1"
}

func setup(t *testing.T, cfg reads.Config, sbCfg func(*sandbox.Config)) fixture {
	t.Helper()
	return setupWith(t, cfg, sbCfg, nil)
}

// setupWith is setup with the API client's budget.
func setupWith(t *testing.T, cfg reads.Config, sbCfg func(*sandbox.Config), lim altegio.Limiter) fixture {
	t.Helper()
	n := testenv.RunJetStream(t)
	nc, js := testenv.Connect(t, n.URL())
	scfg := sandbox.Config{PartnerToken: partner, Users: []sandbox.User{{Login: "o@example.com", Password: "pw", Token: user}},
		RatePerSecond: -1, RatePerMinute: -1}
	if sbCfg != nil {
		sbCfg(&scfg)
	}
	sb, url := testenv.Sandbox(t, scfg)
	api, err := altegio.New(altegio.Config{BaseURL: url}, altegio.StaticAuthorizer{PartnerToken: partner, UserToken: user}, lim)
	if err != nil {
		t.Fatal(err)
	}
	topotest.Apply(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketClientRefs)
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{nc: nc, sb: sb, loc: 1}
	f.id = sb.SeedClient(f.loc, sandbox.ClientRecord{Name: "Ann", Phone: "15550000001", Email: "ann@example.com"})
	if _, ok := sb.SeedComment(f.loc, sandbox.Comment{ClientID: f.id, Text: "prefers mornings"}); !ok {
		t.Fatal("seed comment")
	}
	if _, err := kv.Put(ctx, worker.RefKey(f.loc, "ref_crm-1"), []byte(`{"client_id":`+jsonInt(f.id)+`}`)); err != nil {
		t.Fatal(err)
	}
	refs := func(ctx context.Context, loc int64, ref string) (int64, bool, error) {
		return worker.LookupClientRef(ctx, kv, loc, ref)
	}
	svc, err := reads.Start(nc, api, refs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return f
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// ask sends a request and returns the body, or the micro error code and
// message.
func (f fixture) ask(t *testing.T, subject, body string) (data []byte, code, msg string) {
	t.Helper()
	m, err := f.nc.Request(subject, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	return m.Data, m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader)
}

// Every query answers through the worker's API client; a client_ref
// resolves through the ref mapping as commands resolve it; the service is
// discoverable with nats micro.
func TestReadsOverNATS(t *testing.T) {
	t.Parallel()
	f := setup(t, reads.Config{}, nil)

	for _, body := range []string{`{"client_id":` + jsonInt(f.id) + `}`, `{"client_ref":"crm-1"}`} {
		data, code, msg := f.ask(t, commands.ReadSubject(f.loc, commands.ReadClient), body)
		var c altegio.ClientRecord
		if code != "" || json.Unmarshal(data, &c) != nil || c.ID != f.id || c.Name != "Ann" {
			t.Errorf("client.get %s: %s %s %s", body, code, msg, data)
		}
	}
	data, code, _ := f.ask(t, commands.ReadSubject(f.loc, commands.ReadComments), `{"client_ref":"crm-1"}`)
	if code != "" || !strings.Contains(string(data), `"text":"prefers mornings"`) || strings.Contains(string(data), `"Text"`) {
		t.Errorf("client.comments (the API's snake_case names): %s %s", code, data)
	}
	data, code, _ = f.ask(t, commands.ReadSubject(f.loc, commands.ReadFiles), `{"client_id":`+jsonInt(f.id)+`}`)
	if code != "" || strings.TrimSpace(string(data)) != "[]" {
		t.Errorf("client.files: %s %s", code, data)
	}
	data, code, _ = f.ask(t, commands.ReadSubject(f.loc, commands.ReadSearch), `{"fields":["id","name","phone"]}`)
	if code != "" || !strings.Contains(string(data), `"Ann"`) || !strings.Contains(string(data), `"total_count":1`) {
		t.Errorf("clients.search: %s %s", code, data)
	}
	data, code, msg := f.ask(t, commands.ReadSubject(f.loc, commands.ReadVisits), `{"client_ref":"crm-1","from":"2026-01-01","to":"2026-12-31"}`)
	if code != "" {
		t.Errorf("visits.search: %s %s %s", code, msg, data)
	}

	for _, tc := range []struct {
		subject, body, code string
	}{
		{commands.ReadSubject(f.loc, commands.ReadClient), `{"client_ref":"nobody"}`, "404"},
		{commands.ReadSubject(f.loc, commands.ReadClient), `{"client_id":999999}`, "404"},
		{commands.ReadSubject(f.loc, commands.ReadClient), `{}`, "400"},
		{commands.ReadSubject(f.loc, commands.ReadClient), `{"client_id":1,"client_ref":"crm-1"}`, "400"},
		{commands.ReadSubject(f.loc, commands.ReadClient), `{"client":1}`, "400"},
		{commands.ReadSubjectPrefix + "x." + commands.ReadClient, `{"client_id":1}`, "400"},
		// Only canonical locations: a permission on altegio.read.1.> must not
		// be bypassed by altegio.read.01.….
		{commands.ReadSubjectPrefix + "01." + commands.ReadClient, `{"client_id":1}`, "400"},
		{commands.ReadSubject(f.loc, commands.ReadClient), `{"client_id":1} {}`, "400"},
		// The API client refuses it before sending: the caller's mistake.
		{commands.ReadSubject(f.loc, commands.ReadSearch), `{"page_size":500}`, "400"},
	} {
		if _, code, msg := f.ask(t, tc.subject, tc.body); code != tc.code || msg == "" {
			t.Errorf("%s %s: code %q (%s), want %s with a reason", tc.subject, tc.body, code, msg, tc.code)
		}
	}

	// nats micro info: the service and one endpoint per query.
	m, err := f.nc.Request("$SRV.INFO."+reads.ServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil || len(info.Endpoints) != len(commands.ReadQueries) {
		t.Fatalf("$SRV.INFO: %v %s", err, m.Data)
	}
	for i, q := range commands.ReadQueries {
		if info.Endpoints[i].Subject != commands.ReadSubjectPrefix+"*."+q {
			t.Errorf("endpoint %d subject %q, want %q", i, info.Endpoints[i].Subject, commands.ReadSubjectPrefix+"*."+q)
		}
	}
}

// A read that cannot be done within its deadline answers 503 instead of
// hanging.
func TestReadPastItsDeadlineIs503(t *testing.T) {
	t.Parallel()
	f := setup(t, reads.Config{Timeout: 200 * time.Millisecond}, func(c *sandbox.Config) { c.Faults.Latency = 2 * time.Second })
	if _, code, msg := f.ask(t, commands.ReadSubject(f.loc, commands.ReadClient), `{"client_id":`+jsonInt(f.id)+`}`); code != "503" {
		t.Errorf("code %q (%s), want 503", code, msg)
	}
}
