package stack

import (
	"cmp"
	"context"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/tracing"
)

// TracingShutdownTimeout bounds the flush of the spans not yet exported
// when a binary stops.
const TracingShutdownTimeout = 5 * time.Second

// tracingErrorEvery is how often, at most, an export failure is logged.
const tracingErrorEvery = time.Minute

// SetupTracing starts the tracer provider of binary service
// (tracing.Setup: off unless OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, OTEL_SDK_DISABLED=true turns
// it off, opts add the Recorder of the dev stack), with the build's
// version. As the composition root of a binary it also sets otel's globals
// for libraries that read them: the provider, the W3C trace context
// propagator, and an error handler logging export failures at Warn, at
// most once a minute. It logs at Info when tracing is on. The returned
// stop flushes and shuts the provider down within TracingShutdownTimeout,
// logging a failure; call it after the last span ended. It fails when
// tracing.Setup does, naming the variable.
func SetupTracing(ctx context.Context, service string, getenv func(string) string, log *slog.Logger, opts ...tracing.Option) (trace.TracerProvider, func(), error) {
	opts = append([]tracing.Option{tracing.WithServiceVersion(Version())}, opts...)
	tp, shutdown, err := tracing.Setup(ctx, service, getenv, opts...)
	if err != nil {
		return nil, nil, err
	}
	otel.SetTextMapPropagator(propagation.TraceContext{})
	otel.SetTracerProvider(tp)
	var mu sync.Mutex
	var last time.Time
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); now.Sub(last) >= tracingErrorEvery {
			last = now
			log.Warn("tracing: spans not exported (reported at most once a minute)", "error", err)
		}
	}))
	if _, on := tp.(*sdktrace.TracerProvider); on {
		endpoint := cmp.Or(getenv(tracing.EnvTracesEndpoint), getenv(tracing.EnvEndpoint))
		if endpoint == "" {
			log.Info("tracing on, kept in memory only (no OTLP endpoint)")
		} else {
			log.Info("tracing on, exporting over OTLP/HTTP", "endpoint", redactEndpoint(endpoint))
		}
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), TracingShutdownTimeout)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("tracing: shutdown incomplete; some spans may be lost", "error", err)
		}
	}
	return tp, stop, nil
}

// redactEndpoint hides user information (a password or token) in an
// endpoint URL.
func redactEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(an endpoint that does not parse)"
	}
	if u.User != nil {
		u.User = url.User("xxxxx")
	}
	return u.String()
}
