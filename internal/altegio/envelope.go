package altegio

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// maxFieldErrors bounds how many meta.errors entries are kept.
const maxFieldErrors = 100

// envelope is the v1 response body: {"success", "data", "meta"}. Some
// YCLIENTS-era errors put "errors" (and rarely "message") at the top level.
type envelope struct {
	Success json.RawMessage `json:"success"`
	Data    json.RawMessage `json:"data"`
	Meta    json.RawMessage `json:"meta"`
	Errors  json.RawMessage `json:"errors"`
	Message json.RawMessage `json:"message"`

	// bare is set when the body was valid JSON but not an object; Data then
	// holds the whole body (the undocumented raw-array endpoints).
	bare bool
	// raw is the whole body, for responses that may come without an envelope.
	raw []byte
}

// errEmptyBody is returned by decodeEnvelope for an empty body.
var errEmptyBody = errors.New("empty response body")

// decodeEnvelope parses a response body. It fails on an empty body and on
// invalid JSON.
func decodeEnvelope(body []byte) (envelope, error) {
	var env envelope
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return env, errEmptyBody
	}
	if body[0] != '{' {
		if !json.Valid(body) {
			return env, errors.New("response body is not JSON")
		}
		env.Data, env.bare, env.raw = body, true, body
		return env, nil
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return envelope{}, err
	}
	env.raw = body
	return env, nil
}

// failed reports whether the envelope says "success": false (also "0",
// "false" and 0). An absent success key is not a failure.
func (e envelope) failed() bool {
	if len(e.Success) == 0 || jsonKind(e.Success) == 'n' {
		return false
	}
	var ok flexBool
	_ = ok.UnmarshalJSON(e.Success)
	return !bool(ok)
}

// errorMeta is the object form of meta on errors.
type errorMeta struct {
	Message flexString      `json:"message"`
	Errors  json.RawMessage `json:"errors"`
}

// details extracts the message and field errors of an error envelope: the
// message from meta.message, else errors.message (or errors as a string),
// else a top-level message; field errors from meta.errors, else from a
// top-level errors array or field map.
func (e envelope) details() (string, []FieldError) {
	var meta errorMeta
	_ = decodeObject(e.Meta, &meta)
	msg := strings.TrimSpace(string(meta.Message))
	fields := parseFieldErrors(meta.Errors)

	switch jsonKind(e.Errors) {
	case '{':
		var top errorMeta
		_ = json.Unmarshal(e.Errors, &top)
		if msg == "" {
			msg = strings.TrimSpace(string(top.Message))
		}
		if len(fields) == 0 {
			fields = parseFieldErrors(top.Errors)
		}
		if len(fields) == 0 {
			// {"errors": {"phone": ["…"]}}: a field map without a message key.
			var m map[string]json.RawMessage
			if json.Unmarshal(e.Errors, &m) == nil {
				delete(m, "message")
				delete(m, "code")
				delete(m, "errors")
				if len(m) > 0 {
					b, _ := json.Marshal(m)
					fields = parseFieldErrors(b)
				}
			}
		}
	case '"':
		if msg == "" {
			var s flexString
			_ = s.UnmarshalJSON(e.Errors)
			msg = strings.TrimSpace(string(s))
		}
	case '[':
		if len(fields) == 0 {
			fields = parseFieldErrors(e.Errors)
		}
	}
	if msg == "" {
		var s flexString
		_ = s.UnmarshalJSON(e.Message)
		msg = strings.TrimSpace(string(s))
	}
	return msg, fields
}

// parseFieldErrors normalizes meta.errors. It accepts an object keyed by field
// whose values are strings, arrays of strings or objects with "message" (or
// nested objects, flattened as "a.b"), and an array of strings or of objects
// with "message" and optionally "field". Other shapes give nil.
func parseFieldErrors(raw []byte) []FieldError {
	var out []FieldError
	collectFieldErrors(raw, "", &out, 0)
	return out
}

func collectFieldErrors(raw []byte, field string, out *[]FieldError, depth int) {
	if len(*out) >= maxFieldErrors || depth > 4 {
		return
	}
	add := func(msg string) {
		if msg = strings.TrimSpace(msg); msg != "" && len(*out) < maxFieldErrors {
			*out = append(*out, FieldError{Field: field, Message: msg})
		}
	}
	switch k := jsonKind(raw); {
	case k == '"' || isNumberStart(k):
		var s flexString
		_ = s.UnmarshalJSON(raw)
		add(string(s))
	case k == '[':
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return
		}
		for _, el := range elems {
			collectFieldErrors(el, field, out, depth+1)
		}
	case k == '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return
		}
		if msgRaw, ok := firstKey(m, "message", "error", "text"); ok && jsonKind(msgRaw) == '"' {
			// {"field": "phone", "message": "…"} is one error, not a field map.
			f := field
			if fr, ok := firstKey(m, "field", "attribute", "property", "name"); ok {
				var s flexString
				_ = s.UnmarshalJSON(fr)
				if string(s) != "" {
					f = string(s)
				}
			}
			var s flexString
			_ = s.UnmarshalJSON(msgRaw)
			if msg := strings.TrimSpace(string(s)); msg != "" && len(*out) < maxFieldErrors {
				*out = append(*out, FieldError{Field: f, Message: msg})
			}
			return
		}
		for _, key := range sortedKeys(m) {
			sub := key
			if field != "" {
				sub = field + "." + key
			}
			collectFieldErrors(m[key], sub, out, depth+1)
		}
	}
}

func firstKey(m map[string]json.RawMessage, keys ...string) (json.RawMessage, bool) {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			return v, true
		}
	}
	return nil, false
}
