package commands

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"
)

// ErrTooLarge is returned (wrapped) by Decode when the input is longer than
// MaxCommandSize. An HTTP front door maps it to 413.
var ErrTooLarge = errors.New("command too large")

// SyntaxError reports input that is not a single well-formed JSON value in
// UTF-8. An HTTP front door maps it to 400; every other decoding problem is
// a *ValidationError (422).
type SyntaxError struct {
	// Offset is the byte offset at which the problem was found.
	Offset int64
	// Msg describes the problem.
	Msg string
}

// Error implements error.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("malformed json at offset %d: %s", e.Offset, e.Msg)
}

// Decode parses one command strictly and validates it (see Validate for the
// rules). Strict means: the input must be a UTF-8 JSON object; unknown and
// duplicate fields are rejected, also inside the payload; null is rejected
// except as the payload of client.delete; numbers must have the right type
// (an integer field takes no fraction or exponent) and fit it.
//
// Decode returns an error wrapping ErrTooLarge when data is longer than
// MaxCommandSize, a *SyntaxError when data is not well-formed JSON, and a
// *ValidationError listing every problem otherwise. With a *ValidationError
// the returned Command still holds every envelope field that could be read,
// so that an invalid command can be routed to the DLQ (see DLQSubject); with
// any other error it is the zero Command. On success the payload is kept in
// compact form.
func Decode(data []byte) (Command, error) {
	if len(data) > MaxCommandSize {
		return Command{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxCommandSize)
	}
	if err := checkSyntax(data); err != nil {
		return Command{}, err
	}
	d := &decoder{}
	c, ok := decodeEnvelope(d, data)
	if ok {
		c.validate(d)
	}
	return c, d.err()
}

// checkSyntax returns a *SyntaxError unless data is one well-formed JSON
// value in UTF-8.
func checkSyntax(data []byte) error {
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, n := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return &SyntaxError{Offset: int64(off), Msg: "invalid UTF-8"}
	}
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &SyntaxError{Offset: se.Offset, Msg: se.Error()}
		}
		return &SyntaxError{Msg: err.Error()}
	}
	return nil
}

// decodeEnvelope reads the envelope fields of data, which must be well-formed
// JSON, reporting type problems, unknown and duplicate fields to d. It
// returns false when data is not an object.
func decodeEnvelope(d *decoder, data []byte) (Command, bool) {
	var c Command
	members, ok := d.object("", data)
	if !ok {
		return c, false
	}
	var sawLocation bool
	for _, m := range members {
		p := fieldPath("", m.key)
		switch m.key {
		case "schema_version":
			if v := d.intPtr(p, m.value); v != nil {
				c.SchemaVersion = *v
			}
		case "id":
			if v, ok := d.string(p, m.value); ok {
				c.ID = v
			}
		case "type":
			if v, ok := d.string(p, m.value); ok {
				c.Type = Type(v)
			}
		case "location_id":
			sawLocation = true
			if v, ok := d.integer(p, m.value); ok {
				c.LocationID = v
			}
		case "client_id":
			if v, ok := d.integer(p, m.value); ok {
				if v <= 0 {
					d.add(p, "must be greater than 0")
				}
				c.ClientID = v
			}
		case "client_ref":
			if v, ok := d.string(p, m.value); ok {
				if v == "" {
					d.add(p, "must not be empty; omit the field instead")
				}
				c.ClientRef = v
			}
		case "payload":
			// Compacted, not HTML-escaped: a command is stored with the
			// text it was sent with (escaping would turn each <, > and &
			// into six bytes). Encode a Command with HTML escaping off
			// (json.Encoder.SetEscapeHTML) to keep it so.
			var compact bytes.Buffer
			if err := json.Compact(&compact, m.value); err != nil {
				d.add(p, "malformed JSON")
				continue
			}
			c.Payload = compact.Bytes()
		case "correlation_id":
			if v, ok := d.string(p, m.value); ok {
				if v == "" {
					d.add(p, "must not be empty; omit the field instead")
				}
				c.CorrelationID = v
			}
		case "occurred_at":
			if v, ok := d.string(p, m.value); ok {
				t, err := parseTimestamp(v)
				if err != nil {
					d.add(p, "must be an RFC 3339 timestamp such as 2026-11-30T10:00:00Z")
					continue
				}
				c.OccurredAt = t
			}
		default:
			d.unknownField(p, m.key)
		}
	}
	if !sawLocation {
		d.add("location_id", "required")
	}
	return c, true
}

// timestampPattern is the shape of occurred_at: RFC 3339 with an upper-case T and
// Z, at most nanosecond precision. Shared with the schema.
const timestampPattern = `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`

var timestampRE = regexp.MustCompile(timestampPattern)

// parseTimestamp parses an RFC 3339 timestamp more strictly than
// time.Time.UnmarshalJSON does (it accepts one-digit hours, a comma before
// the fraction and out-of-range zone offsets).
func parseTimestamp(s string) (time.Time, error) {
	if !timestampRE.MatchString(s) {
		return time.Time{}, errors.New("not an RFC 3339 timestamp")
	}
	if zone := s[len(s)-1]; zone != 'Z' {
		h, _ := strconv.Atoi(s[len(s)-5 : len(s)-3])
		m, _ := strconv.Atoi(s[len(s)-2:])
		if h > 23 || m > 59 {
			return time.Time{}, errors.New("zone offset out of range")
		}
	}
	return time.Parse(time.RFC3339Nano, s)
}

// decoder walks a JSON document and collects problems. It reports at most
// one problem per path, so a later check does not repeat an earlier one
// (a field of the wrong type is not also reported as missing).
type decoder struct {
	problems    []Problem
	reported    map[string]bool
	truncated   bool
	unknownType bool
	badVersion  bool
}

// add records a problem at path unless path already has one. It reports
// whether the problem was recorded.
func (d *decoder) add(path, reason string) bool {
	if d.reported[path] {
		return false
	}
	if d.reported == nil {
		d.reported = make(map[string]bool)
	}
	d.reported[path] = true
	if len(d.problems) >= MaxProblems {
		d.truncated = true
		return true
	}
	d.problems = append(d.problems, Problem{Path: path, Reason: reason})
	return true
}

// has reports whether path already has a problem.
func (d *decoder) has(path string) bool {
	return d.reported[path]
}

// err returns the collected problems as a *ValidationError, or nil.
func (d *decoder) err() error {
	if len(d.problems) == 0 {
		return nil
	}
	problems := d.problems
	if d.truncated {
		problems = append(problems, Problem{
			Reason: fmt.Sprintf("too many problems; only the first %d are listed", MaxProblems),
		})
	}
	return &ValidationError{Problems: problems, unknownType: d.unknownType, unsupportedVersion: d.badVersion}
}

// fieldHints explain unknown fields that are names the API uses elsewhere.
var fieldHints = map[string]string{
	"labels":     "use categories; the API client sends them as labels on update",
	"patronymic": "use middle_name",
	"sex_id":     "use gender_id",
	"sex":        "use gender_id",
	"gender":     "use gender_id",
	"importance": "use importance_id",
	"company_id": "use location_id",
	"salon_id":   "use location_id",
}

func (d *decoder) unknownField(path, key string) {
	if hint, ok := fieldHints[key]; ok {
		d.add(path, "unknown field; "+hint)
		return
	}
	d.add(path, "unknown field")
}

// member is one name/value pair of a JSON object.
type member struct {
	key   string
	value json.RawMessage
}

// object parses raw, which must be well-formed JSON, as an object and returns
// its members in document order. It reports a problem and returns false when
// raw is not an object; duplicate names are reported and dropped.
func (d *decoder) object(path string, raw json.RawMessage) ([]member, bool) {
	if kind(raw) != '{' {
		d.add(path, typeReason(raw, "an object"))
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		d.add(path, "malformed JSON")
		return nil, false
	}
	var members []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			d.add(path, "malformed JSON")
			return nil, false
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			d.add(path, "malformed JSON")
			return nil, false
		}
		if seen[key] {
			d.add(fieldPath(path, key), "duplicate field")
			continue
		}
		seen[key] = true
		members = append(members, member{key: key, value: value})
	}
	return members, true
}

// array parses raw, which must be well-formed JSON, as an array.
func (d *decoder) array(path string, raw json.RawMessage) ([]json.RawMessage, bool) {
	if kind(raw) != '[' {
		d.add(path, typeReason(raw, "an array"))
		return nil, false
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		d.add(path, "malformed JSON")
		return nil, false
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	return items, true
}

func (d *decoder) string(path string, raw json.RawMessage) (string, bool) {
	if kind(raw) != '"' {
		d.add(path, typeReason(raw, "a string"))
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		d.add(path, "malformed JSON")
		return "", false
	}
	return s, true
}

// integer reads a JSON integer literal: no fraction, no exponent, within
// int64.
func (d *decoder) integer(path string, raw json.RawMessage) (int64, bool) {
	if kind(raw) != '0' || bytes.ContainsAny(raw, ".eE") {
		d.add(path, typeReason(raw, "an integer"))
		return 0, false
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		d.add(path, "out of range")
		return 0, false
	}
	return v, true
}

func (d *decoder) number(path string, raw json.RawMessage) (float64, bool) {
	if kind(raw) != '0' {
		d.add(path, typeReason(raw, "a number"))
		return 0, false
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		d.add(path, "out of range")
		return 0, false
	}
	return v, true
}

func (d *decoder) stringPtr(path string, raw json.RawMessage) *string {
	if v, ok := d.string(path, raw); ok {
		return &v
	}
	return nil
}

func (d *decoder) intPtr(path string, raw json.RawMessage) *int {
	v, ok := d.integer(path, raw)
	if !ok {
		return nil
	}
	if int64(int(v)) != v {
		d.add(path, "out of range")
		return nil
	}
	return new(int(v))
}

func (d *decoder) numberPtr(path string, raw json.RawMessage) *float64 {
	if v, ok := d.number(path, raw); ok {
		return &v
	}
	return nil
}

// kind classifies a JSON value by its first byte: '{', '[', '"', 't', 'f',
// 'n', or '0' for a number. It returns 0 for an empty value.
func kind(raw json.RawMessage) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	switch c := raw[0]; c {
	case '{', '[', '"', 't', 'f', 'n':
		return c
	default:
		return '0'
	}
}

// typeReason is the reason for a value of the wrong JSON type.
func typeReason(raw json.RawMessage, want string) string {
	if kind(raw) == 'n' {
		return "must be " + want + ", not null"
	}
	return "must be " + want
}

// fieldPath appends a member name to a problem path: parent.key for simple
// names, parent["odd key"] for names that are not identifiers.
func fieldPath(parent, key string) string {
	if !isIdentifier(key) {
		return parent + "[" + strconv.Quote(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// indexPath appends an array index to a problem path.
func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidID reports whether s is a valid command id: a lowercase UUID other
// than the nil UUID.
func ValidID(s string) bool {
	return uuidRE.MatchString(s) && s != nilUUID
}

// PeekID returns the "id" of a message that Decode refused (too large,
// invalid), when its top level is a JSON object whose "id" is a valid
// command id (a lowercase UUID other than the nil UUID); else "". It lets a
// dead letter of such a message still name its command.
func PeekID(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return ""
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return ""
		}
		if k != "id" {
			continue
		}
		var id string
		if json.Unmarshal(v, &id) != nil || !ValidID(id) {
			return ""
		}
		return id
	}
	return ""
}
