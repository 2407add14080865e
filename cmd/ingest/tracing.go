package main

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/stack"
)

// tracingService names ingest's spans (the service.name resource attribute,
// unless OTEL_SERVICE_NAME is set).
const tracingService = "altegio-ingest"

// startTracing starts ingest's tracer provider (stack.SetupTracing): off
// unless the standard OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; an unsupported OTEL_* setting
// is an error naming it. Call the returned stop at exit,
// after the server stopped.
func startTracing(ctx context.Context, getenv func(string) string, log *slog.Logger) (trace.TracerProvider, func(), error) {
	return stack.SetupTracing(ctx, tracingService, getenv, log)
}
