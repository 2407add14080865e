package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/console"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/ingest"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology/topotest"
)

// Without operator keys there is no console: New refuses, and ingest
// without one answers /ui/ like any unknown path. With one, ingest serves
// it under /ui/ as HTML, outside the JSON API's document.
func TestConsoleIsServedByIngestOnlyWithOperatorKeys(t *testing.T) {
	t.Parallel()
	n := testenv.RunJetStream(t)
	nc, js := testenv.Connect(t, n.URL())
	topotest.Apply(t, js)
	svc, err := dlq.New(context.Background(), js, dlq.Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := console.New(console.Config{DLQ: svc, JS: js}); !errors.Is(err, console.ErrNoOperatorKeys) {
		t.Errorf("console.New without keys: %v, want ErrNoOperatorKeys", err)
	}
	keys := [][sha256.Size]byte{sha256.Sum256([]byte(operatorKey))}
	for _, bad := range []console.Config{
		{OperatorKeys: keys, DLQ: svc, JS: js, WorkerMetrics: []string{"not a url"}},
		{OperatorKeys: keys, DLQ: svc, JS: js, TraceURL: "http://jaeger/trace/"},
		{OperatorKeys: keys, JS: js},
	} {
		if _, err := console.New(bad); err == nil {
			t.Errorf("console.New(%+v) accepted", bad)
		}
	}

	serve := func(con *console.Console) *httptest.Server {
		in, err := ingest.New(ingest.Config{AuthDisabled: true, DLQ: svc, OperatorKeys: keys, Console: con}, nc, js, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(in.Handler())
		t.Cleanup(srv.Close)
		return srv
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(srv *httptest.Server, path string) (*http.Response, string) {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	without := serve(nil)
	unknown, unknownBody := get(without, "/no/such/path")
	for _, path := range []string{"/ui/", "/ui/login", "/ui/static/console.css"} {
		resp, body := get(without, path)
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != unknown.Header.Get("Content-Type") ||
			!sameProblem(body, unknownBody) {
			t.Errorf("GET %s without a console: %d %s %s, want the unknown path's answer %d %s", path,
				resp.StatusCode, resp.Header.Get("Content-Type"), body, unknown.StatusCode, unknownBody)
		}
	}

	con, err := console.New(console.Config{OperatorKeys: keys, DLQ: svc, JS: js})
	if err != nil {
		t.Fatal(err)
	}
	with := serve(con)
	if resp, _ := get(with, "/ui/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login?next=%2Fui%2F" {
		t.Errorf("GET /ui/ without a session: %d to %q, want 303 to the login form", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := get(with, "/ui/login")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, `name="key"`) {
		t.Errorf("GET /ui/login: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The JSON API's routes are unchanged, and /ui/ is not one of them.
	_, doc := get(with, "/openapi.json")
	var openapi struct {
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(doc), &openapi); err != nil || len(openapi.Paths) == 0 {
		t.Fatalf("openapi.json: %v", err)
	}
	for p := range openapi.Paths {
		if strings.HasPrefix(p, "/ui") {
			t.Errorf("openapi.json describes %s: the console is HTML, not part of the JSON API", p)
		}
	}
	if resp, _ := get(with, "/v1/dlq"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/dlq beside the console: %d, want 401 as before", resp.StatusCode)
	}
}

func sameProblem(a, b string) bool {
	strip := func(s string) string { return regexp.MustCompile(`"instance":"[^"]*"`).ReplaceAllString(s, "") }
	return strip(a) == strip(b)
}

// Logging in: no session sends you to the form; a wrong key is refused
// and sets nothing; the right one starts a session in a cookie that
// scripts cannot read, other sites do not send, and only /ui/ gets.
func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})

	for _, path := range []string{"/ui/", "/ui/dlq?status=dead", "/ui/commands", "/ui/accounts", "/ui/dlq/replay?seq=1", "/ui/traces/0123456789abcdef0123456789abcdef"} {
		r := e.get(path, nil)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/ui/login?next="+url.QueryEscape(path) {
			t.Errorf("GET %s without a session: %d to %q", path, r.status, r.header.Get("Location"))
		}
	}
	if r := e.get("/ui/", &http.Cookie{Name: console.CookieName, Value: "made-up"}); r.status != http.StatusSeeOther {
		t.Errorf("GET /ui/ with a made-up session: %d, want 303 to the login form", r.status)
	}

	for _, key := range []string{"", "wrong", operatorKey + "x"} {
		r := e.post("/ui/login", nil, url.Values{"key": {key}})
		if r.status != http.StatusUnauthorized || len(r.resp.Cookies()) != 0 || !strings.Contains(r.body, "not an operator key") {
			t.Errorf("login with %q: %d, cookies %v", key, r.status, r.resp.Cookies())
		}
	}

	r := e.post("/ui/login", nil, url.Values{"key": {operatorKey}, "next": {"/ui/dlq?status=dead"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/ui/dlq?status=dead" {
		t.Fatalf("login: %d to %q", r.status, r.header.Get("Location"))
	}
	cookies := r.resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login set %d cookies", len(cookies))
	}
	ck := cookies[0]
	set := r.header.Get("Set-Cookie")
	if ck.Name != console.CookieName || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" || ck.Secure ||
		len(ck.Value) != 43 || ck.MaxAge != int(console.DefaultSessionTTL.Seconds()) {
		t.Errorf("session cookie over plain HTTP: %s", set)
	}
	if page := e.get("/ui/dlq?status=dead", &http.Cookie{Name: ck.Name, Value: ck.Value}); page.status != http.StatusOK {
		t.Errorf("GET /ui/dlq with the session: %d", page.status)
	}

	// After login, the form sends you on; a next elsewhere is ignored.
	for next, want := range map[string]string{
		"/ui/commands": "/ui/commands", "https://evil.example/": "/ui/", "//evil.example/ui/": "/ui/",
		"/v1/dlq": "/ui/", "/ui/../v1/dlq": "/ui/", "": "/ui/",
	} {
		r := e.post("/ui/login", nil, url.Values{"key": {operatorKey}, "next": {next}})
		if got := r.header.Get("Location"); got != want {
			t.Errorf("login with next %q went to %q, want %q", next, got, want)
		}
	}

	// Over TLS the cookie is Secure.
	s := newEnv(t, envOpts{noRun: true, tls: true})
	r = s.post("/ui/login", nil, url.Values{"key": {operatorKey}})
	if cs := r.resp.Cookies(); r.status != http.StatusSeeOther || len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("login over TLS: %d, Set-Cookie %q, want Secure", r.status, r.header.Get("Set-Cookie"))
	}
}

// Failed logins are limited per client address: after five, even the
// right key waits; the wait ends.
func TestFailedLoginsAreRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})
	for i := range 5 {
		if r := e.post("/ui/login", nil, url.Values{"key": {"guess"}}); r.status != http.StatusUnauthorized {
			t.Fatalf("failed login %d: %d", i+1, r.status)
		}
	}
	r := e.post("/ui/login", nil, url.Values{"key": {operatorKey}})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || len(r.resp.Cookies()) != 0 {
		t.Fatalf("login after 5 failures: %d, Retry-After %q, cookies %v; want 429 and no session", r.status, r.header.Get("Retry-After"), r.resp.Cookies())
	}
	e.clock.Advance(13 * time.Second)
	if r := e.post("/ui/login", nil, url.Values{"key": {operatorKey}}); r.status != http.StatusSeeOther {
		t.Errorf("login once the wait is over: %d", r.status)
	}
}

// A session ends at logout (the cookie is removed and the id forgotten)
// and after its time to live.
func TestSessionEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})
	s := e.login()
	r := e.post("/ui/logout", s.cookie, url.Values{"csrf": {s.csrf}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/ui/login" {
		t.Fatalf("logout: %d to %q", r.status, r.header.Get("Location"))
	}
	if cs := r.resp.Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 || cs[0].Value != "" {
		t.Errorf("logout cookie: %q, want it removed", r.header.Get("Set-Cookie"))
	}
	if r := e.get("/ui/", s.cookie); r.status != http.StatusSeeOther {
		t.Errorf("the old session after logout: %d, want 303 to the login form", r.status)
	}

	s = e.login()
	e.clock.Advance(console.DefaultSessionTTL)
	if r := e.get("/ui/", s.cookie); r.status != http.StatusSeeOther {
		t.Errorf("a session past its time to live: %d, want 303 to the login form", r.status)
	}
}

// Every state-changing request needs the session, its CSRF token and this
// host as its origin; each refusal changes nothing.
func TestStateChangesNeedCSRFAndSameOrigin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})
	seq := e.publishDLQ(comment(1, 999), commands.ClassPermanent, 404, "client 999 not found", 0)
	s := e.login()
	other := e.login()

	replay := url.Values{"seq": {fmt.Sprint(seq)}, "expected": {"1"}}
	purge := url.Values{"seq": {fmt.Sprint(seq)}, "expected": {"1"}}
	with := func(v url.Values, csrf string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = vs
		}
		if csrf != "" {
			out.Set("csrf", csrf)
		}
		return out
	}
	cases := []struct {
		name   string
		path   string
		cookie *http.Cookie
		form   url.Values
		origin string
		ref    string
		want   int
	}{
		{"replay without a token", "/ui/dlq/replay", s.cookie, with(replay, ""), e.srv.URL, "", http.StatusForbidden},
		{"replay with a wrong token", "/ui/dlq/replay", s.cookie, with(replay, s.csrf+"x"), e.srv.URL, "", http.StatusForbidden},
		{"replay with another session's token", "/ui/dlq/replay", s.cookie, with(replay, other.csrf), e.srv.URL, "", http.StatusForbidden},
		{"replay from another site", "/ui/dlq/replay", s.cookie, with(replay, s.csrf), "https://evil.example", "", http.StatusForbidden},
		{"replay from another port", "/ui/dlq/replay", s.cookie, with(replay, s.csrf), "http://127.0.0.1:1", "", http.StatusForbidden},
		{"replay with no origin at all", "/ui/dlq/replay", s.cookie, with(replay, s.csrf), "", "", http.StatusForbidden},
		{"replay with a foreign referer", "/ui/dlq/replay", s.cookie, with(replay, s.csrf), "", "https://evil.example/ui/dlq", http.StatusForbidden},
		{"replay without a session", "/ui/dlq/replay", nil, with(replay, s.csrf), e.srv.URL, "", http.StatusSeeOther},
		{"purge without a token", "/ui/dlq/purge", s.cookie, with(purge, ""), e.srv.URL, "", http.StatusForbidden},
		{"purge from another site", "/ui/dlq/purge", s.cookie, with(purge, s.csrf), "https://evil.example", "", http.StatusForbidden},
		{"logout without a token", "/ui/logout", s.cookie, url.Values{}, e.srv.URL, "", http.StatusForbidden},
		{"login from another site", "/ui/login", nil, url.Values{"key": {operatorKey}}, "https://evil.example", "", http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+tc.path, strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.ref != "" {
				req.Header.Set("Referer", tc.ref)
			}
			if tc.cookie != nil {
				req.AddCookie(tc.cookie)
			}
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("a refused request set cookies: %v", resp.Cookies())
			}
		})
	}
	if st, err := e.entryStatus(seq); err != nil || st != dlq.StatusDead {
		t.Errorf("after the refused requests the entry is %q (%v), want still dead and there", st, err)
	}
	if r := e.get("/ui/", s.cookie); r.status != http.StatusOK {
		t.Errorf("the session after a refused logout: %d, want still logged in", r.status)
	}
	// The same form with the token from this origin, by Referer alone
	// (a browser that sends no Origin), is accepted.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/dlq/replay", strings.NewReader(with(replay, s.csrf).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Referer", e.srv.URL+"/ui/dlq/replay?seq=1")
	req.AddCookie(s.cookie)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("replay with the token and a same-origin Referer: %d", resp.StatusCode)
	}
	if st, _ := e.entryStatus(seq); st != dlq.StatusReplayed {
		t.Errorf("the entry after the accepted replay: %q, want replayed", st)
	}
}

// Every answer forbids framing and inline script, pages are not stored,
// and the pages use no inline script or style (the policy would block
// them): the JavaScript is a file.
func TestSecurityHeadersAndNoInlineCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})
	seq := e.publishDLQ(comment(1, 999), commands.ClassPermanent, 404, "client 999 not found", 0)
	s := e.login()
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	for _, path := range []string{"/ui/login", "/ui/", "/ui/commands", "/ui/dlq", fmt.Sprintf("/ui/dlq/%d", seq),
		fmt.Sprintf("/ui/dlq/replay?seq=%d", seq), fmt.Sprintf("/ui/dlq/purge?seq=%d", seq), "/ui/accounts",
		"/ui/traces/0123456789abcdef0123456789abcdef", "/ui/nothing-here"} {
		ck := s.cookie
		if path == "/ui/login" {
			ck = nil // a session is sent on to the overview
		}
		r := e.get(path, ck)
		h := r.header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: X-Frame-Options %q, Cache-Control %q, X-Content-Type-Options %q", path,
				h.Get("X-Frame-Options"), h.Get("Cache-Control"), h.Get("X-Content-Type-Options"))
		}
		if inlineScript.MatchString(r.body) || strings.Contains(r.body, " style=") || strings.Contains(r.body, "<style") ||
			strings.Contains(r.body, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(r.body) {
			t.Errorf("%s has inline script or style", path)
		}
		if !strings.Contains(r.body, `<script src="/ui/static/console.js" defer></script>`) {
			t.Errorf("%s does not load the script file", path)
		}
	}
	if r := e.get("/ui/nothing-here", s.cookie); r.status != http.StatusNotFound {
		t.Errorf("an unknown console page: %d", r.status)
	}
	for path, ctype := range map[string]string{"/ui/static/console.js": "text/javascript", "/ui/static/console.css": "text/css"} {
		r := e.get(path, nil)
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), ctype) || r.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: %d %q", path, r.status, r.header.Get("Content-Type"))
		}
	}
	if r := e.get("/ui/static/../console.go", nil); r.status == http.StatusOK {
		t.Errorf("a path out of the static folder was served")
	}
	// GETs never change state: a GET to an action's address shows its plan.
	if r := e.get(fmt.Sprintf("/ui/dlq/replay?seq=%d&expected=1&csrf=%s", seq, s.csrf), s.cookie); r.status != http.StatusOK ||
		!strings.Contains(r.body, "nothing has been done yet") {
		t.Errorf("GET replay: %d", r.status)
	}
	if st, _ := e.entryStatus(seq); st != dlq.StatusDead {
		t.Errorf("after GETs the entry is %q, want dead", st)
	}
}
