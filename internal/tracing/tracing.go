// Package tracing follows one command through the integrator with
// OpenTelemetry traces: the tracer provider of a process (Setup, OTLP export
// off unless the standard OTEL_EXPORTER_OTLP_* variables ask for it), W3C
// trace context carried in NATS message headers and Watermill metadata
// (Inject, Extract), the span attributes every package uses (Attr*), and an
// in-memory Recorder of the last finished spans for the dev stack and the
// browser console, which need no collector.
//
// Library packages take a trace.TracerProvider in their configuration and
// use Provider(nil) (the no-op provider) when none is given; only the
// binaries' composition roots (internal/stack) set otel's globals.
//
// The spans of a command, and where they start:
//
//	ingest.accept                  POST /v1/commands (internal/ingest), or the caller's traceparent
//	└─ ingest.publish              one per command: publish and PubAck, or spool to the outbox
//	   └─ worker.handle            one per delivery (internal/worker), from the message's traceparent
//	      ├─ ratelimit.wait        the wait for the API budget
//	      ├─ altegio PUT /client/{location_id}/{id}   one per HTTP exchange (internal/altegio)
//	      ├─ worker.publish_dlq    a dead letter's DLQ record
//	      └─ worker.publish_result the result event, whose trace_id is the trace's
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Environment variables Setup reads (the standard OpenTelemetry ones; the
// OTLP exporter reads the rest of OTEL_EXPORTER_OTLP_* itself, from the
// process environment).
const (
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvServiceName    = "OTEL_SERVICE_NAME"
)

// Span attributes shared by the packages, so that a command's spans can be
// searched by the same keys as its log lines.
const (
	AttrCommandID     = attribute.Key("command.id")
	AttrCommandType   = attribute.Key("command.type")
	AttrLocationID    = attribute.Key("command.location_id")
	AttrAttempt       = attribute.Key("command.attempt")
	AttrOutcome       = attribute.Key("command.outcome")
	AttrErrorClass    = attribute.Key("command.error_class")
	AttrProducer      = attribute.Key("command.producer")
	AttrBatchSize     = attribute.Key("command.batch_size")
	AttrSpooled       = attribute.Key("command.spooled")
	AttrStreamSeq     = attribute.Key("messaging.nats.stream_seq")
	AttrDeliveryCount = attribute.Key("messaging.nats.delivery_count")
	AttrPartition     = attribute.Key("messaging.nats.partition")
	AttrSubject       = attribute.Key("messaging.destination.name")
	AttrFlow          = attribute.Key("ratelimit.flow")
)

// Option adjusts Setup.
type Option func(*setup) error

type setup struct {
	processors []sdktrace.SpanProcessor
	version    string
}

// WithRecorder also hands every finished span to r (the dev stack's and the
// console's in-memory view). With a recorder, Setup returns a recording
// provider even when no OTLP endpoint is set. r must not be nil.
func WithRecorder(r *Recorder) Option {
	return func(s *setup) error {
		if r == nil {
			return errors.New("tracing: nil recorder")
		}
		s.processors = append(s.processors, r)
		return nil
	}
}

// WithSpanProcessor also hands spans to p, for instance a
// sdktrace.NewSimpleSpanProcessor over tracetest.NewInMemoryExporter in
// tests; like WithRecorder it makes the provider record. p must not be nil.
func WithSpanProcessor(p sdktrace.SpanProcessor) Option {
	return func(s *setup) error {
		if p == nil {
			return errors.New("tracing: nil span processor")
		}
		s.processors = append(s.processors, p)
		return nil
	}
}

// WithServiceVersion sets the service.version resource attribute.
func WithServiceVersion(v string) Option {
	return func(s *setup) error {
		s.version = v
		return nil
	}
}

// Setup returns the tracer provider of a process named service (the
// service.name resource attribute, unless OTEL_SERVICE_NAME is set) and the
// function that flushes and stops it at exit (bounded by its ctx).
//
// By default tracing is off: the provider is otel's no-op one, which still
// passes a caller's trace context along but records nothing. OTLP/HTTP
// export (otlptracehttp, which reads every OTEL_EXPORTER_OTLP_* variable
// itself, from the process environment) is on when getenv reports
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, unless
// OTEL_TRACES_EXPORTER is "none". WithRecorder and WithSpanProcessor make
// the provider record without an endpoint. OTEL_SDK_DISABLED=true turns
// everything off, the options included. Sampling follows the SDK's
// defaults and OTEL_TRACES_SAMPLER (parent-based, always on).
//
// getenv nil means os.Getenv. Setup does no network I/O. It fails for an
// OTEL_TRACES_EXPORTER other than otlp or none, an OTLP protocol other than
// http/protobuf or http/json (the exporter speaks HTTP only), an invalid
// option, or an exporter that cannot be built.
func Setup(ctx context.Context, service string, getenv func(string) string, opts ...Option) (trace.TracerProvider, func(context.Context) error, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	off := func(context.Context) error { return nil }
	var s setup
	for _, o := range opts {
		if err := o(&s); err != nil {
			return nil, nil, err
		}
	}
	if strings.EqualFold(strings.TrimSpace(getenv(EnvSDKDisabled)), "true") {
		return noop.NewTracerProvider(), off, nil
	}
	export, err := exportWanted(getenv)
	if err != nil {
		return nil, nil, err
	}
	if !export && len(s.processors) == 0 {
		return noop.NewTracerProvider(), off, nil
	}
	if name := strings.TrimSpace(getenv(EnvServiceName)); name != "" {
		service = name
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", service)}
	if s.version != "" {
		attrs = append(attrs, attribute.String("service.version", s.version))
	}
	popts := []sdktrace.TracerProviderOption{sdktrace.WithResource(resource.NewSchemaless(attrs...))}
	for _, p := range s.processors {
		popts = append(popts, sdktrace.WithSpanProcessor(p))
	}
	if export {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("tracing: otlp exporter: %w", err)
		}
		popts = append(popts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(popts...)
	return tp, tp.Shutdown, nil
}

// exportWanted reports whether the environment asks for OTLP export, and
// refuses settings this exporter cannot honour.
func exportWanted(getenv func(string) string) (bool, error) {
	switch e := strings.ToLower(strings.TrimSpace(getenv(EnvTracesExporter))); e {
	case "", "otlp":
	case "none":
		return false, nil
	default:
		return false, fmt.Errorf("tracing: %s=%q is not supported (otlp or none)", EnvTracesExporter, e)
	}
	if getenv(EnvEndpoint) == "" && getenv(EnvTracesEndpoint) == "" {
		return false, nil
	}
	// The traces-specific setting wins over the general one.
	name := EnvTracesProtocol
	p := strings.ToLower(strings.TrimSpace(getenv(name)))
	if p == "" {
		name = EnvProtocol
		p = strings.ToLower(strings.TrimSpace(getenv(name)))
	}
	switch p {
	case "", "http/protobuf", "http/json":
	default:
		return false, fmt.Errorf("tracing: %s=%q is not supported: the exporter speaks OTLP over HTTP (http/protobuf, port 4318)", name, p)
	}
	return true, nil
}

// Provider returns tp, or otel's no-op provider when tp is nil: what a
// library package uses when its configuration names no provider.
func Provider(tp trace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return noop.NewTracerProvider()
	}
	return tp
}

// TraceID returns the hex trace id of the span in ctx, or "" when ctx
// carries no valid span context (tracing off and no caller's trace).
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// SetError marks span as failed with err's message (err nil: nothing). The
// message is cut to 500 bytes at a character boundary and made valid
// UTF-8: the OTLP exporter drops a whole batch whose protobuf holds an
// invalid string (the API's messages are often Cyrillic, two bytes a
// letter). Callers pass errors that carry no secrets (the API client
// scrubs them) and no request bodies.
func SetError(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.SetStatus(codes.Error, cut(err.Error(), 500))
}

// cut returns s as valid UTF-8 of at most n bytes, cut at a character
// boundary.
func cut(s string, n int) string {
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
