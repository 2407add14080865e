package ingest

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeRequest: decodeRequest never panics, answers only 400, 413 or
// 422, and whatever it accepts is a valid command.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"type":"client.create","location_id":1,"payload":{"name":"A","phone":"+79001234567"}}`,
		`[{"type":"client.delete","location_id":1,"client_id":2},{"type":"client.comment.add","location_id":1,"client_ref":"r","payload":{"text":"hi"}}]`,
		`[]`, `[1,2]`, `{"type":"x"}`, `  [ {"id":"0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7d"} ]`, `"\xff"`, `{`, ``, `null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cmds, _, err := decodeRequest(body, 3)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) {
				t.Fatalf("error %T %v is not a requestError", err, err)
			}
			switch re.kind.status {
			case 400, 413, 422:
			default:
				t.Fatalf("status %d", re.kind.status)
			}
			if re.kind.status == 422 && len(re.errors) == 0 {
				t.Fatalf("422 without problems")
			}
			return
		}
		if len(cmds) == 0 || len(cmds) > 3 {
			t.Fatalf("%d commands accepted", len(cmds))
		}
		for i, c := range cmds {
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted command %d is invalid: %v", i, err)
			}
		}
	})
}

// FuzzVerifySignature: the verifier never panics, accepts what was signed
// with a configured secret, and refuses the same signature over any other
// body, id or timestamp.
func FuzzVerifySignature(f *testing.F) {
	f.Add("msg_1", int64(1_800_000_000), []byte(`{"a":1}`), "v1,abc", []byte("other"))
	f.Add("", int64(0), []byte{}, "", []byte{})
	f.Add("msg_2", int64(-5), []byte("x"), "v1, v2,== v1,"+"AAAA", []byte("x"))
	now := time.Unix(1_800_000_000, 0)
	secrets := [][]byte{[]byte("first-webhook-secret-32-bytes!!!"), []byte("second-webhook-secret-32-bytes!!")}
	f.Fuzz(func(t *testing.T, id string, ts int64, body []byte, sigHeader string, other []byte) {
		tsText := strconv.FormatInt(ts, 10)
		// Arbitrary headers never panic and never pass by accident.
		if err := verifyWebhook(secrets, id, tsText, sigHeader, body, now, 5*time.Minute); err == nil {
			t.Fatalf("random signature %q accepted", sigHeader)
		}
		if id == "" || len(id) > maxWebhookIDLength {
			return
		}
		ts = now.Unix() + ts%300 // inside the tolerance
		tsText = strconv.FormatInt(ts, 10)
		sig := SignWebhook(secrets[1], id, ts, body)
		// A valid signature among junk ones is enough.
		combined := sigHeader + " " + sig
		if len(strings.Fields(sigHeader)) < maxWebhookSignatures && len(combined) <= maxSignatureHeaderSize {
			if err := verifyWebhook(secrets, id, tsText, combined, body, now, 5*time.Minute); err != nil {
				t.Fatalf("signed request with extra signatures %q refused: %v", sigHeader, err)
			}
		}
		if err := verifyWebhook(secrets, id, tsText, sig, body, now, 5*time.Minute); err != nil {
			t.Fatalf("signed request refused: %v", err)
		}
		if string(other) != string(body) {
			if err := verifyWebhook(secrets, id, tsText, sig, other, now, 5*time.Minute); err == nil {
				t.Fatalf("signature accepted for another body")
			}
		}
		if err := verifyWebhook(secrets, id+"x", tsText, sig, body, now, 5*time.Minute); err == nil {
			t.Fatalf("signature accepted for another id")
		}
	})
}
