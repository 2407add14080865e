package altegio

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testPartner = "partner-tok-3f9a"
	testUser    = "user-tok-71c2"
	wantAccept  = "application/vnd.api.v2+json"
	wantAuth    = "Bearer " + testPartner + ", User " + testUser
)

// reply is one canned answer of the test server.
type reply struct {
	status int
	body   string
	header map[string]string
	// handle, when set, replaces the canned answer.
	handle func(w http.ResponseWriter, r *http.Request)
}

// recorded is one request the test server received.
type recorded struct {
	Method, Path string
	Query        map[string][]string
	Header       http.Header
	Body         []byte
}

// apiServer is a real HTTP server that answers with replies in order (the
// last one repeats) and records every request. Paths must start with /api/v1.
type apiServer struct {
	*httptest.Server
	t       *testing.T
	mu      sync.Mutex
	replies []reply
	reqs    []recorded
}

func newAPIServer(t *testing.T, replies ...reply) *apiServer {
	t.Helper()
	s := &apiServer{t: t, replies: replies}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, recorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body})
	n := len(s.reqs)
	var rep reply
	if len(s.replies) > 0 {
		rep = s.replies[min(n, len(s.replies))-1]
	} else {
		rep = reply{status: 200, body: `{"success":true,"data":null,"meta":[]}`}
	}
	s.mu.Unlock()

	if !strings.HasPrefix(r.URL.Path, "/api/v1/") {
		http.Error(w, "no /api/v1 prefix", http.StatusTeapot)
		return
	}
	if rep.handle != nil {
		rep.handle(w, r)
		return
	}
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	if rep.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(rep.status)
	_, _ = io.WriteString(w, rep.body)
}

func (s *apiServer) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

// newTestClient returns a client for s with static test tokens unless auth
// is given.
func newTestClient(t *testing.T, s *apiServer, auth Authorizer, lim Limiter, mutate ...func(*Config)) *Client {
	t.Helper()
	if auth == nil {
		auth = StaticAuthorizer{PartnerToken: testPartner, UserToken: testUser}
	}
	cfg := Config{BaseURL: s.URL + "/api/v1/", Timeout: 5 * time.Second, UserAgent: "altegio-test/1"}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := New(cfg, auth, lim)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// checkHeaders asserts the documented request headers.
func checkHeaders(t *testing.T, got recorded, auth string, hasBody bool) {
	t.Helper()
	if a := got.Header.Get("Accept"); a != wantAccept {
		t.Errorf("Accept = %q, want %q", a, wantAccept)
	}
	if a := got.Header.Get("Authorization"); a != auth {
		t.Errorf("Authorization = %q, want %q", a, auth)
	}
	if ua := got.Header.Get("User-Agent"); ua == "" {
		t.Error("User-Agent is empty")
	}
	ct := got.Header.Get("Content-Type")
	switch {
	case hasBody && ct != "application/json":
		t.Errorf("Content-Type = %q, want application/json", ct)
	case !hasBody && ct != "":
		t.Errorf("Content-Type = %q on a request without body", ct)
	case !hasBody && len(got.Body) != 0:
		t.Errorf("unexpected body %s", got.Body)
	}
}

// jsonEqual asserts that got is the JSON value want (key order and spacing
// ignored).
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("request body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q is not JSON: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("request body\n got %s\nwant %s", got, want)
	}
}

// fakeLimiter counts waits and records penalties. Its slots' send checks
// answer late[i] for the i-th wait (false when late is shorter), and
// onWait runs inside every wait.
type fakeLimiter struct {
	mu        sync.Mutex
	waits     int
	penalties []time.Duration
	err       error
	late      []bool
	onWait    func()
	flows     []string
}

func (l *fakeLimiter) Wait(ctx context.Context, flow string, _ bool) (func() bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flows = append(l.flows, flow)
	if l.onWait != nil {
		l.onWait()
	}
	n := l.waits
	l.waits++
	if l.err != nil {
		return nil, l.err
	}
	late := n < len(l.late) && l.late[n]
	return func() bool { return !late }, nil
}

func (l *fakeLimiter) Penalize(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.penalties = append(l.penalties, d)
}

// refreshingAuth hands out version 1 tokens, and version 2 after Refresh.
type refreshingAuth struct {
	mu        sync.Mutex
	refreshes []Credentials
	fresh     Credentials
	err       error
}

func (a *refreshingAuth) Credentials(context.Context, int64) (Credentials, error) {
	return Credentials{PartnerToken: testPartner, UserToken: testUser, Version: 1}, nil
}

func (a *refreshingAuth) Refresh(_ context.Context, _ int64, rejected Credentials) (Credentials, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refreshes = append(a.refreshes, rejected)
	if a.err != nil {
		return Credentials{}, a.err
	}
	return a.fresh, nil
}
