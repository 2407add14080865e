package worker

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/tracing"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// tracerName is the instrumentation scope of the worker's spans.
const tracerName = "github.com/altegio-integrator/integrator/internal/worker"

// startHandle continues the trace the command message carries (its
// traceparent, which ingest or the producer wrote) with the delivery's
// "worker.handle" span, and returns the job of the delivery with its
// logger: stream_seq, delivery and, when there is a trace, trace_id.
func (w *Worker) startHandle(msg *message.Message, info wmjetstream.DeliveryInfo, p int) (context.Context, *job) {
	ctx := tracing.ExtractMetadata(msg.Context(), msg.Metadata)
	ctx, span := w.tracer.Start(ctx, "worker.handle", trace.WithSpanKind(trace.SpanKindConsumer))
	j := &job{w: w, msg: msg, info: info, partition: p, span: span, traceID: tracing.TraceID(ctx)}
	if span.IsRecording() {
		span.SetAttributes(
			tracing.AttrPartition.Int(p),
			tracing.AttrStreamSeq.Int64(int64(info.StreamSeq)),
			tracing.AttrDeliveryCount.Int64(int64(info.NumDelivered)),
			tracing.AttrSubject.String(info.Subject),
		)
	}
	seq, delivery := slog.Uint64("stream_seq", info.StreamSeq), slog.Uint64("delivery", info.NumDelivered)
	if j.traceID != "" {
		j.log = w.log.With(seq, delivery, slog.String("trace_id", j.traceID))
	} else {
		j.log = w.log.With(seq, delivery)
	}
	return ctx, j
}

// decoded adds the command's identity to the handle span.
func (j *job) decoded() {
	if j.span.IsRecording() {
		j.span.SetAttributes(
			tracing.AttrCommandID.String(j.cmd.ID),
			tracing.AttrCommandType.String(string(j.cmd.Type)),
			tracing.AttrLocationID.Int64(j.cmd.LocationID),
		)
	}
}

// mark records on the handle span how the delivery ended: outcome, the
// error class when there is one, and err (nil: not a failure) as the
// span's error status. The last mark wins.
func (j *job) mark(outcome string, class commands.ErrorClass, err error) {
	if !j.span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{tracing.AttrOutcome.String(outcome), tracing.AttrAttempt.Int(j.rec.Attempts)}
	if class != "" {
		attrs = append(attrs, tracing.AttrErrorClass.String(string(class)))
	}
	j.span.SetAttributes(attrs...)
	tracing.SetError(j.span, err)
}

// waitBudget waits for the budget (Worker.waitBudget) inside a
// "ratelimit.wait" span of the delivery.
func (j *job) waitBudget(ctx context.Context) (func() bool, error) {
	w := j.w
	if w.cfg.Budget == nil {
		return nil, nil
	}
	ctx, span := w.tracer.Start(ctx, "ratelimit.wait")
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrFlow.String(w.cfg.Flow(j.cmd.LocationID)))
	}
	check, err := w.waitBudget(ctx, j.cmd.LocationID)
	tracing.SetError(span, err)
	span.End()
	return check, err
}

// startPublish starts the span of one publication (name: worker.publish_result,
// worker.publish_dlq) below ctx's span.
func (w *Worker) startPublish(ctx context.Context, name, subject string) (context.Context, trace.Span) {
	ctx, span := w.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrSubject.String(subject))
	}
	return ctx, span
}
