package sandbox

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Faults are global, randomised faults applied to every call before it is
// carried out. The zero value injects nothing. Randomness is seeded by Seed,
// so a test with a fixed Seed and a sequential client sees a fixed sequence.
type Faults struct {
	// Latency delays every answer by this duration.
	Latency time.Duration
	// ErrorRate is the share of calls, in [0, 1], answered with a random
	// 500, 502, 503 or 504 instead of being carried out.
	ErrorRate float64
	// ResetRate is the share of calls, in [0, 1], whose connection is reset
	// (hijacked and closed) without an answer or a side effect.
	ResetRate float64
	// AfterApplyRate is the share of successful writes (POST, PUT,
	// DELETE), in [0, 1], whose change is made and whose connection is then
	// reset: the answer is lost after the side effect.
	AfterApplyRate float64
	// SlowBody spreads writing each response body over this duration.
	SlowBody time.Duration
	// RateLimitStormUntil makes every call answer 429 until this time on
	// the Config.Now clock.
	RateLimitStormUntil time.Time
	// Seed seeds the random choices; the same Seed gives the same sequence.
	Seed int64
}

func (f Faults) validate() error {
	if f.ErrorRate < 0 || f.ErrorRate > 1 || f.ResetRate < 0 || f.ResetRate > 1 || f.ErrorRate+f.ResetRate > 1 {
		return errors.New("sandbox: error and reset rates must be within [0, 1] and sum to at most 1")
	}
	if f.AfterApplyRate < 0 || f.AfterApplyRate > 1 {
		return errors.New("sandbox: the after-apply rate must be within [0, 1]")
	}
	if f.Latency < 0 || f.SlowBody < 0 {
		return errors.New("sandbox: latency and slow body must not be negative")
	}
	return nil
}

// SetFaults replaces the global faults and reseeds their randomness. An
// invalid value (rates outside [0, 1]) is clamped.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setFaultsLocked(f)
}

func (s *Server) setFaultsLocked(f Faults) {
	clamp := func(x float64) float64 { return math.Min(math.Max(x, 0), 1) }
	f.ErrorRate = clamp(f.ErrorRate)
	f.ResetRate = clamp(f.ResetRate)
	f.AfterApplyRate = clamp(f.AfterApplyRate)
	f.Latency = max(f.Latency, 0)
	f.SlowBody = max(f.SlowBody, 0)
	s.faults = f
	s.rng = rand.New(rand.NewPCG(uint64(f.Seed), uint64(f.Seed)^0x9e3779b97f4a7c15))
}

func (s *Server) currentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Rule is a deterministic fault for one operation (see the Op constants,
// or "*" for every operation). Rules are matched in the order they were
// injected; the first matching rule applies.
type Rule struct {
	// Op is the operation name, such as "client.create" or "comment.add",
	// or "*" for every operation.
	Op string
	// Status is the status to answer, with the documented body for it (§3);
	// 502, 503 and 504 answer an HTML page as a proxy would. 0 means 500
	// unless Reset is set.
	Status int
	// Reset drops the connection instead of answering.
	Reset bool
	// AfterApply carries the operation out first and then fails, simulating
	// a response lost after the side effect. Such a rule fires only on calls
	// whose operation succeeded (2xx), so Times counts lost side effects.
	// Without it, the rule fires before authentication and nothing is done.
	AfterApply bool
	// Times is how many calls the rule affects; 0 means until removed.
	Times int
}

type ruleState struct {
	Rule
	id        int
	remaining int
}

// Inject adds a rule and returns a function that removes it; calling the
// function more than once is harmless.
func (s *Server) Inject(r Rule) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextRule++
	id := s.nextRule
	s.rules = append(s.rules, &ruleState{Rule: r, id: id, remaining: r.Times})
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.removeRuleLocked(id)
	}
}

// ClearRules removes every rule.
func (s *Server) ClearRules() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = nil
}

func (s *Server) removeRuleLocked(id int) {
	for i, r := range s.rules {
		if r.id == id {
			s.rules = append(s.rules[:i:i], s.rules[i+1:]...)
			return
		}
	}
}

// writeOps are the operations that change state: the only ones whose
// answer AfterApplyRate loses (a search or a login is a POST, not a write).
var writeOps = map[string]bool{
	OpClientCreate: true, OpClientBulk: true, OpClientUpdate: true, OpClientDelete: true,
	OpCommentAdd: true, OpCommentDelete: true, OpFileDelete: true, OpHooksSet: true,
}

// lostAfterApply reports whether the answer of a successful write is to be
// lost (AfterApplyRate).
func (s *Server) lostAfterApply(op string) bool {
	if !writeOps[op] {
		return false
	}
	f := s.currentFaults()
	if f.AfterApplyRate == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64() < f.AfterApplyRate
}

// fault is an injected outcome: an answer, or a reset.
type fault struct {
	resp  response
	reset bool
}

// takeRule consumes the first rule matching op and phase.
// loc fills the 402 message.
func (s *Server) takeRule(op string, afterApply bool, loc int64) (fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		if r.AfterApply != afterApply || (r.Op != op && r.Op != "*") {
			continue
		}
		if r.remaining > 0 {
			r.remaining--
			if r.remaining == 0 {
				s.removeRuleLocked(r.id)
			}
		}
		if r.Reset {
			return fault{reset: true}, true
		}
		return fault{resp: s.faultResponse(cmpStatus(r.Status), loc)}, true
	}
	return fault{}, false
}

func cmpStatus(status int) int {
	if status == 0 {
		return http.StatusInternalServerError
	}
	return status
}

// globalFault applies latency, the 429 storm, the rate limit and the
// random faults, in that order.
func (s *Server) globalFault(r *http.Request, op string) (fault, bool) {
	f := s.currentFaults()
	sleepCtx(r, f.Latency)

	now := s.cfg.Now()
	if now.Before(f.RateLimitStormUntil) {
		return fault{resp: s.tooMany(f.RateLimitStormUntil.Sub(now))}, true
	}
	if ok, wait := s.limiter.allow(clientIP(r), now); !ok {
		return fault{resp: s.tooMany(wait)}, true
	}

	if f.ErrorRate == 0 && f.ResetRate == 0 {
		return fault{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.rng.Float64()
	switch {
	case x < f.ResetRate:
		return fault{reset: true}, true
	case x < f.ResetRate+f.ErrorRate:
		statuses := []int{500, 502, 503, 504}
		return fault{resp: s.faultResponse(statuses[s.rng.IntN(len(statuses))], 0)}, true
	}
	return fault{}, false
}

// tooMany is the 429 answer. The API documents no body and no Retry-After
// (ref §3, §4); the sandbox sends the error envelope, and Retry-After in
// whole seconds only when Config.RetryAfter is set. [I]
func (s *Server) tooMany(wait time.Duration) response {
	resp := errorResponse(http.StatusTooManyRequests, msgTooMany)
	if s.cfg.RetryAfter {
		secs := max(1, int(math.Ceil(wait.Seconds())))
		resp.header = http.Header{"Retry-After": {strconv.Itoa(secs)}}
	}
	return resp
}

// faultResponse is the documented body for an injected status (ref §3).
// 5xx are undocumented: 500 answers the error envelope, 502-504 an HTML
// page, as a proxy in front of the API would. [I] Callers may hold s.mu.
func (s *Server) faultResponse(status int, loc int64) response {
	switch status {
	case http.StatusBadRequest:
		return fieldError(msgInvalidFilter, "filters", "Invalid filter state value")
	case http.StatusUnauthorized:
		return errorResponse(status, msgAuthNeeded)
	case http.StatusPaymentRequired:
		return errorResponse(status, fmt.Sprintf("It is necessary to renew the license in the branch with id: %d", loc))
	case http.StatusForbidden:
		return errorResponse(status, msgAccessDenied)
	case http.StatusNotFound:
		return envelope(status, nil, emptyObject{})
	case http.StatusUnprocessableEntity:
		return validationError("Injected validation error.")
	case http.StatusTooManyRequests:
		return s.tooMany(time.Second)
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		text := strconv.Itoa(status) + " " + http.StatusText(status)
		return response{
			status:      status,
			contentType: "text/html",
			body:        []byte("<html>\r\n<head><title>" + text + "</title></head>\r\n<body>\r\n<center><h1>" + text + "</h1></center>\r\n</body>\r\n</html>\r\n"),
		}
	case http.StatusInternalServerError:
		return errorResponse(status, "Internal server error.")
	}
	return errorResponse(status, http.StatusText(status))
}

// resetConnection drops the connection without an answer: it hijacks the
// connection and closes it with SO_LINGER 0, so the peer sees a reset. When
// the connection cannot be hijacked (HTTP/2), it aborts the handler.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
