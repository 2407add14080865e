package commands

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compiledSchemas caches the compiled schemas: compiling is the slow part of
// the schema tests and of every fuzz iteration.
var compiledSchemas sync.Map // url -> *jsonschema.Schema

// compileSchema compiles a schema document with format assertions on.
func compileSchema(t testing.TB, url string, doc []byte) *jsonschema.Schema {
	t.Helper()
	if s, ok := compiledSchemas.Load(url); ok {
		return s.(*jsonschema.Schema)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("parse schema %s: %v", url, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(url, v); err != nil {
		t.Fatalf("add schema %s: %v", url, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile schema %s: %v", url, err)
	}
	compiledSchemas.Store(url, s)
	return s
}

func commandSchemaT(t testing.TB) *jsonschema.Schema {
	t.Helper()
	return compileSchema(t, "command.schema.json", CommandSchema())
}

func resultSchemaT(t testing.TB) *jsonschema.Schema {
	t.Helper()
	return compileSchema(t, "result.schema.json", ResultSchema())
}

// schemaValidate validates a JSON document against s. data must be
// well-formed JSON.
func schemaValidate(t testing.TB, s *jsonschema.Schema, data []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse instance %q: %v", data, err)
	}
	return s.Validate(v)
}

// problemPaths returns the paths of a *ValidationError's problems, or fails
// the test for any other non-nil error.
func problemPaths(t testing.TB, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v (%T), want *ValidationError", err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatalf("ValidationError without problems")
	}
	paths := make([]string, 0, len(ve.Problems))
	for _, p := range ve.Problems {
		paths = append(paths, p.Path)
	}
	return paths
}

// validToken reports whether tok is usable as one token of a NATS subject
// (not a wildcard, no separator, no whitespace or control character).
func validToken(tok string) bool {
	if tok == "" || tok == "*" || tok == ">" {
		return false
	}
	for _, r := range tok {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// checkSubject fails the test unless subject has the prefix and wantTokens
// tokens, all valid.
func checkSubject(t testing.TB, subject, prefix string, wantTokens int) {
	t.Helper()
	if !strings.HasPrefix(subject, prefix) {
		t.Errorf("subject %q does not start with %q", subject, prefix)
	}
	toks := strings.Split(subject, ".")
	if len(toks) != wantTokens {
		t.Errorf("subject %q has %d tokens, want %d", subject, len(toks), wantTokens)
	}
	for _, tok := range toks {
		if !validToken(tok) {
			t.Errorf("subject %q has invalid token %q", subject, tok)
		}
	}
}

// equalCommands reports whether two commands are the same: equal fields,
// equal instants, and semantically equal payloads.
func equalCommands(t testing.TB, got, want Command) bool {
	t.Helper()
	if !got.OccurredAt.Equal(want.OccurredAt) {
		return false
	}
	if !equalJSON(t, got.Payload, want.Payload) {
		return false
	}
	got.OccurredAt, want.OccurredAt = time.Time{}, time.Time{}
	got.Payload, want.Payload = nil, nil
	return reflect.DeepEqual(got, want)
}

func equalJSON(t testing.TB, a, b json.RawMessage) bool {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return reflect.DeepEqual(decodeAny(t, a), decodeAny(t, b))
}

// decodeAny decodes JSON keeping numbers as written.
func decodeAny(t testing.TB, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("unmarshal %q: %v", data, err)
	}
	return v
}
