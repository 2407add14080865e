package commands

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// jsonNames returns the JSON names of a struct type's exported fields,
// with those of an embedded struct without a tag, as encoding/json does.
func jsonNames(t *testing.T, typ reflect.Type) []string {
	t.Helper()
	var names []string
	for f := range typ.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Tag.Get("json") == "" {
			names = append(names, jsonNames(t, f.Type)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			t.Errorf("%s.%s has no JSON name", typ.Name(), f.Name)
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// schemaDoc parses a schema document into a generic tree.
func schemaDoc(t *testing.T, doc []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatalf("parse schema: %v", err)
	}
	return m
}

// lookup walks a schema tree along keys.
func lookup(t *testing.T, node any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := node.(map[string]any)
		if !ok {
			t.Fatalf("schema: %q is not under an object", k)
		}
		if node, ok = m[k]; !ok {
			t.Fatalf("schema: no %q", strings.Join(keys, "/"))
		}
	}
	return node
}

func propertyNames(t *testing.T, node any, keys ...string) []string {
	t.Helper()
	props, ok := lookup(t, node, keys...).(map[string]any)
	if !ok {
		t.Fatalf("schema: %s is not an object", strings.Join(keys, "/"))
	}
	var names []string
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func stringList(t *testing.T, node any) []string {
	t.Helper()
	items, ok := node.([]any)
	if !ok {
		t.Fatalf("schema: %v is not a list", node)
	}
	var out []string
	for _, it := range items {
		out = append(out, it.(string))
	}
	return out
}

// TestSchemaFieldsMatchGo keeps the JSON names in the schemas and the Go
// structs the same, in both directions.
func TestSchemaFieldsMatchGo(t *testing.T) {
	cmd := schemaDoc(t, CommandSchema())
	res := schemaDoc(t, ResultSchema())
	withCustom := func(names []string) []string {
		names = append(slices.Clone(names), "custom_fields")
		sort.Strings(names)
		return names
	}
	// clientUpdatePayload adds its own properties to clientFieldsBase's.
	updateNames := append(propertyNames(t, cmd, "$defs", "clientFieldsBase", "properties"),
		propertyNames(t, cmd, "$defs", "clientUpdatePayload", "properties")...)
	sort.Strings(updateNames)
	tests := []struct {
		name   string
		schema []string
		goType reflect.Type
	}{
		{"Result", propertyNames(t, res, "properties"), reflect.TypeFor[Result]()},
		{"Problem", propertyNames(t, res, "$defs", "problem", "properties"), reflect.TypeFor[Problem]()},
		{"Command", propertyNames(t, cmd, "properties"), reflect.TypeFor[Command]()},
		{"ClientFields", withCustom(propertyNames(t, cmd, "$defs", "clientFieldsBase", "properties")), reflect.TypeFor[ClientFields]()},
		{"UpdatePayload", updateNames, reflect.TypeFor[UpdatePayload]()},
		{"BulkCreatePayload", propertyNames(t, cmd, "$defs", "bulkCreatePayload", "properties"), reflect.TypeFor[BulkCreatePayload]()},
		{"CommentAddPayload", propertyNames(t, cmd, "$defs", "commentAddPayload", "properties"), reflect.TypeFor[CommentAddPayload]()},
		{"CommentDeletePayload", propertyNames(t, cmd, "$defs", "commentDeletePayload", "properties"), reflect.TypeFor[CommentDeletePayload]()},
		{"FileDeletePayload", propertyNames(t, cmd, "$defs", "fileDeletePayload", "properties"), reflect.TypeFor[FileDeletePayload]()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := tc.schema, jsonNames(t, tc.goType); !slices.Equal(got, want) {
				t.Errorf("schema properties %q, Go JSON names %q", got, want)
			}
		})
	}
}

func toStrings[T ~string](vs []T) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, string(v))
	}
	return out
}

// TestSchemaEnumsMatchGo keeps the enumerations in the schemas and Go equal.
func TestSchemaEnumsMatchGo(t *testing.T) {
	cmd := schemaDoc(t, CommandSchema())
	res := schemaDoc(t, ResultSchema())
	tests := []struct {
		name             string
		schema, goValues []string
	}{
		{"type", stringList(t, lookup(t, cmd, "properties", "type", "enum")), toStrings(Types())},
		{"outcome", stringList(t, lookup(t, res, "properties", "outcome", "enum")), toStrings(Outcomes())},
		{"error_class", stringList(t, lookup(t, res, "properties", "error_class", "enum")), toStrings(ErrorClasses())},
		{"mode", stringList(t, lookup(t, cmd, "$defs", "clientUpdatePayload", "properties", "mode", "enum")), toStrings([]UpdateMode{UpdateMerge, UpdateReplace})},
	}
	for _, tc := range tests {
		if !slices.Equal(tc.schema, tc.goValues) {
			t.Errorf("%s: schema enum %q, Go %q", tc.name, tc.schema, tc.goValues)
		}
	}
	if got := lookup(t, cmd, "$defs", "bulkCreatePayload", "properties", "clients", "maxItems"); got != float64(MaxBulkClients) {
		t.Errorf("schema maxItems of clients = %v, want %d", got, MaxBulkClients)
	}
}

// TestSchemaPatternsMatchGo checks that the schema uses the Go patterns.
func TestSchemaPatternsMatchGo(t *testing.T) {
	var patterns []string
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			for k, v := range n {
				if s, ok := v.(string); ok && k == "pattern" {
					patterns = append(patterns, s)
				}
				walk(v)
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(schemaDoc(t, CommandSchema()))
	for _, p := range []string{uuidPattern, clientRefPattern, correlationIDPattern, phonePattern, emailPattern, datePattern, timestampPattern} {
		if !slices.ContainsFunc(patterns, func(s string) bool { return strings.Contains(s, p) }) {
			t.Errorf("schema has no pattern containing %q", p)
		}
	}
}

func TestResultsMatchSchema(t *testing.T) {
	s := resultSchemaT(t)
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		r    Result
	}{
		{name: "succeeded", r: Result{
			SchemaVersion: SchemaVersion, CommandID: testID, Type: TypeClientCreate, LocationID: 42,
			ClientID: 1121412, ClientRef: "crm-42", Outcome: OutcomeSucceeded, HTTPStatus: 201,
			Attempts: 1, FirstAttemptAt: at, CompletedAt: at.Add(time.Second), APILatencyMS: 180,
			TotalMS: 950, CorrelationID: "c", Data: json.RawMessage(`{"id":1121412}`), StreamSeq: 7,
			Note: "created", WorkerID: "w-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		}},
		{name: "dead lettered", r: Result{
			SchemaVersion: SchemaVersion, CommandID: testID, Type: TypeCommentAdd, LocationID: 42,
			Outcome: OutcomeDeadLettered, ErrorClass: ClassPermanent, HTTPStatus: 422,
			APIMessage: "An error has occurred.", FieldErrors: []Problem{{Path: "text", Reason: "too long"}, {Reason: "x"}},
			Attempts: 1, Replay: 2, ReplayOf: 3, CompletedAt: at,
		}},
		{name: "undecodable", r: Result{SchemaVersion: SchemaVersion, Outcome: OutcomeDeadLettered, ErrorClass: ClassInvalid, CompletedAt: at}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.r)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if err := schemaValidate(t, s, b); err != nil {
				t.Errorf("result %s does not match the schema: %v", b, err)
			}
		})
	}
	bad := []string{
		`{"schema_version":1,"command_id":"x","type":"client.create","location_id":1,"outcome":"won","attempts":0,"completed_at":"2026-11-30T10:00:00Z"}`,
		`{"schema_version":1,"command_id":"x","type":"client.create","location_id":1,"outcome":"failed","attempts":0}`,
		`{"schema_version":1,"command_id":"x","type":"client.create","location_id":1,"outcome":"failed","attempts":0,"completed_at":"2026-11-30T10:00:00Z","trace_id":"not-a-trace-id"}`,
	}
	for _, in := range bad {
		if err := schemaValidate(t, s, []byte(in)); err == nil {
			t.Errorf("schema accepts invalid result %s", in)
		}
	}
}
