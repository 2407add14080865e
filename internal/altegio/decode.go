package altegio

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The API is a PHP backend: scalars come back as numbers or strings, empty
// objects as [] and absent values as null, 0 or "". The flex types below
// accept every shape and never fail, so one odd field cannot fail a whole
// record; they are used only inside the wire structs of this package.

// jsonKind returns the first significant byte of a JSON value ('"', '{', '[',
// 'n', 't', 'f', or a number's first byte), or 0 when raw is empty.
func jsonKind(raw []byte) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func isNumberStart(k byte) bool { return k == '-' || (k >= '0' && k <= '9') }

// numberText normalizes a JSON number or numeric string to plain decimal text:
// integers are kept digit for digit (phone numbers exceed float precision),
// "1.3e10" becomes "13000000000".
func numberText(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '-' }) < 0 {
		return s
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return s
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// flexString decodes a string, number or boolean to a string; null and other
// shapes decode to "".
type flexString string

func (s *flexString) UnmarshalJSON(raw []byte) error {
	k := jsonKind(raw)
	switch {
	case k == '"':
		var v string
		if json.Unmarshal(raw, &v) == nil {
			*s = flexString(v)
		}
	case isNumberStart(k):
		*s = flexString(numberText(string(bytes.TrimSpace(raw))))
	case k == 't':
		*s = "true"
	case k == 'f':
		*s = "false"
	}
	return nil
}

// flexFloat decodes a number or numeric string; anything else is 0.
type flexFloat float64

func (f *flexFloat) UnmarshalJSON(raw []byte) error {
	var text string
	switch k := jsonKind(raw); {
	case k == '"':
		if json.Unmarshal(raw, &text) != nil {
			return nil
		}
	case isNumberStart(k):
		text = string(bytes.TrimSpace(raw))
	case k == 't':
		*f = 1
		return nil
	default:
		return nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	if err == nil && !math.IsInf(v, 0) && !math.IsNaN(v) {
		*f = flexFloat(v)
	}
	return nil
}

// flexInt decodes an integer, a float (truncated), a numeric string or a
// boolean (1/0); anything else is 0.
type flexInt int64

func (n *flexInt) UnmarshalJSON(raw []byte) error {
	var text string
	switch k := jsonKind(raw); {
	case k == '"':
		if json.Unmarshal(raw, &text) != nil {
			return nil
		}
		text = strings.TrimSpace(text)
	case isNumberStart(k):
		text = string(bytes.TrimSpace(raw))
	case k == 't':
		*n = 1
		return nil
	default:
		return nil
	}
	if v, err := strconv.ParseInt(text, 10, 64); err == nil {
		*n = flexInt(v)
		return nil
	}
	if v, err := strconv.ParseFloat(text, 64); err == nil && v >= math.MinInt64 && v < math.MaxInt64 {
		*n = flexInt(int64(v))
	}
	return nil
}

// flexBool decodes true/false, 0/1 and their string forms.
type flexBool bool

func (b *flexBool) UnmarshalJSON(raw []byte) error {
	var s flexString
	_ = s.UnmarshalJSON(raw)
	switch strings.ToLower(strings.TrimSpace(string(s))) {
	case "true", "1":
		*b = true
	default:
		*b = false
	}
	return nil
}

// flexDate decodes a birth date in any of its shapes to "YYYY-MM-DD":
// "1990-04-03", null, 0, "0", or a unix timestamp as a number or string
// (read in UTC). A string it does not recognize is kept as it is.
type flexDate string

const maxUnixSeconds = 1e11 // about year 5138; beyond that it is not a timestamp

func (d *flexDate) UnmarshalJSON(raw []byte) error {
	var s flexString
	_ = s.UnmarshalJSON(raw)
	*d = flexDate(normalizeDate(string(s)))
	return nil
}

func normalizeDate(s string) string {
	s = strings.TrimSpace(s)
	switch s {
	case "", "0", "0000-00-00", "false":
		return ""
	}
	if len(s) >= 10 {
		if _, err := time.Parse(time.DateOnly, s[:10]); err == nil {
			return s[:10]
		}
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		if v == 0 {
			return ""
		}
		if math.Abs(v) < maxUnixSeconds {
			return time.Unix(int64(v), 0).UTC().Format(time.DateOnly)
		}
	}
	return s
}

// decodeObjectMap decodes a JSON object to a map with json.Number values; an
// array becomes a map keyed by index ("0", "1", …) and is nil when empty;
// other shapes are nil.
func decodeObjectMap(raw []byte) map[string]any {
	dec := func(b []byte, v any) error {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		return d.Decode(v)
	}
	switch jsonKind(raw) {
	case '{':
		var m map[string]any
		if dec(raw, &m) != nil || len(m) == 0 {
			return nil
		}
		return m
	case '[':
		var a []any
		if dec(raw, &a) != nil || len(a) == 0 {
			return nil
		}
		m := make(map[string]any, len(a))
		for i, v := range a {
			m[strconv.Itoa(i)] = v
		}
		return m
	}
	return nil
}

// getList makes the call r and decodes its data as a list of T.
func getList[T any](ctx context.Context, c *Client, r request) ([]T, error) {
	env, status, err := c.call(ctx, r)
	if err != nil {
		return nil, err
	}
	list, err := decodeList[T](env.Data)
	if err != nil {
		return nil, c.decodeError(r, status, err)
	}
	return list, nil
}

// decodeList decodes a JSON array element by element; null, {} and other
// non-array shapes give an empty list. An element that is not valid for T
// fails the decode.
func decodeList[T any](raw []byte) ([]T, error) {
	if jsonKind(raw) != '[' {
		return nil, nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, err
	}
	out := make([]T, 0, len(elems))
	for _, e := range elems {
		var v T
		if err := json.Unmarshal(e, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// unmarshalObject decodes raw into v when it is a JSON object. ok is false
// for null (err nil: nothing to decode), for any other non-object (err
// errNotObject) and when decoding fails (err says why).
func unmarshalObject(raw []byte, v any) (ok bool, err error) {
	switch jsonKind(raw) {
	case 'n':
		return false, nil
	case '{':
	default:
		return false, errNotObject
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, err
	}
	return true, nil
}

// decodeObject decodes raw into v when raw is a JSON object; [] (PHP's empty
// object), null and other shapes leave v untouched.
func decodeObject(raw []byte, v any) error {
	if jsonKind(raw) != '{' {
		return nil
	}
	return json.Unmarshal(raw, v)
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
