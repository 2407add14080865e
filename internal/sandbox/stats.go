package sandbox

import (
	"maps"
	"net/http"
)

// Stats counts what the sandbox served since New or the last ResetStats.
// Stats returns a copy; its maps belong to the caller.
type Stats struct {
	// Requests is the number of calls received, whatever their outcome.
	Requests int
	// ByOp counts calls per operation (the Op constants; "unknown" for
	// paths outside the API).
	ByOp map[string]int
	// ByStatus counts answers per HTTP status; resets are not answers.
	ByStatus map[int]int
	// Resets counts connections reset by faults or rules.
	Resets int
	// CreateAttemptsByPhone counts create calls (single and bulk items)
	// that reached validation, per normalized phone, whatever their outcome.
	CreateAttemptsByPhone map[string]int
	// CreatesByPhone counts clients actually created, per normalized phone,
	// across locations; a value above 1 reveals a duplicate create.
	CreatesByPhone map[string]int
	// RateLimited is the number of 429 answers, from the limiter, a storm
	// or a rule.
	RateLimited int
	// Logins is the number of successful POST /auth calls (201 with a token).
	Logins int
	// Unauthorized is the number of 401 answers.
	Unauthorized int
	// MaxConcurrent is the highest number of calls in progress at once.
	MaxConcurrent int
	// WebhookDeliveries is the number of webhook deliveries that ended,
	// delivered or failed (see Webhooks); WebhookFailures counts those
	// that ended without a 2xx answer, Close included.
	WebhookDeliveries int
	WebhookFailures   int
	// WebhookAttempts is the number of webhook POSTs made, retries
	// included.
	WebhookAttempts int
	// WebhooksSuppressed counts client changes not sent because the
	// settings' self_sending is 0 and their writer made the change.
	WebhooksSuppressed int
}

func newStats() Stats {
	return Stats{
		ByOp:                  make(map[string]int),
		ByStatus:              make(map[int]int),
		CreateAttemptsByPhone: make(map[string]int),
		CreatesByPhone:        make(map[string]int),
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByOp = maps.Clone(st.ByOp)
	st.ByStatus = maps.Clone(st.ByStatus)
	st.CreateAttemptsByPhone = maps.Clone(st.CreateAttemptsByPhone)
	st.CreatesByPhone = maps.Clone(st.CreatesByPhone)
	st.RateLimited = st.ByStatus[http.StatusTooManyRequests]
	st.Unauthorized = st.ByStatus[http.StatusUnauthorized]
	return st
}

// ResetStats zeroes every counter; MaxConcurrent restarts from the calls
// in progress.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = newStats()
	s.stats.MaxConcurrent = int(s.inflight.Load())
}

func (s *Server) countRequest(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	s.stats.ByOp[op]++
}

func (s *Server) countStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.ByStatus[status]++
}

func (s *Server) countReset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Resets++
}

// countCreateAttempt and countCreate are called with s.mu held.
func (s *Server) countCreateAttempt(phone string) {
	if phone != "" {
		s.stats.CreateAttemptsByPhone[phone]++
	}
}

func (s *Server) countCreate(phone string) {
	s.stats.CreatesByPhone[phone]++
}
