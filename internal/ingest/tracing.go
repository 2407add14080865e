package ingest

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/tracing"
)

// tracerName is the instrumentation scope of ingest's spans.
const tracerName = "github.com/altegio-integrator/integrator/internal/ingest"

// startAccept starts the ingest.accept span of a POST /v1/commands request
// and answers with its traceparent when it has a valid one.
func (s *Server) startAccept(w http.ResponseWriter, r *http.Request) (context.Context, trace.Span) {
	ctx := tracing.ExtractHTTP(r.Context(), r.Header)
	ctx, span := s.tracer.Start(ctx, "ingest.accept", trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", "/v1/commands"),
		)
	}
	if span.SpanContext().IsValid() {
		tracing.InjectHTTP(ctx, w.Header())
	}
	return ctx, span
}

// endAccept ends the accept span with the answer's status; a 5xx is an
// error, as OpenTelemetry's HTTP conventions have it for servers.
func endAccept(span trace.Span, status int) {
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, "HTTP "+strconv.Itoa(status))
		}
	}
	span.End()
}

// acceptedBy records the producer and the number of commands on the accept
// span of ctx.
func acceptedBy(ctx context.Context, producer string, n int) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(tracing.AttrProducer.String(producer), tracing.AttrBatchSize.Int(n))
	}
}

// startPublish starts the ingest.publish span of one command below ctx's
// span and writes its trace context into the command message's headers.
func (s *Server) startPublish(ctx context.Context, pc *pending) {
	ctx, span := s.tracer.Start(ctx, "ingest.publish", trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(
			tracing.AttrCommandID.String(pc.cmd.ID),
			tracing.AttrCommandType.String(string(pc.cmd.Type)),
			tracing.AttrLocationID.Int64(pc.cmd.LocationID),
			tracing.AttrSubject.String(pc.msg.Subject),
		)
	}
	tracing.Inject(ctx, pc.msg.Header)
	pc.span = span
}

// endStored ends the publish span of a command JetStream stored (or
// already held: duplicate).
func endStored(pc pending, seq uint64, duplicate bool) {
	if pc.span.IsRecording() {
		pc.span.SetAttributes(tracing.AttrStreamSeq.Int64(int64(seq)), attribute.Bool("command.duplicate", duplicate))
	}
	pc.span.End()
}

// endSpooled ends the publish span of a command stored in the outbox.
func endSpooled(pc pending) {
	if pc.span.IsRecording() {
		pc.span.SetAttributes(tracing.AttrSpooled.Bool(true))
	}
	pc.span.End()
}

// endUnsettled ends the publish spans not ended yet: their commands were
// not accepted (the answer is a problem), so they fail with reason.
func endUnsettled(batch []pending, reason string) {
	for _, pc := range batch {
		if pc.span == nil {
			continue
		}
		if pc.span.IsRecording() { // not ended yet
			pc.span.SetStatus(codes.Error, reason)
		}
		pc.span.End()
	}
}

// publishFailed notes on the publish span of pc that a publish failed; the
// command may still be spooled or refused, which ends the span.
func publishFailed(pc pending, err error) {
	if pc.span.IsRecording() {
		pc.span.AddEvent("publish failed", trace.WithAttributes(attribute.String("error", err.Error())))
	}
}
