package tracing

import (
	"context"
	"net/http"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"
)

// Header names of the W3C trace context, as written on NATS messages.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// propagator is the one format the integrator carries: W3C trace context
// (traceparent, tracestate). No baggage.
var propagator = propagation.TraceContext{}

// HeaderCarrier adapts NATS message headers (nats.Header, or any
// map[string][]string) to propagation.TextMapCarrier. NATS headers are
// case-sensitive: Get tries the exact key first, then any case; Set writes
// the key as given (lower case for the W3C fields).
type HeaderCarrier map[string][]string

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value of key, matched exactly or else in any case.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set replaces key's values with value.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// MetadataCarrier adapts Watermill message metadata (which the project's
// subscriber fills from the NATS headers, first values) to
// propagation.TextMapCarrier, with HeaderCarrier's matching of keys.
type MetadataCarrier message.Metadata

var _ propagation.TextMapCarrier = MetadataCarrier(nil)

// Get returns the value of key, matched exactly or else in any case.
func (c MetadataCarrier) Get(key string) string {
	if v, ok := c[key]; ok {
		return v
	}
	for k, v := range c {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// Set sets key to value.
func (c MetadataCarrier) Set(key, value string) { c[key] = value }

// Keys lists the metadata keys.
func (c MetadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the trace context of ctx's span into h (traceparent and,
// when not empty, tracestate). It writes nothing when ctx carries no valid
// span context, which is the case with tracing off unless a caller's trace
// was extracted. h must not be nil when there is something to write.
func Inject(ctx context.Context, h map[string][]string) {
	propagator.Inject(ctx, HeaderCarrier(h))
}

// Extract returns ctx with the remote span context found in h, or ctx
// itself when h carries no valid traceparent.
func Extract(ctx context.Context, h map[string][]string) context.Context {
	return propagator.Extract(ctx, HeaderCarrier(h))
}

// InjectMetadata is Inject into Watermill message metadata; the project's
// publisher turns metadata into NATS headers.
func InjectMetadata(ctx context.Context, md message.Metadata) {
	propagator.Inject(ctx, MetadataCarrier(md))
}

// ExtractMetadata is Extract from Watermill message metadata.
func ExtractMetadata(ctx context.Context, md message.Metadata) context.Context {
	return propagator.Extract(ctx, MetadataCarrier(md))
}

// ExtractHTTP is Extract from the headers of an HTTP request (canonical
// keys, as net/http stores them).
func ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	return propagator.Extract(ctx, propagation.HeaderCarrier(h))
}

// InjectHTTP is Inject into HTTP headers, e.g. a response's.
func InjectHTTP(ctx context.Context, h http.Header) {
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
}
