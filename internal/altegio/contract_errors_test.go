package altegio_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/sandbox"
)

// fixedClock freezes the sandbox clock, so the rate limit and the 429
// storm are deterministic without sleeping.
func fixedClock(c *sandbox.Config) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c.Now = func() time.Time { return now }
}

func rateLimited(perSecond int, retryAfter bool) func(*sandbox.Config) {
	return func(c *sandbox.Config) {
		fixedClock(c)
		c.RatePerSecond, c.RatePerMinute, c.RetryAfter = perSecond, -1, retryAfter
	}
}

// TestContractErrorClasses drives every error class of ref §3 through the
// client and checks what ClassOf, errors.Is, *APIError and OutcomeUnknown
// make of it.
func TestContractErrorClasses(t *testing.T) {
	const phone = "13155550178"
	tests := []struct {
		name   string
		mutate []func(*sandbox.Config)
		// setup prepares the sandbox; it returns the ID of a seeded client.
		setup func(t *testing.T, e *contractEnv) int64
		call  func(t *testing.T, e *contractEnv, id int64) error

		wantClass   altegio.Class
		wantIs      error // nil: no sentinel to check
		wantStatus  int   // 0: no *APIError expected
		wantUnknown bool  // altegio.OutcomeUnknown
		check       func(t *testing.T, e *contractEnv, err error)
	}{
		{
			name: "400 bad search filter",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.SearchClients(t.Context(), ctLoc, altegio.SearchClientsRequest{
					Filters: []altegio.SearchFilter{altegio.IDFilter()}, // {"value": null}
				})
				return err
			},
			wantClass: altegio.ClassPermanent, wantStatus: http.StatusBadRequest,
			check: func(t *testing.T, _ *contractEnv, err error) {
				wantFieldError(t, err, "filters")
			},
		},
		{
			name: "400 unknown filter type",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.SearchClients(t.Context(), ctLoc, altegio.SearchClientsRequest{
					Filters: []altegio.SearchFilter{{Type: "no_such_filter", State: map[string]any{"value": 1}}},
				})
				return err
			},
			wantClass: altegio.ClassPermanent, wantStatus: http.StatusBadRequest,
		},
		{
			name: "401 rotated token with a static authorizer",
			setup: func(t *testing.T, e *contractEnv) int64 {
				id := e.seedClient(t, ctLoc, fullClient(phone))
				if _, err := e.sb.RotateUserToken(ctLogin); err != nil {
					t.Fatal(err)
				}
				return id
			},
			call: func(t *testing.T, e *contractEnv, id int64) error {
				_, err := e.client.GetClient(t.Context(), ctLoc, id)
				return err
			},
			wantClass: altegio.ClassAuth, wantIs: altegio.ErrUnauthorized, wantStatus: http.StatusUnauthorized,
			check: func(t *testing.T, e *contractEnv, _ error) {
				st := e.sb.Stats()
				if st.Unauthorized != 1 || st.ByOp[sandbox.OpClientGet] != 1 || st.Logins != 0 {
					t.Errorf("stats = %+v, want one rejected GET and no login", st)
				}
			},
		},
		{
			name:  "402 unlicensed location",
			setup: func(t *testing.T, e *contractEnv) int64 { e.sb.SetUnlicensed(ctLoc); return 0 },
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.SearchClients(t.Context(), ctLoc, altegio.SearchClientsRequest{})
				return err
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrLicense, wantStatus: http.StatusPaymentRequired,
			check: func(t *testing.T, _ *contractEnv, err error) {
				if ae := asAPIError(t, err); !strings.Contains(ae.Message, "101") {
					t.Errorf("402 message = %q, want the location id", ae.Message)
				}
			},
		},
		{
			name: "403 user not allowed on the location",
			setup: func(t *testing.T, e *contractEnv) int64 {
				return e.seedClient(t, ctOtherLoc, fullClient(phone))
			},
			call: func(t *testing.T, e *contractEnv, id int64) error {
				c := e.newClient(t, altegio.StaticAuthorizer{PartnerToken: ctPartner, UserToken: ctLimitedToken})
				if _, err := c.GetClient(t.Context(), ctOtherLoc, id+1); !errors.Is(err, altegio.ErrForbidden) {
					t.Errorf("unknown client on a forbidden location: %v, want 403 before 404", err)
				}
				_, err := c.GetClient(t.Context(), ctOtherLoc, id)
				return err
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrForbidden, wantStatus: http.StatusForbidden,
		},
		{
			name: "404 unknown client",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.GetClient(t.Context(), ctLoc, 424242)
				return err
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrNotFound, wantStatus: http.StatusNotFound,
		},
		{
			name:  "404 unknown file",
			setup: func(t *testing.T, e *contractEnv) int64 { return e.seedClient(t, ctLoc, fullClient(phone)) },
			call: func(t *testing.T, e *contractEnv, id int64) error {
				return e.client.DeleteFile(t.Context(), ctLoc, id, 77)
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrNotFound, wantStatus: http.StatusNotFound,
		},
		{
			name:  "422 duplicate phone on create",
			setup: func(t *testing.T, e *contractEnv) int64 { return e.seedClient(t, ctLoc, fullClient(phone)) },
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.CreateClient(t.Context(), ctLoc, altegio.ClientInput{Name: "Again", Phone: "+1 315 555 0178"})
				return err
			},
			wantClass: altegio.ClassPermanent, wantStatus: http.StatusUnprocessableEntity,
			check: func(t *testing.T, e *contractEnv, err error) {
				if ae := asAPIError(t, err); len(ae.FieldErrors) == 0 {
					t.Errorf("422 without meta.errors: %v", err)
				}
				if got := len(e.sb.Clients(ctLoc)); got != 1 {
					t.Errorf("sandbox holds %d clients, want 1", got)
				}
			},
		},
		{
			name:  "422 comment text too long",
			setup: func(t *testing.T, e *contractEnv) int64 { return e.seedClient(t, ctLoc, fullClient(phone)) },
			call: func(t *testing.T, e *contractEnv, id int64) error {
				_, err := e.client.AddComment(t.Context(), ctLoc, id, strings.Repeat("é", 256))
				return err
			},
			wantClass: altegio.ClassPermanent, wantStatus: http.StatusUnprocessableEntity,
			check: func(t *testing.T, e *contractEnv, err error) {
				wantFieldError(t, err, "text")
			},
		},
		{
			name:  "422 visits window upside down",
			setup: func(t *testing.T, e *contractEnv) int64 { return e.seedClient(t, ctLoc, fullClient(phone)) },
			call: func(t *testing.T, e *contractEnv, id int64) error {
				_, err := e.client.SearchVisits(t.Context(), ctLoc, altegio.VisitSearchRequest{ClientID: id, From: "2026-02-01", To: "2026-01-01"})
				return err
			},
			wantClass: altegio.ClassPermanent, wantStatus: http.StatusUnprocessableEntity,
			check: func(t *testing.T, _ *contractEnv, err error) {
				if ae := asAPIError(t, err); len(ae.FieldErrors) == 0 {
					t.Errorf("422 without meta.errors: %v", err)
				}
			},
		},
		{
			name:  "blank comment is refused before sending",
			setup: func(t *testing.T, e *contractEnv) int64 { return e.seedClient(t, ctLoc, fullClient(phone)) },
			call: func(t *testing.T, e *contractEnv, id int64) error {
				_, err := e.client.AddComment(t.Context(), ctLoc, id, " \t ")
				return err
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrInvalidRequest,
			check: wantNothingSent,
		},
		{
			name: "search page_size above 200 is refused before sending",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.SearchClients(t.Context(), ctLoc, altegio.SearchClientsRequest{PageSize: 201})
				return err
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrInvalidRequest,
			check: wantNothingSent,
		},
		{
			name: "deprecated list count above 300 is refused before sending",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.ListClientsDeprecated(t.Context(), ctLoc, altegio.ListClientsParams{Count: 301})
				return err
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrInvalidRequest,
			check: wantNothingSent,
		},
		{
			name: "visits search without a client is refused before sending",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.SearchVisits(t.Context(), ctLoc, altegio.VisitSearchRequest{From: "2026-01-01"})
				return err
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrInvalidRequest,
			check: wantNothingSent,
		},
		{
			name: "create without a name is refused before sending",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.CreateClient(t.Context(), ctLoc, altegio.ClientInput{Phone: phone})
				return err
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrInvalidRequest,
			check: wantNothingSent,
		},
		{
			name:      "429 rate limit without Retry-After",
			mutate:    []func(*sandbox.Config){rateLimited(1, false)},
			setup:     secondCallSetup,
			call:      getSeeded,
			wantClass: altegio.ClassRateLimited, wantIs: altegio.ErrRateLimited, wantStatus: http.StatusTooManyRequests,
			check: func(t *testing.T, e *contractEnv, err error) {
				if ae := asAPIError(t, err); ae.RetryAfter != 0 {
					t.Errorf("RetryAfter = %v, want 0 (no header, ref §4)", ae.RetryAfter)
				}
				if got := e.sb.Stats().RateLimited; got != 1 {
					t.Errorf("RateLimited = %d, want 1", got)
				}
			},
		},
		{
			name:   "429 rate limit with Retry-After",
			mutate: []func(*sandbox.Config){rateLimited(1, true)},
			setup:  secondCallSetup,
			call: func(t *testing.T, e *contractEnv, id int64) error {
				// The client hands the parsed Retry-After to its Limiter.
				lim := &penaltyLimiter{}
				c, err := altegio.New(altegio.Config{BaseURL: e.url}, altegio.StaticAuthorizer{PartnerToken: ctPartner, UserToken: ctToken}, lim)
				mustNoErr(t, "altegio.New", err)
				_, err = c.GetClient(t.Context(), ctLoc, id)
				if got := lim.got(); !slices.Equal(got, []time.Duration{time.Second}) {
					t.Errorf("Limiter.Penalize calls = %v, want [1s]", got)
				}
				return err
			},
			wantClass: altegio.ClassRateLimited, wantIs: altegio.ErrRateLimited, wantStatus: http.StatusTooManyRequests,
			check: func(t *testing.T, _ *contractEnv, err error) {
				if ae := asAPIError(t, err); ae.RetryAfter != time.Second {
					t.Errorf("RetryAfter = %v, want 1s", ae.RetryAfter)
				}
			},
		},
		{
			name: "429 storm with Retry-After",
			mutate: []func(*sandbox.Config){fixedClock, func(c *sandbox.Config) {
				c.RetryAfter = true
				c.Faults.RateLimitStormUntil = c.Now().Add(5 * time.Second)
			}},
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.Login(t.Context(), ctPartner, ctLogin, ctPassword)
				return err
			},
			wantClass: altegio.ClassRateLimited, wantIs: altegio.ErrRateLimited, wantStatus: http.StatusTooManyRequests,
			check: func(t *testing.T, _ *contractEnv, err error) {
				if ae := asAPIError(t, err); ae.RetryAfter != 5*time.Second {
					t.Errorf("RetryAfter = %v, want 5s", ae.RetryAfter)
				}
			},
		},
		{
			name: "500 injected",
			setup: func(t *testing.T, e *contractEnv) int64 {
				e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientGet, Status: http.StatusInternalServerError, Times: 1})
				return e.seedClient(t, ctLoc, fullClient(phone))
			},
			call:      getSeeded,
			wantClass: altegio.ClassTransient, wantStatus: http.StatusInternalServerError,
			check: func(t *testing.T, e *contractEnv, _ error) {
				_, err := getSeededID(t, e)
				mustNoErr(t, "GetClient after the one-shot rule", err)
			},
		},
		{
			name: "503 injected as an HTML page",
			setup: func(t *testing.T, e *contractEnv) int64 {
				e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientSearch, Status: http.StatusServiceUnavailable, Times: 1})
				return 0
			},
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.SearchClients(t.Context(), ctLoc, altegio.SearchClientsRequest{})
				return err
			},
			wantClass: altegio.ClassTransient, wantStatus: http.StatusServiceUnavailable,
		},
		{
			name: "502 injected on login",
			setup: func(t *testing.T, e *contractEnv) int64 {
				e.sb.Inject(sandbox.Rule{Op: sandbox.OpAuth, Status: http.StatusBadGateway, Times: 1})
				return 0
			},
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.Login(t.Context(), ctPartner, ctLogin, ctPassword)
				return err
			},
			wantClass: altegio.ClassTransient, wantStatus: http.StatusBadGateway,
		},
		{
			name: "connection reset before create",
			setup: func(t *testing.T, e *contractEnv) int64 {
				e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientCreate, Reset: true, Times: 1})
				return 0
			},
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.CreateClient(t.Context(), ctLoc, altegio.ClientInput{Name: "Reset", Phone: phone})
				return err
			},
			wantClass: altegio.ClassTransient, wantUnknown: true,
			check: func(t *testing.T, e *contractEnv, _ error) {
				st := e.sb.Stats()
				if st.Resets != 1 || len(e.sb.Clients(ctLoc)) != 0 || st.CreateAttemptsByPhone[phone] != 0 {
					t.Errorf("resets %d, clients %v, attempts %v; want 1 reset and nothing applied",
						st.Resets, e.sb.Clients(ctLoc), st.CreateAttemptsByPhone)
				}
			},
		},
		{
			name: "connection reset on get",
			setup: func(t *testing.T, e *contractEnv) int64 {
				// Until removed: net/http retries an idempotent request once
				// on a reused connection, and that retry must fail too.
				e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientGet, Reset: true})
				return e.seedClient(t, ctLoc, fullClient(phone))
			},
			call:      getSeeded,
			wantClass: altegio.ClassTransient, wantUnknown: true,
		},
		{
			name: "503 after create was applied",
			setup: func(t *testing.T, e *contractEnv) int64 {
				e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientCreate, Status: http.StatusServiceUnavailable, AfterApply: true, Times: 1})
				return 0
			},
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.CreateClient(t.Context(), ctLoc, altegio.ClientInput{Name: "Lost", Phone: phone})
				return err
			},
			// A status arrived, so the client reports no transport-level
			// unknown outcome; callers treat 5xx on a create as ambiguous
			// (internal/worker does) and reconcile by phone.
			wantClass: altegio.ClassTransient, wantStatus: http.StatusServiceUnavailable,
			check: func(t *testing.T, e *contractEnv, _ error) {
				wantReconciled(t, e, phone)
			},
		},
		{
			name: "connection reset after create was applied",
			setup: func(t *testing.T, e *contractEnv) int64 {
				e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientCreate, Reset: true, AfterApply: true, Times: 1})
				return 0
			},
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.CreateClient(t.Context(), ctLoc, altegio.ClientInput{Name: "Lost", Phone: phone})
				return err
			},
			wantClass: altegio.ClassTransient, wantUnknown: true,
			check: func(t *testing.T, e *contractEnv, _ error) {
				wantReconciled(t, e, phone)
			},
		},
		{
			name: "two-factor user",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				res, err := e.client.Login(t.Context(), ctPartner, ct2FALogin, ctPassword)
				if res.TwoFactor == nil || res.TwoFactor.UUID == "" || res.TwoFactor.TransportType != "sms" || res.UserToken != "" {
					t.Errorf("LoginResult = %+v, challenge %+v; want a challenge and no token", res, res.TwoFactor)
				}
				return err
			},
			wantClass: altegio.ClassAuth, wantIs: altegio.ErrTwoFactorRequired,
			check: func(t *testing.T, e *contractEnv, _ error) {
				if got := e.sb.Stats().ByStatus[http.StatusOK]; got != 1 {
					t.Errorf("200 answers = %d, want 1 (the challenge)", got)
				}
			},
		},
		{
			name: "wrong password",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.Login(t.Context(), ctPartner, ctLogin, "wrong")
				return err
			},
			wantClass: altegio.ClassAuth, wantIs: altegio.ErrInvalidCredentials, wantStatus: http.StatusUnauthorized,
			check: func(t *testing.T, _ *contractEnv, err error) {
				if strings.Contains(err.Error(), "wrong") {
					t.Errorf("error shows the password: %v", err)
				}
			},
		},
		{
			name: "wrong partner token on login",
			call: func(t *testing.T, e *contractEnv, _ int64) error {
				_, err := e.client.Login(t.Context(), "not-the-partner", ctLogin, ctPassword)
				return err
			},
			wantClass: altegio.ClassAuth, wantIs: altegio.ErrInvalidCredentials, wantStatus: http.StatusUnauthorized,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.mutate...)
			var id int64
			if tt.setup != nil {
				id = tt.setup(t, e)
			}
			err := tt.call(t, e, id)
			if err == nil {
				t.Fatal("got no error")
			}
			if got := altegio.ClassOf(err); got != tt.wantClass {
				t.Errorf("ClassOf = %v, want %v (err: %v)", got, tt.wantClass, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			var ae *altegio.APIError
			switch isAPI := errors.As(err, &ae); {
			case tt.wantStatus != 0 && !isAPI:
				t.Errorf("got %T %v, want an *APIError with status %d", err, err, tt.wantStatus)
			case tt.wantStatus != 0 && ae.Status != tt.wantStatus:
				t.Errorf("APIError.Status = %d, want %d", ae.Status, tt.wantStatus)
			case tt.wantStatus == 0 && isAPI:
				t.Errorf("got *APIError %v, want none", err)
			}
			if got := altegio.OutcomeUnknown(err); got != tt.wantUnknown {
				t.Errorf("OutcomeUnknown = %v, want %v (err: %v)", got, tt.wantUnknown, err)
			}
			if strings.Contains(err.Error(), ctToken) || strings.Contains(err.Error(), ctPartner) {
				t.Errorf("error shows a token: %v", err)
			}
			if tt.check != nil {
				tt.check(t, e, err)
			}
		})
	}
}

// penaltyLimiter never waits and records every Penalize call.
type penaltyLimiter struct {
	mu        sync.Mutex
	penalties []time.Duration
}

func (l *penaltyLimiter) Wait(ctx context.Context, _ string, _ bool) (func() bool, error) {
	return func() bool { return true }, ctx.Err()
}

func (l *penaltyLimiter) Penalize(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.penalties = append(l.penalties, d)
}

func (l *penaltyLimiter) got() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.penalties)
}

// wantNothingSent checks that the sandbox received no request.
func wantNothingSent(t *testing.T, e *contractEnv, _ error) {
	t.Helper()
	if got := e.sb.Stats().Requests; got != 0 {
		t.Errorf("requests sent = %d, want 0", got)
	}
}

// secondCallSetup seeds a client and spends the one request the rate limit
// allows in the frozen second.
func secondCallSetup(t *testing.T, e *contractEnv) int64 {
	t.Helper()
	id := e.seedClient(t, ctLoc, fullClient("13155550178"))
	_, err := e.client.GetClient(t.Context(), ctLoc, id)
	mustNoErr(t, "first GetClient", err)
	return id
}

func getSeeded(t *testing.T, e *contractEnv, id int64) error {
	t.Helper()
	_, err := e.client.GetClient(t.Context(), ctLoc, id)
	return err
}

// getSeededID reads the single client of ctLoc.
func getSeededID(t *testing.T, e *contractEnv) (altegio.ClientRecord, error) {
	t.Helper()
	clients := e.sb.Clients(ctLoc)
	if len(clients) != 1 {
		t.Fatalf("sandbox holds %d clients, want 1", len(clients))
	}
	return e.client.GetClient(t.Context(), ctLoc, clients[0].ID)
}

// wantReconciled checks that a create whose answer was lost did happen, and
// that a caller reconciling by phone (ref §6.4) finds exactly that client.
func wantReconciled(t *testing.T, e *contractEnv, phone string) {
	t.Helper()
	if got := e.sb.Stats().CreatesByPhone[phone]; got != 1 {
		t.Errorf("CreatesByPhone[%s] = %d, want 1", phone, got)
	}
	res, err := e.client.SearchClients(t.Context(), ctLoc, altegio.SearchClientsRequest{
		Filters: []altegio.SearchFilter{altegio.QuickSearchFilter(phone)},
	})
	mustNoErr(t, "SearchClients by phone", err)
	if len(res.Clients) != 1 || res.TotalCount != 1 || res.Clients[0].Phone != phone {
		t.Errorf("reconcile by phone found %+v (total %d), want the one lost client", res.Clients, res.TotalCount)
	}
}

func asAPIError(t *testing.T, err error) *altegio.APIError {
	t.Helper()
	var ae *altegio.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got %T %v, want *altegio.APIError", err, err)
	}
	return ae
}

// wantFieldError checks that the API error names field in meta.errors.
func wantFieldError(t *testing.T, err error, field string) {
	t.Helper()
	ae := asAPIError(t, err)
	for _, fe := range ae.FieldErrors {
		if fe.Field == field && fe.Message != "" {
			return
		}
	}
	t.Errorf("FieldErrors = %+v, want one for %q", ae.FieldErrors, field)
}

// contractOp is one user operation of the client with the sandbox operation
// its request must be routed to.
type contractOp struct {
	name string
	sbOp string
	call func(t *testing.T, c *altegio.Client, loc int64) error
}

// userOps lists every user endpoint (ref §6). The IDs need not exist: the
// checks exercised with them (auth, location access, licence, faults) come
// before the operation.
func userOps() []contractOp {
	in := altegio.ClientInput{Name: "Matrix", Phone: "13155550177"}
	return []contractOp{
		{"get client", sandbox.OpClientGet, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.GetClient(t.Context(), loc, 1)
			return err
		}},
		{"update client", sandbox.OpClientUpdate, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.UpdateClient(t.Context(), loc, 1, in)
			return err
		}},
		{"delete client", sandbox.OpClientDelete, func(t *testing.T, c *altegio.Client, loc int64) error {
			return c.DeleteClient(t.Context(), loc, 1)
		}},
		{"create client", sandbox.OpClientCreate, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.CreateClient(t.Context(), loc, in)
			return err
		}},
		{"bulk create", sandbox.OpClientBulk, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.BulkCreateClients(t.Context(), loc, []altegio.ClientInput{in})
			return err
		}},
		{"search clients", sandbox.OpClientSearch, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.SearchClients(t.Context(), loc, altegio.SearchClientsRequest{})
			return err
		}},
		{"deprecated list", sandbox.OpClientList, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.ListClientsDeprecated(t.Context(), loc, altegio.ListClientsParams{})
			return err
		}},
		{"list comments", sandbox.OpCommentList, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.ListComments(t.Context(), loc, 1)
			return err
		}},
		{"add comment", sandbox.OpCommentAdd, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.AddComment(t.Context(), loc, 1, "note")
			return err
		}},
		{"delete comment", sandbox.OpCommentDelete, func(t *testing.T, c *altegio.Client, loc int64) error {
			return c.DeleteComment(t.Context(), loc, 1, 2)
		}},
		{"list files", sandbox.OpFileList, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.ListFiles(t.Context(), loc, 1)
			return err
		}},
		{"delete file", sandbox.OpFileDelete, func(t *testing.T, c *altegio.Client, loc int64) error {
			return c.DeleteFile(t.Context(), loc, 1, 2)
		}},
		{"search visits", sandbox.OpVisitSearch, func(t *testing.T, c *altegio.Client, loc int64) error {
			_, err := c.SearchVisits(t.Context(), loc, altegio.VisitSearchRequest{ClientID: 1})
			return err
		}},
	}
}

// TestContractErrorMatrix runs every user endpoint into every error class
// the sandbox can produce for it, and checks that each request reached the
// sandbox route of its operation.
func TestContractErrorMatrix(t *testing.T) {
	classes := []struct {
		name   string
		mutate []func(*sandbox.Config)
		// prepare sets the error up and returns the client and location to use.
		prepare     func(t *testing.T, e *contractEnv) (*altegio.Client, int64)
		wantClass   altegio.Class
		wantIs      error
		wantStatus  int
		wantUnknown bool
	}{
		{
			name: "401 rotated token",
			prepare: func(t *testing.T, e *contractEnv) (*altegio.Client, int64) {
				if _, err := e.sb.RotateUserToken(ctLogin); err != nil {
					t.Fatal(err)
				}
				return e.client, ctLoc
			},
			wantClass: altegio.ClassAuth, wantIs: altegio.ErrUnauthorized, wantStatus: http.StatusUnauthorized,
		},
		{
			name: "402 unlicensed",
			prepare: func(t *testing.T, e *contractEnv) (*altegio.Client, int64) {
				e.sb.SetUnlicensed(ctLoc)
				return e.client, ctLoc
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrLicense, wantStatus: http.StatusPaymentRequired,
		},
		{
			name: "403 location not allowed",
			prepare: func(t *testing.T, e *contractEnv) (*altegio.Client, int64) {
				return e.newClient(t, altegio.StaticAuthorizer{PartnerToken: ctPartner, UserToken: ctLimitedToken}), ctOtherLoc
			},
			wantClass: altegio.ClassPermanent, wantIs: altegio.ErrForbidden, wantStatus: http.StatusForbidden,
		},
		{
			name: "429 storm",
			mutate: []func(*sandbox.Config){fixedClock, func(c *sandbox.Config) {
				c.Faults.RateLimitStormUntil = c.Now().Add(time.Minute)
			}},
			prepare:   func(t *testing.T, e *contractEnv) (*altegio.Client, int64) { return e.client, ctLoc },
			wantClass: altegio.ClassRateLimited, wantIs: altegio.ErrRateLimited, wantStatus: http.StatusTooManyRequests,
		},
		{
			name: "500 rule",
			prepare: func(t *testing.T, e *contractEnv) (*altegio.Client, int64) {
				e.sb.Inject(sandbox.Rule{Op: "*", Status: http.StatusInternalServerError})
				return e.client, ctLoc
			},
			wantClass: altegio.ClassTransient, wantStatus: http.StatusInternalServerError,
		},
		{
			name: "504 rule",
			prepare: func(t *testing.T, e *contractEnv) (*altegio.Client, int64) {
				e.sb.Inject(sandbox.Rule{Op: "*", Status: http.StatusGatewayTimeout})
				return e.client, ctLoc
			},
			wantClass: altegio.ClassTransient, wantStatus: http.StatusGatewayTimeout,
		},
		{
			name: "connection reset",
			prepare: func(t *testing.T, e *contractEnv) (*altegio.Client, int64) {
				e.sb.Inject(sandbox.Rule{Op: "*", Reset: true})
				return e.client, ctLoc
			},
			wantClass: altegio.ClassTransient, wantUnknown: true,
		},
	}
	for _, cl := range classes {
		t.Run(cl.name, func(t *testing.T) {
			e := newEnv(t, cl.mutate...)
			c, loc := cl.prepare(t, e)
			for _, op := range userOps() {
				t.Run(op.name, func(t *testing.T) {
					before := e.sb.Stats().ByOp[op.sbOp]
					err := op.call(t, c, loc)
					if got := altegio.ClassOf(err); got != cl.wantClass {
						t.Errorf("ClassOf = %v, want %v (err: %v)", got, cl.wantClass, err)
					}
					if cl.wantIs != nil && !errors.Is(err, cl.wantIs) {
						t.Errorf("errors.Is(%v, %v) = false", err, cl.wantIs)
					}
					var ae *altegio.APIError
					if isAPI := errors.As(err, &ae); isAPI != (cl.wantStatus != 0) || (isAPI && ae.Status != cl.wantStatus) {
						t.Errorf("got %T %v, want an *APIError with status %d", err, err, cl.wantStatus)
					}
					if got := altegio.OutcomeUnknown(err); got != cl.wantUnknown {
						t.Errorf("OutcomeUnknown = %v, want %v", got, cl.wantUnknown)
					}
					st := e.sb.Stats()
					if st.ByOp[op.sbOp] <= before || st.ByOp["unknown"] != 0 {
						t.Errorf("sandbox routed the request elsewhere: ByOp = %v, want one more %q", st.ByOp, op.sbOp)
					}
				})
			}
		})
	}
}
