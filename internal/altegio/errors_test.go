package altegio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		rep         reply
		create      bool // call CreateClient instead of SearchClients
		class       Class
		sentinel    error
		status      int
		message     string
		fields      []FieldError
		retryAfter  time.Duration
		penalized   []time.Duration
		unknownOutc bool
	}{
		{
			name:     "400 field map",
			rep:      reply{status: 400, body: `{"success":false,"data":null,"meta":{"message":"Invalid filter value","errors":{"filters":["Invalid filter state value"]}}}`},
			class:    ClassPermanent,
			status:   400,
			message:  "Invalid filter value",
			fields:   []FieldError{{Field: "filters", Message: "Invalid filter state value"}},
			sentinel: nil,
		},
		{
			name:     "402 licence",
			rep:      reply{status: 402, body: `{"success":false,"data":null,"meta":{"message":"It is necessary to renew the license in the branch with id: 42"}}`},
			class:    ClassPermanent,
			sentinel: ErrLicense,
			status:   402,
			message:  "It is necessary to renew the license in the branch with id: 42",
		},
		{
			name:     "403 forbidden",
			rep:      reply{status: 403, body: `{"success":false,"data":null,"meta":{"message":"Access denied."}}`},
			class:    ClassPermanent,
			sentinel: ErrForbidden,
			status:   403,
			message:  "Access denied.",
		},
		{
			name:     "404 meta object",
			rep:      reply{status: 404, body: `{"success":false,"data":null,"meta":{}}`},
			class:    ClassPermanent,
			sentinel: ErrNotFound,
			status:   404,
		},
		{
			name:     "404 meta array",
			rep:      reply{status: 404, body: `{"success":false,"data":null,"meta":[]}`},
			class:    ClassPermanent,
			sentinel: ErrNotFound,
			status:   404,
		},
		{
			name:     "404 top-level errors",
			rep:      reply{status: 404, body: `{"errors":{"code":404,"message":"Not found"}}`},
			class:    ClassPermanent,
			sentinel: ErrNotFound,
			status:   404,
			message:  "Not found",
		},
		{
			name:  "404 with meta.errors array",
			rep:   reply{status: 404, body: `{"success":false,"data":null,"meta":{"message":"Location not specified.","errors":["Not found"]}}`},
			class: ClassPermanent, sentinel: ErrNotFound, status: 404,
			message: "Location not specified.",
			fields:  []FieldError{{Message: "Not found"}},
		},
		{
			name:   "422 errors as objects",
			rep:    reply{status: 422, body: `{"success":false,"data":null,"meta":{"message":"An error has occurred.","errors":[{"field":"phone","message":"bad phone"},{"message":"name required"}]}}`},
			create: true, class: ClassPermanent, status: 422,
			message: "An error has occurred.",
			fields:  []FieldError{{Field: "phone", Message: "bad phone"}, {Message: "name required"}},
		},
		{
			name:   "422 nested field map",
			rep:    reply{status: 422, body: `{"success":false,"data":null,"meta":{"message":"x","errors":{"phone":{"0":"too short"},"name":"required"}}}`},
			create: true, class: ClassPermanent, status: 422, message: "x",
			fields: []FieldError{{Field: "name", Message: "required"}, {Field: "phone.0", Message: "too short"}},
		},
		{
			name:       "429 retry-after seconds",
			rep:        reply{status: 429, body: `{"success":false,"data":null,"meta":{"message":"Too many requests"}}`, header: map[string]string{"Retry-After": "7"}},
			class:      ClassRateLimited,
			sentinel:   ErrRateLimited,
			status:     429,
			message:    "Too many requests",
			retryAfter: 7 * time.Second,
			penalized:  []time.Duration{7 * time.Second},
		},
		{
			name:       "429 retry-after date",
			rep:        reply{status: 429, header: map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}},
			class:      ClassRateLimited,
			sentinel:   ErrRateLimited,
			status:     429,
			retryAfter: 90 * time.Second,
			penalized:  []time.Duration{90 * time.Second},
		},
		{
			name:      "429 without retry-after",
			rep:       reply{status: 429, body: `{"success":false,"data":null,"meta":[]}`},
			class:     ClassRateLimited,
			sentinel:  ErrRateLimited,
			status:    429,
			penalized: []time.Duration{0},
		},
		{
			name:  "500",
			rep:   reply{status: 500, body: `{"success":false,"data":null,"meta":{"message":"Server error"}}`},
			class: ClassTransient, status: 500, message: "Server error",
		},
		{
			name:  "502 html",
			rep:   reply{status: 502, body: `<html>bad gateway</html>`},
			class: ClassTransient, status: 502,
		},
		{
			name:  "503 empty",
			rep:   reply{status: 503},
			class: ClassTransient, status: 503,
		},
		{
			name:  "200 success false",
			rep:   reply{status: 200, body: `{"success":false,"data":null,"meta":{"message":"Something is wrong"}}`},
			class: ClassPermanent, status: 200, message: "Something is wrong",
		},
		{
			name:   "201 success false on create",
			rep:    reply{status: 201, body: `{"success":"0","data":null,"meta":{"message":"nope"}}`},
			create: true,
			class:  ClassPermanent, status: 201, message: "nope",
		},
		{
			name:        "201 garbage on create is an unknown outcome",
			rep:         reply{status: 201, body: `<html>`},
			create:      true,
			class:       ClassTransient,
			unknownOutc: true,
		},
		{
			name:        "201 without data on create is an unknown outcome",
			rep:         reply{status: 201, body: `{"success":true,"data":null,"meta":[]}`},
			create:      true,
			class:       ClassTransient,
			unknownOutc: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newAPIServer(t, tt.rep)
			lim := &fakeLimiter{}
			c := newTestClient(t, srv, nil, lim, func(cfg *Config) { cfg.Now = func() time.Time { return now } })
			var err error
			if tt.create {
				_, err = c.CreateClient(t.Context(), 42, ClientInput{Name: "A", Phone: "79000000000"})
			} else {
				_, err = c.SearchClients(t.Context(), 42, SearchClientsRequest{})
			}
			if err == nil {
				t.Fatal("err = nil")
			}
			if got := ClassOf(err); got != tt.class {
				t.Errorf("ClassOf = %v, want %v (err %v)", got, tt.class, err)
			}
			if got := OutcomeUnknown(err); got != tt.unknownOutc {
				t.Errorf("OutcomeUnknown = %v, want %v (err %v)", got, tt.unknownOutc, err)
			}
			if !reflect.DeepEqual(lim.penalties, tt.penalized) {
				t.Errorf("penalties = %v, want %v", lim.penalties, tt.penalized)
			}
			if tt.unknownOutc {
				return
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err %T %v is not an *APIError", err, err)
			}
			if ae.Status != tt.status || ae.Message != tt.message || ae.RetryAfter != tt.retryAfter {
				t.Errorf("APIError = %+v, want status %d message %q retry %v", ae, tt.status, tt.message, tt.retryAfter)
			}
			if !reflect.DeepEqual(ae.FieldErrors, tt.fields) {
				t.Errorf("FieldErrors = %#v, want %#v", ae.FieldErrors, tt.fields)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.sentinel)
			}
			if ae.Op == "" || ae.Path == "" || !strings.HasPrefix(err.Error(), "altegio "+ae.Op+": ") {
				t.Errorf("error text %q lacks op and path", err)
			}
		})
	}
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()
	block := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	tests := []struct {
		name    string
		rep     reply
		mutate  func(*Config)
		ctx     func(t *testing.T) context.Context
		closed  bool
		wantIs  error
		wantMsg string
	}{
		{
			name: "connection reset",
			rep: reply{handle: func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					_ = conn.Close()
				}
			}},
		},
		{
			name:   "default timeout when ctx has no deadline",
			rep:    reply{handle: block},
			mutate: func(c *Config) { c.Timeout = 50 * time.Millisecond },
			ctx:    func(*testing.T) context.Context { return context.Background() },
			wantIs: context.DeadlineExceeded,
		},
		{
			name:   "caller deadline wins over default timeout",
			rep:    reply{handle: block},
			mutate: func(c *Config) { c.Timeout = time.Hour },
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			wantIs: context.DeadlineExceeded,
		},
		{
			name: "caller cancels",
			rep:  reply{handle: block},
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(30*time.Millisecond, cancel)
				return ctx
			},
			wantIs: context.Canceled,
		},
		{
			name:    "body too large",
			rep:     reply{status: 200, body: `{"success":true,"data":[` + strings.Repeat(`{"id":1},`, 200) + `{"id":1}],"meta":{}}`},
			mutate:  func(c *Config) { c.MaxResponseBytes = 256 },
			wantMsg: "exceeds 256 bytes",
		},
		{
			name:   "connection refused",
			closed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newAPIServer(t, tt.rep)
			mutate := tt.mutate
			if mutate == nil {
				mutate = func(*Config) {}
			}
			c := newTestClient(t, srv, nil, nil, mutate)
			if tt.closed {
				srv.Close()
			}
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx(t)
			}
			_, err := c.CreateClient(ctx, 42, ClientInput{Name: "A", Phone: "79000000000"})
			var te *TransportError
			if !errors.As(err, &te) {
				t.Fatalf("err = %T %v, want *TransportError", err, err)
			}
			if ClassOf(err) != ClassTransient || !OutcomeUnknown(err) {
				t.Errorf("class %v, unknown %v", ClassOf(err), OutcomeUnknown(err))
			}
			if te.Op != OpCreateClient || te.Method != "POST" || te.Path != "/clients/42" {
				t.Errorf("TransportError = %+v", te)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q lacks %q", err, tt.wantMsg)
			}
		})
	}
}

func TestRefreshAfter401(t *testing.T) {
	t.Parallel()
	unauth := reply{status: 401, body: `{"success":false,"data":null,"meta":{"message":"Authentication needed."}}`}
	fresh := Credentials{PartnerToken: testPartner, UserToken: "user-tok-fresh", Version: 2}

	t.Run("refresh then success", func(t *testing.T) {
		t.Parallel()
		srv := newAPIServer(t, unauth, reply{status: 201, body: createdClientJSON})
		auth := &refreshingAuth{fresh: fresh}
		lim := &fakeLimiter{}
		c := newTestClient(t, srv, auth, lim)
		got, err := c.CreateClient(t.Context(), 42, ClientInput{Name: "James", Phone: "13155550179"})
		if err != nil {
			t.Fatalf("CreateClient: %v", err)
		}
		if got.ID != 1121412 {
			t.Errorf("ID = %d", got.ID)
		}
		reqs := srv.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want 2", len(reqs))
		}
		checkHeaders(t, reqs[0], wantAuth, true)
		checkHeaders(t, reqs[1], "Bearer "+testPartner+", User user-tok-fresh", true)
		if string(reqs[0].Body) != string(reqs[1].Body) {
			t.Errorf("retry body %s differs from %s", reqs[1].Body, reqs[0].Body)
		}
		if len(auth.refreshes) != 1 || auth.refreshes[0].Version != 1 || auth.refreshes[0].UserToken != testUser {
			t.Errorf("refreshes = %v", auth.refreshes)
		}
		if lim.waits != 2 {
			t.Errorf("limiter waits = %d, want 2", lim.waits)
		}
	})

	t.Run("401 twice is auth class", func(t *testing.T) {
		t.Parallel()
		srv := newAPIServer(t, unauth, unauth, reply{status: 200, body: clientCardJSON})
		auth := &refreshingAuth{fresh: fresh}
		c := newTestClient(t, srv, auth, nil)
		_, err := c.GetClient(t.Context(), 42, 16)
		if ClassOf(err) != ClassAuth || !errors.Is(err, ErrUnauthorized) || OutcomeUnknown(err) {
			t.Errorf("err = %v, class %v", err, ClassOf(err))
		}
		if n := len(srv.requests()); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
		if len(auth.refreshes) != 1 {
			t.Errorf("%d refreshes, want 1", len(auth.refreshes))
		}
	})

	t.Run("static authorizer cannot refresh", func(t *testing.T) {
		t.Parallel()
		srv := newAPIServer(t, unauth)
		c := newTestClient(t, srv, nil, nil)
		err := c.DeleteClient(t.Context(), 42, 16)
		if ClassOf(err) != ClassAuth || !errors.Is(err, ErrUnauthorized) {
			t.Errorf("err = %v, class %v", err, ClassOf(err))
		}
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 401 || ae.Message != "Authentication needed." {
			t.Errorf("APIError = %+v", ae)
		}
		if n := len(srv.requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})

	t.Run("transient refresh failure stays transient", func(t *testing.T) {
		t.Parallel()
		srv := newAPIServer(t, unauth)
		auth := &refreshingAuth{err: &TransportError{Op: OpLogin, Method: "POST", Path: "/auth", Err: errors.New("connection reset")}}
		c := newTestClient(t, srv, auth, nil)
		_, err := c.CreateClient(t.Context(), 42, ClientInput{Name: "A", Phone: "1"})
		if ClassOf(err) != ClassTransient || OutcomeUnknown(err) || !errors.Is(err, ErrUnauthorized) {
			t.Errorf("err = %v, class %v, unknown %v", err, ClassOf(err), OutcomeUnknown(err))
		}
	})

	t.Run("authorizer failure", func(t *testing.T) {
		t.Parallel()
		srv := newAPIServer(t)
		c := newTestClient(t, srv, failingAuth{err: fmt.Errorf("kv: %w", ErrInvalidCredentials)}, nil)
		_, err := c.GetClient(t.Context(), 42, 16)
		if ClassOf(err) != ClassAuth || !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("err = %v, class %v", err, ClassOf(err))
		}
		if n := len(srv.requests()); n != 0 {
			t.Errorf("%d requests, want 0", n)
		}
	})
}

type failingAuth struct{ err error }

func (a failingAuth) Credentials(context.Context, int64) (Credentials, error) {
	return Credentials{}, a.err
}
func (a failingAuth) Refresh(context.Context, int64, Credentials) (Credentials, error) {
	return Credentials{}, a.err
}

func TestLogin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		rep       reply
		wantToken string
		class     Class
		sentinel  error
		twoFactor bool
	}{
		{name: "201 envelope", rep: reply{status: 201, body: `{"success":true,"data":{"id":123456,"user_token":"wec23fh8cDfFV4432fc352456","name":"James Smith","phone":"+13155550175","login":"j.smith","email":"j.smith@example.com","is_approved":true,"is_email_confirmed":false},"meta":[]}`},
			wantToken: "wec23fh8cDfFV4432fc352456"},
		{name: "201 without envelope", rep: reply{status: 201, body: `{"id":123456,"user_token":"tok-top-level","name":"James Smith"}`},
			wantToken: "tok-top-level"},
		{name: "200 two-factor", rep: reply{status: 200, body: `{"success":true,"data":{"uuid":"5b1c","flow":"sms","transport":{"type":"sms","recipient":"+7***67"},"refresh_ttl_sec":60,"attempts_left":3},"meta":[]}`},
			class: ClassAuth, sentinel: ErrTwoFactorRequired, twoFactor: true},
		{name: "401", rep: reply{status: 401, body: `{"success":false,"data":null,"meta":{"message":"Authentication needed."}}`}, class: ClassAuth, sentinel: ErrInvalidCredentials},
		{name: "403", rep: reply{status: 403, body: `{"success":false,"data":null,"meta":{"message":"Access denied."}}`}, class: ClassAuth, sentinel: ErrInvalidCredentials},
		{name: "404", rep: reply{status: 404, body: `{"success":false,"data":null,"meta":{}}`}, class: ClassAuth, sentinel: ErrInvalidCredentials},
		{name: "422", rep: reply{status: 422, body: `{"success":false,"data":null,"meta":{"message":"Wrong login or password","errors":[]}}`}, class: ClassAuth, sentinel: ErrInvalidCredentials},
		{name: "429", rep: reply{status: 429}, class: ClassRateLimited, sentinel: ErrRateLimited},
		{name: "500", rep: reply{status: 500}, class: ClassTransient},
		{name: "201 without token", rep: reply{status: 201, body: `{"success":true,"data":{"id":1},"meta":[]}`}, class: ClassTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newAPIServer(t, tt.rep)
			lim := &fakeLimiter{}
			c := newTestClient(t, srv, failingAuth{err: errors.New("must not be used")}, lim)
			res, err := c.Login(t.Context(), testPartner, "j.smith@example.com", "pa55word-secret")
			reqs := srv.requests()
			if len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Path != "/api/v1/auth" {
				t.Fatalf("requests = %+v", reqs)
			}
			checkHeaders(t, reqs[0], "Bearer "+testPartner, true)
			jsonEqual(t, reqs[0].Body, `{"login":"j.smith@example.com","password":"pa55word-secret"}`)
			if lim.waits != 1 {
				t.Errorf("limiter waits = %d, want 1", lim.waits)
			}
			if got := ClassOf(err); got != tt.class {
				t.Errorf("ClassOf(%v) = %v, want %v", err, got, tt.class)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.sentinel)
			}
			if res.UserToken != tt.wantToken {
				t.Errorf("UserToken = %q, want %q", res.UserToken, tt.wantToken)
			}
			if tt.twoFactor && (res.TwoFactor == nil || res.TwoFactor.UUID != "5b1c" || res.TwoFactor.AttemptsLeft != 3 ||
				res.TwoFactor.RefreshTTL != time.Minute || res.TwoFactor.Recipient != "+7***67") {
				t.Errorf("TwoFactor = %+v", res.TwoFactor)
			}
			if tt.wantToken != "" && (res.UserID != 123456 || res.Name != "James Smith") {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

func TestClassOfForeignErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want Class
	}{
		{nil, ClassNone},
		{errors.New("kv unavailable"), ClassTransient},
		{context.Canceled, ClassTransient},
		{fmt.Errorf("x: %w", ErrNotFound), ClassPermanent},
		{fmt.Errorf("x: %w", ErrLicense), ClassPermanent},
		{fmt.Errorf("x: %w", ErrRateLimited), ClassRateLimited},
		{fmt.Errorf("x: %w", ErrUnauthorized), ClassAuth},
		{fmt.Errorf("x: %w", ErrTwoFactorRequired), ClassAuth},
		{&APIError{Status: 408}, ClassTransient},
		{&APIError{Status: 418}, ClassPermanent},
		{&APIError{Status: 401}, ClassAuth},
	}
	for _, tt := range tests {
		if got := ClassOf(tt.err); got != tt.want {
			t.Errorf("ClassOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if !errors.Is(&APIError{Status: 404}, ErrNotFound) {
		t.Error("a literal 404 APIError does not match ErrNotFound")
	}
	if ClassRateLimited.String() != "rate_limited" || !ClassTransient.Retryable() || ClassAuth.Retryable() {
		t.Error("Class String/Retryable")
	}
}

func TestLimiterErrorStopsCall(t *testing.T) {
	t.Parallel()
	srv := newAPIServer(t)
	lim := &fakeLimiter{err: context.DeadlineExceeded}
	c := newTestClient(t, srv, nil, lim)
	_, err := c.GetClient(t.Context(), 1, 2)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotSent) || ClassOf(err) != ClassTransient || OutcomeUnknown(err) {
		t.Errorf("err = %v, class %v", err, ClassOf(err))
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// TestLateSlotIsNotSent: a slot whose send check fails is not used; the
// client waits for another and sends once.
func TestLateSlotIsNotSent(t *testing.T) {
	t.Parallel()
	srv := newAPIServer(t, reply{status: 200, body: createdClientJSON})
	lim := &fakeLimiter{late: []bool{true, true}}
	c := newTestClient(t, srv, nil, lim)
	if _, err := c.GetClient(t.Context(), 1, 2); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d requests sent, want 1", n)
	}
	if lim.waits != 3 {
		t.Errorf("limiter waits = %d, want 3 (two late slots, then one in time)", lim.waits)
	}
}

// TestCredentialsReadAfterBudgetWait: a token rotated while the request
// waited for its slot is not sent; the request carries the new one.
func TestCredentialsReadAfterBudgetWait(t *testing.T) {
	t.Parallel()
	srv := newAPIServer(t, reply{status: 200, body: createdClientJSON})
	auth := &rotatingAuth{token: "old-token"}
	lim := &fakeLimiter{onWait: func() { auth.set("new-token") }}
	c := newTestClient(t, srv, auth, lim)
	if _, err := c.GetClient(t.Context(), 1, 2); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if got, want := reqs[0].Header.Get("Authorization"), "Bearer "+testPartner+", User new-token"; got != want {
		t.Errorf("Authorization = %q, want %q", got, want)
	}
}

// rotatingAuth hands out its current token; set rotates it.
type rotatingAuth struct {
	mu    sync.Mutex
	token string
}

func (a *rotatingAuth) set(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.token = tok
}

func (a *rotatingAuth) Credentials(context.Context, int64) (Credentials, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Credentials{PartnerToken: testPartner, UserToken: a.token, Version: 1}, nil
}

func (a *rotatingAuth) Refresh(ctx context.Context, loc int64, _ Credentials) (Credentials, error) {
	return a.Credentials(ctx, loc)
}

// TestWithSlotUsesHeldSlot: the first request of a call made with
// WithSlot uses the slot taken in advance; the next waits as usual.
func TestWithSlotUsesHeldSlot(t *testing.T) {
	t.Parallel()
	srv := newAPIServer(t, reply{status: 200, body: createdClientJSON})
	lim := &fakeLimiter{}
	c := newTestClient(t, srv, nil, lim)
	used := 0
	ctx := WithSlot(t.Context(), func() bool { used++; return true })
	for range 2 {
		if _, err := c.GetClient(ctx, 1, 2); err != nil {
			t.Fatal(err)
		}
	}
	if used != 1 || lim.waits != 1 {
		t.Errorf("held slot used %d times, limiter waits %d; want 1 and 1", used, lim.waits)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"ftp://x/api/v1", "http:///api/v1", "http://x/api/v1?a=1", "://"} {
		if _, err := New(Config{BaseURL: base}, nil, nil); err == nil {
			t.Errorf("New(%q) succeeded", base)
		}
	}
	c, err := New(Config{}, nil, nil)
	if err != nil || c.base != DefaultBaseURL || c.timeout != DefaultTimeout || c.ua != DefaultUserAgent {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	// A client without an Authorizer can log in but not make user calls.
	if _, err := c.GetClient(t.Context(), 1, 2); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("GetClient without authorizer: %v", err)
	}
}

// TestFlowNamesTheBudgetQueue: requests wait in the flow Config.Flow names
// for their location.
func TestFlowNamesTheBudgetQueue(t *testing.T) {
	t.Parallel()
	srv := newAPIServer(t, reply{status: 200, body: createdClientJSON})
	lim := &fakeLimiter{}
	c := newTestClient(t, srv, nil, lim, func(cfg *Config) {
		cfg.Flow = func(loc int64) string { return AccountFlow("main", loc) }
	})
	if _, err := c.GetClient(t.Context(), 7, 2); err != nil {
		t.Fatal(err)
	}
	if len(lim.flows) != 1 || lim.flows[0] != "main/7" {
		t.Errorf("flows = %v, want [main/7]", lim.flows)
	}
}
