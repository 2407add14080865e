package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
)

const operatorKey = "op-key-1"

// dlqRecords publishes three dead letters, two of them permanent at
// location 1, and returns their DLQ sequences.
func dlqRecords(t *testing.T, js jetstream.JetStream) []uint64 {
	t.Helper()
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	var seqs []uint64
	for i, class := range []commands.ErrorClass{commands.ClassPermanent, commands.ClassPermanent, commands.ClassAuth} {
		id := fmt.Sprintf("0193f3c2-0000-7000-8000-00000000010%d", i)
		cmd, _ := json.Marshal(map[string]any{"id": id, "type": commands.TypeClientCreate, "location_id": 1,
			"client_ref": fmt.Sprintf("crm-%d", i), "payload": map[string]any{"name": "X", "phone": "+13155550100"}})
		r := commands.DLQRecord{SchemaVersion: 1, Command: cmd, Subject: "altegio.cmd.0.1.ref_crm-" + strconv.Itoa(i) + ".create",
			StreamSeq: uint64(20 + i), CommandID: id, Type: commands.TypeClientCreate, LocationID: 1, ErrorClass: class,
			Reason: "create client: status 422: Phone is taken", HTTPStatus: 422, Attempts: 1,
			FirstFailureAt: at, LastFailureAt: at, DeadLetteredAt: at.Add(time.Duration(i) * time.Hour), WorkerID: "w1"}
		body, _ := json.Marshal(r)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: commands.DLQSubject(commands.Command{Type: r.Type, LocationID: 1}),
			Data: body, Header: nats.Header{commands.HeaderMsgID: {r.MsgID()}}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	return seqs
}

// The DLQ over HTTP: operator keys only, filters, an entry, replays in
// steps with a dry run first, each answer as openapi.json says.
func TestDLQOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := e.start(t, ingestOpts{noOutbox: true, tweak: func(c *Config) {
		_, js := testenv.Connect(t, e.nats.URL())
		svc, err := dlq.New(context.Background(), js, dlq.Config{Rate: 200, Operator: "tester", Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		c.DLQ = svc
		c.OperatorKeys = [][sha256.Size]byte{sha256.Sum256([]byte("other")), sha256.Sum256([]byte(operatorKey))}
	}})
	seqs := dlqRecords(t, in.js)
	get := func(path, key string) response {
		return in.do(t, request{method: http.MethodGet, path: path, key: key})
	}
	replay := func(body string) response {
		return in.do(t, request{method: http.MethodPost, path: "/v1/dlq/replay", key: operatorKey, body: []byte(body)})
	}
	slug := func(r response) string { return strings.TrimPrefix(r.problem(t).Type, problemTypePrefix) }

	for _, key := range []string{"", "wrong", crmKey} { // a producer key does not open the DLQ
		if r := get("/v1/dlq", key); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("GET /v1/dlq with key %q: %d %s", key, r.status, r.body)
		}
	}

	var list dlq.ListResponse
	r := get("/v1/dlq?location=1&class=permanent", operatorKey)
	if r.decode(t, &list); r.status != http.StatusOK || len(list.Entries) != 2 || list.Entries[0].Seq != seqs[0] || list.Summary.Total != 2 {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	if r := get("/v1/dlq?clas=permanent", operatorKey); r.status != http.StatusBadRequest || slug(r) != "invalid-filter" {
		t.Errorf("a misspelt filter: %d %s", r.status, r.body)
	}
	if r := get("/v1/dlq/"+strconv.FormatUint(seqs[1], 10), operatorKey); r.status != http.StatusOK || !strings.Contains(string(r.body), "crm-1") {
		t.Errorf("show: %d %s", r.status, r.body)
	}
	if r := get("/v1/dlq/9999", operatorKey); r.status != http.StatusNotFound {
		t.Errorf("show an unknown entry: %d %s", r.status, r.body)
	}
	if r := in.do(t, request{method: http.MethodDelete, path: "/v1/dlq", key: operatorKey}); r.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /v1/dlq: %d %s", r.status, r.body)
	}

	for body, want := range map[string]string{`{}`: "empty-selection", `{"class":"permanent"}`: "malformed-json", `{"error_class":"nope"}`: "invalid-filter"} {
		if r := replay(body); r.status != http.StatusBadRequest || slug(r) != want {
			t.Errorf("replay %s: %d %s, want %s", body, r.status, r.body, want)
		}
	}
	for _, step := range []struct {
		body            string
		dry             bool
		done, remaining int
	}{
		{`{"error_class":"permanent","dry_run":true}`, true, 0, 2}, // nothing published
		{`{"error_class":"permanent","max":1}`, false, 1, 1},       // one now, the rest on the next call
		{`{"error_class":"permanent"}`, false, 1, 0},
	} {
		var rep dlq.ReplayReport
		r := replay(step.body)
		r.decode(t, &rep)
		if r.status != http.StatusOK || rep.DryRun != step.dry || len(rep.Replayed) != step.done || rep.Remaining != step.remaining {
			t.Fatalf("replay %s: %d %s", step.body, r.status, r.body)
		}
	}
	// Both are back on COMMANDS, and the replays name the key's fingerprint.
	sum := sha256.Sum256([]byte(operatorKey))
	replayed := commands.EventSubject(commands.Result{LocationID: 1, Type: commands.TypeClientCreate, Outcome: commands.OutcomeReplayed})
	testenv.WaitFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := in.js.Stream(ctx, topology.StreamCommands)
		if err != nil {
			return err
		}
		if info, err := s.Info(ctx); err != nil || info.State.Msgs != 2 {
			return fmt.Errorf("COMMANDS: %v, %v", info, err)
		}
		m, err := in.js.Stream(ctx, topology.StreamEvents)
		if err != nil {
			return err
		}
		last, err := m.GetLastMsgForSubject(ctx, replayed)
		if err != nil || !strings.Contains(string(last.Data), "http:"+hex.EncodeToString(sum[:4])) {
			return fmt.Errorf("replayed event: %v", err)
		}
		return nil
	})
}

// Without a DLQ service the routes are not found; a client that hangs up
// while a listing runs is not a server error.
func TestDLQNotServedAndClientGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := e.start(t, ingestOpts{noOutbox: true})
	if r := in.do(t, request{method: http.MethodGet, path: "/v1/dlq", key: operatorKey}); r.status != http.StatusNotFound {
		t.Errorf("GET /v1/dlq without a DLQ service: %d %s", r.status, r.body)
	}

	_, js := testenv.Connect(t, e.nats.URL())
	svc, err := dlq.New(context.Background(), js, dlq.Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{DLQ: svc, OperatorKeys: [][sha256.Size]byte{sha256.Sum256([]byte(operatorKey))}}}
	s.cfg.setDefaults()
	s.log = s.cfg.Logger
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone before the DLQ is read
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/v1/dlq", nil)
	req.Header.Set("Authorization", "Bearer "+operatorKey)
	rec := httptest.NewRecorder()
	s.dlqList(rec, req)
	if rec.Code != statusClientClosedRequest {
		t.Errorf("status %d, want %d (client closed request)", rec.Code, statusClientClosedRequest)
	}
}
