package altegio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/tracing"
)

// Defaults of Config.
const (
	// DefaultBaseURL is the production B2B v1 base URL, including /api/v1.
	DefaultBaseURL = "https://api.alteg.io/api/v1"
	// DefaultTimeout bounds a call whose context has no deadline.
	DefaultTimeout = 30 * time.Second
	// DefaultUserAgent is sent when Config.UserAgent is empty.
	DefaultUserAgent = "altegio-integrator (+https://github.com/altegio-integrator/integrator)"
	// DefaultMaxResponseBytes bounds how much of a response body is read.
	DefaultMaxResponseBytes int64 = 8 << 20
)

const (
	// mediaType is the Accept value the v1 API requires.
	mediaType = "application/vnd.api.v2+json"
	// drainLimit bounds how much of an unread body is discarded to reuse the
	// connection.
	drainLimit = 64 << 10
	// maxRetryAfter caps a parsed Retry-After.
	maxRetryAfter = 24 * time.Hour
	// defaultIdleConns is the default client's idle connections per host.
	defaultIdleConns = 64
)

// Limiter paces requests to the API budget (5 requests/s and 200/min per
// egress IP by default). Implementations must be safe for concurrent use;
// *ratelimit.Limiter is the project's.
type Limiter interface {
	// Wait blocks until a request of flow (the location, for fairness
	// between locations; "auth" for POST /auth) may be sent, or ctx is
	// done, and returns the slot's send check. urgent marks a request that
	// finishes work already begun (the request right after the one that
	// used a WithSlot slot, the retry after a 401, a login); it goes first. The client calls the check
	// right before the request goes out: true means send now; false means
	// the slot came too late to be safe and the client waits again. Wait
	// is called before every request, including POST /auth and the retry
	// after a 401.
	Wait(ctx context.Context, flow string, urgent bool) (func() bool, error)
	// Penalize is called after a 429 with the Retry-After delay, or 0 when
	// the header is absent.
	Penalize(retryAfter time.Duration)
}

// slotKey carries a slot taken before the call (WithSlot).
type slotKey struct{}

// heldSlot is a slot taken in advance; the first request of a call made
// with its context uses it.
type heldSlot struct {
	mu     sync.Mutex
	check  func() bool
	urgent bool // the request after the one that used the slot goes first
}

// take returns the held slot the first time, and then, once, that the
// next wait is urgent: the continuation of the work the slot began (the
// PUT after an update's GET). Later requests wait like any other, so a
// long chain of requests cannot keep jumping the queue.
func (h *heldSlot) take() (check func() bool, urgent bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.check != nil {
		check, h.check, h.urgent = h.check, nil, true
		return check, false
	}
	urgent, h.urgent = h.urgent, false
	return nil, urgent
}

// WithSlot returns a context whose next request uses check, a slot the
// caller took from the Limiter itself (to wait for the budget before doing
// anything it would have to undo, e.g. recording that it is about to
// send). The first request made with the context uses the slot, if the
// slot is still good when the request goes out; every other request waits
// for one as usual.
func WithSlot(ctx context.Context, check func() bool) context.Context {
	return context.WithValue(ctx, slotKey{}, &heldSlot{check: check})
}

// Config configures a Client. The zero value is valid and talks to
// production.
type Config struct {
	// BaseURL is the API root including the /api/v1 prefix, e.g.
	// "http://127.0.0.1:8080/api/v1" for the sandbox. Default DefaultBaseURL.
	BaseURL string
	// HTTPClient sends the requests. Default: a new http.Client on a clone
	// of http.DefaultTransport keeping up to 64 idle connections per host,
	// without a client-wide timeout (calls use contexts).
	HTTPClient *http.Client
	// Timeout bounds each exchange with the API (credentials, the request
	// and reading the answer; the refresh after a 401 and its retry get
	// their own) when the caller's context has no deadline. The wait for
	// the budget is not bounded by it: a request waits for its slot as
	// long as it takes, unless the caller's context ends. Default
	// DefaultTimeout; negative disables it.
	Timeout time.Duration
	// UserAgent is sent on every request. Default DefaultUserAgent.
	UserAgent string
	// MaxResponseBytes bounds the response body read; a larger body fails the
	// call with a *TransportError. Default DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Registerer receives the client's metrics; nil records none. Clients may
	// share a Registerer.
	Registerer prometheus.Registerer
	// Logger receives one Debug line per request (operation, method, path,
	// status, duration; never tokens or bodies). Default: discard.
	Logger *slog.Logger
	// Flow names the Limiter flow of a location's requests, for fairness:
	// AccountFlow's "account/location" shares the budget between accounts
	// first. Default LocationFlow.
	Flow func(location int64) string
	// Now tells the time, used to read Retry-After dates. Default time.Now.
	Now func() time.Time
	// TracerProvider traces every HTTP exchange ("altegio <METHOD> <route
	// template>", a child of the caller's span) and every wait for the
	// Limiter ("ratelimit.wait"). Default nil: otel's no-op provider.
	TracerProvider trace.TracerProvider
}

func (c *Config) setDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.HTTPClient == nil {
		// Keep as many idle connections to the API as requests may run at
		// once (the default keeps 2 per host, so a busy worker would open
		// and close a connection for most requests).
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = defaultIdleConns
		c.HTTPClient = &http.Client{Transport: t}
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Flow == nil {
		c.Flow = LocationFlow
	}
}

// Validate reports whether the configuration can be used, after defaults.
func (c Config) Validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return fmt.Errorf("base url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("base url: scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("base url: missing host")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("base url: must not carry a query, fragment or user info")
	}
	if strings.ContainsAny(c.UserAgent, "\r\n") {
		return errors.New("user agent: must not contain line breaks")
	}
	return nil
}

// Client calls the Altegio B2B v1 client endpoints. It is safe for concurrent
// use. Every method takes a context; when it has no deadline, Config.Timeout
// applies. Errors are *APIError (the API answered), *TransportError (outcome
// unknown) or errors wrapping the package sentinels; classify them with
// ClassOf.
type Client struct {
	base    string
	http    *http.Client
	timeout time.Duration
	ua      string
	maxBody int64
	auth    Authorizer
	lim     Limiter
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	flow    func(location int64) string
	tracer  trace.Tracer
	host    string // the API's host, for spans
}

// New returns a Client. auth supplies the tokens of user calls; it may be nil
// for a client that only calls Login (user calls then fail with
// ErrUnauthorized). lim may be nil (no limiting). New fails when the
// configuration is invalid or the metrics cannot be registered.
func New(cfg Config, auth Authorizer, lim Limiter) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("altegio config: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("altegio config: %w", err)
	}
	return &Client{
		base:    cfg.BaseURL,
		http:    cfg.HTTPClient,
		timeout: cfg.Timeout,
		ua:      cfg.UserAgent,
		maxBody: cfg.MaxResponseBytes,
		auth:    auth,
		lim:     lim,
		log:     cfg.Logger,
		metrics: m,
		now:     cfg.Now,
		flow:    cfg.Flow,
		tracer:  tracing.Provider(cfg.TracerProvider).Tracer(tracerName),
		host:    hostOf(cfg.BaseURL),
	}, nil
}

// request describes one API call.
type request struct {
	op       string
	method   string
	path     string // below the base URL, e.g. /client/1/2
	query    url.Values
	body     any   // JSON body; nil sends none
	location int64 // passed to the Authorizer
	// partnerToken is set for partner-only calls (POST /auth), which skip the
	// Authorizer and the 401 refresh.
	partnerToken string
	partnerOnly  bool
	// secrets are scrubbed from API messages besides the tokens (the password).
	secrets []string
	// noData marks calls that need no response data (deletes): a 2xx body
	// that is not JSON is then accepted instead of being an unknown outcome.
	noData bool
}

// response is an answer whose status has not been judged yet.
type response struct {
	status int
	header http.Header
	body   []byte
}

// call sends r with the Authorizer's credentials, refreshes them once after a
// 401 and maps the answer. It returns the decoded envelope of a success; env
// is zero when the body was empty (204).
func (c *Client) call(ctx context.Context, r request) (envelope, int, error) {
	var body []byte
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return envelope{}, 0, invalidRequest(r.op, "encode body: %v", err)
		}
		body = b
	}
	if !r.partnerOnly && c.auth == nil {
		return envelope{}, 0, fmt.Errorf("altegio %s: no authorizer configured: %w", r.op, ErrUnauthorized)
	}

	resp, creds, err := c.send(ctx, r, body, nil, 1)
	if err != nil {
		return envelope{}, 0, err
	}
	if r.partnerOnly || resp.status != http.StatusUnauthorized {
		return c.judge(r, resp, creds)
	}

	rejected := c.apiError(r, resp, creds)
	c.log.LogAttrs(ctx, slog.LevelDebug, "altegio credentials rejected, refreshing",
		slog.String("op", r.op), slog.Int64("location_id", r.location), slog.Uint64("credentials_version", creds.Version))
	rctx, cancel := c.withDefaultTimeout(ctx)
	fresh, err := c.auth.Refresh(rctx, r.location, creds)
	cancel()
	if err != nil {
		return envelope{}, resp.status, &refreshError{unauthorized: rejected, err: err}
	}
	resp, creds, err = c.send(ctx, r, body, &fresh, 2)
	if err != nil {
		return envelope{}, 0, err
	}
	return c.judge(r, resp, creds)
}

// flowOf names the budget flow of r (Config.Flow), so that the Limiter can
// share the budget fairly between locations and accounts; logins have a
// flow of their own.
func (c *Client) flowOf(r request) string {
	if r.partnerOnly {
		return "auth"
	}
	return c.flow(r.location)
}

// LocationFlow is a Limiter flow per location: its ID in decimal. Callers
// that take a slot themselves (WithSlot) must name flows as the client's
// Config.Flow does.
func LocationFlow(location int64) string { return strconv.FormatInt(location, 10) }

// AccountFlow is a Limiter flow per account and location,
// "account/location": the budget is shared between accounts first, then
// between each account's locations.
func AccountFlow(account string, location int64) string {
	return account + "/" + LocationFlow(location)
}

// send makes one HTTP exchange: it waits for a budget slot, then reads the
// credentials (fixed when given: the retry after a refresh), builds the
// request and sends it while the slot is still good, with a bounded read.
// Reading the credentials after the wait means a token rotated while the
// request waited is not sent. send returns an error only when no complete
// response was read, and the credentials it sent.
func (c *Client) send(ctx context.Context, r request, body []byte, fixed *Credentials, attempt int) (response, Credentials, error) {
	held, _ := ctx.Value(slotKey{}).(*heldSlot)
	for {
		var check func() bool
		urgent := r.partnerOnly || attempt > 1
		if held != nil {
			var next bool
			check, next = held.take()
			urgent = urgent || next
		}
		if check == nil && c.lim != nil {
			var err error
			if check, err = c.waitLimiter(ctx, r, urgent); err != nil {
				return response{}, Credentials{}, fmt.Errorf("altegio %s: wait for rate limiter: %w: %w", r.op, ErrNotSent, err)
			}
		}
		resp, creds, sent, err := c.exchange(ctx, r, body, fixed, attempt, check)
		if sent || err != nil {
			return resp, creds, err
		}
		// The slot came too late to be sent safely: wait for another.
	}
}

// exchange reads the credentials, builds the request and, when check
// allows it (nil: no limiter), sends it. sent is false when the slot was
// too late and nothing was sent.
func (c *Client) exchange(ctx context.Context, r request, body []byte, fixed *Credentials, attempt int, check func() bool) (resp response, creds Credentials, sent bool, err error) {
	ctx, cancel := c.withDefaultTimeout(ctx)
	defer cancel()
	switch {
	case r.partnerOnly:
		creds = Credentials{PartnerToken: r.partnerToken}
	case fixed != nil:
		creds = *fixed
	default:
		creds, err = c.auth.Credentials(ctx, r.location)
		if err != nil {
			return response{}, creds, false, fmt.Errorf("altegio %s: credentials for location %d: %w", r.op, r.location, err)
		}
	}
	if !validToken(creds.PartnerToken) || creds.PartnerToken == "" ||
		(!r.partnerOnly && (creds.UserToken == "" || !validToken(creds.UserToken))) {
		return response{}, creds, false, fmt.Errorf("altegio %s: credentials are empty or malformed: %w", r.op, ErrUnauthorized)
	}

	target := c.base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, rd)
	if err != nil {
		return response{}, creds, false, invalidRequest(r.op, "build request: %v", err)
	}
	req.Header.Set("Accept", mediaType)
	req.Header.Set("Authorization", authorization(creds.PartnerToken, creds.UserToken))
	req.Header.Set("User-Agent", c.ua)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if check != nil && !check() {
		return response{}, creds, false, nil
	}

	_, span := c.startExchange(ctx, r, attempt)
	start := time.Now()
	hr, err := c.http.Do(req)
	if err != nil {
		c.record(ctx, r, attempt, 0, time.Since(start), err)
		terr := &TransportError{Op: r.op, Method: r.method, Path: r.path, Err: err}
		endExchange(span, 0, terr) // its message leaves out the URL and its query (personal data)
		return response{}, creds, true, terr
	}
	data, err := c.readBody(hr.Body)
	elapsed := time.Since(start)
	c.record(ctx, r, attempt, hr.StatusCode, elapsed, err)
	endExchange(span, hr.StatusCode, err)
	if err != nil {
		return response{}, creds, true, &TransportError{Op: r.op, Method: r.method, Path: r.path, Status: hr.StatusCode, Err: err}
	}
	out := response{status: hr.StatusCode, header: hr.Header, body: data}
	if out.status == http.StatusTooManyRequests && c.lim != nil {
		c.lim.Penalize(parseRetryAfter(hr.Header.Get("Retry-After"), c.now()))
	}
	return out, creds, true, nil
}

// readBody reads at most maxBody bytes, then drains a bounded remainder and
// closes the body so the connection can be reused.
func (c *Client) readBody(body io.ReadCloser) ([]byte, error) {
	defer func() {
		_, _ = io.CopyN(io.Discard, body, drainLimit)
		_ = body.Close()
	}()
	data, err := io.ReadAll(io.LimitReader(body, c.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read response body: %w", err)
	}
	if int64(len(data)) > c.maxBody {
		return nil, fmt.Errorf("response body exceeds %d bytes", c.maxBody)
	}
	return data, nil
}

// record logs and measures one exchange.
func (c *Client) record(ctx context.Context, r request, attempt, status int, d time.Duration, err error) {
	c.metrics.observe(r.op, status, d)
	if !c.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("op", r.op),
		slog.String("method", r.method),
		slog.String("path", r.path),
		slog.Int("attempt", attempt),
		slog.Int("status", status),
		slog.Duration("duration", d),
	}
	if r.location != 0 {
		attrs = append(attrs, slog.Int64("location_id", r.location))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "altegio request", attrs...)
}

// judge maps a response to a decoded envelope or an error; this is the one
// place where statuses and envelopes become errors.
func (c *Client) judge(r request, resp response, creds Credentials) (envelope, int, error) {
	if resp.status < 200 || resp.status > 299 {
		return envelope{}, resp.status, c.apiError(r, resp, creds)
	}
	if resp.status == http.StatusNoContent || len(bytes.TrimSpace(resp.body)) == 0 {
		return envelope{}, resp.status, nil
	}
	env, err := decodeEnvelope(resp.body)
	if err != nil {
		if r.noData {
			return envelope{}, resp.status, nil
		}
		return envelope{}, resp.status, c.decodeError(r, resp.status, err)
	}
	if env.failed() {
		return envelope{}, resp.status, c.apiErrorFrom(r, resp, env, creds)
	}
	return env, resp.status, nil
}

// apiError builds the APIError of an unsuccessful response.
func (c *Client) apiError(r request, resp response, creds Credentials) *APIError {
	env, _ := decodeEnvelope(resp.body) // a body we cannot parse still has a status
	return c.apiErrorFrom(r, resp, env, creds)
}

func (c *Client) apiErrorFrom(r request, resp response, env envelope, creds Credentials) *APIError {
	msg, fields := env.details()
	secrets := append([]string{creds.PartnerToken, creds.UserToken}, r.secrets...)
	e := &APIError{
		Op:          r.op,
		Method:      r.method,
		Path:        r.path,
		Status:      resp.status,
		Message:     scrub(msg, secrets),
		FieldErrors: fields,
	}
	for i := range e.FieldErrors {
		e.FieldErrors[i].Field = scrub(e.FieldErrors[i].Field, secrets)
		e.FieldErrors[i].Message = scrub(e.FieldErrors[i].Message, secrets)
	}
	if resp.header != nil {
		e.RetryAfter = parseRetryAfter(resp.header.Get("Retry-After"), c.now())
	}
	return e
}

// decodeError reports a 2xx body that could not be decoded: the request was
// processed but its result is unknown.
func (c *Client) decodeError(r request, status int, err error) error {
	return &TransportError{Op: r.op, Method: r.method, Path: r.path, Status: status, Err: fmt.Errorf("decode response: %w", err)}
}

// withDefaultTimeout applies c.timeout when ctx has no deadline.
func (c *Client) withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// scrub replaces every non-trivial secret in s; an API that echoes a token in
// a message must not leak it into errors and logs.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 && strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date; it
// returns 0 when absent or unparsable and caps the delay at a day.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		switch {
		case d < 0:
			return 0
		case d > maxRetryAfter:
			return maxRetryAfter
		}
		return d
	}
	return 0
}

// decodeData decodes env.Data into v, mapping a failure to a decode error.
func (c *Client) decodeData(r request, status int, env envelope, v any) error {
	if jsonKind(env.Data) == 0 || jsonKind(env.Data) == 'n' {
		return c.decodeError(r, status, errors.New("response has no data"))
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		return c.decodeError(r, status, err)
	}
	return nil
}

// checkID validates a path ID.
func checkID(op, name string, id int64) error {
	if id <= 0 {
		return invalidRequest(op, "%s must be positive, got %d", name, id)
	}
	return nil
}
