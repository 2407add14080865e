package altegio

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/altegio-integrator/integrator/internal/tracing"
)

// tracedClient returns a client of s whose spans go to a Recorder, and the
// recorder.
func tracedClient(t *testing.T, s *apiServer, lim Limiter) (*Client, *tracing.Recorder, *sdktrace.TracerProvider) {
	t.Helper()
	rec := tracing.NewRecorder(256)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	c := newTestClient(t, s, nil, lim, func(c *Config) { c.TracerProvider = tp })
	return c, rec, tp
}

// TestSpanPerExchange: every operation's exchange is one client span named
// by its method and route template, which matches the path actually
// requested, below the caller's span; its attributes carry the method,
// template and status, and none of the request's query, body or headers.
func TestSpanPerExchange(t *testing.T) {
	const phone = "+79161234567"
	s := newAPIServer(t)
	c, rec, tp := tracedClient(t, s, nil)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "caller")
	in := ClientInput{Name: "Jane Roe", Phone: phone}
	calls := map[string]func() error{
		OpLogin:        func() error { _, err := c.Login(ctx, testPartner, "login@example.com", "pw-secret-9"); return err },
		OpGetClient:    func() error { _, err := c.GetClient(ctx, 11, 22); return err },
		OpUpdateClient: func() error { _, err := c.UpdateClient(ctx, 11, 22, in); return err },
		OpDeleteClient: func() error { return c.DeleteClient(ctx, 11, 22) },
		OpCreateClient: func() error { _, err := c.CreateClient(ctx, 11, in); return err },
		OpBulkCreate:   func() error { _, err := c.BulkCreateClients(ctx, 11, []ClientInput{in}); return err },
		OpSearchClients: func() error {
			_, err := c.SearchClients(ctx, 11, SearchClientsRequest{})
			return err
		},
		OpListClients: func() error {
			_, err := c.ListClientsDeprecated(ctx, 11, ListClientsParams{Phone: phone, Fullname: "Jane"})
			return err
		},
		OpListComments:  func() error { _, err := c.ListComments(ctx, 11, 22); return err },
		OpAddComment:    func() error { _, err := c.AddComment(ctx, 11, 22, "secret note"); return err },
		OpDeleteComment: func() error { return c.DeleteComment(ctx, 11, 22, 33) },
		OpListFiles:     func() error { _, err := c.ListFiles(ctx, 11, 22); return err },
		OpDeleteFile:    func() error { return c.DeleteFile(ctx, 11, 22, 33) },
		OpSearchVisits: func() error {
			_, err := c.SearchVisits(ctx, 11, VisitSearchRequest{ClientPhone: phone})
			return err
		},
		OpGetHookSettings: func() error { _, err := c.GetHookSettings(ctx, 11); return err },
		OpSetHookSettings: func() error { _, err := c.SetHookSettings(ctx, 11, HookSettings{}); return err },
	}
	for op := range routes {
		if calls[op] == nil {
			t.Errorf("operation %s has a route but no call in this test", op)
		}
	}
	for op, call := range calls {
		t.Run(op, func(t *testing.T) {
			before := len(s.requests())
			_ = call() // the canned answer may not decode; the exchange happened
			reqs := s.requests()
			if len(reqs) != before+1 {
				t.Fatalf("%d requests, want 1", len(reqs)-before)
			}
			got := reqs[len(reqs)-1]
			route := routes[op]
			// The template matches the path sent, ids in the placeholders.
			if !routeRegexp(route).MatchString(got.Path) {
				t.Errorf("route %s does not match the path sent, %s", route, got.Path)
			}
			span := rec.Recent(1)[0]
			if want := "altegio " + got.Method + " " + route; span.Name != want {
				t.Errorf("span name %q, want %q", span.Name, want)
			}
			if span.ParentID != parent.SpanContext().SpanID().String() {
				t.Errorf("span parent %q, want the caller's span", span.ParentID)
			}
			for k, want := range map[string]string{
				"http.request.method":       got.Method,
				"url.template":              route,
				"http.response.status_code": "200",
				"altegio.op":                op,
			} {
				if span.Attributes[k] != want {
					t.Errorf("attribute %s = %q, want %q", k, span.Attributes[k], want)
				}
			}
			for k, v := range span.Attributes {
				for _, secret := range []string{phone, "Jane", "secret", "pw-secret", testPartner, testUser, "login@"} {
					if strings.Contains(v, secret) || strings.Contains(span.Name, secret) {
						t.Errorf("attribute %s = %q carries %q", k, v, secret)
					}
				}
			}
		})
	}
	parent.End()
}

// TestSpanStatus: an answer of 400 or more and a transport failure are
// errors; a 401 refreshed and retried makes two spans, the second a resend.
func TestSpanStatus(t *testing.T) {
	t.Run("404", func(t *testing.T) {
		s := newAPIServer(t, reply{status: 404, body: `{"success":false,"data":null,"meta":{"message":"not found"}}`})
		c, rec, _ := tracedClient(t, s, nil)
		_, _ = c.GetClient(context.Background(), 1, 2)
		span := rec.Recent(1)[0]
		if span.Status != "error: HTTP 404 Not Found" || span.Attributes["http.response.status_code"] != "404" || span.Attributes["error.type"] != "404" {
			t.Errorf("span %+v", span)
		}
		if span.ParentID != "" {
			t.Errorf("a call without a caller's span starts a root span; parent %q", span.ParentID)
		}
	})
	t.Run("transport", func(t *testing.T) {
		s := newAPIServer(t)
		c, rec, _ := tracedClient(t, s, nil)
		s.Close()
		_, err := c.GetClient(context.Background(), 1, 2)
		if err == nil {
			t.Fatal("GetClient on a closed server succeeded")
		}
		span := rec.Recent(1)[0]
		if !strings.HasPrefix(span.Status, "error: ") || span.Attributes["error.type"] != "transport" {
			t.Errorf("span %+v", span)
		}
		if _, ok := span.Attributes["http.response.status_code"]; ok {
			t.Errorf("status code recorded without a response: %+v", span)
		}
	})
	t.Run("401 retried", func(t *testing.T) {
		s := newAPIServer(t,
			reply{status: 401, body: `{"success":false,"data":null,"meta":{"message":"unauthorized"}}`},
			reply{status: 200, body: `{"success":true,"data":{"id":2,"name":"x","phone":"1"},"meta":[]}`})
		rec := tracing.NewRecorder(16)
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		auth := &refreshingAuth{fresh: Credentials{PartnerToken: testPartner, UserToken: testUser, Version: 2}}
		c := newTestClient(t, s, auth, nil, func(c *Config) { c.TracerProvider = tp })
		if _, err := c.GetClient(context.Background(), 1, 2); err != nil {
			t.Fatalf("GetClient: %v", err)
		}
		spans := rec.Recent(2)
		if len(spans) != 2 || spans[0].Attributes["http.request.resend_count"] != "1" || spans[1].Status != "error: HTTP 401 Unauthorized" {
			t.Errorf("spans %+v", spans)
		}
	})
}

// TestLimiterWaitSpan: a request that waits for the Limiter records the
// wait as "ratelimit.wait" with its flow; one sent on a held slot does not
// wait.
func TestLimiterWaitSpan(t *testing.T) {
	s := newAPIServer(t)
	lim := &fakeLimiter{}
	c, rec, tp := tracedClient(t, s, lim)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "caller")
	_, _ = c.GetClient(ctx, 7, 8)
	_, _ = c.GetClient(WithSlot(ctx, func() bool { return true }), 7, 8)
	parent.End()
	var names []string
	for _, sp := range rec.Trace(parent.SpanContext().TraceID().String()) {
		names = append(names, sp.Name)
		if sp.Name == "ratelimit.wait" && (sp.Attributes["ratelimit.flow"] != "7" || sp.ParentID != parent.SpanContext().SpanID().String()) {
			t.Errorf("wait span %+v", sp)
		}
	}
	want := []string{"caller", "ratelimit.wait", "altegio GET /client/{location_id}/{id}", "altegio GET /client/{location_id}/{id}"}
	if !slices.Equal(names, want) {
		t.Errorf("spans %v, want %v", names, want)
	}
}

func TestRouteOfUnknownOp(t *testing.T) {
	got := routeOf(request{op: "x.unknown", path: fmt.Sprintf("/things/%d/sub/%d/name", 12, 34)})
	if want := "/things/{id}/sub/{id}/name"; got != want {
		t.Errorf("routeOf = %q, want %q", got, want)
	}
}

// routeRegexp matches the paths of route below /api/v1, ids in its
// placeholders.
func routeRegexp(route string) *regexp.Regexp {
	segs := strings.Split(route, "/")
	for i, seg := range segs {
		if strings.HasPrefix(seg, "{") {
			segs[i] = "[0-9]+"
		} else {
			segs[i] = regexp.QuoteMeta(seg)
		}
	}
	return regexp.MustCompile("^/api/v1" + strings.Join(segs, "/") + "$")
}
