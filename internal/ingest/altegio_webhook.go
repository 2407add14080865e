package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// The receiver of Altegio's client webhooks: POST
// /v1/altegio/webhooks/{secret}.
//
// Altegio signs nothing and sends no per-destination secret, so the route
// is protected by a secret in the path (Config.AltegioWebhookSecret,
// compared in constant time) and, optionally, a source allow-list
// (Config.AltegioWebhookAllow). A disabled route, a wrong secret and a
// source not allowed all get the very answer of an unknown path, so a
// caller learns nothing about why.
//
// A client webhook becomes one commands.WebhookEvent on
// altegio.evt.<company_id>.webhook.client.<status>, published with
// Nats-Msg-Id = the delivery id (the SHA-256 of the canonical payload), so
// that the EVENTS stream's duplicate window drops Altegio's retries, and
// answered 200 only once JetStream acknowledged it (503 + Retry-After
// otherwise: Altegio retries 429, 5xx and transport errors twice, 1.5 s
// apart; other 4xx never). Webhooks of other resources are acknowledged
// and counted, not published.
//
// Loop prevention: the workers record in the own-changes bucket which
// client each successful command changed (commands.OwnChange). A webhook
// whose client has an own change made within Config.AltegioWebhookOwnWindow
// before its receipt, of a type that matches its status, is published with
// origin {"integrator": true, ...} (OwnChangeMark) or acknowledged and not
// published (OwnChangeSkip). An unreadable bucket never fails a delivery:
// the event is published unmarked.

// OwnChangeMode is what becomes of a client webhook that reports a change
// the integrator made itself (Config.AltegioWebhookOwn).
type OwnChangeMode string

// The modes of Config.AltegioWebhookOwn.
const (
	// OwnChangeMark publishes the event with origin.integrator true and the
	// command's id and type: consumers decide. The default.
	OwnChangeMark OwnChangeMode = "mark"
	// OwnChangeSkip acknowledges the webhook without publishing it. A
	// change someone else makes to the same client within the window, with
	// the same status, is skipped too: prefer OwnChangeMark unless the
	// consumers cannot filter.
	OwnChangeSkip OwnChangeMode = "skip"
)

// Statuses of WebhookReceipt: what became of a delivery.
const (
	// WebhookPublished: the event was stored in the EVENTS stream.
	WebhookPublished = "published"
	// WebhookDuplicate: the stream already held the event of this delivery
	// (a retry by Altegio); stream_seq is the original's.
	WebhookDuplicate = "duplicate"
	// WebhookSkipped: the change was the integrator's own and
	// Config.AltegioWebhookOwn is OwnChangeSkip; nothing was published.
	WebhookSkipped = "skipped"
	// WebhookIgnored: the webhook is about another resource than client;
	// nothing was published.
	WebhookIgnored = "ignored"
)

// WebhookReceipt is the 200 body of POST /v1/altegio/webhooks/{secret}.
type WebhookReceipt struct {
	// Status is WebhookPublished, WebhookDuplicate, WebhookSkipped or
	// WebhookIgnored.
	Status string `json:"status"`
	// DeliveryID is the event's delivery_id (and Nats-Msg-Id); absent when
	// ignored.
	DeliveryID string `json:"delivery_id,omitempty"`
	// StreamSeq is the EVENTS stream sequence of the event, when published
	// or duplicate.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
}

// altegioWebhookStatuses are the answers of the webhook route.
var altegioWebhookStatuses = []int{200, 400, 404, 413, 503}

// probBadWebhook is a webhook payload that is JSON but not a valid client
// webhook; Errors says which fields.
var probBadWebhook = problemKind{"invalid-webhook", "Invalid webhook", http.StatusBadRequest, "invalid"}

// minWebhookSecretLength is the shortest Config.AltegioWebhookSecret.
const minWebhookSecretLength = 16

// maxOwnChangeSkew is how far after a webhook's receipt an own change may
// be dated and still count: the clocks of ingest and the workers differ.
const maxOwnChangeSkew = 30 * time.Second

// Results and reasons of ingest_altegio_webhooks_total: the receipt
// statuses (WebhookPublished, …) and these.
const (
	webhookResultRejected = "rejected"
	webhookResultRefused  = "refused"
	webhookResultFailed   = "failed"

	originExternal = "external"
	originOwn      = "own"

	refusedDisabled = "disabled"
	refusedSource   = "source"
	refusedSecret   = "secret"

	reasonMalformed   = "malformed_json"
	reasonInvalid     = "invalid"
	reasonTooLarge    = "too_large"
	reasonUnavailable = "unavailable"
	reasonOwnChange   = "own_change"
	reasonOther       = "other"
)

// knownResources are the other resources Altegio sends webhooks about
// (altegio.HookResources but client): the reason of an ignored webhook is
// its resource when known, else "other", so the label stays bounded.
var knownResources = slices.DeleteFunc(slices.Clone(altegio.HookResources), func(r string) bool { return r == commands.WebhookResourceClient })

// webhookMetricLabels are the label pairs of ingest_altegio_webhooks_total,
// registered at zero.
var webhookMetricLabels = func() [][2]string {
	l := [][2]string{
		{WebhookPublished, originExternal}, {WebhookPublished, originOwn},
		{WebhookDuplicate, originExternal}, {WebhookDuplicate, originOwn},
		{WebhookSkipped, reasonOwnChange},
		{webhookResultRejected, reasonMalformed}, {webhookResultRejected, reasonInvalid}, {webhookResultRejected, reasonTooLarge},
		{webhookResultRefused, refusedDisabled}, {webhookResultRefused, refusedSource}, {webhookResultRefused, refusedSecret},
		{webhookResultFailed, reasonUnavailable}, {webhookResultFailed, reasonTooLarge},
		{WebhookIgnored, reasonOther},
	}
	for _, r := range knownResources {
		l = append(l, [2]string{WebhookIgnored, r})
	}
	return l
}()

// Results of ingest_altegio_webhook_own_lookups_total.
const (
	ownLookupOwn       = "own"
	ownLookupNone      = "none"
	ownLookupStale     = "stale"
	ownLookupOtherType = "other_type"
	ownLookupChanged   = "changed_since"
	ownLookupError     = "error"
)

var ownLookupResults = []string{ownLookupOwn, ownLookupNone, ownLookupStale, ownLookupOtherType, ownLookupChanged, ownLookupError}

// ignoredReason is the metric reason of a webhook about resource.
func ignoredReason(resource string) string {
	for _, r := range knownResources {
		if r == resource {
			return r
		}
	}
	return reasonOther
}

// altegioWebhook is a decoded webhook payload.
type altegioWebhook struct {
	CompanyID  int64
	Resource   string
	ResourceID int64
	Status     commands.WebhookStatus
	Data       json.RawMessage // a compacted JSON object
}

// decodeAltegioWebhook decodes the body of a webhook (reference §7):
// {company_id, resource, resource_id, status, data}. The body must be a
// UTF-8 JSON object with a non-empty string resource. A webhook about
// another resource than client is returned as it is, without checking the
// other fields. For a client webhook, company_id and resource_id must be
// positive integers (a JSON number, or a string of digits), status create,
// update or delete, and data a JSON object; a delete may carry no data
// (absent, null or []), read as {}. Unknown fields are ignored. Every
// problem is reported at once. The error is a *requestError: 400
// malformed-json or 400 invalid-webhook with the field paths.
func decodeAltegioWebhook(body []byte) (altegioWebhook, error) {
	var h altegioWebhook
	if !utf8.Valid(body) {
		return h, &requestError{kind: probBadJSON, detail: "the body is not UTF-8"}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return h, &requestError{kind: probBadJSON, detail: fmt.Sprintf("malformed json at offset %d: %v", se.Offset, se)}
		case errors.As(err, &te):
			return h, invalidWebhook(commands.Problem{Path: "", Reason: "must be a JSON object"})
		default:
			return h, &requestError{kind: probBadJSON, detail: err.Error()}
		}
	}
	if fields == nil {
		return h, invalidWebhook(commands.Problem{Path: "", Reason: "must be a JSON object"})
	}
	var problems []commands.Problem
	add := func(path, reason string) { problems = append(problems, commands.Problem{Path: path, Reason: reason}) }

	if raw, ok := fields["resource"]; !ok || isNull(raw) {
		add("resource", "required")
	} else if err := json.Unmarshal(raw, &h.Resource); err != nil || h.Resource == "" {
		add("resource", "must be a non-empty string")
	}
	if len(problems) == 0 && h.Resource != commands.WebhookResourceClient {
		return h, nil
	}
	h.CompanyID = positiveID(fields, "company_id", add)
	h.ResourceID = positiveID(fields, "resource_id", add)
	if raw, ok := fields["status"]; !ok || isNull(raw) {
		add("status", "required")
	} else if err := json.Unmarshal(raw, &h.Status); err != nil || !h.Status.Valid() {
		add("status", "must be create, update or delete")
	}
	raw, ok := fields["data"]
	trimmed := bytes.TrimSpace(raw)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		var buf bytes.Buffer
		if err := json.Compact(&buf, trimmed); err != nil {
			add("data", "must be a JSON object")
			break
		}
		h.Data = buf.Bytes()
	case (!ok || isNull(raw) || isEmptyArray(trimmed)) && h.Status == commands.WebhookDelete:
		h.Data = json.RawMessage(`{}`)
	case !ok || isNull(raw):
		add("data", "required: the client object")
	default:
		add("data", "must be a JSON object")
	}
	if len(problems) > 0 {
		return altegioWebhook{}, invalidWebhook(problems...)
	}
	return h, nil
}

func invalidWebhook(problems ...commands.Problem) *requestError {
	return &requestError{kind: probBadWebhook, detail: fmt.Sprintf("%d problems; nothing was published", len(problems)), errors: problems}
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func isEmptyArray(trimmed []byte) bool {
	return len(trimmed) >= 2 && trimmed[0] == '[' && len(bytes.TrimSpace(trimmed[1:len(trimmed)-1])) == 0
}

// positiveID reads field name of fields as a positive integer: a JSON
// number without sign, fraction or exponent, or a string of such digits.
// It reports a problem through add and returns 0 when it is not one.
func positiveID(fields map[string]json.RawMessage, name string, add func(path, reason string)) int64 {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		add(name, "required")
		return 0
	}
	text := string(bytes.TrimSpace(raw))
	if strings.HasPrefix(text, `"`) {
		if err := json.Unmarshal(raw, &text); err != nil {
			text = ""
		}
	}
	if text == "" || strings.TrimLeft(text, "0123456789") != "" {
		add(name, "must be a positive integer")
		return 0
	}
	id, err := strconv.ParseInt(text, 10, 64)
	switch {
	case err != nil:
		add(name, "must be a positive integer below 2^63")
		return 0
	case id == 0:
		add(name, "must be positive")
		return 0
	}
	return id
}

// deliveryID is the identity of a delivery, equal for Altegio's retries of
// it: the SHA-256, in hex, of the resource, company_id, resource_id, status
// and the compacted data. Two distinct changes that leave a client exactly
// as the same data (last_change_date included) within the EVENTS duplicate
// window are one event.
func (h altegioWebhook) deliveryID() string {
	sum := sha256.New()
	fmt.Fprintf(sum, "altegio-webhook/v1\n%s\n%d\n%d\n%s\n", h.Resource, h.CompanyID, h.ResourceID, h.Status)
	sum.Write(h.Data)
	return hex.EncodeToString(sum.Sum(nil))
}

// altegioWebhook is POST /v1/altegio/webhooks/{secret}.
func (s *Server) altegioWebhook(w http.ResponseWriter, r *http.Request) {
	if reason := s.webhookRefusal(r); reason != "" {
		s.metrics.webhooks.WithLabelValues(webhookResultRefused, reason).Inc()
		level := slog.LevelInfo
		if reason == refusedDisabled {
			level = slog.LevelDebug
		}
		// Never the path: it holds the (wrong or right) secret.
		s.log.Log(r.Context(), level, "altegio webhook refused", "reason", reason, "remote", r.RemoteAddr, "request_id", requestID(r))
		s.writeProblem(w, r, probNotFound.problem(notFoundDetail))
		return
	}
	received := s.cfg.now().UTC()
	body, prob := s.readBody(w, r, probBadJSON)
	if prob != nil {
		reason := reasonMalformed
		if prob.Status == http.StatusRequestEntityTooLarge {
			reason = reasonTooLarge
		}
		s.rejectWebhook(w, r, reason, prob)
		return
	}
	hook, err := decodeAltegioWebhook(body)
	if err != nil {
		var re *requestError
		if !errors.As(err, &re) {
			re = &requestError{kind: probBadJSON, detail: err.Error()}
		}
		reason := reasonInvalid
		if re.kind == probBadJSON {
			reason = reasonMalformed
		}
		s.rejectWebhook(w, r, reason, re.problem())
		return
	}
	if hook.Resource != commands.WebhookResourceClient {
		reason := ignoredReason(hook.Resource)
		s.metrics.webhooks.WithLabelValues(WebhookIgnored, reason).Inc()
		s.log.Debug("altegio webhook ignored", "resource", reason, "request_id", requestID(r))
		writeJSON(w, http.StatusOK, WebhookReceipt{Status: WebhookIgnored})
		return
	}
	// Once the delivery is taken, a caller hanging up does not cut the
	// work short.
	ctx := context.WithoutCancel(r.Context())
	ev := commands.WebhookEvent{
		SchemaVersion: commands.WebhookSchemaVersion,
		LocationID:    hook.CompanyID,
		Resource:      hook.Resource,
		ResourceID:    hook.ResourceID,
		Status:        hook.Status,
		Data:          hook.Data,
		ReceivedAt:    received,
		DeliveryID:    hook.deliveryID(),
	}
	origin := originExternal
	if change, own := s.ownChange(ctx, hook, received); own {
		if s.cfg.AltegioWebhookOwn == OwnChangeSkip {
			s.metrics.webhooks.WithLabelValues(WebhookSkipped, reasonOwnChange).Inc()
			s.log.Debug("altegio webhook of an own change skipped", "location_id", hook.CompanyID, "client_id", hook.ResourceID,
				"status", hook.Status, "delivery_id", ev.DeliveryID, "command_id", change.CommandID)
			writeJSON(w, http.StatusOK, WebhookReceipt{Status: WebhookSkipped, DeliveryID: ev.DeliveryID})
			return
		}
		ev.Origin = commands.WebhookOrigin{Integrator: true, CommandID: change.CommandID, CommandType: change.Type}
		origin = originOwn
	}
	ack, err := s.publishWebhookEvent(ctx, ev)
	if err != nil {
		if isTooLarge(err) {
			s.metrics.webhooks.WithLabelValues(webhookResultFailed, reasonTooLarge).Inc()
			s.log.Warn("altegio webhook event too large for the EVENTS stream", "location_id", hook.CompanyID,
				"client_id", hook.ResourceID, "delivery_id", ev.DeliveryID, "bytes", len(body), "error", err)
			s.writeProblem(w, r, probTooLarge.problem("the event exceeds the EVENTS stream's message size"))
			return
		}
		s.metrics.webhooks.WithLabelValues(webhookResultFailed, reasonUnavailable).Inc()
		s.log.Warn("altegio webhook not stored; Altegio may retry", "location_id", hook.CompanyID,
			"client_id", hook.ResourceID, "delivery_id", ev.DeliveryID, "request_id", requestID(r), "error", err)
		s.writeProblem(w, r, probUnavailable.problem("JetStream did not store the event; retry later"))
		return
	}
	receipt := WebhookReceipt{Status: WebhookPublished, DeliveryID: ev.DeliveryID, StreamSeq: ack.Sequence}
	result := WebhookPublished
	if ack.Duplicate {
		receipt.Status, result = WebhookDuplicate, WebhookDuplicate
	}
	s.metrics.webhooks.WithLabelValues(result, origin).Inc()
	s.log.Debug("altegio webhook "+receipt.Status, "location_id", hook.CompanyID, "client_id", hook.ResourceID,
		"status", hook.Status, "delivery_id", ev.DeliveryID, "origin", origin, "stream_seq", ack.Sequence)
	writeJSON(w, http.StatusOK, receipt)
}

// rejectWebhook answers a webhook that cannot be taken with p. Altegio
// does not retry 4xx: the delivery is lost, so it is logged at Warn
// (without the body, which holds personal data).
func (s *Server) rejectWebhook(w http.ResponseWriter, r *http.Request, reason string, p *Problem) {
	s.metrics.webhooks.WithLabelValues(webhookResultRejected, reason).Inc()
	paths := make([]string, len(p.Errors))
	for i, e := range p.Errors {
		paths[i] = e.Path
	}
	s.log.Warn("altegio webhook rejected", "status", p.Status, "reason", reason, "detail", p.Detail,
		"paths", paths, "request_id", requestID(r))
	s.writeProblem(w, r, p)
}

// webhookRefusal returns why r may not use the webhook route (a refused
// reason), or "" when it may.
func (s *Server) webhookRefusal(r *http.Request) string {
	secret := s.cfg.AltegioWebhookSecret
	if secret == "" {
		return refusedDisabled
	}
	if len(s.cfg.AltegioWebhookAllow) > 0 {
		src, ok := webhookSource(r, s.cfg.AltegioWebhookTrustedProxies)
		if !ok || !prefixesContain(s.cfg.AltegioWebhookAllow, src) {
			return refusedSource
		}
	}
	// Hashes of equal length: the comparison reveals neither the secret's
	// length nor where a guess first differs.
	got, want := sha256.Sum256([]byte(r.PathValue("secret"))), sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return refusedSecret
	}
	return ""
}

// webhookSource returns the address a request comes from: the
// connection's, or, when that is a trusted proxy, the right-most
// X-Forwarded-For address that is not one (the left-most when all are).
// ok is false when an address cannot be parsed.
func webhookSource(r *http.Request, trusted []netip.Prefix) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	addr := ap.Addr().Unmap().WithZone("")
	if len(trusted) == 0 || !prefixesContain(trusted, addr) {
		return addr, true
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}, false
		}
		addr = hop.Unmap().WithZone("")
		if !prefixesContain(trusted, addr) {
			return addr, true
		}
	}
	return addr, true
}

func prefixesContain(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ownChange looks up the own change of the webhook's client and reports
// whether it marks the webhook: made at most AltegioWebhookOwnWindow before
// received (or up to maxOwnChangeSkew after), by a command whose type
// matches the status. A bucket that cannot be read is logged and counts as
// no own change.
func (s *Server) ownChange(ctx context.Context, h altegioWebhook, received time.Time) (commands.OwnChange, bool) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	key := commands.OwnChangeKey(h.CompanyID, h.ResourceID, h.Status)
	var entry jetstream.KeyValueEntry
	kv, err := s.ownChanges.Get(ctx, s.js)
	if err == nil {
		entry, err = kv.Get(ctx, key)
	}
	var change commands.OwnChange
	if err == nil {
		err = json.Unmarshal(entry.Value(), &change)
	}
	result := ownLookupOwn
	switch age := received.Sub(change.At); {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		result = ownLookupNone
	case err != nil:
		result = ownLookupError
		s.log.Warn("own changes unreadable; webhook published unmarked", "bucket", topology.BucketOwnChanges,
			"key", key, "error", err)
	case change.At.IsZero() || age > s.cfg.AltegioWebhookOwnWindow || age < -maxOwnChangeSkew:
		result = ownLookupStale
	case !change.Matches(h.Status):
		result = ownLookupOtherType
	case change.Card != "" && h.Status != commands.WebhookDelete && !sameCard(change.Card, h.Data):
		// Someone changed the client after us: this webhook is theirs.
		result = ownLookupChanged
	}
	s.metrics.ownLookups.WithLabelValues(result).Inc()
	return change, result == ownLookupOwn
}

// sameCard reports whether data, a webhook's card, has the fingerprint
// our command's card had; a card that cannot be read is not ours.
func sameCard(fingerprint string, data json.RawMessage) bool {
	fp, ok := altegio.CardFingerprint(data)
	return ok && fp == fingerprint
}

// publishWebhookEvent publishes ev with its delivery id as Nats-Msg-Id
// and waits for the PubAck, at most PublishTimeout.
func (s *Server) publishWebhookEvent(ctx context.Context, ev commands.WebhookEvent) (*jetstream.PubAck, error) {
	data, err := commands.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode webhook event %s: %w", ev.DeliveryID, err)
	}
	h := nats.Header{}
	h.Set(commands.HeaderSchemaVersion, strconv.Itoa(commands.WebhookSchemaVersion))
	if ev.Origin.Integrator {
		h.Set(commands.HeaderCommandID, ev.Origin.CommandID)
		h.Set(commands.HeaderCommandType, string(ev.Origin.CommandType))
	}
	msg := &nats.Msg{Subject: commands.WebhookEventSubject(ev.LocationID, ev.Status), Header: h, Data: data}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.DeliveryID), jetstream.WithExpectStream(topology.StreamEvents))
	if err != nil {
		return nil, fmt.Errorf("publish webhook event %s: %w", ev.DeliveryID, err)
	}
	return ack, nil
}

// isTooLarge reports whether a publish failed because the message exceeds
// the server's payload limit or the stream's message size: retrying cannot
// help.
func isTooLarge(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum)
}

// validateAltegioWebhook checks the webhook settings of c (part of
// Validate). Its messages never repeat the secret.
func (c Config) validateAltegioWebhook() []error {
	var errs []error
	if secret := c.AltegioWebhookSecret; secret != "" {
		if len(secret) < minWebhookSecretLength {
			errs = append(errs, fmt.Errorf("altegio webhook secret is shorter than %d characters", minWebhookSecretLength))
		}
		if strings.IndexFunc(secret, func(r rune) bool { return !isUnreserved(r) }) >= 0 {
			errs = append(errs, errors.New("altegio webhook secret may hold only A-Z, a-z, 0-9, '-', '_', '.' and '~'"))
		}
	}
	switch c.AltegioWebhookOwn {
	case "", OwnChangeMark, OwnChangeSkip:
	default:
		errs = append(errs, fmt.Errorf("altegio webhook own %q: want %s or %s", c.AltegioWebhookOwn, OwnChangeMark, OwnChangeSkip))
	}
	if c.AltegioWebhookOwnWindow < 0 {
		errs = append(errs, fmt.Errorf("altegio webhook own window %v is negative", c.AltegioWebhookOwnWindow))
	}
	for name, list := range map[string][]netip.Prefix{"allow": c.AltegioWebhookAllow, "trusted proxies": c.AltegioWebhookTrustedProxies} {
		for i, p := range list {
			if !p.IsValid() {
				errs = append(errs, fmt.Errorf("altegio webhook %s %d: not a valid prefix", name, i))
			}
		}
	}
	return errs
}

// isUnreserved reports whether r is an unreserved URI character (RFC
// 3986), which a path segment carries as it is.
func isUnreserved(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '~'
}

// ParseCIDRs parses a comma-separated list of CIDR prefixes or single IP
// addresses (a single address is its own /32 or /128), for
// Config.AltegioWebhookAllow and Config.AltegioWebhookTrustedProxies.
// Blank items are skipped; prefixes are masked ("10.1.2.3/8" is
// 10.0.0.0/8). It returns the first item that parses as neither.
func ParseCIDRs(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR prefix nor an IP address", item)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
