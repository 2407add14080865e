package altegio

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/tracing"
)

// tracerName is the instrumentation scope of the client's spans.
const tracerName = "github.com/altegio-integrator/integrator/internal/altegio"

// routes are the URL templates of the operations, below the base URL: what
// names a span ("altegio PUT /client/{location_id}/{id}"). Paths carry ids
// only, but a template keeps the span names few and the ids out of them.
var routes = map[string]string{
	OpLogin:           "/auth",
	OpGetClient:       "/client/{location_id}/{id}",
	OpUpdateClient:    "/client/{location_id}/{id}",
	OpDeleteClient:    "/client/{location_id}/{id}",
	OpCreateClient:    "/clients/{location_id}",
	OpBulkCreate:      "/clients/{location_id}/bulk",
	OpSearchClients:   "/company/{location_id}/clients/search",
	OpListClients:     "/clients/{location_id}",
	OpListComments:    "/company/{location_id}/clients/{client_id}/comments",
	OpAddComment:      "/company/{location_id}/clients/{client_id}/comments",
	OpDeleteComment:   "/company/{location_id}/clients/{client_id}/comments/{comment_id}",
	OpListFiles:       "/company/{location_id}/clients/files/{client_id}",
	OpDeleteFile:      "/company/{location_id}/clients/files/{client_id}/{file_id}",
	OpSearchVisits:    "/company/{location_id}/clients/visits/search",
	OpGetHookSettings: "/hooks_settings/{location_id}",
	OpSetHookSettings: "/hooks_settings/{location_id}",
}

// routeOf returns the URL template of r: its operation's, or for an
// operation missing from routes its path with every numeric segment
// replaced by {id}.
func routeOf(r request) string {
	if t, ok := routes[r.op]; ok {
		return t
	}
	segs := strings.Split(r.path, "/")
	for i, s := range segs {
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// startExchange starts the span of one HTTP exchange, a client span named
// "altegio <METHOD> <route template>". Its attributes are the method, the
// template, the operation, the location and the API's host; never the
// body, the query or a header.
func (c *Client) startExchange(ctx context.Context, r request, attempt int) (context.Context, trace.Span) {
	route := routeOf(r)
	ctx, span := c.tracer.Start(ctx, "altegio "+r.method+" "+route, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		attrs := []attribute.KeyValue{
			attribute.String("http.request.method", r.method),
			attribute.String("url.template", route),
			attribute.String("altegio.op", r.op),
			attribute.String("server.address", c.host),
		}
		if r.location != 0 {
			attrs = append(attrs, tracing.AttrLocationID.Int64(r.location))
		}
		if attempt > 1 {
			attrs = append(attrs, attribute.Int("http.request.resend_count", attempt-1))
		}
		span.SetAttributes(attrs...)
	}
	return ctx, span
}

// endExchange ends the span of an exchange that got status (0: none) or
// failed with err. A status of 400 or more is an error, as OpenTelemetry's
// HTTP conventions have it for clients.
func endExchange(span trace.Span, status int, err error) {
	if span.IsRecording() {
		if status > 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		switch {
		case err != nil:
			span.SetAttributes(attribute.String("error.type", "transport"))
			tracing.SetError(span, err)
		case status >= 400:
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(status)))
			span.SetStatus(codes.Error, "HTTP "+strconv.Itoa(status)+" "+http.StatusText(status))
		}
	}
	span.End()
}

// waitLimiter waits for a budget slot of r's flow inside a "ratelimit.wait"
// span.
func (c *Client) waitLimiter(ctx context.Context, r request, urgent bool) (func() bool, error) {
	ctx, span := c.tracer.Start(ctx, "ratelimit.wait")
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrFlow.String(c.flowOf(r)), attribute.Bool("ratelimit.urgent", urgent))
	}
	check, err := c.lim.Wait(ctx, c.flowOf(r), urgent)
	tracing.SetError(span, err)
	span.End()
	return check, err
}

// hostOf returns the host of the base URL, for server.address.
func hostOf(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
