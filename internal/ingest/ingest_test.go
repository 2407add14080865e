package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/outbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func accepted(t testing.TB, r response) []CommandStatus {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", r.status, r.body)
	}
	var a Accepted
	r.decode(t, &a)
	return a.Commands
}

func TestPostAcceptedThenDuplicate(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{})
	id := commands.NewID()
	body := createCommand(id, 7, "crm-1")

	r := in.post(t, body)
	got := accepted(t, r)
	if len(got) != 1 || got[0].ID != id || got[0].Status != StatusAccepted || got[0].StreamSeq == 0 || got[0].Spooled {
		t.Fatalf("first post: %+v", got)
	}
	if loc := r.header.Get("Location"); loc != "/v1/commands/"+id {
		t.Errorf("Location %q", loc)
	}
	again := accepted(t, in.post(t, body))
	if again[0].Status != StatusDuplicate || again[0].StreamSeq != got[0].StreamSeq {
		t.Errorf("repeat: %+v, want duplicate of seq %d", again[0], got[0].StreamSeq)
	}

	// The stored message: subject, headers, body with the id.
	s, err := in.js.Stream(context.Background(), topology.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), got[0].StreamSeq)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(commands.HeaderMsgID) != id || m.Header.Get(headerProducer) != "crm" ||
		m.Header.Get(commands.HeaderCommandType) != "client.create" {
		t.Errorf("headers %v", m.Header)
	}
	if !strings.HasSuffix(m.Subject, ".7.ref_crm-1.create") {
		t.Errorf("subject %q", m.Subject)
	}
	c, err := commands.Decode(m.Data)
	if err != nil || c.ID != id {
		t.Errorf("stored body %s: %v", m.Data, err)
	}
	if v := counter(t, in, "ingest_commands_total", "result", "duplicate"); v != 1 {
		t.Errorf("duplicate counter %v, want 1", v)
	}
}

func TestIDAssignment(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{})

	t.Run("assigned uuidv7", func(t *testing.T) {
		got := accepted(t, in.post(t, createCommand("", 1, "r1")))
		if !commands.ValidID(got[0].ID) || got[0].ID[14] != '7' {
			t.Errorf("assigned id %q is not a UUIDv7", got[0].ID)
		}
	})
	t.Run("idempotency key", func(t *testing.T) {
		req := request{path: "/v1/commands", body: createCommand("", 1, "r2"), key: crmKey,
			headers: map[string]string{"Idempotency-Key": "order-77"}}
		first := accepted(t, in.do(t, req))
		second := accepted(t, in.do(t, req))
		if first[0].ID != second[0].ID || second[0].Status != StatusDuplicate {
			t.Errorf("first %+v second %+v", first[0], second[0])
		}
	})
	t.Run("uuid idempotency key is the id", func(t *testing.T) {
		key := commands.NewID()
		got := accepted(t, in.do(t, request{path: "/v1/commands", body: createCommand("", 1, "r3"), key: crmKey,
			headers: map[string]string{"Idempotency-Key": `"` + key + `"`}}))
		if got[0].ID != key {
			t.Errorf("id %q, want %q", got[0].ID, key)
		}
	})
	t.Run("batch keeps body ids and derives the rest", func(t *testing.T) {
		id := commands.NewID()
		body := []byte("[" + string(createCommand(id, 1, "b1")) + "," + string(createCommand("", 1, "b2")) + "]")
		req := request{path: "/v1/commands", body: body, key: crmKey, headers: map[string]string{"Idempotency-Key": "batch-1"}}
		first := accepted(t, in.do(t, req))
		if len(first) != 2 || first[0].ID != id || first[1].ID == id {
			t.Fatalf("batch: %+v", first)
		}
		second := accepted(t, in.do(t, req))
		for i := range second {
			if second[i].ID != first[i].ID || second[i].Status != StatusDuplicate {
				t.Errorf("retry [%d]: %+v, want duplicate of %+v", i, second[i], first[i])
			}
		}
	})
}

func TestStatusCodes(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{tweak: func(c *Config) { c.MaxBodyBytes = 64 << 10; c.MaxBatch = 3 }})
	valid := createCommand("", 1, "x")
	big := []byte(`{"type":"client.create","location_id":1,"payload":{"name":"` + strings.Repeat("a", 70<<10) + `","phone":"+79001234567"}}`)

	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantType   string
		wantPaths  []string
	}{
		{"malformed json", request{path: "/v1/commands", body: []byte(`{"type":`), key: crmKey}, 400, "malformed-json", nil},
		{"malformed json in a batch", request{path: "/v1/commands", body: []byte(`[{"type":1},`), key: crmKey}, 400, "malformed-json", nil},
		{"bad idempotency key", request{path: "/v1/commands", body: valid, key: crmKey, headers: map[string]string{"Idempotency-Key": strings.Repeat("k", 300)}}, 400, "invalid-header", nil},
		{"no credentials", request{path: "/v1/commands", body: valid}, 401, "unauthenticated", nil},
		{"wrong key", request{path: "/v1/commands", body: valid, key: "nope"}, 401, "unauthenticated", nil},
		{"basic auth", request{path: "/v1/commands", body: valid, headers: map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}}, 401, "unauthenticated", nil},
		{"forbidden type and location", request{path: "/v1/commands", key: limitedKey,
			body: []byte(`[{"type":"client.create","location_id":1,"payload":{"name":"A","phone":"+79001234567"}},{"type":"client.delete","location_id":2,"client_id":5}]`)},
			403, "forbidden", []string{"[1].type", "[1].location_id"}},
		{"body too large", request{path: "/v1/commands", body: big, key: crmKey}, 413, "too-large", nil},
		{"batch too large", request{path: "/v1/commands", body: []byte("[" + strings.Repeat(string(valid)+",", 3) + string(valid) + "]"), key: crmKey}, 413, "too-large", nil},
		{"wrong content type", request{path: "/v1/commands", body: valid, key: crmKey, ctype: "text/plain"}, 415, "unsupported-media-type", nil},
		{"invalid command, every problem", request{path: "/v1/commands", key: crmKey,
			body: []byte(`{"type":"client.create","location_id":0,"payload":{"phone":"12"},"extra":1}`)},
			422, "invalid-command", []string{"extra", "location_id", "payload.name", "payload.phone"}},
		{"invalid batch item", request{path: "/v1/commands", key: crmKey, body: []byte("[" + string(valid) + `,{"type":"client.create"}]`)},
			422, "invalid-command", []string{"[1].location_id"}},
		{"empty batch", request{path: "/v1/commands", key: crmKey, body: []byte(`[]`)}, 422, "invalid-command", nil},
		{"unknown type", request{path: "/v1/commands", key: crmKey, body: []byte(`{"type":"client.merge","location_id":1}`)}, 422, "unknown-command-type", []string{"type"}},
		{"unknown command id", request{method: "GET", path: "/v1/commands/" + commands.NewID(), key: crmKey}, 404, "not-found", nil},
		{"malformed command id", request{method: "GET", path: "/v1/commands/nope", key: crmKey}, 404, "not-found", nil},
		{"status unauthenticated", request{method: "GET", path: "/v1/commands/" + commands.NewID()}, 401, "unauthenticated", nil},
		{"no such route", request{method: "GET", path: "/v2/nothing"}, 404, "not-found", nil},
		{"wrong method", request{method: "DELETE", path: "/v1/commands"}, 405, "method-not-allowed", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := in.do(t, tc.req)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			p := r.problem(t)
			if p.Type != problemTypePrefix+tc.wantType || p.Status != tc.wantStatus || p.Title == "" || !strings.HasPrefix(p.Instance, "urn:uuid:") {
				t.Errorf("problem %+v, want type %s", p, tc.wantType)
			}
			paths := map[string]bool{}
			for _, e := range p.Errors {
				paths[e.Path] = true
			}
			for _, want := range tc.wantPaths {
				if !paths[want] {
					t.Errorf("no problem at %q in %+v", want, p.Errors)
				}
			}
		})
	}
	if got := counter(t, in, "ingest_commands_total", "reason", "forbidden"); got != 2 {
		t.Errorf("forbidden commands counted %v, want 2", got)
	}
}

func TestStreamFull(t *testing.T) {
	e := newEnv(t)
	_, js := connect(t, e.nats.URL())
	ctx := context.Background()
	// Shrink COMMANDS to a few messages, as a full backlog would be.
	s, err := js.Stream(ctx, topology.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = 2
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	in := e.start(t, ingestOpts{})
	for i := range 2 {
		accepted(t, in.post(t, createCommand("", 1, "full-"+strconv.Itoa(i))))
	}
	// The third of a batch is refused; the first two are reported.
	body := []byte("[" + string(createCommand("", 1, "a")) + "]")
	r := in.post(t, body)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", r.status, r.body)
	}
	if p := r.problem(t); p.Type != problemTypePrefix+"stream-full" {
		t.Errorf("problem %+v", p)
	}
	if ra := r.header.Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After %q, want 5", ra)
	}
	if d, _ := in.outbox.Depth(); d != 0 {
		t.Errorf("a full stream spooled %d commands", d)
	}
}

func TestSpoolWhenNATSDown(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{})
	e.nats.Stop()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if in.nc.IsConnected() {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	id := commands.NewID()
	got := accepted(t, in.post(t, createCommand(id, 3, "spool-1")))
	if !got[0].Spooled || got[0].StreamSeq != 0 || got[0].Status != StatusAccepted {
		t.Fatalf("%+v, want spooled", got[0])
	}
	// Status from memory while the bucket is unreachable.
	var st CommandState
	r := in.do(t, request{method: "GET", path: "/v1/commands/" + id, key: crmKey})
	r.decode(t, &st)
	if r.status != 200 || st.Status != StateSpooled {
		t.Errorf("status %d %+v, want spooled", r.status, st)
	}
	if r := in.do(t, request{method: "GET", path: "/readyz"}); r.status != http.StatusServiceUnavailable {
		t.Errorf("readyz %d while NATS is down", r.status)
	}
	e.nats.Start()
	testenv.WaitFor(t, 20*time.Second, func() error {
		ids, err := streamIDs(context.Background(), in.js)
		if err != nil {
			return err
		}
		if ids[id] != 1 {
			return fmt.Errorf("id stored %d times", ids[id])
		}
		return nil
	})
	testenv.WaitFor(t, 10*time.Second, func() error {
		if r := in.do(t, request{method: "GET", path: "/readyz"}); r.status != 200 {
			return fmt.Errorf("readyz %d: %s", r.status, r.body)
		}
		return nil
	})
}

func TestOutboxFullOrUnavailable(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		e := newEnv(t)
		in := e.start(t, ingestOpts{outboxCfg: outbox.Config{MaxEntries: 1}})
		e.nats.Stop()
		testenv.WaitFor(t, 5*time.Second, func() error {
			if in.nc.IsConnected() {
				return fmt.Errorf("still connected")
			}
			return nil
		})
		accepted(t, in.post(t, createCommand("", 1, "f1")))
		r := in.post(t, createCommand("", 1, "f2"))
		if r.status != 503 || r.problem(t).Type != problemTypePrefix+"outbox-full" || r.header.Get("Retry-After") == "" {
			t.Errorf("status %d %s", r.status, r.body)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		e := newEnv(t)
		in := e.start(t, ingestOpts{})
		e.nats.Stop()
		testenv.WaitFor(t, 5*time.Second, func() error {
			if in.nc.IsConnected() {
				return fmt.Errorf("still connected")
			}
			return nil
		})
		if err := in.outbox.Close(); err != nil {
			t.Fatal(err)
		}
		r := in.post(t, createCommand("", 1, "u1"))
		if r.status != 503 || r.problem(t).Type != problemTypePrefix+"outbox-unavailable" {
			t.Errorf("status %d %s", r.status, r.body)
		}
	})
}

func TestWebhookSignatures(t *testing.T) {
	e := newEnv(t)
	now := time.Unix(1_800_000_000, 0)
	in := e.start(t, ingestOpts{tweak: func(c *Config) { c.now = func() time.Time { return now } }})
	body := createCommand("", 1, "wh")
	ts := now.Unix()
	wrong := []byte("a-completely-different-secret!!!")
	tests := []struct {
		name   string
		id     string
		ts     int64
		sig    func(id string, ts int64) string
		body   []byte
		status int
	}{
		{"valid", "msg_valid", ts, func(id string, ts int64) string { return SignWebhook(crmSecret1, id, ts, body) }, body, 202},
		{"rotated key", "msg_rotated", ts, func(id string, ts int64) string { return SignWebhook(crmSecret2, id, ts, body) }, body, 202},
		{"several signatures, one valid", "msg_several", ts, func(id string, ts int64) string {
			return SignWebhook(wrong, id, ts, body) + " v1a,abc " + SignWebhook(crmSecret2, id, ts, body)
		}, body, 202},
		{"wrong key", "msg_wrong", ts, func(id string, ts int64) string { return SignWebhook(wrong, id, ts, body) }, body, 401},
		{"stale timestamp", "msg_stale", ts - 301, func(id string, ts int64) string { return SignWebhook(crmSecret1, id, ts, body) }, body, 401},
		{"future timestamp", "msg_future", ts + 301, func(id string, ts int64) string { return SignWebhook(crmSecret1, id, ts, body) }, body, 401},
		{"tampered body", "msg_tampered", ts, func(id string, ts int64) string { return SignWebhook(crmSecret1, id, ts, body) },
			bytes.Replace(body, []byte("Ann"), []byte("Bob"), 1), 401},
		{"signature for another id", "msg_other", ts, func(_ string, ts int64) string { return SignWebhook(crmSecret1, "msg_x", ts, body) }, body, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := in.do(t, request{path: "/v1/commands", body: tc.body, headers: map[string]string{
				"webhook-id": tc.id, "webhook-timestamp": strconv.FormatInt(tc.ts, 10), "webhook-signature": tc.sig(tc.id, tc.ts),
			}})
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status != 202 {
				return
			}
			got := accepted(t, r)
			want := assignedFromKey("crm", tc.id)
			if got[0].ID != want {
				t.Errorf("id %s, want %s derived from webhook-id", got[0].ID, want)
			}
		})
	}
	t.Run("redelivery is a duplicate", func(t *testing.T) {
		h := map[string]string{"webhook-id": "msg_valid", "webhook-timestamp": strconv.FormatInt(ts, 10),
			"webhook-signature": SignWebhook(crmSecret1, "msg_valid", ts, body)}
		got := accepted(t, in.do(t, request{path: "/v1/commands", body: body, headers: h}))
		if got[0].Status != StatusDuplicate {
			t.Errorf("%+v, want duplicate", got[0])
		}
	})
}

func assignedFromKey(producer, key string) string {
	cmds := []commands.Command{{}}
	assignIDs(cmds, false, producer, key)
	return cmds[0].ID
}

func TestGetCommandStatus(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{})
	ctx := context.Background()
	id := commands.NewID()
	seq := accepted(t, in.post(t, createCommand(id, 9, "st")))[0].StreamSeq

	get := func(key string) (int, CommandState) {
		r := in.do(t, request{method: "GET", path: "/v1/commands/" + id, key: key})
		var st CommandState
		if r.status == 200 {
			r.decode(t, &st)
		}
		return r.status, st
	}
	if code, st := get(crmKey); code != 200 || st.Status != StateQueued || st.StreamSeq != seq {
		t.Errorf("queued: %d %+v", code, st)
	}
	if code, _ := get(limitedKey); code != 404 {
		t.Errorf("a producer of another location got %d, want 404", code)
	}

	kv, err := in.js.KeyValue(ctx, topology.BucketIdempotency)
	if err != nil {
		t.Fatal(err)
	}
	put := func(rec idem.Record) {
		t.Helper()
		b, _ := json.Marshal(rec)
		if _, err := kv.Put(ctx, idem.Key(id), b); err != nil {
			t.Fatal(err)
		}
	}
	put(idem.Record{State: idem.StateInFlight, Attempts: 1, StreamSeq: seq})
	if code, st := get(crmKey); code != 200 || st.Status != StateInFlight {
		t.Errorf("in flight: %d %+v", code, st)
	}
	res := &commands.Result{SchemaVersion: 1, CommandID: id, Type: commands.TypeClientCreate, LocationID: 9,
		ClientRef: "st", ClientID: 77, Outcome: commands.OutcomeSucceeded, Attempts: 1, CompletedAt: time.Now().UTC(), StreamSeq: seq}
	put(idem.Record{State: idem.StateDone, Attempts: 1, StreamSeq: seq, Result: res})
	code, st := get(crmKey)
	if code != 200 || st.Status != StateSucceeded || len(st.Result) == 0 {
		t.Fatalf("done: %d %+v", code, st)
	}
	var back commands.Result
	if err := json.Unmarshal(st.Result, &back); err != nil || back.ClientID != 77 {
		t.Errorf("result %s: %v", st.Result, err)
	}
	res.Outcome = commands.OutcomeDeadLettered
	put(idem.Record{State: idem.StateDead, Attempts: 3, StreamSeq: seq, Result: res})
	if code, st := get(crmKey); code != 200 || st.Status != StateDeadLettered {
		t.Errorf("dead: %d %+v", code, st)
	}
}

func TestHealthMetricsAndDocuments(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{})
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json", "/schemas/command.json", "/schemas/result.json"} {
		if r := in.do(t, request{method: "GET", path: path}); r.status != 200 {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	accepted(t, in.post(t, createCommand("", 1, "m")))
	r := in.do(t, request{method: "GET", path: "/metrics"})
	for _, want := range []string{
		`ingest_http_requests_total{code="202",route="POST /v1/commands"} 1`,
		`ingest_commands_total{reason="",result="accepted"} 1`,
		`ingest_publish_duration_seconds_count 1`,
		`outbox_entries 0`,
		`outbox_oldest_entry_age_seconds 0`,
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestConcurrentPostsStoreEachIDOnce posts from many goroutines, a quarter
// of the posts repeating an earlier id, and checks that COMMANDS holds each
// id exactly once.
func TestConcurrentPostsStoreEachIDOnce(t *testing.T) {
	n := 1000
	if testing.Short() || os.Getenv("CI") != "" {
		n = 200
	}
	e := newEnv(t)
	in := e.start(t, ingestOpts{})
	ids := make([]string, n)
	for i := range ids {
		if i%4 == 3 {
			ids[i] = ids[i/2] // a duplicate of an earlier post
		} else {
			ids[i] = commands.NewID()
		}
	}
	var (
		mu      sync.Mutex
		results = map[string]int{}
		wg      sync.WaitGroup
		errs    = make(chan error, n)
	)
	work := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range work {
				r, err := in.send(request{path: "/v1/commands", key: crmKey, body: createCommand(ids[i], int64(1+i%5), "c"+strconv.Itoa(i%50))})
				if err != nil || r.status != http.StatusAccepted {
					errs <- fmt.Errorf("post %d: %v %d %s", i, err, r.status, r.body)
					continue
				}
				var a Accepted
				if err := json.Unmarshal(r.body, &a); err != nil {
					errs <- err
					continue
				}
				mu.Lock()
				results[a.Commands[0].Status]++
				mu.Unlock()
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	unique := map[string]bool{}
	for _, id := range ids {
		unique[id] = true
	}
	stored, err := streamIDs(context.Background(), in.js)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(unique) {
		t.Errorf("stream holds %d ids, want %d", len(stored), len(unique))
	}
	for id, count := range stored {
		if count != 1 || !unique[id] {
			t.Errorf("id %s stored %d times (posted: %v)", id, count, unique[id])
		}
	}
	if results[StatusAccepted] != len(unique) || results[StatusDuplicate] != n-len(unique) {
		t.Errorf("answers %v, want %d accepted and %d duplicate", results, len(unique), n-len(unique))
	}
}

// TestNATSOutageWithIngestRestart posts under load while NATS goes away,
// restarts ingest (same outbox file) while NATS is still down, brings NATS
// back, and checks that every command answered 202 is in COMMANDS exactly
// once.
func TestNATSOutageWithIngestRestart(t *testing.T) {
	n := 600
	if testing.Short() || os.Getenv("CI") != "" {
		n = 150
	}
	e := newEnv(t)
	path := e.dir + "/restart-outbox.db"
	first := e.start(t, ingestOpts{outboxPath: path})

	var (
		mu       sync.Mutex
		ok       = map[string]bool{}
		bad      []string
		targetMu sync.Mutex
		target   = first
	)
	post := func(i int) {
		id := commands.NewID()
		targetMu.Lock()
		in := target
		targetMu.Unlock()
		r, err := in.send(request{path: "/v1/commands", key: crmKey, body: createCommand(id, int64(1+i%3), "o"+strconv.Itoa(i%20))})
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			// The process was stopping: no answer, no promise.
		case r.status == http.StatusAccepted:
			ok[id] = true
		default:
			bad = append(bad, fmt.Sprintf("%d %s", r.status, r.body))
		}
	}
	// load posts [from, to) from 8 goroutines, calling midway() after the
	// first half has been handed out.
	load := func(from, to int, midway func()) {
		next := make(chan int)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for i := range next {
					post(i)
				}
			})
		}
		for i := from; i < to; i++ {
			if i == (from+to)/2 && midway != nil {
				midway()
			}
			next <- i
		}
		close(next)
		wg.Wait()
	}
	load(0, 2*n/3, e.nats.Stop) // NATS goes away mid-load

	// Restart ingest with the same outbox file while NATS is down.
	first.stop()
	second := e.start(t, ingestOpts{outboxPath: path})
	if d, err := second.outbox.Depth(); err != nil || d == 0 {
		t.Fatalf("reopened outbox holds %d entries (%v); want the spooled commands", d, err)
	}
	targetMu.Lock()
	target = second
	targetMu.Unlock()
	load(2*n/3, n, e.nats.Start) // NATS comes back mid-load

	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("%d posts not accepted, e.g. %s", len(bad), bad[0])
	}
	if len(ok) < n*9/10 {
		t.Errorf("only %d of %d posts answered 202", len(ok), n)
	}
	testenv.WaitFor(t, 30*time.Second, func() error {
		ids, err := streamIDs(context.Background(), second.js)
		if err != nil {
			return err
		}
		missing := 0
		for id := range ok {
			if ids[id] != 1 {
				missing++
			}
		}
		for id, c := range ids {
			if c != 1 {
				return fmt.Errorf("id %s stored %d times", id, c)
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d accepted ids not (exactly once) in the stream", missing, len(ok))
		}
		return nil
	})
	if d, _ := second.outbox.Depth(); d != 0 {
		t.Errorf("outbox still holds %d entries", d)
	}
}

// counter sums the samples of a counter whose label has the value.
func counter(t testing.TB, in *ingest, name, label, value string) float64 {
	t.Helper()
	mfs, err := in.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// A batch is published without waiting for each PubAck, but every client's
// commands are stored in batch order.
func TestBatchStoresEachClientInOrder(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{})
	var items []string
	for range 4 {
		for c := range 20 {
			items = append(items, string(createCommand("", 1, fmt.Sprintf("ord-%d", c))))
		}
	}
	got := accepted(t, in.post(t, []byte("["+strings.Join(items, ",")+"]")))
	if len(got) != 80 {
		t.Fatalf("%d statuses, want 80", len(got))
	}
	last := map[int]uint64{}
	for i, st := range got {
		if st.Status != StatusAccepted || st.StreamSeq == 0 {
			t.Fatalf("command %d: %+v", i, st)
		}
		c := i % 20
		if st.StreamSeq <= last[c] {
			t.Errorf("client %d: command %d stored at seq %d, after an earlier one at %d", c, i, st.StreamSeq, last[c])
		}
		last[c] = st.StreamSeq
	}
}

// Ingest stores a command's text as sent: no HTML escaping that would
// inflate every <, > and & to six bytes on the way to the worker.
func TestStoresCommandsWithoutHTMLEscaping(t *testing.T) {
	e := newEnv(t)
	_, js := connect(t, e.nats.URL())
	in := e.start(t, ingestOpts{})
	body := []byte(`{"type":"client.create","location_id":1,"client_ref":"esc-1","payload":{"name":"A <b> & C","phone":"+79001234567"}}`)
	got := accepted(t, in.post(t, body))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, topology.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, got[0].StreamSeq)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(m.Data, []byte(`"A <b> & C"`)) {
		t.Errorf("stored %s, want the name as sent", m.Data)
	}
}

// A client that hangs up while its status lookup runs is not a server
// error: no 503, no 5xx counted.
func TestClientGoneIsNotAServerError(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone before the lookup answers
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/commands/"+commands.NewID(), nil)
	req.Header.Set("Authorization", "Bearer "+crmKey)
	rec := httptest.NewRecorder()
	in.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != statusClientClosedRequest {
		t.Errorf("status %d, want %d (client closed request)", rec.Code, statusClientClosedRequest)
	}
	mfs, err := in.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "ingest_http_requests_total" && l.GetName() == "code" && strings.HasPrefix(l.GetValue(), "5") {
					t.Errorf("counted as %s", l.GetValue())
				}
			}
		}
	}
}

// A command within the size limit as posted, but over it as stored (with
// the id ingest assigns), is refused with 413, not accepted for the worker
// to refuse.
func TestRefusesWhatTheWorkerWouldRefuse(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{})
	head := `{"type":"client.create","location_id":1,"client_ref":"big","payload":{"name":"A","phone":"+79001234567","custom_fields":{"x":"`
	tail := `"}}}`
	pad := strings.Repeat("<", commands.MaxCommandSize-10-len(head)-len(tail))
	body := []byte(head + pad + tail)
	if _, err := commands.Decode(body); err != nil {
		t.Fatalf("the posted command should be within the limit: %v", err)
	}
	r := in.post(t, body)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %.300s", r.status, r.body)
	}
	if p := r.problem(t); p.Type != problemTypePrefix+"too-large" {
		t.Errorf("problem %+v", p)
	}
}
