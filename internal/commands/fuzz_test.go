package commands

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecode checks that Decode never panics, that what it accepts passes
// Validate and the JSON Schema, has well-formed subjects, and survives
// encoding and decoding unchanged; and that what it rejects is rejected with
// one of the documented error types.
func FuzzDecode(f *testing.F) {
	for _, tc := range commandCases {
		f.Add([]byte(tc.in))
	}
	for _, seed := range []string{
		``, `{`, `null`, `[]`, `{}`, `{"type":"client.create"}`, "{\"a\":\"\xff\"}",
		`{"type":"client.delete","location_id":1,"client_id":1,"payload":{"":{}}}`,
		`{"type":"client.create","location_id":1,"payload":{"name":"J","phone":"+13155550175","custom_fields":{"n":1e400}}}`,
		`{"type":"client.create","location_id":1,"payload":{"name":"J","phone":"+13155550175","discount":1e400}}`,
		`{"type":"client.create","location_id":1,"occurred_at":"0000-01-01T00:00:00-23:59","payload":{"name":"J","phone":"+13155550175"}}`,
		`{"type":"client.update","location_id":1,"client_ref":"\u2028\ud800","payload":{"name":"\u003c\u0000","phone":"+13155550175"}}`,
	} {
		f.Add([]byte(seed))
	}
	schema := commandSchemaT(f)

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			var se *SyntaxError
			var ve *ValidationError
			switch {
			case errors.As(err, &se), errors.Is(err, ErrTooLarge):
			case errors.As(err, &ve):
				if len(ve.Problems) == 0 {
					t.Fatalf("ValidationError without problems for %q", data)
				}
			default:
				t.Fatalf("Decode(%q) error %T: %v", data, err, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Decode accepted %q but Validate says: %v", data, err)
		}
		if err := schemaValidate(t, schema, data); err != nil {
			t.Fatalf("Decode accepted %q but the schema rejects it: %v", data, err)
		}
		checkSubject(t, CommandSubject(c), "altegio.cmd.", 5)
		checkSubject(t, DLQSubject(c), "altegio.dlq.", 4)

		encoded, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(Decode(%q)): %v", data, err)
		}
		again, err := Decode(encoded)
		if err != nil {
			t.Fatalf("Decode(Marshal(Decode(%q))) = %v\nencoded: %s", data, err, encoded)
		}
		if !equalCommands(t, again, c) {
			t.Fatalf("round trip changed the command:\n got %+v\nwant %+v", again, c)
		}
	})
}

// FuzzCheckStoredSubject: any subject is judged without a panic, and one
// that agrees with a command is exactly the subject the stream stores it
// under.
func FuzzCheckStoredSubject(f *testing.F) {
	c := Command{Type: TypeClientUpdate, LocationID: 7, ClientRef: "crm-1"}
	f.Add("altegio.cmd." + StoredPartition("7", "ref_crm-1", 8) + ".7.ref_crm-1.update")
	f.Add("altegio.cmd.1.7.ref_crm-1.update")
	f.Add("altegio.cmd.7.ref_crm-1.update")
	f.Add("altegio.cmd....")
	f.Add("")
	f.Fuzz(func(t *testing.T, subject string) {
		err := c.CheckStoredSubject(subject, 8)
		want := "altegio.cmd." + StoredPartition("7", "ref_crm-1", 8) + ".7.ref_crm-1.update"
		if (err == nil) != (subject == want) {
			t.Fatalf("CheckStoredSubject(%q) = %v; the only agreeing subject is %q", subject, err, want)
		}
		if err != nil && !errors.Is(err, ErrSubjectMismatch) {
			t.Fatalf("error %v does not wrap ErrSubjectMismatch", err)
		}
	})
}
