package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"time"
)

// Webhook delivery, as Altegio's integration note describes it (ref §7,
// "Delivery", the backend-verified source): queued about 5 s after the
// change, each attempt bounded by 10 s in total and 5 s to connect, two
// retries 1.5 s apart after a transport failure, 429 or 5xx, none after
// another 4xx. No signature; an optional shared bearer header.
const (
	// DefaultWebhookDelay is Config.WebhookDelay's default (ref §7).
	DefaultWebhookDelay = 5 * time.Second
	// DefaultWebhookRetryDelay is Config.WebhookRetryDelay's default (ref §7).
	DefaultWebhookRetryDelay = 1500 * time.Millisecond
	// DefaultWebhookTimeout is Config.WebhookTimeout's default (ref §7).
	DefaultWebhookTimeout = 10 * time.Second
	// webhookAttempts is the first attempt plus two retries (ref §7).
	webhookAttempts = 3
	// webhookConnectTimeout bounds connecting to a receiver (ref §7).
	webhookConnectTimeout = 5 * time.Second
	// maxWebhookLog is how many recent deliveries Webhooks keeps.
	maxWebhookLog = 256
	// maxPendingWebhooks bounds the deliveries waiting or in flight; a
	// change beyond it records its deliveries as failed at once.
	maxPendingWebhooks = 10_000
	// maxWebhookAnswer bounds how much of a receiver's answer is read.
	maxWebhookAnswer = 64 << 10
)

// Delivery states of WebhookDelivery.Status.
const (
	WebhookPending   = "pending"
	WebhookDelivered = "delivered"
	WebhookFailed    = "failed"
)

// WebhookDelivery is one client event for one URL: queued when the change
// was made, then delivered (a 2xx answer) or failed (another answer, or
// the retries used up, or Close). Webhooks returns copies.
type WebhookDelivery struct {
	// ID numbers deliveries in the order they were queued, from 1.
	ID int64 `json:"id"`
	// URL is the destination, one of the location's settings URLs.
	URL        string `json:"url"`
	LocationID int64  `json:"location_id"`
	ClientID   int64  `json:"client_id"`
	// Event is the payload's status: create, update or delete.
	Event string `json:"event"`
	// Status is WebhookPending, WebhookDelivered or WebhookFailed.
	Status string `json:"status"`
	// Attempts is the number of POSTs made so far (at most 3).
	Attempts int `json:"attempts"`
	// HTTPStatus is the status of the last answer; 0 when the last attempt
	// got none (Error says why).
	HTTPStatus int `json:"http_status"`
	// Error is the last attempt's transport error, or why the delivery
	// ended without an attempt.
	Error string `json:"error,omitempty"`
	// Payload is the JSON body sent (ref §7 client event).
	Payload json.RawMessage `json:"payload"`
	// QueuedAt and FinishedAt are on the Config.Now clock; FinishedAt is
	// zero while pending.
	QueuedAt   time.Time `json:"queued_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Client event statuses (ref §7).
const (
	eventCreate = "create"
	eventUpdate = "update"
	eventDelete = "delete"
)

// newWebhookClient is the HTTP client of deliveries: 5 s to connect, no
// redirects followed (a 3xx ends the delivery like any other non-2xx). [I]
func newWebhookClient() *http.Client {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: webhookConnectTimeout}).DialContext,
		TLSHandshakeTimeout: webhookConnectTimeout,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// notifyClientLocked queues the client event of a change made by c (ref
// §7) to every URL of the location, when its settings have active 1 and
// client 1. With self_sending 0, a change made by the user who last wrote
// the settings is not sent. rec is the card after the change, or before
// it for a delete; the payload's data is the card as GET /client renders
// it. Callers hold s.mu.
func (s *Server) notifyClientLocked(c *call, event string, rec *ClientRecord) {
	h := s.hooks[c.loc]
	if h.flag("active") != 1 || h.flag("client") != 1 || len(h.urls) == 0 {
		return
	}
	if h.flag("self_sending") == 0 && h.writer != nil && h.writer == c.user {
		s.stats.WebhooksSuppressed++
		return
	}
	payload, err := json.Marshal(map[string]any{
		"company_id":  c.loc,
		"resource":    "client",
		"resource_id": rec.ID,
		"status":      event,
		"data":        renderClient(rec, styleCard, false),
	})
	if err != nil {
		// Only sandbox-built values reach here; failing to encode them is a bug.
		panic("sandbox: encode webhook: " + err.Error())
	}
	now := s.cfg.Now()
	for _, u := range h.urls {
		s.nextWebhook++
		d := &WebhookDelivery{ID: s.nextWebhook, URL: u, LocationID: c.loc, ClientID: rec.ID, Event: event,
			Status: WebhookPending, Payload: payload, QueuedAt: now}
		s.webhooks = append(s.webhooks, d)
		if n := len(s.webhooks) - maxWebhookLog; n > 0 {
			s.webhooks = append(s.webhooks[:0:0], s.webhooks[n:]...)
		}
		switch {
		case s.hooksClosed:
			s.finishWebhookLocked(d, WebhookFailed, "sandbox closed")
			continue
		case s.pendingWebhooks >= maxPendingWebhooks:
			s.finishWebhookLocked(d, WebhookFailed, "too many deliveries pending")
			continue
		}
		s.pendingWebhooks++
		s.hookWG.Add(1)
		go s.sendWebhook(d, u, payload)
	}
}

// sendWebhook waits Config.WebhookDelay, then POSTs payload to url up to
// three times. It ends early when the Server is closed.
func (s *Server) sendWebhook(d *WebhookDelivery, url string, payload []byte) {
	defer s.hookWG.Done()
	ctx := s.hookCtx
	if !sleepFor(ctx, s.cfg.WebhookDelay) {
		s.finishWebhook(d, WebhookFailed, "sandbox closed before the first attempt")
		return
	}
	for attempt := 1; ; attempt++ {
		status, err := s.postWebhook(ctx, url, payload)
		s.noteWebhookAttempt(d, status, err)
		s.logger.Debug("sandbox webhook", "location_id", d.LocationID, "delivery", d.ID,
			"attempt", attempt, "status", status, "error", err)
		switch {
		case err == nil && status >= 200 && status < 300:
			s.finishWebhook(d, WebhookDelivered, "")
			return
		case attempt == webhookAttempts || !retryableWebhook(status, err):
			s.finishWebhook(d, WebhookFailed, "")
			return
		}
		if !sleepFor(ctx, s.cfg.WebhookRetryDelay) {
			s.finishWebhook(d, WebhookFailed, "sandbox closed before the next attempt")
			return
		}
	}
}

// retryableWebhook: transport failures, 429 and 5xx are retried (ref §7).
func retryableWebhook(status int, err error) bool {
	return err != nil || status == http.StatusTooManyRequests || status >= 500
}

// postWebhook makes one attempt and returns the answer's status.
func (s *Server) postWebhook(ctx context.Context, url string, payload []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "altegio-sandbox-webhooks")
	if s.cfg.WebhookBearer != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.WebhookBearer)
	}
	resp, err := s.hookHTTP.Do(req)
	if err != nil {
		return 0, err
	}
	// The 10 s bound covers reading the answer too (ref §7: "total").
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookAnswer))
	_ = resp.Body.Close()
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

func (s *Server) noteWebhookAttempt(d *WebhookDelivery, status int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.WebhookAttempts++
	d.Attempts++
	d.HTTPStatus = status
	d.Error = ""
	if err != nil {
		d.Error = err.Error()
	}
}

func (s *Server) finishWebhook(d *WebhookDelivery, status, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pendingWebhooks--
	s.finishWebhookLocked(d, status, reason)
}

// finishWebhookLocked ends a delivery. Callers hold s.mu.
func (s *Server) finishWebhookLocked(d *WebhookDelivery, status, reason string) {
	d.Status = status
	d.FinishedAt = s.cfg.Now()
	if reason != "" {
		d.Error = reason
	}
	s.stats.WebhookDeliveries++
	if status != WebhookDelivered {
		s.stats.WebhookFailures++
	}
}

// Webhooks returns copies of the most recent deliveries (up to 256),
// oldest first, pending ones included.
func (s *Server) Webhooks() []WebhookDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WebhookDelivery, 0, len(s.webhooks))
	for _, d := range s.webhooks {
		c := *d
		c.Payload = bytes.Clone(d.Payload)
		out = append(out, c)
	}
	return out
}

// Close stops webhook deliveries: the ones waiting or in flight are
// cancelled and recorded as failed, and Close waits for their goroutines.
// The API keeps answering, but client changes after Close send nothing.
// Close is idempotent and always returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	s.hooksClosed = true
	s.mu.Unlock()
	s.hookStop()
	s.hookWG.Wait()
	s.hookHTTP.CloseIdleConnections()
	return nil
}

// sleepFor waits d or until ctx ends; it reports whether the full wait
// elapsed. A d of zero or less returns at once (true unless ctx ended).
func sleepFor(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
