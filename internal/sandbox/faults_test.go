package sandbox

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestRateLimitPerSecond(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RatePerSecond, c.RatePerMinute = 0, 0 }) // defaults 5/s, 200/min
	get := func() reply { return e.do(http.MethodGet, "/client/4242/1", nil) }

	for i := range 5 {
		if r := get(); r.status != http.StatusNotFound {
			t.Fatalf("request %d: status %d, want 404 (within the limit)", i, r.status)
		}
	}
	r := get()
	wantError(t, r, http.StatusTooManyRequests, msgTooMany)
	if r.header.Get("Retry-After") != "" {
		t.Errorf("Retry-After = %q, want none by default", r.header.Get("Retry-After"))
	}

	e.clock.Advance(999 * time.Millisecond)
	wantStatus(t, get(), http.StatusTooManyRequests)
	e.clock.Advance(time.Millisecond)
	wantStatus(t, get(), http.StatusNotFound)

	if got := e.sb.Stats().RateLimited; got != 2 {
		t.Errorf("Stats().RateLimited = %d, want 2", got)
	}
}

func TestRateLimitPerMinute(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RatePerSecond, c.RatePerMinute = -1, 3
		c.RetryAfter = true
	})
	for range 3 {
		wantStatus(t, e.do(http.MethodGet, "/client/4242/1", nil), http.StatusNotFound)
		e.clock.Advance(10 * time.Second)
	}
	r := e.do(http.MethodGet, "/client/4242/1", nil)
	wantStatus(t, r, http.StatusTooManyRequests)
	if got := r.header.Get("Retry-After"); got != "30" {
		t.Errorf("Retry-After = %q, want 30", got)
	}
	e.clock.Advance(30 * time.Second)
	wantStatus(t, e.do(http.MethodGet, "/client/4242/1", nil), http.StatusNotFound)
}

func TestRateLimitPerIP(t *testing.T) {
	l := newRateLimiter(1, -1)
	now := time.Now()
	if ok, _ := l.allow("10.0.0.1", now); !ok {
		t.Fatal("first request from 10.0.0.1 refused")
	}
	if ok, _ := l.allow("10.0.0.1", now); ok {
		t.Fatal("second request from 10.0.0.1 allowed")
	}
	if ok, _ := l.allow("10.0.0.2", now); !ok {
		t.Fatal("first request from 10.0.0.2 refused")
	}
}

func TestRateLimitStorm(t *testing.T) {
	e := newEnv(t, nil)
	e.sb.SetFaults(Faults{RateLimitStormUntil: e.clock.Now().Add(time.Minute)})
	wantError(t, e.do(http.MethodGet, "/client/4242/1", nil), http.StatusTooManyRequests, "")
	e.clock.Advance(time.Minute)
	wantStatus(t, e.do(http.MethodGet, "/client/4242/1", nil), http.StatusNotFound)
}

// rawPost sends a create on a fresh connection and returns the transport
// error, if any.
func (e *env) rawPost(path string, body any) (*http.Response, error) {
	req, err := e.newRequest(http.MethodPost, path, body, map[string]string{"Authorization": userAuth(testToken)})
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return resp, err
}

func TestRuleReset(t *testing.T) {
	e := newEnv(t, nil)
	remove := e.sb.Inject(Rule{Op: OpClientCreate, Reset: true})
	_, err := e.rawPost("/clients/4242", map[string]any{"name": "Ann", "phone": "79990001122"})
	if err == nil {
		t.Fatal("reset rule: no transport error")
	}
	if n := len(e.sb.Clients(testLoc)); n != 0 {
		t.Errorf("clients = %d, want 0: a reset before apply has no side effect", n)
	}
	remove()
	remove() // harmless
	e.createClient(map[string]any{"name": "Ann", "phone": "79990001122"})
	if got := e.sb.Stats().Resets; got != 1 {
		t.Errorf("Stats().Resets = %d, want 1", got)
	}
}

func TestRuleAfterApply(t *testing.T) {
	e := newEnv(t, nil)
	e.sb.Inject(Rule{Op: OpClientCreate, Status: http.StatusServiceUnavailable, AfterApply: true, Times: 1})

	// An invalid create does not consume the rule.
	wantStatus(t, e.do(http.MethodPost, "/clients/4242", map[string]any{"name": "Ann"}), http.StatusUnprocessableEntity)

	r := e.do(http.MethodPost, "/clients/4242", map[string]any{"name": "Ann", "phone": "79990001122"})
	wantStatus(t, r, http.StatusServiceUnavailable)
	if n := len(e.sb.Clients(testLoc)); n != 1 {
		t.Fatalf("clients = %d, want 1: the create must be applied before the failure", n)
	}
	// The retry meets the duplicate; reconciliation must search by phone.
	wantStatus(t, e.do(http.MethodPost, "/clients/4242", map[string]any{"name": "Ann", "phone": "79990001122"}), http.StatusUnprocessableEntity)
	st := e.sb.Stats()
	if st.CreatesByPhone["79990001122"] != 1 || st.CreateAttemptsByPhone["79990001122"] != 2 {
		t.Errorf("creates %v attempts %v", st.CreatesByPhone, st.CreateAttemptsByPhone)
	}

	// AfterApply with a reset: the comment is stored, the connection dropped.
	id := e.sb.Clients(testLoc)[0].ID
	e.sb.Inject(Rule{Op: OpCommentAdd, Reset: true, AfterApply: true, Times: 1})
	if _, err := e.rawPost("/company/4242/clients/"+itoa(id)+"/comments", map[string]any{"text": "hi"}); err == nil {
		t.Fatal("after-apply reset: no transport error")
	}
	if n := len(e.sb.Comments(testLoc, id)); n != 1 {
		t.Errorf("comments = %d, want 1", n)
	}
}

func TestRuleStatuses(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		status int
		json   bool
	}{
		{http.StatusBadRequest, true}, {http.StatusUnauthorized, true}, {http.StatusPaymentRequired, true},
		{http.StatusForbidden, true}, {http.StatusNotFound, true}, {http.StatusUnprocessableEntity, true},
		{http.StatusTooManyRequests, true}, {http.StatusInternalServerError, true}, {http.StatusBadGateway, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			e.sb.Inject(Rule{Op: "*", Status: tt.status, Times: 2})
			for range 2 {
				r := e.do(http.MethodGet, "/client/4242/1", nil)
				if tt.json {
					wantError(t, r, tt.status, "")
				} else {
					wantStatus(t, r, tt.status)
				}
			}
			// Times is spent: the real answer is back.
			wantStatus(t, e.do(http.MethodGet, "/client/4242/1", nil), http.StatusNotFound)
		})
	}

	t.Run("until cleared, per op", func(t *testing.T) {
		e.sb.Inject(Rule{Op: OpClientGet, Status: http.StatusInternalServerError})
		for range 3 {
			wantStatus(t, e.do(http.MethodGet, "/client/4242/1", nil), http.StatusInternalServerError)
		}
		wantStatus(t, e.do(http.MethodGet, "/company/4242/clients/files/1", nil), http.StatusNotFound)
		e.sb.ClearRules()
		wantStatus(t, e.do(http.MethodGet, "/client/4242/1", nil), http.StatusNotFound)
	})
}

func TestGlobalFaults(t *testing.T) {
	t.Run("error rate", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Faults = Faults{ErrorRate: 1, Seed: 7} })
		for range 5 {
			if r := e.do(http.MethodGet, "/client/4242/1", nil); r.status < 500 {
				t.Fatalf("status %d, want 5xx", r.status)
			}
		}
		e.sb.SetFaults(Faults{})
		wantStatus(t, e.do(http.MethodGet, "/client/4242/1", nil), http.StatusNotFound)
	})
	t.Run("reset rate", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Faults = Faults{ResetRate: 1} })
		if _, err := e.rawPost("/clients/4242", map[string]any{"name": "Ann", "phone": "79990001122"}); err == nil {
			t.Fatal("no transport error")
		}
	})
	t.Run("after-apply rate", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Faults = Faults{AfterApplyRate: 1} })
		// A write is made, and its answer lost.
		if _, err := e.rawPost("/clients/4242", map[string]any{"name": "Ann", "phone": "79990001122"}); err == nil {
			t.Fatal("no transport error")
		}
		if n := len(e.sb.Clients(testLoc)); n != 1 {
			t.Fatalf("%d clients after the lost answer, want the one the write made", n)
		}
		// A search is a POST, not a write: answered.
		wantSuccess(t, e.do(http.MethodPost, "/company/4242/clients/search", map[string]any{"fields": []string{"id"}}), http.StatusOK)
	})
	t.Run("seeded", func(t *testing.T) {
		sequence := func() []int {
			e := newEnv(t, func(c *Config) { c.Faults = Faults{ErrorRate: 0.5, Seed: 42} })
			var out []int
			for range 10 {
				out = append(out, e.do(http.MethodGet, "/client/4242/1", nil).status)
			}
			return out
		}
		a, b := sequence(), sequence()
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("same seed, different sequences: %v and %v", a, b)
		}
	})
	t.Run("slow body and latency", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Faults = Faults{SlowBody: 40 * time.Millisecond, Latency: 20 * time.Millisecond} })
		id := e.sb.SeedClient(testLoc, ClientRecord{Name: "Ann", Phone: "79990001122"})
		start := time.Now()
		r := e.do(http.MethodGet, "/client/4242/"+itoa(id), nil)
		wantSuccess(t, r, http.StatusOK)
		if r.data()["name"] != "Ann" {
			t.Errorf("body = %s", r.raw)
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Errorf("took %v, want at least 50ms", d)
		}
	})
	t.Run("invalid config", func(t *testing.T) {
		_, err := New(Config{PartnerToken: "p", Faults: Faults{ErrorRate: 2}})
		if err == nil {
			t.Error("New accepted an error rate of 2")
		}
	})
}

func TestStatsAndConcurrency(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults = Faults{Latency: 30 * time.Millisecond} })
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			req, err := e.newRequest(http.MethodPost, "/clients/4242",
				map[string]any{"name": "C", "phone": fmt.Sprintf("7999000%04d", i)},
				map[string]string{"Authorization": userAuth(testToken)})
			if err != nil {
				errs <- err
				return
			}
			resp, err := e.ts.Client().Do(req)
			if err != nil {
				errs <- err
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	e.sb.SetFaults(Faults{})
	wantStatus(t, e.doWith(http.MethodGet, "/client/4242/1", nil, map[string]string{"Authorization": "Bearer x"}), http.StatusUnauthorized)
	wantStatus(t, e.do(http.MethodGet, "/nowhere", nil), http.StatusNotFound)

	st := e.sb.Stats()
	if st.Requests != n+2 || st.ByOp[OpClientCreate] != n || st.ByOp[OpClientGet] != 1 || st.ByOp[opUnknown] != 1 {
		t.Errorf("requests %d by op %v", st.Requests, st.ByOp)
	}
	if st.ByStatus[http.StatusCreated] != n || st.Unauthorized != 1 {
		t.Errorf("by status %v, unauthorized %d", st.ByStatus, st.Unauthorized)
	}
	if st.MaxConcurrent < 2 {
		t.Errorf("MaxConcurrent = %d, want at least 2", st.MaxConcurrent)
	}
	if len(st.CreatesByPhone) != n {
		t.Errorf("CreatesByPhone = %v", st.CreatesByPhone)
	}
	ids := map[int64]bool{}
	for _, c := range e.sb.Clients(testLoc) {
		ids[c.ID] = true
	}
	if len(ids) != n {
		t.Errorf("distinct IDs = %d, want %d", len(ids), n)
	}
	e.sb.ResetStats()
	if st := e.sb.Stats(); st.Requests != 0 || len(st.ByOp) != 0 {
		t.Errorf("after ResetStats: %+v", st)
	}
}

func TestNewValidation(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{PartnerToken: "p", Users: []User{{Login: "a"}}},
		{PartnerToken: "p", Users: []User{{Login: "a", Password: "x"}, {Login: "a", Password: "y"}}},
		{PartnerToken: "p", Users: []User{{Login: "a", Password: "x", Token: "t"}, {Login: "b", Password: "y", Token: "t"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}
