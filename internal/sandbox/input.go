package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Validation messages shared by single and bulk create (ref §6.5).
const (
	msgPhoneExists = "The client with the specified phone number already exists in the database"
	msgNoName      = "Client name not specified"
	msgNoPhone     = "Customer phone number cannot be empty"
	msgPhoneDigits = "Phone must contain 9 to 15 digits"
)

// invalidJSON answers a body that is not valid JSON or has the wrong
// top-level type. The reference documents no status for it; the sandbox
// answers 400 with meta.errors keyed by "body". [I]
func invalidJSON(err error) response {
	return fieldError("Invalid request body", "body", err.Error())
}

// orEmptyObject treats an empty body as {}.
func orEmptyObject(body []byte) []byte {
	if len(bytes.TrimSpace(body)) == 0 {
		return []byte("{}")
	}
	return body
}

// decodeObject decodes a JSON object into its raw fields.
func decodeObject(body []byte) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(orEmptyObject(body), &fields); err != nil {
		return nil, err
	}
	if fields == nil {
		return nil, fmt.Errorf("body must be a JSON object")
	}
	return fields, nil
}

// normalizePhone keeps the digits of a phone number.
func normalizePhone(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// fieldReader reads typed values from a decoded JSON object and collects
// validation messages. A JSON null counts as absent.
type fieldReader struct {
	fields map[string]json.RawMessage
	errs   []string
}

// raw returns the first present, non-null key among keys (for documented
// aliases such as middle_name/patronymic, ref §8).
func (r *fieldReader) raw(keys ...string) (json.RawMessage, string, bool) {
	for _, k := range keys {
		v, ok := r.fields[k]
		if ok && string(bytes.TrimSpace(v)) != "null" {
			return v, k, true
		}
	}
	return nil, "", false
}

func (r *fieldReader) fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// str reads a string.
func (r *fieldReader) str(keys ...string) string {
	v, k, ok := r.raw(keys...)
	if !ok {
		return ""
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		r.fail("The %s field must be a string.", k)
	}
	return strings.TrimSpace(s)
}

// strOrNumber reads a string that the docs also show as a JSON number
// (phone, card; ref §6.1).
func (r *fieldReader) strOrNumber(keys ...string) string {
	v, k, ok := r.raw(keys...)
	if !ok {
		return ""
	}
	var n json.Number
	if err := json.Unmarshal(v, &n); err == nil {
		return n.String()
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		r.fail("The %s field must be a string.", k)
	}
	return strings.TrimSpace(s)
}

// number reads a number within [lo, hi].
func (r *fieldReader) number(lo, hi float64, keys ...string) float64 {
	v, k, ok := r.raw(keys...)
	if !ok {
		return 0
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		r.fail("The %s field must be a number.", k)
		return 0
	}
	if f < lo || f > hi {
		r.fail("The %s field must be between %g and %g.", k, lo, hi)
		return 0
	}
	return f
}

// integer reads an integer within [lo, hi].
func (r *fieldReader) integer(lo, hi int, keys ...string) int {
	v, k, ok := r.raw(keys...)
	if !ok {
		return 0
	}
	var n int
	if err := json.Unmarshal(v, &n); err != nil {
		r.fail("The %s field must be an integer.", k)
		return 0
	}
	if n < lo || n > hi {
		r.fail("The selected %s is invalid.", k)
		return 0
	}
	return n
}

// ids reads an array of positive integer IDs.
func (r *fieldReader) ids(key string) []int64 {
	v, _, ok := r.raw(key)
	if !ok {
		return nil
	}
	var out []int64
	if err := json.Unmarshal(v, &out); err != nil {
		r.fail("The %s field must be an array of IDs.", key)
		return nil
	}
	for _, id := range out {
		if id <= 0 {
			r.fail("The %s field must be an array of IDs.", key)
			return nil
		}
	}
	return out
}

// date reads a "YYYY-MM-DD" date (ref §6.2); "" clears it.
func (r *fieldReader) date(key string) string {
	s := r.str(key)
	if s == "" {
		return ""
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		r.fail("The %s does not match the format Y-m-d.", key)
		return ""
	}
	return s
}

// customFields reads {"api_key": value} with scalar values (ref §6.2).
func (r *fieldReader) customFields(key string) map[string]string {
	v, _, ok := r.raw(key)
	if !ok {
		return nil
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(v, &in); err != nil {
		// [] is how the API spells an empty object (ref §8); accept it back.
		var empty []any
		if json.Unmarshal(v, &empty) == nil && len(empty) == 0 {
			return nil
		}
		r.fail("The %s field must be an object.", key)
		return nil
	}
	out := make(map[string]string, len(in))
	for k, raw := range in {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out[k] = s
			continue
		}
		var scalar any
		if err := json.Unmarshal(raw, &scalar); err != nil {
			r.fail("The %s.%s field is invalid.", key, k)
			continue
		}
		switch scalar.(type) {
		case float64, bool, nil:
			out[k] = strings.TrimSpace(string(raw))
		default:
			r.fail("The %s.%s field must be a scalar.", key, k)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// clientForm is the writable part of a client (ref §6.2, §6.4).
type clientForm struct {
	rec      ClientRecord
	rawPhone string // as sent, for bulk error items
	errs     []string
}

// tagsKey is "labels" for PUT and "categories" for create and bulk
// (ref §6.2, §8). The other key is ignored, so a client that sends the
// wrong one sees its tags cleared.
func readClientForm(fields map[string]json.RawMessage, tagsKey string, withCustomFields bool) clientForm {
	r := &fieldReader{fields: fields}
	var f clientForm
	c := &f.rec
	c.Name = r.str("name")
	f.rawPhone = r.strOrNumber("phone")
	c.Phone = normalizePhone(f.rawPhone)
	c.Surname = r.str("surname")
	c.MiddleName = r.str("middle_name", "patronymic")
	c.Email = r.str("email")
	c.GenderID = r.integer(0, 2, "gender_id", "sex_id")
	c.ImportanceID = r.integer(0, 3, "importance_id")
	c.Discount = r.number(0, 100, "discount")
	c.Card = r.strOrNumber("card")
	c.BirthDate = r.date("birth_date")
	c.Comment = r.str("comment")
	c.Spent = r.number(-1e12, 1e12, "spent")
	c.Balance = r.number(-1e12, 1e12, "balance")
	c.SMSCheck = r.integer(0, 1, "sms_check")
	c.SMSNot = r.integer(0, 1, "sms_not")
	c.Categories = r.ids(tagsKey)
	if withCustomFields {
		c.CustomFields = r.customFields("custom_fields")
	}
	if c.Email != "" && !strings.Contains(c.Email, "@") {
		r.fail("The email must be a valid email address.")
	}

	// Required fields first, in the order of the bulk sample (ref §6.5);
	// bulk reports only the first message of an item.
	if c.Name == "" {
		f.errs = append(f.errs, msgNoName)
	}
	switch {
	case f.rawPhone == "":
		f.errs = append(f.errs, msgNoPhone)
	case len(c.Phone) < 9 || len(c.Phone) > 15:
		f.errs = append(f.errs, msgPhoneDigits)
	}
	f.errs = append(f.errs, r.errs...)
	return f
}
