package commands

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func mustDecode(t *testing.T, in string) Command {
	t.Helper()
	c, err := Decode([]byte(in))
	if err != nil {
		t.Fatalf("Decode(%s): %v", in, err)
	}
	return c
}

func TestClientFieldsAccessor(t *testing.T) {
	got, err := mustDecode(t, update(fullClient)).ClientFields()
	if err != nil {
		t.Fatalf("ClientFields: %v", err)
	}
	want := ClientFields{
		Name: new("James"), Phone: new("+1 (315) 555-0175"), Surname: new("Smith"), MiddleName: new("A"),
		Email: new("j.smith@example.com"), GenderID: new(1), ImportanceID: new(3), Discount: new(12.5),
		Card: new("555888666"), BirthDate: new("2000-02-29"), Comment: new("regular"), Spent: new(71842.0),
		Balance: new(-200.5), SMSCheck: new(1), SMSNot: new(0), Categories: []int64{101, 102},
		CustomFields: map[string]any{"vip_note": "prefers mornings", "visits": json.Number("3"), "tags": []any{"a"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ClientFields() = %+v, want %+v", got, want)
	}
}

func TestClientFieldsPresence(t *testing.T) {
	minimal, err := mustDecode(t, update(okClient)).ClientFields()
	if err != nil {
		t.Fatalf("ClientFields: %v", err)
	}
	if minimal.Surname != nil || minimal.Categories != nil || minimal.CustomFields != nil || minimal.SMSNot != nil {
		t.Errorf("absent fields are present: %+v", minimal)
	}
	clear, err := mustDecode(t, update(cleared)).ClientFields()
	if err != nil {
		t.Fatalf("ClientFields: %v", err)
	}
	if clear.Surname == nil || *clear.Surname != "" || clear.Categories == nil || len(clear.Categories) != 0 || clear.CustomFields == nil {
		t.Errorf("cleared fields are absent: %+v", clear)
	}
	// Presence survives encoding.
	b, err := json.Marshal(clear)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if got, want := string(b), `{"name":"James","phone":"13155550175","surname":"","email":"","card":"","birth_date":"","comment":"","categories":[],"custom_fields":{}}`; got != want {
		t.Errorf("Marshal = %s, want %s", got, want)
	}
}

func TestPayloadAccessors(t *testing.T) {
	bulkCmd := mustDecode(t, bulk(okClient, `{"name":"B","phone":"+13155550176"}`))
	bulkPayload, err := bulkCmd.BulkCreate()
	if err != nil {
		t.Fatalf("BulkCreate: %v", err)
	}
	if got := len(bulkPayload.Clients); got != 2 || *bulkPayload.Clients[1].Name != "B" {
		t.Errorf("BulkCreate() = %+v, want 2 clients, the second named B", bulkPayload)
	}
	comment, err := mustDecode(t, commentAdd(`"hello"`)).CommentAdd()
	if err != nil || comment != (CommentAddPayload{Text: "hello"}) {
		t.Errorf("CommentAdd() = %+v, %v, want {hello}, nil", comment, err)
	}
	del, err := mustDecode(t, withClient("client.comment.delete", commentID7)).CommentDelete()
	if err != nil || del != (CommentDeletePayload{CommentID: 7}) {
		t.Errorf("CommentDelete() = %+v, %v, want {7}, nil", del, err)
	}
	file, err := mustDecode(t, withClient("client.file.delete", fileID9)).FileDelete()
	if err != nil || file != (FileDeletePayload{FileID: 9}) {
		t.Errorf("FileDelete() = %+v, %v, want {9}, nil", file, err)
	}
}

func TestPayloadAccessorErrors(t *testing.T) {
	del := Command{Type: TypeClientDelete, LocationID: 1, ClientID: 1}
	wrongType := []struct {
		name string
		call func() error
	}{
		{"ClientFields", func() error { _, err := del.ClientFields(); return err }},
		{"ClientUpdate", func() error { _, err := del.ClientUpdate(); return err }},
		{"BulkCreate", func() error { _, err := del.BulkCreate(); return err }},
		{"CommentAdd", func() error { _, err := del.CommentAdd(); return err }},
		{"CommentDelete", func() error { _, err := del.CommentDelete(); return err }},
		{"FileDelete", func() error { _, err := del.FileDelete(); return err }},
	}
	for _, tc := range wrongType {
		if err := tc.call(); !errors.Is(err, ErrPayloadType) {
			t.Errorf("%s on client.delete: error = %v, want ErrPayloadType", tc.name, err)
		}
	}
	bad := Command{Type: TypeClientCreate, LocationID: 1, Payload: json.RawMessage(`{"name":"J","phone":"1"}`)}
	_, err := bad.ClientFields()
	if got, want := problemPaths(t, err), []string{"payload.phone"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ClientFields problems at %q, want %q", got, want)
	}
}

func TestClientUpdateAccessor(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    UpdateMode
	}{
		{name: "absent is merge", payload: okClient, want: UpdateMerge},
		{name: "merge", payload: client(`"mode":"merge"`), want: UpdateMerge},
		{name: "replace", payload: client(`"mode":"replace","email":""`), want: UpdateReplace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustDecode(t, update(tc.payload))
			got, err := c.ClientUpdate()
			if err != nil {
				t.Fatalf("ClientUpdate: %v", err)
			}
			if got.Mode != tc.want {
				t.Errorf("Mode = %q, want %q", got.Mode, tc.want)
			}
			fields, err := c.ClientFields()
			if err != nil {
				t.Fatalf("ClientFields: %v", err)
			}
			if !reflect.DeepEqual(got.ClientFields, fields) {
				t.Errorf("ClientUpdate().ClientFields = %+v, ClientFields() = %+v", got.ClientFields, fields)
			}
			if *got.Name != "James" || *got.Phone != "+13155550175" {
				t.Errorf("fields = %+v, want James +13155550175", got.ClientFields)
			}
		})
	}

	create := mustDecode(t, create(okClient))
	if _, err := create.ClientUpdate(); !errors.Is(err, ErrPayloadType) {
		t.Errorf("ClientUpdate on client.create: error = %v, want ErrPayloadType", err)
	}
	bad := Command{Type: TypeClientUpdate, LocationID: 1, ClientID: 7, Payload: json.RawMessage(`{"mode":"put","name":"J","phone":"+13155550175"}`)}
	if _, err := bad.ClientUpdate(); !reflect.DeepEqual(problemPaths(t, err), []string{"payload.mode"}) {
		t.Errorf("ClientUpdate with a bad mode: %v, want a problem at payload.mode", err)
	}
}

// The reasons name the rule that was broken.
func TestUpdateModeReasons(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Problem
	}{
		{
			name: "replace without name and phone",
			in:   update(`{"mode":"replace","surname":"Smith"}`),
			want: []Problem{{"payload.name", "required with mode replace"}, {"payload.phone", "required with mode replace"}},
		},
		{
			name: "unknown mode",
			in:   update(client(`"mode":"patch"`)),
			want: []Problem{{"payload.mode", `must be "merge" or "replace"`}},
		},
		{
			name: "mode on create",
			in:   create(client(`"mode":"replace"`)),
			want: []Problem{{"payload.mode", "unknown field; mode is for client.update only"}},
		},
		{
			name: "mode in a bulk item",
			in:   bulk(client(`"mode":"merge"`)),
			want: []Problem{{"payload.clients[0].mode", "unknown field; mode is for client.update only"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Decode error = %v, want *ValidationError", err)
			}
			if !reflect.DeepEqual(ve.Problems, tc.want) {
				t.Errorf("problems = %+v, want %+v", ve.Problems, tc.want)
			}
		})
	}
}

// An UpdatePayload built in Go encodes flat and decodes back the same.
func TestUpdatePayloadRoundTrip(t *testing.T) {
	in := UpdatePayload{Mode: UpdateReplace, ClientFields: ClientFields{Name: new("James"), Phone: new("+13155550175"), Categories: []int64{}}}
	c := Command{ID: NewID(), Type: TypeClientUpdate, LocationID: 1, ClientID: 5}
	if err := c.SetPayload(in); err != nil {
		t.Fatalf("SetPayload: %v", err)
	}
	if got, want := string(c.Payload), `{"mode":"replace","name":"James","phone":"+13155550175","categories":[]}`; got != want {
		t.Errorf("payload = %s, want %s", got, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	got, err := c.ClientUpdate()
	if err != nil {
		t.Fatalf("ClientUpdate: %v", err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("ClientUpdate() = %+v, want %+v", got, in)
	}
	c.Type = TypeClientCreate
	c.ClientID = 0
	if got := problemPaths(t, c.Validate()); !reflect.DeepEqual(got, []string{"payload.mode"}) {
		t.Errorf("the same payload on client.create: problems at %q, want payload.mode", got)
	}
}

func TestSetPayloadRoundTrip(t *testing.T) {
	in := ClientFields{Name: new("James"), Phone: new("+13155550175"), GenderID: new(0), Categories: []int64{3}}
	c := Command{ID: NewID(), Type: TypeClientUpdate, LocationID: 1, ClientID: 5}
	if err := c.SetPayload(in); err != nil {
		t.Fatalf("SetPayload: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	got, err := c.ClientFields()
	if err != nil {
		t.Fatalf("ClientFields: %v", err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("ClientFields() = %+v, want %+v", got, in)
	}
	if err := c.SetPayload(func() {}); err == nil {
		t.Error("SetPayload(func) succeeded, want an encoding error")
	}
}

func TestApplyTo(t *testing.T) {
	current := ClientFields{
		Name: new("James"), Phone: new("+13155550175"), Surname: new("Smith"), Email: new("j@example.com"),
		Discount: new(10.0), Categories: []int64{1, 2}, CustomFields: map[string]any{"a": "1", "b": "2"},
	}
	change := ClientFields{
		Name: new("Jim"), Email: new(""), Discount: new(0.0), SMSNot: new(1),
		Categories: []int64{}, CustomFields: map[string]any{"b": "3", "c": "4"},
	}
	got := change.ApplyTo(current)
	want := ClientFields{
		Name: new("Jim"), Phone: new("+13155550175"), Surname: new("Smith"), Email: new(""),
		Discount: new(0.0), SMSNot: new(1), Categories: []int64{},
		CustomFields: map[string]any{"a": "1", "b": "3", "c": "4"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ApplyTo = %+v, want %+v", got, want)
	}
	if *current.Name != "James" || len(current.CustomFields) != 2 || len(current.Categories) != 2 {
		t.Errorf("ApplyTo modified current: %+v", current)
	}
	*got.Name = "changed"
	if *change.Name != "Jim" {
		t.Error("ApplyTo result shares pointers with its argument")
	}
}

func TestNewID(t *testing.T) {
	a, b := NewID(), NewID()
	if a == b {
		t.Errorf("NewID returned %q twice", a)
	}
	for _, id := range []string{a, b} {
		if !uuidRE.MatchString(id) {
			t.Errorf("NewID() = %q, not a lowercase UUID", id)
		}
	}
}
