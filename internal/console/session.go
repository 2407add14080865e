package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// CookieName is the session cookie's name.
const CookieName = "console_session"

// maxSessions bounds the sessions kept; the oldest go first.
const maxSessions = 1000

// session is one logged-in operator.
type session struct {
	// operator names the operator in replay marks and events:
	// "console:<first 8 hex digits of the key's SHA-256>".
	operator string
	// csrf is the token every form of the session carries.
	csrf    string
	created time.Time
	expires time.Time
}

// sessions are kept in memory, keyed by the SHA-256 of their id, so that
// the map never holds what the cookie carries. Safe for concurrent use.
type sessions struct {
	mu  sync.Mutex
	m   map[[sha256.Size]byte]*session
	ttl time.Duration
	now func() time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[[sha256.Size]byte]*session{}, ttl: ttl, now: now}
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand.Read)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns its id (32 random bytes).
func (s *sessions) create(operator string) (string, *session) {
	id := randomToken(32)
	now := s.now()
	sess := &session{operator: operator, csrf: randomToken(32), created: now, expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
	for len(s.m) >= maxSessions {
		var oldest [sha256.Size]byte
		var at time.Time
		for k, v := range s.m {
			if at.IsZero() || v.created.Before(at) {
				oldest, at = k, v.created
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = sess
	return id, sess
}

// get returns the live session with id.
func (s *sessions) get(id string) (*session, bool) {
	if id == "" {
		return nil, false
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[k]
	if !ok {
		return nil, false
	}
	if !s.now().Before(sess.expires) {
		delete(s.m, k)
		return nil, false
	}
	return sess, true
}

// delete ends the session with id.
func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

// Limits of failed logins.
const (
	// loginBurst logins from one address are allowed at once, then one
	// every loginEvery.
	loginBurst = 5
	loginEvery = 12 * time.Second
	// globalBurst logins from all the addresses that failed before, then
	// one every globalEvery: bounds a guesser that spreads over addresses.
	globalBurst = 30
	globalEvery = 2 * time.Second
	// maxLimiters bounds the addresses remembered.
	maxLimiters = 10_000
)

// loginLimiter rate-limits logins per client address, and the addresses
// that failed before in total. Safe for concurrent use.
//
// Every attempt takes a token of its address before the key is checked, so
// parallel guesses from one address count as much as sequential ones. The
// global bucket gates only addresses that have failed: guessers spread over
// addresses exhaust it for one another, while an operator who has not
// failed is never locked out by someone else's guessing.
type loginLimiter struct {
	mu      sync.Mutex
	perIP   map[string]*ipState
	global  *rate.Limiter
	pending int // attempts under way that the global bucket gates
	now     func() time.Time
}

// ipState is one address's bucket and whether a login from it failed.
type ipState struct {
	lim     *rate.Limiter
	failed  bool
	pending int // attempts admitted, outcome not known yet
}

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{perIP: map[string]*ipState{}, global: rate.NewLimiter(rate.Every(globalEvery), globalBurst), now: now}
}

// admit takes a login attempt of addr, or says how long addr must wait.
// Call done with the attempt's outcome: only a failure takes a token, but an
// attempt under way holds one, so parallel guesses count as much as
// sequential ones.
func (l *loginLimiter) admit(addr string) (done func(ok bool), wait time.Duration, admitted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st := l.entryLocked(addr, now)
	if t := st.lim.TokensAt(now) - float64(st.pending); t < 1 {
		return nil, retryIn(t, loginEvery), false
	}
	gated := st.failed
	if gated {
		if t := l.global.TokensAt(now) - float64(l.pending); t < 1 {
			return nil, retryIn(t, globalEvery), false
		}
		l.pending++
	}
	st.pending++
	return func(ok bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		now := l.now()
		st.pending--
		if gated {
			l.pending--
		}
		if !ok {
			st.failed = true
			st.lim.AllowN(now, 1)
			l.global.AllowN(now, 1)
		}
	}, 0, true
}

// retryIn is when a bucket with tokens left (less than one), refilled one
// per every, has one again, rounded up to whole seconds (Retry-After).
func retryIn(tokens float64, every time.Duration) time.Duration {
	wait := time.Duration((1 - tokens) * float64(every))
	return wait.Truncate(time.Second) + time.Second
}

// entryLocked returns addr's state, creating it. Callers hold l.mu.
func (l *loginLimiter) entryLocked(addr string, now time.Time) *ipState {
	if st, ok := l.perIP[addr]; ok {
		return st
	}
	if len(l.perIP) >= maxLimiters {
		// Forget the addresses whose buckets are full again.
		for k, v := range l.perIP {
			if v.lim.TokensAt(now) >= loginBurst {
				delete(l.perIP, k)
			}
		}
		if len(l.perIP) >= maxLimiters {
			clear(l.perIP)
		}
	}
	st := &ipState{lim: rate.NewLimiter(rate.Every(loginEvery), loginBurst)}
	l.perIP[addr] = st
	return st
}

// clientAddr is the address failed logins are counted by: the connection's
// IP (a proxy in front makes every client one address, which still bounds
// guessing).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// keyMatches reports whether sum is one of hashes, comparing with every
// one in constant time (no early exit).
func keyMatches(sum [sha256.Size]byte, hashes [][sha256.Size]byte) bool {
	match := 0
	for _, h := range hashes {
		match |= subtle.ConstantTimeCompare(sum[:], h[:])
	}
	return match == 1
}

// operatorName names the holder of a key for the audit, as /v1/dlq does
// ("http:…"): the first 8 hex digits of the key's SHA-256.
func operatorName(sum [sha256.Size]byte) string {
	return "console:" + hex.EncodeToString(sum[:4])
}

// validCSRF compares the form's token with the session's in constant
// time.
func validCSRF(sess *session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(sess.csrf)) == 1
}

// sameOrigin reports whether a state-changing request comes from a page of
// this host: Sec-Fetch-Site, when the browser sends it, must be
// same-origin, and Origin, or when there is none Referer, must name this
// host (over https when the request came over TLS). A request with
// neither is refused: browsers send Origin with every POST.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	src := r.Header.Get("Origin")
	if src == "" || src == "null" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return false
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return false
	}
	switch {
	case r.TLS != nil && u.Scheme != "https":
		return false
	case u.Scheme != "http" && u.Scheme != "https":
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// setSessionCookie sends the session cookie: HttpOnly, SameSite=Strict,
// Path=/ui/, Secure when the request came over TLS.
func setSessionCookie(w http.ResponseWriter, r *http.Request, id string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: id, Path: PathPrefix, MaxAge: int(ttl.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// clearSessionCookie removes the session cookie.
func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: PathPrefix, MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// contentSecurityPolicy allows the console's own script, style and
// images only: no inline script or style, no framing, forms to itself.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secure sets the headers of every console answer.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}
