package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/testenv/poll"
)

const (
	otherLogin = "staff@example.com"
	otherToken = "user-token-2"
	hookBearer = "hook-secret"
	waitLong   = 10 * time.Second
)

// newHookEnv is newEnv with a second user, webhooks sent after 10 ms and
// retried after 10 ms, and the sandbox closed (deliveries stopped and
// waited for) at the end of the test.
func newHookEnv(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	e := newEnv(t, func(c *Config) {
		c.Users = append(c.Users, User{Login: otherLogin, Password: testPassword, Token: otherToken})
		c.WebhookDelay = 10 * time.Millisecond
		c.WebhookRetryDelay = 10 * time.Millisecond
		c.WebhookBearer = hookBearer
		if edit != nil {
			edit(c)
		}
	})
	t.Cleanup(func() { _ = e.sb.Close() })
	return e
}

// hookBody is a POST /hooks_settings body with every flag 0 except those
// given.
func hookBody(urls []string, active int, flags map[string]int) map[string]any {
	b := map[string]any{"urls": urls, "active": active}
	for _, f := range HookFlags {
		b[f] = flags[f]
	}
	return b
}

// subscribe writes settings that send client events to urls, as the
// user of token.
func (e *env) subscribe(token string, selfSending int, urls ...string) {
	e.t.Helper()
	r := e.doWith(http.MethodPost, "/hooks_settings/4242",
		hookBody(urls, 1, map[string]int{"client": 1, "self_sending": selfSending}),
		map[string]string{"Authorization": userAuth(token)})
	wantSuccess(e.t, r, http.StatusCreated)
}

// receiver is a webhook destination: it records every request and answers
// with answers in order (the last one repeating; 200 when empty).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	answers []int
	got     []hookRequest
}

type hookRequest struct {
	method string
	header http.Header
	body   map[string]any
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	t.Helper()
	rc := &receiver{answers: answers}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		rc.mu.Lock()
		rc.got = append(rc.got, hookRequest{method: r.Method, header: r.Header.Clone(), body: body})
		status := http.StatusOK
		if n := len(rc.answers); n > 0 {
			status = rc.answers[min(len(rc.got), n)-1]
		}
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []hookRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookRequest(nil), rc.got...)
}

// waitRequests waits until the receiver got n requests and returns them.
func (rc *receiver) waitRequests(t *testing.T, n int) []hookRequest {
	t.Helper()
	poll.Until(t, waitLong, func() error {
		if got := len(rc.requests()); got < n {
			return fmt.Errorf("receiver got %d requests, want %d", got, n)
		}
		return nil
	})
	return rc.requests()
}

// waitDelivery waits until delivery id has ended and returns it.
func (e *env) waitDelivery(id int64) WebhookDelivery {
	e.t.Helper()
	var got WebhookDelivery
	poll.Until(e.t, waitLong, func() error {
		for _, d := range e.sb.Webhooks() {
			if d.ID == id {
				got = d
				if d.Status == WebhookPending {
					return fmt.Errorf("delivery %d is pending after %d attempts", id, d.Attempts)
				}
				return nil
			}
		}
		return fmt.Errorf("no delivery %d", id)
	})
	return got
}

func TestHookSettingsRoundTrip(t *testing.T) {
	e := newHookEnv(t, nil)

	// A location that never had settings (the reference is silent).
	r := e.do(http.MethodGet, "/hooks_settings/4242", nil)
	wantSuccess(t, r, http.StatusOK)
	if !strings.Contains(string(r.raw), `"urls":[]`) {
		t.Errorf("urls of a location without settings is not []: %s", r.raw)
	}
	if d := r.data(); d["active"] != float64(0) || d["client"] != float64(0) {
		t.Errorf("settings of a location without any = %v", d)
	}

	// POST answers 201 with the settings; duplicates are stored once.
	body := hookBody([]string{"https://a.example/hook", "https://b.example/h?x=1", "https://a.example/hook"}, 1,
		map[string]int{"client": 1, "record": 1, "finances_operation": 1, "self_sending": 1})
	r = e.do(http.MethodPost, "/hooks_settings/4242", body)
	wantSuccess(t, r, http.StatusCreated)
	want := map[string]any{"urls": []any{"https://a.example/hook", "https://b.example/h?x=1"}, "active": float64(1)}
	for _, f := range HookFlags {
		want[f] = float64(body[f].(int))
	}
	for k, v := range want {
		if got := r.data()[k]; !reflect.DeepEqual(got, v) {
			t.Errorf("POST data[%q] = %v, want %v", k, got, v)
		}
	}
	if perURL, _ := r.data()["url_settings"].([]any); len(perURL) != 2 {
		t.Errorf("url_settings = %v, want one entry per URL", r.data()["url_settings"])
	}

	// GET reads back the same settings.
	r = e.do(http.MethodGet, "/hooks_settings/4242", nil)
	wantSuccess(t, r, http.StatusOK)
	for k, v := range want {
		if got := r.data()[k]; !reflect.DeepEqual(got, v) {
			t.Errorf("GET data[%q] = %v, want %v", k, got, v)
		}
	}
	st, ok := e.sb.HookSettingsOf(testLoc)
	if !ok || st.WrittenBy != testLogin || st.Flags["record"] != 1 || len(st.URLs) != 2 {
		t.Errorf("HookSettingsOf = %+v, %v", st, ok)
	}

	// POST replaces the whole settings: flags left out are 0.
	r = e.do(http.MethodPost, "/hooks_settings/4242", map[string]any{"urls": []string{"https://c.example/"}, "active": 0})
	wantSuccess(t, r, http.StatusCreated)
	r = e.do(http.MethodGet, "/hooks_settings/4242", nil)
	if d := r.data(); d["client"] != float64(0) || d["record"] != float64(0) || d["active"] != float64(0) ||
		!reflect.DeepEqual(d["urls"], []any{"https://c.example/"}) {
		t.Errorf("after a replacing POST: %v", d)
	}

	// Another location is untouched; the routes share auth and location
	// access with the rest of the API.
	r = e.do(http.MethodGet, "/hooks_settings/7", nil)
	if !strings.Contains(string(r.raw), `"urls":[]`) {
		t.Errorf("location 7: %s", r.raw)
	}
	wantError(t, e.doWith(http.MethodGet, "/hooks_settings/4242", nil, map[string]string{"Authorization": "Bearer " + testPartner}),
		http.StatusUnauthorized, msgAuthNeeded)
	wantError(t, e.do(http.MethodGet, "/hooks_settings/abc", nil), http.StatusNotFound, "")
	wantError(t, e.do(http.MethodPut, "/hooks_settings/4242", body), http.StatusMethodNotAllowed, "")
	if got := e.sb.Stats().ByOp; got[OpHooksSet] != 2 || got[OpHooksGet] != 6 {
		t.Errorf("ByOp = %v, want 2 %s and 6 %s", got, OpHooksSet, OpHooksGet)
	}
}

func TestHookSettingsValidation(t *testing.T) {
	ten := make([]string, 0, 12)
	for i := range 10 {
		ten = append(ten, fmt.Sprintf("https://h%d.example/hook", i))
	}
	eleven := append(append([]string(nil), ten...), "https://h10.example/hook")
	tenWithDuplicates := append(append([]string(nil), ten...), ten[0], ten[3])

	tests := []struct {
		name   string
		body   any
		status int
		errMsg string   // a substring of meta.errors
		stored []string // the URLs stored after a 201
	}{
		{"not JSON", `{"urls":`, http.StatusBadRequest, "", nil},
		{"not an object", `[]`, http.StatusBadRequest, "", nil},
		{"empty body", nil, http.StatusUnprocessableEntity, "The urls field is required.", nil},
		{"no urls", map[string]any{"active": 1}, http.StatusUnprocessableEntity, "The urls field is required.", nil},
		{"null urls", map[string]any{"urls": nil, "active": 1}, http.StatusUnprocessableEntity, "The urls field is required.", nil},
		{"no active", map[string]any{"urls": []string{}}, http.StatusUnprocessableEntity, "The active field is required.", nil},
		{"urls not a list", map[string]any{"urls": "https://a.example/", "active": 1}, http.StatusUnprocessableEntity, "must be an array", nil},
		{"relative url", map[string]any{"urls": []string{"/hook"}, "active": 1}, http.StatusUnprocessableEntity, "urls.0 must be a valid URL", nil},
		{"ftp url", map[string]any{"urls": []string{"https://a.example/", "ftp://b.example/"}, "active": 1}, http.StatusUnprocessableEntity, "urls.1 must be a valid URL", nil},
		{"eleven urls", map[string]any{"urls": eleven, "active": 1}, http.StatusUnprocessableEntity, "more than 10", nil},
		{"active 2", map[string]any{"urls": []string{}, "active": 2}, http.StatusUnprocessableEntity, "The selected active is invalid.", nil},
		{"flag as boolean", map[string]any{"urls": []string{}, "active": 1, "client": true}, http.StatusUnprocessableEntity, "The client field must be an integer.", nil},
		{"ten urls and duplicates", map[string]any{"urls": tenWithDuplicates, "active": 1}, http.StatusCreated, "", ten},
		{"empty list", map[string]any{"urls": []string{}, "active": 0}, http.StatusCreated, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newHookEnv(t, nil)
			e.sb.SeedHookSettings(testLoc, HookSettings{URLs: []string{"https://kept.example/"}, Flags: map[string]int{"active": 1, "client": 1}})
			r := e.doWith(http.MethodPost, "/hooks_settings/4242", tc.body,
				map[string]string{"Authorization": userAuth(testToken), "Content-Type": "application/json"})
			if tc.status == http.StatusCreated {
				wantSuccess(t, r, tc.status)
				if st, _ := e.sb.HookSettingsOf(testLoc); !reflect.DeepEqual(st.URLs, tc.stored) {
					t.Errorf("stored URLs = %v, want %v", st.URLs, tc.stored)
				}
				return
			}
			if tc.status == http.StatusBadRequest {
				wantError(t, r, tc.status, "Invalid request body")
			} else {
				wantError(t, r, tc.status, msgErrorOccurred)
			}
			if tc.errMsg != "" && !strings.Contains(string(r.raw), tc.errMsg) {
				t.Errorf("errors lack %q: %s", tc.errMsg, r.raw)
			}
			if st, _ := e.sb.HookSettingsOf(testLoc); !reflect.DeepEqual(st.URLs, []string{"https://kept.example/"}) {
				t.Errorf("a refused POST changed the settings: %+v", st)
			}
		})
	}
}

// A client created, updated and deleted through the API reaches the
// receiver as three client events, each the full card, with the
// configured bearer.
func TestWebhookCreateUpdateDelete(t *testing.T) {
	e := newHookEnv(t, nil)
	rc := newReceiver(t)
	e.subscribe(testToken, 1, rc.URL+"/altegio")

	id := e.createClient(map[string]any{"name": "Ann", "phone": "+13155550101", "email": "ann@example.com", "categories": []int{5}})
	path := "/client/4242/" + itoa(id)
	card := e.do(http.MethodGet, path, nil).data()

	got := rc.waitRequests(t, 1)
	checkEvent(t, got[0], "create", id)
	if !reflect.DeepEqual(got[0].body["data"], card) {
		t.Errorf("create data\n got %v\nwant %v (GET client)", got[0].body["data"], card)
	}

	r := e.do(http.MethodPut, path, map[string]any{"name": "Anna", "phone": "+13155550101"})
	wantSuccess(t, r, http.StatusOK)
	updated := e.do(http.MethodGet, path, nil).data()
	got = rc.waitRequests(t, 2)
	checkEvent(t, got[1], "update", id)
	if !reflect.DeepEqual(got[1].body["data"], updated) {
		t.Errorf("update data\n got %v\nwant %v (GET client)", got[1].body["data"], updated)
	}

	wantStatus(t, e.do(http.MethodDelete, path, nil), http.StatusNoContent)
	got = rc.waitRequests(t, 3)
	checkEvent(t, got[2], "delete", id)
	if !reflect.DeepEqual(got[2].body["data"], updated) {
		t.Errorf("delete data\n got %v\nwant the card before deletion %v", got[2].body["data"], updated)
	}

	// Every client of a bulk add is an event of its own.
	r = e.do(http.MethodPost, "/clients/4242/bulk", []map[string]any{
		{"name": "Bo", "phone": "+13155550102"}, {"name": "", "phone": "+13155550103"}, {"name": "Cy", "phone": "+13155550104"},
	})
	wantSuccess(t, r, http.StatusOK)
	got = rc.waitRequests(t, 5)
	names := map[string]bool{}
	for _, g := range got[3:] {
		if g.body["status"] != "create" {
			t.Errorf("bulk event status = %v", g.body["status"])
		}
		d, _ := g.body["data"].(map[string]any)
		names[fmt.Sprint(d["name"])] = true
	}
	if !names["Bo"] || !names["Cy"] {
		t.Errorf("bulk events for %v, want Bo and Cy", names)
	}

	poll.Until(t, waitLong, func() error {
		if st := e.sb.Stats(); st.WebhookDeliveries != 5 || st.WebhookAttempts != 5 || st.WebhookFailures != 0 {
			return fmt.Errorf("stats: %d deliveries, %d attempts, %d failures, want 5, 5, 0",
				st.WebhookDeliveries, st.WebhookAttempts, st.WebhookFailures)
		}
		return nil
	})
	if n := len(rc.requests()); n != 5 {
		t.Errorf("receiver got %d requests, want 5", n)
	}
	for _, d := range e.sb.Webhooks() {
		if d.Status != WebhookDelivered || d.Attempts != 1 || d.HTTPStatus != http.StatusOK || d.URL != rc.URL+"/altegio" {
			t.Errorf("delivery %+v", d)
		}
	}
}

// checkEvent asserts the documented client event (ref §7).
func checkEvent(t *testing.T, got hookRequest, status string, clientID int64) {
	t.Helper()
	if got.method != http.MethodPost {
		t.Errorf("method = %s, want POST", got.method)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if a := got.header.Get("Authorization"); a != "Bearer "+hookBearer {
		t.Errorf("Authorization = %q, want the configured bearer", a)
	}
	b := got.body
	if b["company_id"] != float64(testLoc) || b["resource"] != "client" || b["resource_id"] != float64(clientID) || b["status"] != status {
		t.Errorf("event = %v, want company_id %d, resource client, resource_id %d, status %s", b, testLoc, clientID, status)
	}
	if d, _ := b["data"].(map[string]any); d["id"] != float64(clientID) {
		t.Errorf("data = %v, want the card of client %d", b["data"], clientID)
	}
}

func TestWebhookRetries(t *testing.T) {
	closedURL := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := "http://" + ln.Addr().String() + "/hook"
		_ = ln.Close()
		return u
	}
	tests := []struct {
		name         string
		answers      []int // nil: no receiver (connection refused)
		wantAttempts int
		wantStatus   string
		wantHTTP     int
	}{
		{"503 twice then 200", []int{503, 503, 200}, 3, WebhookDelivered, 200},
		{"429 then 204", []int{429, 204}, 2, WebhookDelivered, 204},
		{"400 is final", []int{400}, 1, WebhookFailed, 400},
		{"404 is final", []int{404, 200}, 1, WebhookFailed, 404},
		{"503 always", []int{503}, 3, WebhookFailed, 503},
		{"500 then 502 then 504", []int{500, 502, 504, 200}, 3, WebhookFailed, 504},
		{"connection refused", nil, 3, WebhookFailed, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newHookEnv(t, nil)
			var rc *receiver
			url := ""
			if tc.answers != nil {
				rc = newReceiver(t, tc.answers...)
				url = rc.URL
			} else {
				url = closedURL(t)
			}
			e.subscribe(testToken, 1, url)
			e.createClient(map[string]any{"name": "Ann", "phone": "+13155550101"})

			d := e.waitDelivery(1)
			if d.Attempts != tc.wantAttempts || d.Status != tc.wantStatus || d.HTTPStatus != tc.wantHTTP {
				t.Errorf("delivery: %d attempts, %s, HTTP %d; want %d, %s, %d (%+v)",
					d.Attempts, d.Status, d.HTTPStatus, tc.wantAttempts, tc.wantStatus, tc.wantHTTP, d)
			}
			if rc != nil {
				// The delivery has ended: no attempt can follow.
				if n := len(rc.requests()); n != tc.wantAttempts {
					t.Errorf("receiver got %d requests, want %d", n, tc.wantAttempts)
				}
			} else if d.Error == "" {
				t.Error("a refused connection left no error")
			}
			st := e.sb.Stats()
			wantFailures := 0
			if tc.wantStatus == WebhookFailed {
				wantFailures = 1
			}
			if st.WebhookAttempts != tc.wantAttempts || st.WebhookDeliveries != 1 || st.WebhookFailures != wantFailures {
				t.Errorf("stats: %d attempts, %d deliveries, %d failures; want %d, 1, %d",
					st.WebhookAttempts, st.WebhookDeliveries, st.WebhookFailures, tc.wantAttempts, wantFailures)
			}
		})
	}
}

// With self_sending 0, the changes of the user who wrote the settings are
// not sent; another user's are.
func TestWebhookSelfSending(t *testing.T) {
	e := newHookEnv(t, nil)
	rc := newReceiver(t)
	e.subscribe(testToken, 0, rc.URL)

	own := e.createClient(map[string]any{"name": "Own", "phone": "+13155550101"})
	// The decision is made with the change: nothing is queued for it.
	if got := e.sb.Webhooks(); len(got) != 0 {
		t.Fatalf("the writer's own change was queued: %+v", got)
	}
	if st := e.sb.Stats(); st.WebhooksSuppressed != 1 {
		t.Errorf("WebhooksSuppressed = %d, want 1", st.WebhooksSuppressed)
	}

	other := e.doWith(http.MethodPost, "/clients/4242", map[string]any{"name": "Other", "phone": "+13155550102"},
		map[string]string{"Authorization": userAuth(otherToken)})
	wantSuccess(t, other, http.StatusCreated)
	otherID := int64(other.data()["id"].(float64))
	got := rc.waitRequests(t, 1)
	checkEvent(t, got[0], "create", otherID)

	// self_sending 1: the writer's changes are sent too.
	e.subscribe(testToken, 1, rc.URL)
	wantSuccess(t, e.do(http.MethodPut, "/client/4242/"+itoa(own), map[string]any{"name": "Own", "phone": "+13155550101"}), http.StatusOK)
	got = rc.waitRequests(t, 2)
	checkEvent(t, got[1], "update", own)

	// The writer is whoever wrote last: settings written by the other user
	// with self_sending 0 let the first user's changes through.
	e.subscribe(otherToken, 0, rc.URL)
	wantStatus(t, e.do(http.MethodDelete, "/client/4242/"+itoa(own), nil), http.StatusNoContent)
	got = rc.waitRequests(t, 3)
	checkEvent(t, got[2], "delete", own)
	if n := len(e.sb.Webhooks()); n != 3 {
		t.Errorf("%d deliveries, want 3", n)
	}
}

// Settings that are inactive, or without client events, send nothing.
func TestWebhookNeedsActiveAndClient(t *testing.T) {
	for _, flags := range []map[string]int{
		{"client": 1, "self_sending": 1},              // active 0
		{"record": 1, "self_sending": 1, "active": 1}, // client 0
	} {
		e := newHookEnv(t, nil)
		rc := newReceiver(t)
		active := flags["active"]
		delete(flags, "active")
		wantSuccess(t, e.do(http.MethodPost, "/hooks_settings/4242", hookBody([]string{rc.URL}, active, flags)), http.StatusCreated)
		e.createClient(map[string]any{"name": "Ann", "phone": "+13155550101"})
		if got := e.sb.Webhooks(); len(got) != 0 {
			t.Errorf("settings %v (active %d) queued %+v", flags, active, got)
		}
	}
}

// Close cancels deliveries that wait or are in flight, waits for them and
// records them as failed; changes after Close send nothing.
func TestCloseStopsWebhooks(t *testing.T) {
	t.Run("waiting", func(t *testing.T) {
		e := newHookEnv(t, func(c *Config) { c.WebhookDelay = time.Hour })
		rc := newReceiver(t)
		e.subscribe(testToken, 1, rc.URL)
		e.createClient(map[string]any{"name": "Ann", "phone": "+13155550101"})
		if d := e.sb.Webhooks(); len(d) != 1 || d[0].Status != WebhookPending {
			t.Fatalf("deliveries = %+v, want one pending", d)
		}
		closeWithin(t, e.sb, 5*time.Second)
		d := e.sb.Webhooks()[0]
		if d.Status != WebhookFailed || d.Attempts != 0 || !strings.Contains(d.Error, "closed") {
			t.Errorf("after Close: %+v", d)
		}
		if n := len(rc.requests()); n != 0 {
			t.Errorf("receiver got %d requests", n)
		}
		e.createClient(map[string]any{"name": "Bo", "phone": "+13155550102"})
		if d := e.sb.Webhooks(); len(d) != 2 || d[1].Status != WebhookFailed {
			t.Errorf("a change after Close: %+v", d)
		}
		if st := e.sb.Stats(); st.WebhookFailures != 2 || st.WebhookDeliveries != 2 {
			t.Errorf("stats: %d failures of %d deliveries, want 2 of 2", st.WebhookFailures, st.WebhookDeliveries)
		}
		closeWithin(t, e.sb, time.Second) // idempotent
	})
	t.Run("in flight", func(t *testing.T) {
		e := newHookEnv(t, nil)
		arrived := make(chan struct{}, 1)
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Reading the body lets the server notice the sandbox hang up.
			_, _ = io.Copy(io.Discard, r.Body)
			arrived <- struct{}{}
			select { // answers only when the sandbox gives up
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(slow.Close)
		t.Cleanup(func() { close(release) })
		e.subscribe(testToken, 1, slow.URL)
		e.createClient(map[string]any{"name": "Ann", "phone": "+13155550101"})
		select {
		case <-arrived:
		case <-time.After(waitLong):
			t.Fatal("the delivery did not arrive")
		}
		closeWithin(t, e.sb, 5*time.Second)
		d := e.sb.Webhooks()[0]
		if d.Status != WebhookFailed || d.Attempts != 1 || d.Error == "" {
			t.Errorf("after Close: %+v", d)
		}
	})
}

// closeWithin fails the test when sb.Close does not return within d.
func closeWithin(t *testing.T, sb *Server, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- sb.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(d):
		t.Fatal(errors.New("Close did not return"))
	}
}
