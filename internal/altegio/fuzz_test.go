package altegio

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeClient feeds arbitrary bytes to the client card decoder: it must
// never panic, and a decoded record must survive a JSON round trip.
func FuzzDecodeClient(f *testing.F) {
	for _, seed := range []string{
		clientCardJSON, createdClientJSON, bulkJSON,
		`{"phone":13155550178,"birth_date":"952041600","custom_fields":[],"card":555}`,
		`{"birth_date":-99999999999999999999,"phone":1e400,"categories":[1,{"id":"x"},null]}`,
		`{"patronymic":null,"sex_id":"2","spent":"NaN","custom_fields":[1,2]}`,
		`null`, `[]`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c ClientRecord
		if err := json.Unmarshal(data, &c); err != nil {
			return
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of a decoded record: %v", err)
		}
		var again ClientRecord
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("decode of re-encoded record %s: %v", b, err)
		}
		// Encoding is canonical: a second round trip changes nothing.
		b2, _ := json.Marshal(again)
		if string(b2) != string(b) {
			t.Fatalf("encoding not stable:\n%s\n%s", b, b2)
		}
		_ = c.Input()
	})
}

// FuzzDecodeEnvelope feeds arbitrary bodies to the envelope and error
// decoders and to every list decoder: none may panic.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, seed := range []string{
		`{"success":false,"data":null,"meta":{"message":"Invalid filter value","errors":{"filters":["Invalid filter state value"]}}}`,
		`{"success":false,"data":null,"meta":{"message":"An error has occurred.","errors":[{"field":"a","message":"b"},"c"]}}`,
		`{"errors":{"code":404,"message":"Not found"}}`,
		`{"success":true,"data":[],"meta":[]}`,
		commentsJSON, filesJSON, visitsJSON, bulkJSON,
		`{"success":"0","errors":"x","message":5}`,
		`{"meta":{"errors":{"a":{"b":{"c":{"d":{"e":{"f":"deep"}}}}}}}}`,
		`[1,2]`, `"x"`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := decodeEnvelope(data)
		if err != nil {
			return
		}
		_ = env.failed()
		msg, fields := env.details()
		if len(fields) > maxFieldErrors {
			t.Fatalf("%d field errors, cap %d", len(fields), maxFieldErrors)
		}
		_ = (&APIError{Op: "x", Status: 400, Message: msg, FieldErrors: fields}).Error()
		_, _ = decodeList[ClientRecord](env.Data)
		_, _ = decodeList[ClientRow](env.Data)
		_, _ = decodeList[Comment](env.Data)
		_, _ = decodeList[ClientFile](env.Data)
		_, _ = decodeList[VisitRecord](env.Data)
		_, _ = decodeList[GoodsTransaction](env.Data)
		_ = decodeDateCursor(env.Meta)
		var bulk struct {
			Created json.RawMessage `json:"created"`
			Errors  json.RawMessage `json:"errors"`
		}
		if decodeObject(env.Data, &bulk) == nil {
			created, _ := decodeList[ClientRecord](bulk.Created)
			errs, _ := decodeList[bulkErrorWire](bulk.Errors)
			items := make([]BulkItemError, len(errs))
			for i, e := range errs {
				items[i] = BulkItemError{Phone: string(e.Phone), Name: string(e.Name), Message: string(e.Error)}
			}
			r := matchBulk([]ClientInput{{Name: "James", Phone: "79213237567"}, {Name: "X"}}, created, items)
			if len(r.Items) != 2 {
				t.Fatalf("matchBulk returned %d items", len(r.Items))
			}
		}
	})
}

// FuzzLoginResponse feeds arbitrary bodies to the POST /auth decoder: it must
// never panic, and a token it returns must come from the body.
func FuzzLoginResponse(f *testing.F) {
	for _, seed := range []string{
		`{"success":true,"data":{"id":123456,"user_token":"wec23fh8cDfFV4432fc352456","name":"James Smith"},"meta":[]}`,
		`{"id":1,"user_token":"top"}`,
		`{"success":true,"data":{"uuid":"u","flow":"f","transport":{"type":"sms","recipient":"+7***"},"refresh_ttl_sec":99999999999,"attempts_left":"3"},"meta":[]}`,
		`{"data":{"user_token":12345}}`,
		`{"data":[]}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := decodeEnvelope(data)
		if err != nil {
			return
		}
		r := decodeLogin(env)
		if r.UserToken != "" && !bytes.Contains(data, []byte(r.UserToken)) {
			t.Fatalf("token %q does not come from the body %q", r.UserToken, data)
		}
		_ = r.String()
	})
}
