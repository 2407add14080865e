package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// FuzzDecodeAltegioWebhook: the webhook decoder never panics, refuses only
// with a 400 problem (with field paths when the body is JSON but not a
// webhook), and every client webhook it accepts yields an event subject of
// valid NATS tokens, a delivery id that does not depend on the data's
// formatting, and an event that encodes to JSON.
func FuzzDecodeAltegioWebhook(f *testing.F) {
	for _, seed := range []string{
		`{"company_id":123,"resource":"client","resource_id":456,"status":"create","data":{"id":456,"name":"Ann","phone":"79001234567"}}`,
		`{"company_id":"123","resource":"client","resource_id":"456","status":"delete","data":[]}`,
		`{"company_id":1,"resource":"client","resource_id":1,"status":"delete"}`,
		`{"company_id":1,"resource":"record","resource_id":9,"status":"update","data":{}}`,
		`{"company_id":1.5,"resource":"client","resource_id":-1,"status":"merge","data":"x"}`,
		`{"company_id":99999999999999999999,"resource":"client","resource_id":1e3,"status":"update","data":null}`,
		`{"resource":""}`, `{"resource":7}`, `[]`, `null`, `{`, ``, "{\"a\":\"\xff\"}", `{"resource":"client","data":{"a":"<&>\u2028"}}`,
	} {
		f.Add([]byte(seed))
	}
	hexID := regexp.MustCompile(`^[0-9a-f]{64}$`)
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := decodeAltegioWebhook(body)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) {
				t.Fatalf("error %T %v is not a requestError", err, err)
			}
			if re.kind.status != 400 {
				t.Fatalf("status %d, want 400", re.kind.status)
			}
			if re.kind == probBadWebhook && len(re.errors) == 0 {
				t.Fatalf("invalid webhook without field problems")
			}
			return
		}
		if h.Resource == "" {
			t.Fatalf("accepted a webhook without resource")
		}
		if h.Resource != commands.WebhookResourceClient {
			return // acknowledged and ignored
		}
		if h.CompanyID <= 0 || h.ResourceID <= 0 || !h.Status.Valid() {
			t.Fatalf("accepted %+v", h)
		}
		var data map[string]any
		if err := json.Unmarshal(h.Data, &data); err != nil || data == nil {
			t.Fatalf("data %q is not a JSON object: %v", h.Data, err)
		}
		subject := commands.WebhookEventSubject(h.CompanyID, h.Status)
		tokens := strings.Split(subject, ".")
		if len(tokens) != 6 || !strings.HasPrefix(subject, "altegio.evt.") {
			t.Fatalf("subject %q", subject)
		}
		for _, tok := range tokens {
			if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n\x00\x7f") || tok == opUnknownToken {
				t.Fatalf("subject %q has an invalid token %q", subject, tok)
			}
		}
		id := h.deliveryID()
		if !hexID.MatchString(id) {
			t.Fatalf("delivery id %q", id)
		}
		// The same webhook formatted otherwise is the same delivery.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent(" ", "   ")
		if err := enc.Encode(map[string]any{
			"company_id": h.CompanyID, "resource": h.Resource, "resource_id": h.ResourceID,
			"status": h.Status, "data": json.RawMessage(h.Data),
		}); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		pretty := buf.Bytes()
		again, err := decodeAltegioWebhook(pretty)
		if err != nil {
			t.Fatalf("re-encoded webhook %s refused: %v", pretty, err)
		}
		if again.deliveryID() != id {
			t.Fatalf("delivery id changed with the formatting: %s", pretty)
		}
		ev, err := commands.Marshal(commands.WebhookEvent{SchemaVersion: 1, LocationID: h.CompanyID, Resource: h.Resource,
			ResourceID: h.ResourceID, Status: h.Status, Data: h.Data, DeliveryID: id})
		if err != nil || !json.Valid(ev) {
			t.Fatalf("event does not encode: %v %s", err, ev)
		}
	})
}

// opUnknownToken is the token commands puts in place of an invalid part.
const opUnknownToken = "unknown"
