package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testPartner  = "partner-secret"
	testLogin    = "owner@example.com"
	testPassword = "pa55word"
	testToken    = "user-token-1"
	testLoc      = int64(4242)
)

// fakeClock is an injectable clock that only moves when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.FixedZone("", -5*3600))}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a running sandbox with raw-HTTP helpers.
type env struct {
	t     *testing.T
	sb    *Server
	ts    *httptest.Server
	clock *fakeClock
	base  string
}

// newEnv starts a sandbox with rate limits disabled unless edit sets them.
func newEnv(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	clock := newFakeClock()
	cfg := Config{
		PartnerToken:  testPartner,
		Users:         []User{{Login: testLogin, Password: testPassword, Token: testToken, Email: "owner@example.com", Phone: "+13155550175"}},
		RatePerSecond: -1,
		RatePerMinute: -1,
		Now:           clock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	sb, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(sb)
	t.Cleanup(ts.Close)
	return &env{t: t, sb: sb, ts: ts, clock: clock, base: ts.URL + BasePath}
}

// reply is a decoded answer.
type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any // nil when the body is empty or not an object
}

func (r reply) data() map[string]any {
	d, _ := r.body["data"].(map[string]any)
	return d
}

func (r reply) list() []any {
	d, _ := r.body["data"].([]any)
	return d
}

func (r reply) meta() map[string]any {
	m, _ := r.body["meta"].(map[string]any)
	return m
}

// userAuth is the combined header of ref §2.1.
func userAuth(user string) string { return "Bearer " + testPartner + ", User " + user }

// do sends a request with the standard headers; body is JSON-encoded
// unless it is a string or nil.
func (e *env) do(method, path string, body any) reply {
	e.t.Helper()
	return e.doWith(method, path, body, map[string]string{"Authorization": userAuth(testToken)})
}

// doWith sends a request with Accept and, for a body, Content-Type set;
// headers override them ("" deletes).
func (e *env) doWith(method, path string, body any, headers map[string]string) reply {
	e.t.Helper()
	req, err := e.newRequest(method, path, body, headers)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return r
}

func (e *env) newRequest(method, path string, body any, headers map[string]string) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, ok := body.(string)
		if !ok {
			enc, err := json.Marshal(body)
			if err != nil {
				return nil, err
			}
			b = string(enc)
		}
		rd = bytes.NewReader([]byte(b))
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/vnd.api.v2+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return req, nil
}

// createClient creates a client through the API and returns its ID.
func (e *env) createClient(fields map[string]any) int64 {
	e.t.Helper()
	r := e.do(http.MethodPost, "/clients/4242", fields)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create client: status %d body %s", r.status, r.raw)
	}
	return int64(r.data()["id"].(float64))
}

func wantStatus(t *testing.T, r reply, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d, want %d; body %s", r.status, want, r.raw)
	}
}

// wantError checks the error envelope: success false, data null, and
// meta.message when message is not empty.
func wantError(t *testing.T, r reply, status int, message string) {
	t.Helper()
	wantStatus(t, r, status)
	if r.body == nil {
		t.Fatalf("no JSON body: %q", r.raw)
	}
	if got := r.body["success"]; got != false {
		t.Errorf("success = %v, want false", got)
	}
	if d, ok := r.body["data"]; !ok || d != nil {
		t.Errorf("data = %v (present %v), want null", d, ok)
	}
	if message != "" {
		if got := r.meta()["message"]; got != message {
			t.Errorf("meta.message = %v, want %q", got, message)
		}
	}
}

func wantSuccess(t *testing.T, r reply, status int) {
	t.Helper()
	wantStatus(t, r, status)
	if r.body["success"] != true {
		t.Fatalf("success = %v, want true; body %s", r.body["success"], r.raw)
	}
	if _, ok := r.body["meta"]; !ok {
		t.Errorf("meta missing; body %s", r.raw)
	}
}
