package commands

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDecodeRules(t *testing.T) {
	for _, tc := range commandCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			got := problemPaths(t, err)
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("Decode problems at %q, want %q (err: %v)", got, want, err)
			}
		})
	}
}

// TestSchemaAgreesWithDecode runs the command table through the JSON Schema:
// the schema must accept exactly what Decode accepts, except for the cases
// where Decode is stricter on purpose.
func TestSchemaAgreesWithDecode(t *testing.T) {
	s := commandSchemaT(t)
	for _, tc := range commandCases {
		t.Run(tc.name, func(t *testing.T) {
			_, decodeErr := Decode([]byte(tc.in))
			schemaErr := schemaValidate(t, s, []byte(tc.in))
			wantValid := tc.want == nil
			if got := decodeErr == nil; got != wantValid {
				t.Errorf("Decode valid = %v, want %v (err: %v)", got, wantValid, decodeErr)
			}
			wantSchemaValid := wantValid || tc.goStricter
			if got := schemaErr == nil; got != wantSchemaValid {
				t.Errorf("schema valid = %v, want %v (err: %v)", got, wantSchemaValid, schemaErr)
			}
		})
	}
}

func TestDecodeErrorKinds(t *testing.T) {
	tests := []struct {
		name            string
		in              string
		wantSyntax      bool
		wantTooLarge    bool
		wantValidation  bool
		wantUnknownType bool
		wantBadVersion  bool
	}{
		{name: "empty", in: "", wantSyntax: true},
		{name: "truncated", in: `{"type":`, wantSyntax: true},
		{name: "trailing data", in: `{} {}`, wantSyntax: true},
		{name: "bare word", in: `client`, wantSyntax: true},
		{name: "invalid utf-8", in: "{\"type\":\"\xff\"}", wantSyntax: true},
		{name: "too large", in: `{"x":"` + strings.Repeat("a", MaxCommandSize) + `"}`, wantTooLarge: true},
		{name: "unknown type", in: `{"type":"client.merge","location_id":1}`, wantValidation: true, wantUnknownType: true},
		{name: "bad version", in: `{"schema_version":9,"type":"client.delete","location_id":1,"client_id":1}`, wantValidation: true, wantBadVersion: true},
		{name: "field problem", in: `{"type":"client.delete","location_id":0,"client_id":1}`, wantValidation: true},
		{name: "valid", in: `{"type":"client.delete","location_id":1,"client_id":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			var se *SyntaxError
			var ve *ValidationError
			if got := errors.As(err, &se); got != tc.wantSyntax {
				t.Errorf("errors.As(%v, *SyntaxError) = %v, want %v", err, got, tc.wantSyntax)
			}
			if got := errors.Is(err, ErrTooLarge); got != tc.wantTooLarge {
				t.Errorf("errors.Is(%v, ErrTooLarge) = %v, want %v", err, got, tc.wantTooLarge)
			}
			if got := errors.As(err, &ve); got != tc.wantValidation {
				t.Errorf("errors.As(%v, *ValidationError) = %v, want %v", err, got, tc.wantValidation)
			}
			if got := errors.Is(err, ErrUnknownType); got != tc.wantUnknownType {
				t.Errorf("errors.Is(%v, ErrUnknownType) = %v, want %v", err, got, tc.wantUnknownType)
			}
			if got := errors.Is(err, ErrUnsupportedVersion); got != tc.wantBadVersion {
				t.Errorf("errors.Is(%v, ErrUnsupportedVersion) = %v, want %v", err, got, tc.wantBadVersion)
			}
			if err != nil && (err.Error() == "" || err.Error() != strings.ToLower(err.Error()[:1])+err.Error()[1:]) {
				t.Errorf("error %q is empty or capitalised", err)
			}
		})
	}
}

func TestSyntaxErrorOffset(t *testing.T) {
	_, err := Decode([]byte(`{"type": x}`))
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("Decode error = %v, want *SyntaxError", err)
	}
	if got, want := se.Offset, int64(10); got != want {
		t.Errorf("Offset = %d, want %d", got, want)
	}
}

func TestDecodeKeepsEnvelopeOfInvalidCommand(t *testing.T) {
	in := `{"id":"` + testID + `","type":"client.update","location_id":42,"client_ref":"crm-42","payload":{"name":""}}`
	got, err := Decode([]byte(in))
	if err == nil {
		t.Fatal("Decode succeeded, want a validation error")
	}
	want := Command{ID: testID, Type: TypeClientUpdate, LocationID: 42, ClientRef: "crm-42", Payload: json.RawMessage(`{"name":""}`)}
	if !equalCommands(t, got, want) {
		t.Errorf("Decode = %+v, want %+v", got, want)
	}
	if got, want := DLQSubject(got), "altegio.dlq.42.update"; got != want {
		t.Errorf("DLQSubject = %q, want %q", got, want)
	}
}

func TestDecodeValues(t *testing.T) {
	in := `{"schema_version":1,"id":"` + testID + `","type":"client.create","location_id":42,"client_ref":"crm-42",` +
		`"payload":{ "name" : "James", "phone":"+13155550175", "comment":"<b>"},"correlation_id":"c-1","occurred_at":"2026-11-30T10:00:00.5+01:00"}`
	got, err := Decode([]byte(in))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := Command{
		SchemaVersion: 1,
		ID:            testID,
		Type:          TypeClientCreate,
		LocationID:    42,
		ClientRef:     "crm-42",
		Payload:       json.RawMessage(`{"name":"James","phone":"+13155550175","comment":"<b>"}`), // compact, not HTML-escaped
		CorrelationID: "c-1",
		OccurredAt:    time.Date(2026, 11, 30, 9, 0, 0, 5e8, time.UTC),
	}
	if !equalCommands(t, got, want) {
		t.Errorf("Decode = %+v, want %+v", got, want)
	}
	if got, want := string(got.Payload), string(want.Payload); got != want {
		t.Errorf("Payload = %s, want compact %s", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range commandCases {
		if tc.want != nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			first, err := Decode([]byte(tc.in))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			encoded, err := json.Marshal(first)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			second, err := Decode(encoded)
			if err != nil {
				t.Fatalf("Decode(Marshal): %v\n%s", err, encoded)
			}
			if !equalCommands(t, second, first) {
				t.Errorf("round trip = %+v, want %+v", second, first)
			}
			again, err := json.Marshal(second)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(again) != string(encoded) {
				t.Errorf("second encoding differs:\n got %s\nwant %s", again, encoded)
			}
		})
	}
}

func TestValidateGoCommand(t *testing.T) {
	valid := func() Command {
		c := Command{ID: NewID(), Type: TypeClientCreate, LocationID: 1, ClientRef: "crm-1"}
		if err := c.SetPayload(ClientFields{Name: new("James"), Phone: new("+13155550175"), Categories: []int64{}}); err != nil {
			t.Fatalf("SetPayload: %v", err)
		}
		return c
	}
	tests := []struct {
		name   string
		modify func(*Command)
		want   []string
	}{
		{name: "valid", modify: func(*Command) {}},
		{name: "no id is fine", modify: func(c *Command) { c.ID = "" }},
		{name: "malformed payload", modify: func(c *Command) { c.Payload = json.RawMessage(`{"name":`) }, want: []string{"payload"}},
		{name: "missing payload", modify: func(c *Command) { c.Payload = nil }, want: []string{"payload"}},
		{name: "negative client id on update", modify: func(c *Command) { c.Type = TypeClientUpdate; c.ClientID = -1 }, want: []string{"client_id"}},
		{name: "year 10000", modify: func(c *Command) { c.OccurredAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, want: []string{"occurred_at"}},
		{name: "schema version", modify: func(c *Command) { c.SchemaVersion = -1 }, want: []string{"schema_version"}},
		{name: "unknown type", modify: func(c *Command) { c.Type = "client.CREATE" }, want: []string{"type"}},
		{name: "payload with whitespace", modify: func(c *Command) { c.Payload = json.RawMessage(" \n" + okClient + "\n") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.modify(&c)
			got := problemPaths(t, c.Validate())
			if !slices.Equal(got, tc.want) {
				t.Errorf("Validate problems at %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	_, err := Decode([]byte(`{"type":"client.delete","location_id":0}`))
	got := err.Error()
	want := "invalid command: location_id: must be greater than 0; client_id: client_id or client_ref is required for client.delete"
	if got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *ValidationError", err)
	}
	body, err := json.Marshal(ve)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	wantBody := `{"errors":[{"path":"location_id","reason":"must be greater than 0"},{"path":"client_id","reason":"client_id or client_ref is required for client.delete"}]}`
	if string(body) != wantBody {
		t.Errorf("JSON = %s, want %s", body, wantBody)
	}
}

func TestValidationErrorTruncates(t *testing.T) {
	items := make([]string, MaxBulkClients)
	for i := range items {
		items[i] = `{"name":"","phone":"1","gender_id":7}`
	}
	_, err := Decode([]byte(bulk(items...)))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Decode error = %v, want *ValidationError", err)
	}
	if got, want := len(ve.Problems), MaxProblems+1; got != want {
		t.Fatalf("len(Problems) = %d, want %d", got, want)
	}
	last := ve.Problems[len(ve.Problems)-1]
	if last.Path != "" || !strings.Contains(last.Reason, "too many problems") {
		t.Errorf("last problem = %+v, want the truncation notice", last)
	}
}

func TestNormalizePhone(t *testing.T) {
	tests := []struct{ in, want string }{
		{"+1 (315) 555-0175", "13155550175"},
		{"13155550175", "13155550175"},
		{"+7 921 323-75-67", "79213237567"},
		{"0044 20 7946 0958", "442079460958"},
		{"", ""},
		{"no digits", ""},
		{"٣١٥", ""}, // non-ASCII digits are not phone digits
	}
	for _, tc := range tests {
		if got := NormalizePhone(tc.in); got != tc.want {
			t.Errorf("NormalizePhone(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPeekID(t *testing.T) {
	const id = "0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7d"
	for _, tc := range []struct {
		data string
		want string
	}{
		{`{"type":"client.create","id":"` + id + `","payload":{"x":"` + strings.Repeat("<", 100) + `"}}`, id},
		{`{"id":"` + strings.ToUpper(id) + `"}`, ""},
		{`{"id":"00000000-0000-0000-0000-000000000000"}`, ""},
		{`{"id":17}`, ""},
		{`{"payload":{"id":"` + id + `"}}`, ""}, // not at the top level
		{`[{"id":"` + id + `"}]`, ""},
		{`{"id":"` + id, ""}, // truncated before the value ends
		{`not json`, ""},
	} {
		if got := PeekID([]byte(tc.data)); got != tc.want {
			t.Errorf("PeekID(%.60q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}
