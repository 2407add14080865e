package sandbox

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Default settings applied by New when the Config leaves them at zero.
const (
	// DefaultRatePerSecond is the per-IP limit per second (ref §4).
	DefaultRatePerSecond = 5
	// DefaultRatePerMinute is the per-IP limit per minute (ref §4).
	DefaultRatePerMinute = 200
	// BasePath is where the API is mounted; a client's base URL is
	// server URL + BasePath.
	BasePath = "/api/v1"
	// maxBodyBytes bounds every request body the sandbox reads.
	maxBodyBytes = 1 << 20
)

// User is a business user that can authenticate with POST /auth and act on
// client endpoints with its user token.
type User struct {
	// Login is the value POST /auth expects in "login" (a phone or an email
	// in the real API). Required and unique.
	Login string
	// Password is the value POST /auth expects in "password". Required.
	Password string
	// Token is the initial user token. A random token is generated when empty.
	Token string
	// TwoFactor makes POST /auth answer 200 with a 2FA challenge (data.uuid)
	// and no token, as observed on YCLIENTS (ref §2.2). The sandbox never
	// completes the second step, because its body is unconfirmed.
	TwoFactor bool
	// Locations lists the location IDs the user may act on; any other
	// location answers 403 "Access denied.". Empty means every location.
	Locations []int64
	// ID is the user ID returned by POST /auth; 1000+index when zero.
	ID int64
	// Name is the display name used in the auth response, on comments and on
	// files; defaults to Login.
	Name string
	// Email and Phone are echoed by POST /auth. POST /auth also accepts them
	// as the login.
	Email, Phone string
}

// Config configures a Server. The zero value of every field except
// PartnerToken and Users is usable.
type Config struct {
	// PartnerToken is the partner bearer every request must carry. Required.
	PartnerToken string
	// Users are the business users known to the sandbox.
	Users []User
	// RatePerSecond is the per-IP limit per one-second window; default 5,
	// a negative value disables the window (ref §4).
	RatePerSecond int
	// RatePerMinute is the per-IP limit per one-minute window; default 200,
	// a negative value disables the window (ref §4).
	RatePerMinute int
	// Now is the clock used for the rate limit, the 429 storm and
	// timestamps on records; default time.Now.
	Now func() time.Time
	// Logger receives one Debug line per request; default discards. Tokens
	// and passwords are never logged.
	Logger *slog.Logger
	// Faults are the initial global faults; see SetFaults.
	Faults Faults
	// RetryAfter adds "Retry-After: 1" to 429 answers. Default false, like
	// the real API, which documents no such header (ref §4, §9.4).
	RetryAfter bool
	// ServePublishedCommentPaths also serves the comment paths shown on the
	// published docs page, /clients/{location_id}/clients/{client_id}/comments
	// (ref §6.8). Default false: Altegio's own engineering note calls that
	// form documentation drift, so the sandbox answers 404 on it and a client
	// must use /company/... or /locations/....
	ServePublishedCommentPaths bool
	// WebhookDelay is how long after a client change its webhooks are sent
	// (ref §7: about 5 s). Default DefaultWebhookDelay; negative sends at
	// once. It runs on the real clock, not on Now.
	WebhookDelay time.Duration
	// WebhookRetryDelay is the pause before each of the two retries of a
	// delivery (ref §7: 1.5 s). Default DefaultWebhookRetryDelay; negative
	// retries at once.
	WebhookRetryDelay time.Duration
	// WebhookTimeout bounds each delivery attempt, connecting, sending and
	// reading the answer (ref §7: 10 s). Default DefaultWebhookTimeout.
	WebhookTimeout time.Duration
	// WebhookBearer, when set, is sent on every delivery as
	// "Authorization: Bearer <WebhookBearer>", the shared header Altegio
	// can be configured with (ref §7). Default: no Authorization header.
	WebhookBearer string
	// StateFile, when set, keeps the state across restarts: New loads the
	// file if it exists (and writes the empty state if it does not), and
	// every successful change rewrites it whole, atomically (a temporary
	// file in the same directory, fsync, rename, fsync of the directory),
	// before the change is answered. The file holds every location's
	// clients, comments, files, visits and licence flag, the webhook
	// settings and the ID counters, so an ID is never handed out twice; it
	// does not hold user tokens (a random token is new after a restart, as
	// after RotateUserToken), faults, rules, rate-limit windows, Stats or
	// the webhook delivery log. A change through the API whose state cannot
	// be written answers 500 (it stays in memory and reaches the file with
	// the next write); a change through a Go method (Seed…, SetUnlicensed,
	// DeleteClient, …) logs the error at Error level.
	//
	// Cost: each change encodes the whole state and fsyncs twice while
	// holding the Server's lock, so changes are serialized and take time
	// in proportion to the number of records (about a millisecond per
	// thousand clients plus the fsyncs). Fine for the dev stack; leave it
	// empty (the default: in memory only, nothing written) for benchmarks.
	StateFile string
}

func (c *Config) setDefaults() {
	if c.RatePerSecond == 0 {
		c.RatePerSecond = DefaultRatePerSecond
	}
	if c.RatePerMinute == 0 {
		c.RatePerMinute = DefaultRatePerMinute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.WebhookDelay == 0 {
		c.WebhookDelay = DefaultWebhookDelay
	}
	if c.WebhookRetryDelay == 0 {
		c.WebhookRetryDelay = DefaultWebhookRetryDelay
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = DefaultWebhookTimeout
	}
}

// Validate reports whether the configuration is usable.
func (c *Config) Validate() error {
	if c.PartnerToken == "" {
		return errors.New("sandbox: partner token is required")
	}
	logins := make(map[string]bool)
	tokens := make(map[string]bool)
	for i, u := range c.Users {
		if u.Login == "" || u.Password == "" {
			return fmt.Errorf("sandbox: user %d: login and password are required", i)
		}
		if logins[u.Login] {
			return fmt.Errorf("sandbox: user %q: duplicate login", u.Login)
		}
		logins[u.Login] = true
		if u.Token != "" {
			if tokens[u.Token] {
				return fmt.Errorf("sandbox: user %q: duplicate token", u.Login)
			}
			tokens[u.Token] = true
		}
	}
	if c.WebhookTimeout < 0 {
		return errors.New("sandbox: the webhook timeout must not be negative")
	}
	if strings.ContainsAny(c.WebhookBearer, "\r\n") {
		return errors.New("sandbox: the webhook bearer must not contain line breaks")
	}
	return c.Faults.validate()
}

// Server is the sandbox API. It implements http.Handler; mount it at the root
// of an httptest.Server and use server URL + "/api/v1" as the base URL.
// Call Close when done with it to stop webhook deliveries. All methods are
// safe for concurrent use.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	limiter *rateLimiter
	routes  []route

	inflight atomic.Int64

	// Webhook deliveries (webhooks.go): their goroutines stop when hookCtx
	// ends (Close) and are counted by hookWG.
	hookCtx  context.Context
	hookStop context.CancelFunc
	hookWG   sync.WaitGroup
	hookHTTP *http.Client

	mu        sync.Mutex // guards everything below
	users     []*userState
	faults    Faults
	rng       *rand.Rand
	rules     []*ruleState
	nextRule  int
	locations map[int64]*location
	nextID    idCounters
	stats     Stats
	flip      bool // alternates documented "{} or []" variants

	hooks           map[int64]*hookState // webhook settings per location
	webhooks        []*WebhookDelivery   // recent deliveries, oldest first
	nextWebhook     int64
	pendingWebhooks int  // deliveries waiting or in flight
	hooksClosed     bool // Close was called
}

var (
	_ http.Handler = (*Server)(nil)
	_ io.Closer    = (*Server)(nil)
)

// New validates cfg, applies defaults and returns a ready Server, with the
// state of cfg.StateFile when that file exists and empty state otherwise.
// It returns an error when cfg is invalid, and when the state file cannot
// be read, is not a valid state document (the error names the path), or,
// missing, cannot be written.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		logger:    cfg.Logger,
		limiter:   newRateLimiter(cfg.RatePerSecond, cfg.RatePerMinute),
		locations: make(map[int64]*location),
		nextID:    newIDCounters(),
		stats:     newStats(),
		hooks:     make(map[int64]*hookState),
		hookHTTP:  newWebhookClient(),
	}
	// The deliveries' lifetime is the Server's, not a request's: Close
	// ends it.
	s.hookCtx, s.hookStop = context.WithCancel(context.Background())
	s.routes = s.buildRoutes()
	s.setFaultsLocked(cfg.Faults)
	for i, u := range cfg.Users {
		if u.Token == "" {
			u.Token = newToken()
		}
		if u.ID == 0 {
			u.ID = int64(1000 + i)
		}
		if u.Name == "" {
			u.Name = u.Login
		}
		u.Locations = append([]int64(nil), u.Locations...)
		s.users = append(s.users, &userState{User: u})
	}
	if cfg.StateFile != "" {
		if err := s.loadState(); err != nil {
			s.hookStop()
			return nil, err
		}
	}
	return s, nil
}

// newToken returns a random 32-character hex token.
func newToken() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b)
}

// ServeHTTP serves one API call. The pipeline is: route, global faults and
// rate limit (for every path), pre-apply rules, protocol checks (Accept, auth, Content-Type,
// location access, licence), the operation, after-apply rules, delivery.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.enter()
	defer s.inflight.Add(-1)

	start := time.Now()
	rt, params := s.match(r)
	op := opUnknown
	if rt != nil {
		op = rt.op
	}
	s.countRequest(op)

	resp, reset := s.serve(r, rt, params, op)
	if reset {
		s.countReset()
		s.logger.Debug("sandbox reset", "method", r.Method, "path", r.URL.Path, "op", op)
		resetConnection(w)
		return
	}
	s.countStatus(resp.status)
	s.deliver(w, r, resp)
	s.logger.Debug("sandbox request", "method", r.Method, "path", r.URL.Path,
		"op", op, "status", resp.status, "duration", time.Since(start))
}

// serve computes the answer to one call; reset reports that the connection
// must be dropped instead.
func (s *Server) serve(r *http.Request, rt *route, params map[string]string, op string) (resp response, reset bool) {
	if f, ok := s.globalFault(r, op); ok {
		return f.resp, f.reset
	}
	if rt == nil {
		if params != nil { // path known, method not
			return errorResponse(http.StatusMethodNotAllowed, "Method not allowed."), false
		}
		return s.notFound(), false
	}
	loc, _ := parseID(params["location_id"])
	if f, ok := s.takeRule(op, false, loc); ok {
		return f.resp, f.reset
	}

	c, errResp := s.prepare(r, rt, params, op)
	if errResp != nil {
		return *errResp, false
	}
	resp = rt.handle(c)
	if resp.status >= 200 && resp.status < 300 {
		if f, ok := s.takeRule(op, true, loc); ok {
			return f.resp, f.reset
		}
		if s.lostAfterApply(op) {
			return response{}, true
		}
	}
	return resp, false
}

func (s *Server) enter() {
	n := s.inflight.Add(1)
	s.mu.Lock()
	if int(n) > s.stats.MaxConcurrent {
		s.stats.MaxConcurrent = int(n)
	}
	s.mu.Unlock()
}

// call is one authenticated, parsed API call handed to an operation.
type call struct {
	r      *http.Request
	params map[string]string
	loc    int64
	user   *userState
	body   []byte
}

// prepare runs the protocol checks shared by every operation and returns
// the parsed call, or the error answer.
func (s *Server) prepare(r *http.Request, rt *route, params map[string]string, op string) (*call, *response) {
	// Accept (ref §5): documented as required on every v1 endpoint. What v1
	// does without it is undocumented (§9.9); V2 answers 400, and the sandbox
	// does the same so a client cannot forget the header. [I]
	if !acceptsV2(r.Header.Values("Accept")) {
		resp := errorResponse(http.StatusBadRequest,
			"Accept header must be "+mediaTypeV2+".")
		return nil, &resp
	}

	body, err := readBody(r)
	if err != nil {
		resp := errorResponse(http.StatusRequestEntityTooLarge, "Request body is too large.")
		return nil, &resp
	}

	c := &call{r: r, params: params, body: body}
	if resp := s.authenticate(r, rt.auth, c); resp != nil {
		return nil, resp
	}

	// Content-Type (ref §5): documented as required; the sandbox insists on
	// application/json whenever a body is sent and answers 415 otherwise. [I]
	if len(body) > 0 && !isJSON(r.Header.Get("Content-Type")) {
		resp := errorResponse(http.StatusUnsupportedMediaType,
			"Content-Type must be application/json.")
		return nil, &resp
	}

	if rt.auth == authUser {
		loc, ok := parseID(params["location_id"])
		if !ok {
			resp := s.badLocation(op)
			return nil, &resp
		}
		c.loc = loc
		if !c.user.allowed(loc) {
			resp := errorResponse(http.StatusForbidden, msgAccessDenied)
			return nil, &resp
		}
		// Licence (ref §3): documented on search; the sandbox answers 402 on
		// every location-scoped call of an unlicensed location. [I]
		if s.unlicensed(loc) {
			resp := errorResponse(http.StatusPaymentRequired,
				fmt.Sprintf("It is necessary to renew the license in the branch with id: %d", loc))
			return nil, &resp
		}
	}
	return c, nil
}

// badLocation answers a location segment that is not an integer (ref §3:
// search documents a 404 with meta.message and meta.errors).
func (s *Server) badLocation(op string) response {
	if op == OpClientSearch {
		return envelope(http.StatusNotFound, nil, map[string]any{
			"message": "Not found",
			"errors":  []string{"Not found"},
		})
	}
	return s.notFound()
}

// notFound is the documented 404 body; meta alternates between {} and [],
// both documented (ref §3).
func (s *Server) notFound() response {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notFoundLocked()
}

// notFoundLocked is notFound for callers that hold s.mu.
func (s *Server) notFoundLocked() response {
	if s.alternateLocked() {
		return envelope(http.StatusNotFound, nil, emptyArray{})
	}
	return envelope(http.StatusNotFound, nil, emptyObject{})
}

// alternateLocked flips between true and false on every call. Callers hold
// s.mu.
func (s *Server) alternateLocked() bool {
	s.flip = !s.flip
	return s.flip
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	return io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
}
