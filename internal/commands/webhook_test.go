package commands

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func webhookSchemaT(t testing.TB) *jsonschema.Schema {
	t.Helper()
	return compileSchema(t, "webhook.schema.json", WebhookEventSchema())
}

// TestWebhookSchemaMatchesGo keeps the webhook schema's names and
// enumerations and the Go types the same, in both directions.
func TestWebhookSchemaMatchesGo(t *testing.T) {
	doc := schemaDoc(t, WebhookEventSchema())
	if got, want := propertyNames(t, doc, "properties"), jsonNames(t, reflect.TypeFor[WebhookEvent]()); !slices.Equal(got, want) {
		t.Errorf("event: schema properties %q, Go JSON names %q", got, want)
	}
	if got, want := propertyNames(t, doc, "$defs", "origin", "properties"), jsonNames(t, reflect.TypeFor[WebhookOrigin]()); !slices.Equal(got, want) {
		t.Errorf("origin: schema properties %q, Go JSON names %q", got, want)
	}
	if got, want := stringList(t, lookup(t, doc, "properties", "status", "enum")), toStrings(WebhookStatuses()); !slices.Equal(got, want) {
		t.Errorf("status: schema enum %q, Go %q", got, want)
	}
	// command_type lists exactly the types an own change can match.
	var matching []string
	for _, typ := range Types() {
		for _, st := range WebhookStatuses() {
			if (OwnChange{Type: typ}).Matches(st) {
				matching = append(matching, string(typ))
				break
			}
		}
	}
	got := stringList(t, lookup(t, doc, "$defs", "origin", "properties", "command_type", "enum"))
	slices.Sort(got)
	slices.Sort(matching)
	if !slices.Equal(got, matching) {
		t.Errorf("command_type: schema enum %q, types that match a status %q", got, matching)
	}
	if got := lookup(t, doc, "properties", "schema_version", "const"); got != float64(WebhookSchemaVersion) {
		t.Errorf("schema_version const %v, want %d", got, WebhookSchemaVersion)
	}
	if got := lookup(t, doc, "properties", "resource", "const"); got != WebhookResourceClient {
		t.Errorf("resource const %v, want %q", got, WebhookResourceClient)
	}
}

func TestWebhookEventsMatchSchema(t *testing.T) {
	s := webhookSchemaT(t)
	at := time.Date(2026, 11, 30, 10, 0, 0, 123, time.UTC)
	delivery := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		ev   WebhookEvent
	}{
		{"external update", WebhookEvent{SchemaVersion: WebhookSchemaVersion, LocationID: 42, Resource: WebhookResourceClient, ResourceID: 456,
			Status: WebhookUpdate, Data: json.RawMessage(`{"id":456,"name":"Ann","phone":"79001234567","categories":[]}`),
			ReceivedAt: at, DeliveryID: delivery}},
		{"own create", WebhookEvent{SchemaVersion: WebhookSchemaVersion, LocationID: 42, Resource: WebhookResourceClient, ResourceID: 456,
			Status: WebhookCreate, Data: json.RawMessage(`{}`), ReceivedAt: at, DeliveryID: delivery,
			Origin: WebhookOrigin{Integrator: true, CommandID: testID, CommandType: TypeClientBulkCreate}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Marshal(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemaValidate(t, s, b); err != nil {
				t.Errorf("event %s does not match the schema: %v", b, err)
			}
		})
	}
	good := `"schema_version":1,"location_id":42,"resource":"client","resource_id":456,"status":"update","data":{},"received_at":"2026-11-30T10:00:00Z","delivery_id":"` + delivery + `"`
	if err := schemaValidate(t, s, []byte(`{`+good+`,"origin":{"integrator":false}}`)); err != nil {
		t.Fatalf("the base of the bad cases is refused: %v", err)
	}
	for name, in := range map[string]string{
		"own without command":   `{` + good + `,"origin":{"integrator":true}}`,
		"external with command": `{` + good + `,"origin":{"integrator":false,"command_id":"x"}}`,
		"comment type":          `{` + good + `,"origin":{"integrator":true,"command_id":"x","command_type":"client.comment.add"}}`,
		"no origin":             `{` + good + `}`,
		"status merge":          `{` + strings.Replace(good, `"update"`, `"merge"`, 1) + `,"origin":{"integrator":false}}`,
		"record resource":       `{` + strings.Replace(good, `"client"`, `"record"`, 1) + `,"origin":{"integrator":false}}`,
		"short delivery id":     `{` + strings.Replace(good, delivery, "abc", 1) + `,"origin":{"integrator":false}}`,
		"data array":            `{` + strings.Replace(good, `"data":{}`, `"data":[]`, 1) + `,"origin":{"integrator":false}}`,
		"location zero":         `{` + strings.Replace(good, `"location_id":42`, `"location_id":0`, 1) + `,"origin":{"integrator":false}}`,
	} {
		if err := schemaValidate(t, s, []byte(in)); err == nil {
			t.Errorf("%s: schema accepts %s", name, in)
		}
	}
}

func TestWebhookEventSubject(t *testing.T) {
	for _, tc := range []struct {
		location int64
		status   WebhookStatus
		want     string
	}{
		{42, WebhookCreate, "altegio.evt.42.webhook.client.create"},
		{42, WebhookUpdate, "altegio.evt.42.webhook.client.update"},
		{7, WebhookDelete, "altegio.evt.7.webhook.client.delete"},
		{0, "merge", "altegio.evt.unknown.webhook.client.unknown"},
		{-1, "up.date", "altegio.evt.unknown.webhook.client.unknown"},
	} {
		got := WebhookEventSubject(tc.location, tc.status)
		if got != tc.want {
			t.Errorf("WebhookEventSubject(%d, %q) = %q, want %q", tc.location, tc.status, got, tc.want)
		}
		checkSubject(t, got, "altegio.evt.", 6)
		if !subjectMatches(WebhookEventFilter, got) || !subjectMatches(EventSubjects, got) {
			t.Errorf("%s is outside %s or %s", got, WebhookEventFilter, EventSubjects)
		}
	}
	// Result events are not webhook events.
	res := EventSubject(Result{LocationID: 42, Type: TypeClientUpdate, Outcome: OutcomeSucceeded})
	if subjectMatches(WebhookEventFilter, res) {
		t.Errorf("%s matches %s", res, WebhookEventFilter)
	}
}

// subjectMatches reports whether subject matches filter (tokens, * and >).
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(f) == len(s)
}

func TestOwnChange(t *testing.T) {
	if st, ok := OwnChangeStatus(TypeClientBulkCreate); !ok || st != WebhookCreate {
		t.Errorf("OwnChangeStatus(bulk_create) = %q %v, want create", st, ok)
	}
	if _, ok := OwnChangeStatus(TypeCommentAdd); ok {
		t.Error("a comment causes a client webhook")
	}
	if got, want := OwnChangeKey(42, 456, WebhookUpdate), "42.456.update"; got != want {
		t.Errorf("OwnChangeKey = %q, want %q", got, want)
	}
	if got, want := jsonNames(t, reflect.TypeFor[OwnChange]()), []string{"at", "card", "command_id", "type"}; !slices.Equal(got, want) {
		t.Errorf("OwnChange JSON names %q, want %q", got, want)
	}
	want := map[Type]WebhookStatus{
		TypeClientCreate: WebhookCreate, TypeClientBulkCreate: WebhookCreate,
		TypeClientUpdate: WebhookUpdate, TypeClientDelete: WebhookDelete,
	}
	for _, typ := range append(Types(), "", "client.merge") {
		for _, st := range append(WebhookStatuses(), "", "merge") {
			if got := (OwnChange{Type: typ}).Matches(st); got != (want[typ] == st && st != "") {
				t.Errorf("OwnChange{Type: %q}.Matches(%q) = %v", typ, st, got)
			}
		}
	}
	for _, st := range WebhookStatuses() {
		if !st.Valid() {
			t.Errorf("%q.Valid() = false", st)
		}
	}
	for _, st := range []WebhookStatus{"", "Create", "merge", "create "} {
		if st.Valid() {
			t.Errorf("%q.Valid() = true", st)
		}
	}
}
