package workerstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/ingest"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/tracing"
	"github.com/altegio-integrator/integrator/internal/worker"
	"github.com/altegio-integrator/integrator/internal/workerstack"
)

const (
	testPartner = "partner-token"
	testUser    = "user-token"
	testLoc     = int64(7)
)

// pipeline is ingest and a worker in one process over an in-process
// JetStream and the sandbox API, sharing one tracer provider whose spans
// go to rec; results collects the result events, logs the worker's log.
type pipeline struct {
	ingestURL string
	rec       *tracing.Recorder
	results   chan commands.Result
	logs      *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startPipeline(t *testing.T) *pipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := testenv.RunJetStream(t)
	nc, js := testenv.Connect(t, srv.URL())
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	top, err := stack.ApplyTopology(ctx, js, 1, 10*time.Second, log)
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	_, apiURL := testenv.Sandbox(t, sandbox.Config{
		PartnerToken:  testPartner,
		Users:         []sandbox.User{{Login: "owner@example.com", Password: "secret", Token: testUser}},
		RatePerSecond: -1,
		RatePerMinute: -1,
	})

	rec := tracing.NewRecorder(0)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))

	w, closeWorker, err := workerstack.NewWorker(ctx, js, top, workerstack.WorkerConfig{
		APIBaseURL:     apiURL,
		Accounts:       []auth.Account{{Name: "test", PartnerToken: testPartner, UserToken: testUser}},
		RateLimit:      ratelimit.Config{PerSecond: 50, PerMinute: 3000, Key: "egress.test"},
		Worker:         worker.Config{PendingInterval: -1, ShareInterval: -1},
		Logger:         log,
		TracerProvider: tp,
	})
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	in, err := ingest.New(ingest.Config{AuthDisabled: true, TracerProvider: tp}, nc, js, nil)
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	hs := httptest.NewServer(in.Handler())

	results := make(chan commands.Result, 16)
	sub, err := nc.Subscribe("altegio.evt.>", func(m *nats.Msg) {
		var r commands.Result
		if json.Unmarshal(m.Data, &r) == nil && r.CommandID != "" {
			results <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		_ = sub.Unsubscribe()
		hs.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker run: %v", err)
		}
		closeWorker()
		_ = tp.Shutdown(context.Background())
	})
	return &pipeline{ingestURL: hs.URL, rec: rec, results: results, logs: logs}
}

// post sends one client.create to ingest, with traceparent when not empty,
// and returns the answer's traceparent.
func (p *pipeline) post(t *testing.T, id, traceparent string) string {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"type":"client.create","location_id":%d,"client_ref":"crm-%s","payload":{"name":"Ann","phone":"+7900%s"}}`,
		id, testLoc, id[:8], id[1:8])
	req, err := http.NewRequest(http.MethodPost, p.ingestURL+"/v1/commands", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/commands: %s", resp.Status)
	}
	return resp.Header.Get("traceparent")
}

// result waits for the terminal result event of command id.
func (p *pipeline) result(t *testing.T, id string) commands.Result {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case r := <-p.results:
			if r.CommandID == id && r.Outcome.Terminal() {
				return r
			}
		case <-deadline:
			t.Fatalf("no terminal result for %s", id)
		}
	}
}

// TestOneCommandOneTrace: one command through ingest and the worker is one
// connected trace: ingest.accept at the root (or below the caller's span
// when the request carries a traceparent), ingest.publish below it, the
// worker's handle span below that (across NATS), and below the handle the
// budget wait, the API call with its method, route and status, and the
// result's publication; the result event and the worker's log lines carry
// the trace's id.
func TestOneCommandOneTrace(t *testing.T) {
	p := startPipeline(t)
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const callerSpan = "00f067aa0ba902b7"
	tests := []struct {
		name        string
		traceparent string
	}{
		{name: "ingest starts the trace"},
		{name: "the caller's traceparent is honoured", traceparent: "00-" + callerTrace + "-" + callerSpan + "-01"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i+1)
			answered := p.post(t, id, tt.traceparent)
			r := p.result(t, id)
			if r.Outcome != commands.OutcomeSucceeded {
				t.Fatalf("outcome %s: %s", r.Outcome, r.APIMessage)
			}
			if len(r.TraceID) != 32 {
				t.Fatalf("result trace_id %q", r.TraceID)
			}
			if tt.traceparent != "" && r.TraceID != callerTrace {
				t.Errorf("result trace_id %s, want the caller's %s", r.TraceID, callerTrace)
			}
			if !strings.Contains(answered, "-"+r.TraceID+"-") {
				t.Errorf("answer's traceparent %q is not of trace %s", answered, r.TraceID)
			}

			// The handle span ends after the result is published: wait
			// for it.
			var spans []tracing.SpanData
			testenv.WaitFor(t, 10*time.Second, func() error {
				spans = p.rec.Trace(r.TraceID)
				if find(spans, "worker.handle") == nil {
					return errors.New("no worker.handle span yet")
				}
				return nil
			})
			byID := map[string]tracing.SpanData{}
			for _, s := range spans {
				byID[s.SpanID] = s
				if s.TraceID != r.TraceID {
					t.Errorf("span %s in trace %s", s.Name, s.TraceID)
				}
			}
			parentOf := func(s *tracing.SpanData) string {
				if s == nil {
					return "(missing)"
				}
				if q, ok := byID[s.ParentID]; ok {
					return q.Name
				}
				return "remote:" + s.ParentID
			}
			accept := find(spans, "ingest.accept")
			wantRoot := "remote:"
			if tt.traceparent != "" {
				wantRoot += callerSpan
			}
			if got := parentOf(accept); got != wantRoot {
				t.Errorf("ingest.accept parent %s, want %s", got, wantRoot)
			}
			for child, parent := range map[string]string{
				"ingest.publish":                      "ingest.accept",
				"worker.handle":                       "ingest.publish",
				"ratelimit.wait":                      "worker.handle",
				"altegio POST /clients/{location_id}": "worker.handle",
				"worker.publish_result":               "worker.handle",
			} {
				if got := parentOf(find(spans, child)); got != parent {
					t.Errorf("%s parent %s, want %s", child, got, parent)
				}
			}
			api := find(spans, "altegio POST /clients/{location_id}")
			if api != nil {
				for k, want := range map[string]string{
					"http.request.method": "POST", "url.template": "/clients/{location_id}",
				} {
					if api.Attributes[k] != want {
						t.Errorf("api span %s = %q, want %q", k, api.Attributes[k], want)
					}
				}
				if s := api.Attributes["http.response.status_code"]; !strings.HasPrefix(s, "2") {
					t.Errorf("api span status code %q", s)
				}
			}
			if h := find(spans, "worker.handle"); h != nil {
				for k, want := range map[string]string{
					"command.id": id, "command.type": "client.create", "command.location_id": fmt.Sprint(testLoc),
					"command.attempt": "1", "command.outcome": "succeeded", "messaging.nats.delivery_count": "1",
				} {
					if h.Attributes[k] != want {
						t.Errorf("handle span %s = %q, want %q", k, h.Attributes[k], want)
					}
				}
				if _, ok := h.Attributes["messaging.nats.partition"]; !ok {
					t.Error("handle span has no partition")
				}
			}

			// The worker's lines about the command carry the trace id.
			var lines int
			for _, line := range strings.Split(p.logs.String(), "\n") {
				if !strings.Contains(line, `"command_id":"`+id+`"`) {
					continue
				}
				lines++
				if !strings.Contains(line, `"trace_id":"`+r.TraceID+`"`) {
					t.Errorf("log line without the trace id: %s", line)
				}
			}
			if lines == 0 {
				t.Error("no log line names the command")
			}
		})
	}
}

// find returns the first span named name, or nil.
func find(spans []tracing.SpanData, name string) *tracing.SpanData {
	for i := range spans {
		if spans[i].Name == name {
			return &spans[i]
		}
	}
	return nil
}
