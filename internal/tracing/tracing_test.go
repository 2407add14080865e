package tracing_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/tracing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestSetup(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		recorder  bool
		recording bool
		err       string
	}{
		{name: "off by default", env: nil},
		{name: "recorder records without endpoint", recorder: true, recording: true},
		{name: "endpoint turns export on", env: map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:1"}, recording: true},
		{name: "traces endpoint turns export on", env: map[string]string{tracing.EnvTracesEndpoint: "http://127.0.0.1:1/v1/traces"}, recording: true},
		{name: "sdk disabled wins over endpoint", env: map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:1", tracing.EnvSDKDisabled: "true"}},
		{name: "sdk disabled wins over recorder", env: map[string]string{tracing.EnvSDKDisabled: "TRUE"}, recorder: true},
		{name: "sdk disabled false", env: map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:1", tracing.EnvSDKDisabled: "false"}, recording: true},
		{name: "exporter none", env: map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:1", tracing.EnvTracesExporter: "none"}},
		{name: "exporter zipkin refused", env: map[string]string{tracing.EnvTracesExporter: "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "grpc refused", env: map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:1", tracing.EnvProtocol: "grpc"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "traces protocol wins", env: map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:1", tracing.EnvProtocol: "grpc", tracing.EnvTracesProtocol: "http/protobuf"}, recording: true},
		{name: "grpc ignored without endpoint", env: map[string]string{tracing.EnvProtocol: "grpc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []tracing.Option
			if tt.recorder {
				opts = append(opts, tracing.WithRecorder(tracing.NewRecorder(8)))
			}
			tp, shutdown, err := tracing.Setup(context.Background(), "test", env(tt.env), opts...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Setup error = %v, want one naming %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			_, span := tp.Tracer("t").Start(context.Background(), "s")
			got := span.IsRecording()
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_ = shutdown(ctx) // the export to port 1 fails; only the wiring is tested here
			if got != tt.recording {
				t.Errorf("recording = %v, want %v", got, tt.recording)
			}
		})
	}
}

// TestSetupExportsOverOTLPHTTP: with the standard endpoint variable set,
// the spans reach an OTLP/HTTP receiver at shutdown, named by the service.
func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	var posts atomic.Int32
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			b, _ := io.ReadAll(r.Body)
			body.Store(string(b))
			posts.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	// The exporter reads the OTEL_EXPORTER_OTLP_* variables from the
	// process environment itself.
	t.Setenv(tracing.EnvEndpoint, srv.URL)
	tp, shutdown, err := tracing.Setup(context.Background(), "altegio-test", os.Getenv)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "exported.span")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if posts.Load() == 0 {
		t.Fatal("no OTLP export reached the receiver")
	}
	b, _ := body.Load().(string)
	for _, want := range []string{"exported.span", "altegio-test"} {
		if !strings.Contains(b, want) {
			t.Errorf("export body lacks %q", want)
		}
	}
}

// newProvider returns a recording provider feeding an in-memory exporter.
func newProvider(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// TestTraceContextCrossesNATS: the context injected into a message's headers
// comes out of the delivered message of a real NATS server, and a span
// started from it is the child of the publishing span in the same trace.
func TestTraceContextCrossesNATS(t *testing.T) {
	srv := testenv.RunJetStream(t)
	nc, _ := testenv.Connect(t, srv.URL())
	sub, err := nc.SubscribeSync("trace.test")
	if err != nil {
		t.Fatal(err)
	}
	tp, exp := newProvider(t)
	ctx, pub := tp.Tracer("t").Start(context.Background(), "publish")
	msg := nats.NewMsg("trace.test")
	msg.Header.Set("Other", "x")
	tracing.Inject(ctx, msg.Header)
	pub.End()
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	got, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Get(tracing.HeaderTraceparent) == "" {
		t.Fatalf("delivered headers %v lack traceparent", got.Header)
	}
	rctx := tracing.Extract(context.Background(), got.Header)
	rsc := trace.SpanContextFromContext(rctx)
	if !rsc.IsRemote() || rsc.TraceID() != pub.SpanContext().TraceID() || rsc.SpanID() != pub.SpanContext().SpanID() {
		t.Fatalf("extracted %v, want the remote context of span %v", rsc, pub.SpanContext())
	}
	_, child := tp.Tracer("t").Start(rctx, "consume")
	child.End()
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2", len(spans))
	}
	if c := spans[1]; c.Parent.SpanID() != pub.SpanContext().SpanID() || c.SpanContext.TraceID() != pub.SpanContext().TraceID() {
		t.Errorf("consume span parent %v trace %v, want parent %v in the same trace", c.Parent.SpanID(), c.SpanContext.TraceID(), pub.SpanContext().SpanID())
	}
	if tracing.TraceID(rctx) != pub.SpanContext().TraceID().String() {
		t.Errorf("TraceID = %q, want %q", tracing.TraceID(rctx), pub.SpanContext().TraceID())
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	tp, _ := newProvider(t)
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	md := message.Metadata{}
	tracing.InjectMetadata(ctx, md)
	if md.Get(tracing.HeaderTraceparent) == "" {
		t.Fatalf("metadata %v lacks traceparent", md)
	}
	got := trace.SpanContextFromContext(tracing.ExtractMetadata(context.Background(), md))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("extracted %v, want %v", got, span.SpanContext())
	}
}

func TestExtractMatchesHeaderCase(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name  string
		h     map[string][]string
		md    message.Metadata
		valid bool
	}{
		{name: "lower", h: map[string][]string{"traceparent": {tp}}, md: message.Metadata{"traceparent": tp}, valid: true},
		{name: "canonical", h: map[string][]string{"Traceparent": {tp}}, md: message.Metadata{"Traceparent": tp}, valid: true},
		{name: "absent", h: map[string][]string{"Other": {"x"}}, md: message.Metadata{"Other": "x"}},
		{name: "malformed", h: map[string][]string{"traceparent": {"00-zz-yy-01"}}, md: message.Metadata{"traceparent": "00-zz-yy-01"}},
		{name: "nil", h: nil, md: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := context.Background()
			for kind, ctx := range map[string]context.Context{
				"headers":  tracing.Extract(base, tt.h),
				"metadata": tracing.ExtractMetadata(base, tt.md),
			} {
				got := trace.SpanContextFromContext(ctx)
				if got.IsValid() != tt.valid {
					t.Errorf("%s: valid = %v, want %v", kind, got.IsValid(), tt.valid)
				}
				if !tt.valid && ctx != base {
					t.Errorf("%s: the context changed without a valid traceparent", kind)
				}
				if tt.valid && got.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
					t.Errorf("%s: trace id %s", kind, got.TraceID())
				}
			}
		})
	}
}

// TestInjectWithoutSpanWritesNothing: with tracing off and no caller's
// trace, messages carry no trace headers.
func TestInjectWithoutSpanWritesNothing(t *testing.T) {
	tp := tracing.Provider(nil)
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	h := nats.Header{}
	tracing.Inject(ctx, h)
	md := message.Metadata{}
	tracing.InjectMetadata(ctx, md)
	if len(h) != 0 || len(md) != 0 {
		t.Errorf("headers %v, metadata %v: want none", h, md)
	}
	if id := tracing.TraceID(ctx); id != "" {
		t.Errorf("TraceID = %q, want empty", id)
	}
}

// TestNoopPassesCallersTrace: with tracing off, a caller's trace context
// still reaches the next message, so the trace id follows the command.
func TestNoopPassesCallersTrace(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := tracing.Extract(context.Background(), map[string][]string{"traceparent": {parent}})
	ctx, span := tracing.Provider(nil).Tracer("t").Start(ctx, "s")
	defer span.End()
	h := nats.Header{}
	tracing.Inject(ctx, h)
	if got := h.Get(tracing.HeaderTraceparent); got != parent {
		t.Errorf("traceparent = %q, want %q", got, parent)
	}
}

func TestSetError(t *testing.T) {
	tp, exp := newProvider(t)
	_, span := tp.Tracer("t").Start(context.Background(), "s")
	tracing.SetError(span, errors.New(strings.Repeat("x", 600)))
	tracing.SetError(span, nil)
	span.End()
	st := exp.GetSpans()[0].Status
	if st.Code.String() != "Error" || len(st.Description) != 500 {
		t.Errorf("status %v with %d bytes, want Error with 500", st.Code, len(st.Description))
	}
}

func TestRecorderKeepsTheLastSpans(t *testing.T) {
	rec := tracing.NewRecorder(3)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := tp.Tracer("t")
	root, rootSpan := tr.Start(context.Background(), "span-0")
	var traceID string
	for i := 1; i <= 4; i++ {
		_, s := tr.Start(root, fmt.Sprintf("span-%d", i))
		s.End()
	}
	rootSpan.End()
	traceID = rootSpan.SpanContext().TraceID().String()
	if got := rec.Len(); got != 3 {
		t.Fatalf("Len = %d, want 3", got)
	}
	names := func(spans []tracing.SpanData) string {
		var n []string
		for _, s := range spans {
			n = append(n, s.Name)
		}
		return strings.Join(n, ",")
	}
	if got, want := names(rec.Recent(10)), "span-0,span-4,span-3"; got != want {
		t.Errorf("Recent(10) = %s, want %s", got, want)
	}
	if got, want := names(rec.Recent(1)), "span-0"; got != want {
		t.Errorf("Recent(1) = %s, want %s", got, want)
	}
	if got := rec.Recent(0); got != nil {
		t.Errorf("Recent(0) = %v, want nil", got)
	}
	// By start time: the root started first.
	if got, want := names(rec.Trace(traceID)), "span-0,span-3,span-4"; got != want {
		t.Errorf("Trace = %s, want %s", got, want)
	}
	if got := rec.Trace("00000000000000000000000000000001"); got != nil {
		t.Errorf("Trace of another id = %v, want nil", got)
	}
	for _, s := range rec.Trace(traceID) {
		if s.TraceID != traceID || len(s.SpanID) != 16 || s.Status != "unset" || s.End.Before(s.Start) {
			t.Errorf("span %+v", s)
		}
		if s.Name != "span-0" && s.ParentID != rootSpan.SpanContext().SpanID().String() {
			t.Errorf("span %s parent %q, want the root", s.Name, s.ParentID)
		}
	}
	if err := rec.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, s := tr.Start(context.Background(), "after-shutdown")
	s.End()
	if got := names(rec.Recent(1)); got != "span-0" {
		t.Errorf("after Shutdown, newest = %s, want span-0", got)
	}
}

func TestRecorderSpanData(t *testing.T) {
	rec := tracing.NewRecorder(0)
	tp, shutdown, err := tracing.Setup(context.Background(), "svc", env(nil), tracing.WithRecorder(rec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	tr := tp.Tracer("t")
	_, other := tr.Start(context.Background(), "other")
	other.End()
	_, span := tr.Start(context.Background(), "failed",
		trace.WithLinks(trace.Link{SpanContext: other.SpanContext()}))
	span.SetAttributes(tracing.AttrCommandID.String("c-1"), tracing.AttrAttempt.Int(2), tracing.AttrSpooled.Bool(true))
	tracing.SetError(span, errors.New("boom"))
	span.End()
	got := rec.Recent(1)[0]
	want := map[string]string{"command.id": "c-1", "command.attempt": "2", "command.spooled": "true"}
	for k, v := range want {
		if got.Attributes[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, got.Attributes[k], v)
		}
	}
	if got.Status != "error: boom" {
		t.Errorf("status = %q", got.Status)
	}
	if len(got.Links) != 1 || got.Links[0] != other.SpanContext().TraceID().String()+"/"+other.SpanContext().SpanID().String() {
		t.Errorf("links = %v", got.Links)
	}
	if got.ParentID != "" {
		t.Errorf("root span parent = %q", got.ParentID)
	}
}

// TestRecorderAsExporter: a batching provider exporting to the Recorder
// keeps the spans after a flush.
func TestRecorderAsExporter(t *testing.T) {
	rec := tracing.NewRecorder(2)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(rec))
	for _, name := range []string{"a", "b", "c"} {
		_, s := tp.Tracer("t").Start(context.Background(), name)
		s.End()
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.Recent(5); len(got) != 2 || got[0].Name != "c" || got[1].Name != "b" {
		t.Errorf("Recent = %+v, want c, b", got)
	}
}

// TestLogHandlerAddsTheTraceID: a line logged with a span's context carries
// its trace id; one without a span carries none.
func TestLogHandlerAddsTheTraceID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(tracing.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "x")
	rec := tracing.NewRecorder(8)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.InfoContext(ctx, "with a span")
	span.End()
	log.Info("without")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log lines: %q", lines)
	}
	want := `"trace_id":"` + span.SpanContext().TraceID().String() + `"`
	if !strings.Contains(lines[0], want) || !strings.Contains(lines[0], `"component":"x"`) {
		t.Errorf("line with a span: %s, want %s and the logger's attributes", lines[0], want)
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line without a span: %s", lines[1])
	}
}

// TestSetErrorKeepsValidUTF8: a long message is cut at a character
// boundary, since the OTLP exporter drops a batch with invalid UTF-8.
func TestSetErrorKeepsValidUTF8(t *testing.T) {
	rec := tracing.NewRecorder(8)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	_, span := tp.Tracer("t").Start(context.Background(), "op")
	msg := "x" + strings.Repeat("Клиент не найден. ", 40) // odd bytes first: 500 falls inside a letter
	tracing.SetError(span, errors.New(msg))
	span.End()
	got := rec.Trace(span.SpanContext().TraceID().String())
	if len(got) != 1 {
		t.Fatalf("spans: %+v", got)
	}
	desc := strings.TrimPrefix(got[0].Status, "error: ")
	if !utf8.ValidString(desc) || len(desc) > 500 || len(desc) < 490 || !strings.HasPrefix(msg, desc) {
		t.Errorf("status %q (%d bytes, valid %v): want a valid prefix of the message of at most 500 bytes", desc, len(desc), utf8.ValidString(desc))
	}
}
