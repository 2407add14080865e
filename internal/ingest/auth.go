package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names (https://www.standardwebhooks.com/).
const (
	headerWebhookID        = "webhook-id"
	headerWebhookTimestamp = "webhook-timestamp"
	headerWebhookSignature = "webhook-signature"
)

// Limits of the webhook headers, so a verifier never works on unbounded
// input.
const (
	maxWebhookIDLength     = 255
	maxWebhookSignatures   = 16
	maxSignatureHeaderSize = 4096
)

// Authentication errors. Each becomes a 401 whose detail is the error's
// text, which never contains a secret.
var (
	// ErrNoCredentials: neither Authorization nor webhook-signature.
	ErrNoCredentials = errors.New("no credentials: send Authorization: Bearer <key> or a Standard Webhooks signature")
	// ErrBadAPIKey: the bearer key matches no producer.
	ErrBadAPIKey = errors.New("unknown api key")
	// ErrBadSignature: no webhook signature matches any secret.
	ErrBadSignature = errors.New("no valid webhook signature")
	// ErrStaleTimestamp: webhook-timestamp is outside the tolerance.
	ErrStaleTimestamp = errors.New("webhook timestamp outside the tolerance")
	// ErrMalformedWebhook: a webhook header is missing or malformed.
	ErrMalformedWebhook = errors.New("malformed webhook headers")
)

// anonymous is the producer of every request when auth is disabled.
var anonymous = &Producer{Name: "anonymous", Read: true}

// authenticator finds the producer behind a request. It is read-only after
// construction and safe for concurrent use.
type authenticator struct {
	producers []Producer
	disabled  bool
	tolerance time.Duration
	now       func() time.Time
}

// identity is who sent a request and how.
type identity struct {
	producer  *Producer
	webhookID string // set when the request was signed
}

// authenticate checks the request's credentials against the raw body. A
// request with webhook-signature is verified as a Standard Webhook; any
// other needs a bearer key.
func (a *authenticator) authenticate(h http.Header, body []byte) (identity, error) {
	if a.disabled {
		return identity{producer: anonymous, webhookID: h.Get(headerWebhookID)}, nil
	}
	if h.Get(headerWebhookSignature) != "" {
		return a.webhook(h, body)
	}
	if h.Get("Authorization") == "" {
		return identity{}, ErrNoCredentials
	}
	key, ok := bearerKey(h)
	if !ok {
		return identity{}, fmt.Errorf("%w: authorization is not a bearer key", ErrBadAPIKey)
	}
	p := a.byKey(key)
	if p == nil {
		return identity{}, ErrBadAPIKey
	}
	return identity{producer: p}, nil
}

// bearerKey returns the key of "Authorization: Bearer <key>".
func bearerKey(h http.Header) (string, bool) {
	scheme, key, ok := strings.Cut(h.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	return key, ok && strings.EqualFold(scheme, "Bearer") && key != ""
}

// byKey returns the producer with the key, comparing the digest with every
// configured digest in constant time (no early exit: every producer's
// digests are compared).
func (a *authenticator) byKey(key string) *Producer {
	sum := HashAPIKey(key)
	var found *Producer
	for i := range a.producers {
		if keyMatches(sum, a.producers[i].KeyHashes) && found == nil {
			found = &a.producers[i]
		}
	}
	return found
}

// webhook verifies a signed request against every producer's secrets.
func (a *authenticator) webhook(h http.Header, body []byte) (identity, error) {
	id, ts, sigs := h.Get(headerWebhookID), h.Get(headerWebhookTimestamp), h.Get(headerWebhookSignature)
	var lastErr error = ErrBadSignature
	for i := range a.producers {
		p := &a.producers[i]
		if len(p.WebhookSecrets) == 0 {
			continue
		}
		err := verifyWebhook(p.WebhookSecrets, id, ts, sigs, body, a.now(), a.tolerance)
		if err == nil {
			return identity{producer: p, webhookID: id}, nil
		}
		if !errors.Is(err, ErrBadSignature) {
			// Header problems do not depend on the secret.
			return identity{}, err
		}
		lastErr = err
	}
	return identity{}, lastErr
}

// verifyWebhook checks a Standard Webhooks signature: webhook-signature
// holds space-separated "v1,<base64 HMAC-SHA256>" entries over
// "<id>.<timestamp>.<body>"; one entry made with one of the secrets is
// enough. The timestamp (Unix seconds) must be within tolerance of now. It
// returns nil, ErrMalformedWebhook, ErrStaleTimestamp or ErrBadSignature
// (wrapped with detail that never contains a secret).
func verifyWebhook(secrets [][]byte, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	switch {
	case id == "" || timestamp == "" || signatures == "":
		return fmt.Errorf("%w: webhook-id, webhook-timestamp and webhook-signature are required", ErrMalformedWebhook)
	case len(id) > maxWebhookIDLength:
		return fmt.Errorf("%w: webhook-id longer than %d characters", ErrMalformedWebhook, maxWebhookIDLength)
	case len(signatures) > maxSignatureHeaderSize:
		return fmt.Errorf("%w: webhook-signature longer than %d bytes", ErrMalformedWebhook, maxSignatureHeaderSize)
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || sec <= 0 {
		return fmt.Errorf("%w: webhook-timestamp must be Unix seconds", ErrMalformedWebhook)
	}
	// Compare in seconds so that huge values cannot overflow a Duration.
	if skew := now.Unix() - sec; skew > int64(tolerance/time.Second) || -skew > int64(tolerance/time.Second) {
		return fmt.Errorf("%w: %ds from now, tolerance %v", ErrStaleTimestamp, skew, tolerance)
	}
	var candidates [][]byte
	for i, entry := range strings.Fields(signatures) {
		if i >= maxWebhookSignatures {
			break
		}
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue // other schemes (v1a) are not supported; skip them
		}
		raw, err := base64.StdEncoding.DecodeString(sig)
		if err != nil || len(raw) != sha256.Size {
			continue
		}
		candidates = append(candidates, raw)
	}
	if len(candidates) == 0 {
		return fmt.Errorf("%w: no v1 signature", ErrBadSignature)
	}
	for _, secret := range secrets {
		want := signWebhook(secret, id, timestamp, body)
		for _, got := range candidates {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrBadSignature
}

// signWebhook returns the HMAC-SHA256 of "<id>.<timestamp>.<body>".
func signWebhook(secret []byte, id, timestamp string, body []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// SignWebhook returns the webhook-signature value ("v1,<base64>") a
// producer sends for body with the given secret (as from
// ParseWebhookSecret), webhook-id and webhook-timestamp (Unix seconds). It
// is the producer side of the verification, for clients and tests.
func SignWebhook(secret []byte, id string, timestamp int64, body []byte) string {
	ts := strconv.FormatInt(timestamp, 10)
	return "v1," + base64.StdEncoding.EncodeToString(signWebhook(secret, id, ts, body))
}
