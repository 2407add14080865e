package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/tracing"
)

const (
	callerTrace       = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan        = "00f067aa0ba902b7"
	callerTraceparent = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// storedTraceparent returns the traceparent header of the COMMANDS message
// at seq ("" when it has none).
func storedTraceparent(t *testing.T, in *ingest, seq uint64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := in.js.Stream(ctx, topology.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("get command %d: %v", seq, err)
	}
	return m.Header.Get(tracing.HeaderTraceparent)
}

// traced makes in trace into a Recorder and returns it.
func traced(t *testing.T, in *ingest) *tracing.Recorder {
	rec := tracing.NewRecorder(64)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	in.srv.tracer = tp.Tracer(tracerName)
	return rec
}

// TestTracingOff: without a provider, a command carries no trace headers
// unless its request did, in which case the caller's trace goes on to the
// command message and the answer.
func TestTracingOff(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{noOutbox: true})
	t.Run("no traceparent", func(t *testing.T) {
		r := in.post(t, createCommand(commands.NewID(), 1, "off-1"))
		got := accepted(t, r)
		if tp := r.header.Get("traceparent"); tp != "" {
			t.Errorf("answer traceparent %q, want none", tp)
		}
		if tp := storedTraceparent(t, in, got[0].StreamSeq); tp != "" {
			t.Errorf("stored traceparent %q, want none", tp)
		}
	})
	t.Run("caller's traceparent", func(t *testing.T) {
		r := in.do(t, request{path: "/v1/commands", body: createCommand(commands.NewID(), 1, "off-2"), key: crmKey,
			headers: map[string]string{"traceparent": callerTraceparent}})
		got := accepted(t, r)
		if tp := r.header.Get("traceparent"); tp != callerTraceparent {
			t.Errorf("answer traceparent %q, want the caller's", tp)
		}
		if tp := storedTraceparent(t, in, got[0].StreamSeq); tp != callerTraceparent {
			t.Errorf("stored traceparent %q, want the caller's %q", tp, callerTraceparent)
		}
	})
}

// TestPublishSpans: each command of a batch has its ingest.publish span
// below the request's ingest.accept, and its message carries that span's
// context; a refused request ends its span with the status.
func TestPublishSpans(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{noOutbox: true})
	rec := traced(t, in)
	ids := []string{commands.NewID(), commands.NewID()}
	body := fmt.Sprintf("[%s,%s]", createCommand(ids[0], 1, "span-1"), createCommand(ids[1], 2, "span-2"))
	r := in.do(t, request{path: "/v1/commands", body: []byte(body), key: crmKey,
		headers: map[string]string{"traceparent": callerTraceparent}})
	got := accepted(t, r)
	spans := rec.Trace(callerTrace)
	var accept *tracing.SpanData
	publishes := map[string]tracing.SpanData{}
	for i, s := range spans {
		switch s.Name {
		case "ingest.accept":
			accept = &spans[i]
		case "ingest.publish":
			publishes[s.Attributes["command.id"]] = s
		}
	}
	if accept == nil || accept.ParentID != callerSpan {
		t.Fatalf("accept span %+v, want one below the caller's span", accept)
	}
	for k, want := range map[string]string{"http.response.status_code": "202", "command.producer": "crm", "command.batch_size": "2"} {
		if accept.Attributes[k] != want {
			t.Errorf("accept %s = %q, want %q", k, accept.Attributes[k], want)
		}
	}
	for i, id := range ids {
		p, ok := publishes[id]
		if !ok {
			t.Fatalf("no publish span for %s in %+v", id, spans)
		}
		if p.ParentID != accept.SpanID || p.Attributes["messaging.nats.stream_seq"] != fmt.Sprint(got[i].StreamSeq) {
			t.Errorf("publish span %+v", p)
		}
		if tp, want := storedTraceparent(t, in, got[i].StreamSeq), "00-"+callerTrace+"-"+p.SpanID+"-01"; tp != want {
			t.Errorf("command %d traceparent %q, want %q", i, tp, want)
		}
	}
	if tp := r.header.Get("traceparent"); !strings.HasPrefix(tp, "00-"+callerTrace+"-"+accept.SpanID) {
		t.Errorf("answer traceparent %q, want the accept span's", tp)
	}

	// A refused request: its span says so.
	r = in.do(t, request{path: "/v1/commands", body: []byte(`{"type":"nope"}`), key: crmKey})
	if r.status != 422 {
		t.Fatalf("status %d, want 422", r.status)
	}
	last := rec.Recent(1)[0]
	if last.Name != "ingest.accept" || last.Attributes["http.response.status_code"] != "422" || last.ParentID != "" {
		t.Errorf("refused request's span %+v", last)
	}
}

// TestSpooledCommandKeepsItsTrace: a command spooled while NATS is down is
// stored, once relayed, with the traceparent of its publish span, which
// says it was spooled.
func TestSpooledCommandKeepsItsTrace(t *testing.T) {
	e := newEnv(t)
	in := e.start(t, ingestOpts{})
	rec := traced(t, in)
	e.nats.Stop()
	testenv.WaitFor(t, 5*time.Second, func() error {
		if in.nc.IsConnected() {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	id := commands.NewID()
	got := accepted(t, in.post(t, createCommand(id, 3, "spool-trace")))
	if !got[0].Spooled {
		t.Fatalf("%+v, want spooled", got[0])
	}
	pub := rec.Recent(2)[1] // the publish span ended before the accept span
	if pub.Name != "ingest.publish" || pub.Attributes["command.spooled"] != "true" || pub.Status != "unset" {
		t.Fatalf("publish span %+v, want a spooled one", pub)
	}
	e.nats.Start()
	var seq uint64
	testenv.WaitFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := in.js.Stream(ctx, topology.StreamCommands)
		if err != nil {
			return err
		}
		m, err := s.GetLastMsgForSubject(ctx, "altegio.cmd.*.3.>")
		if err != nil {
			return err
		}
		if m.Header.Get(commands.HeaderCommandID) != id {
			return fmt.Errorf("last command is %s", m.Header.Get(commands.HeaderCommandID))
		}
		seq = m.Sequence
		return nil
	})
	if tp, want := storedTraceparent(t, in, seq), "00-"+pub.TraceID+"-"+pub.SpanID+"-01"; tp != want {
		t.Errorf("relayed traceparent %q, want %q", tp, want)
	}
}
