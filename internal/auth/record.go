package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Keys in the token bucket. Account names are valid key tokens.
func tokenKey(account string) string { return "token." + account }
func leaseKey(account string) string { return "lease." + account }

// maxRecord bounds a KV value we are willing to decode.
const maxRecord = 16 << 10

// tokenRecord is the value of "token.<account>".
type tokenRecord struct {
	// UserToken is the Altegio user token (a secret).
	UserToken string `json:"user_token"`
	// ObtainedAt is when POST /auth returned it, on the writer's clock.
	ObtainedAt time.Time `json:"obtained_at"`
}

func encodeToken(r tokenRecord) []byte {
	b, _ := json.Marshal(r) // cannot fail: strings and a time
	return b
}

// decodeToken decodes a token record. Its errors never quote the input,
// which holds a secret.
func decodeToken(b []byte) (tokenRecord, error) {
	var r tokenRecord
	if err := decodeRecord(b, &r); err != nil {
		return tokenRecord{}, fmt.Errorf("decode token record: %w", err)
	}
	switch {
	case r.UserToken == "":
		return tokenRecord{}, errors.New("decode token record: no user_token")
	case !validToken(r.UserToken):
		return tokenRecord{}, errors.New("decode token record: user_token contains a space, comma or control character")
	}
	return r, nil
}

// Lease states.
const (
	leaseLogin  = "login"  // the owner is logging in
	leaseFailed = "failed" // the owner's login failed; Reason says why
)

// leaseRecord is the value of "lease.<account>".
type leaseRecord struct {
	// Owner identifies the Manager that took the lease.
	Owner string `json:"owner"`
	// State is leaseLogin or leaseFailed.
	State string `json:"state"`
	// Reason is set when State is leaseFailed: reasonTwoFactor,
	// reasonInvalidCredentials or reasonUnavailable.
	Reason string `json:"reason,omitempty"`
}

func encodeLease(r leaseRecord) []byte {
	b, _ := json.Marshal(r) // cannot fail: strings
	return b
}

func decodeLease(b []byte) (leaseRecord, error) {
	var r leaseRecord
	if err := decodeRecord(b, &r); err != nil {
		return leaseRecord{}, fmt.Errorf("decode lease record: %w", err)
	}
	switch r.State {
	case leaseLogin, leaseFailed:
	default:
		return leaseRecord{}, fmt.Errorf("decode lease record: unknown state %q", truncate(r.State, 16))
	}
	return r, nil
}

// decodeRecord unmarshals b into v, with an error that names only the
// offset of a syntax error, never the content.
func decodeRecord(b []byte, v any) error {
	if len(b) > maxRecord {
		return fmt.Errorf("%d bytes is larger than %d", len(b), maxRecord)
	}
	if err := json.Unmarshal(b, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("malformed JSON at offset %d", se.Offset)
		}
		return errors.New("malformed record")
	}
	return nil
}
