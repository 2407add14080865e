package auth

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func fmtAll(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }

func TestTokenRecordRoundTrip(t *testing.T) {
	in := tokenRecord{UserToken: initialToken, ObtainedAt: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	out, err := decodeToken(encodeToken(in))
	if err != nil || out != in {
		t.Fatalf("round trip = %+v, %v; want %+v", out, err, in)
	}
	for name, raw := range map[string]string{
		"not JSON":         `{"user_token": "` + initialToken,
		"no token":         `{"obtained_at":"2026-11-30T10:00:00Z"}`,
		"token with space": `{"user_token":"a ` + initialToken + `"}`,
		"wrong type":       `{"user_token":["` + initialToken + `"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeToken([]byte(raw))
			if err == nil {
				t.Fatal("decoded")
			}
			if strings.Contains(err.Error(), initialToken) {
				t.Fatalf("error %q contains the token", err)
			}
		})
	}
}

// FuzzDecodeRecords: decoding KV values never panics, never quotes a token
// in its errors, and what decodes re-encodes to the same record.
func FuzzDecodeRecords(f *testing.F) {
	f.Add([]byte(`{"user_token":"abc","obtained_at":"2026-11-30T10:00:00Z"}`))
	f.Add([]byte(`{"owner":"x","state":"failed","reason":"two_factor"}`))
	f.Add([]byte(`{"user_token":"SECRET`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeToken(b)
		if err == nil {
			if rec.UserToken == "" || !validToken(rec.UserToken) {
				t.Fatalf("decoded an unusable token")
			}
			again, err := decodeToken(encodeToken(rec))
			if err != nil || again.UserToken != rec.UserToken || !again.ObtainedAt.Equal(rec.ObtainedAt) {
				t.Fatalf("re-decode = %v", err)
			}
		} else if len(b) >= 8 && strings.Contains(err.Error(), string(b)) {
			t.Fatalf("error %q quotes the input", err)
		}
		lease, err := decodeLease(b)
		if err == nil {
			if lease.State != leaseLogin && lease.State != leaseFailed {
				t.Fatalf("decoded lease state %q", lease.State)
			}
			if _, err := decodeLease(encodeLease(lease)); err != nil {
				t.Fatalf("re-decode lease: %v", err)
			}
			_ = remoteFailure(lease.Reason)
		}
	})
}
