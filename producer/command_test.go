package producer

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/ingest"
)

// jsonNames returns the JSON member names of a struct type's fields,
// embedded structs flattened.
func jsonNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			names = append(names, jsonNames(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// TestPublicTypesSpeakTheContract keeps the public types' JSON names those
// of the contract and of ingest's answers, and the types the contract's.
func TestPublicTypesSpeakTheContract(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ours, want reflect.Type
		subset     bool // ours holds only some of want's members
	}{
		{"Client", reflect.TypeFor[Client](), reflect.TypeFor[commands.ClientFields](), false},
		{"Command", reflect.TypeFor[Command](), reflect.TypeFor[commands.Command](), true},
		{"Receipt", reflect.TypeFor[Receipt](), reflect.TypeFor[ingest.CommandStatus](), false},
		{"CommandState", reflect.TypeFor[CommandState](), reflect.TypeFor[ingest.CommandState](), false},
		{"ProblemError", reflect.TypeFor[ProblemError](), reflect.TypeFor[ingest.Problem](), true},
		{"Result", reflect.TypeFor[Result](), reflect.TypeFor[commands.Result](), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, want := jsonNames(tc.ours), jsonNames(tc.want)
			if !tc.subset {
				if !slices.Equal(got, want) {
					t.Errorf("JSON names %v, want %v", got, want)
				}
				return
			}
			for _, n := range got {
				if !slices.Contains(want, n) {
					t.Errorf("JSON name %q is not in %v", n, want)
				}
			}
		})
	}
	var got []string
	// README's update: one field, no name or phone.
	if err := UpdateClient(1, ByRef("crm-42"), Client{Email: new("j@example.com")}).Validate(); err != nil {
		t.Errorf("an update of one field: %v", err)
	}
	for _, c := range []Type{TypeClientCreate, TypeClientUpdate, TypeClientDelete, TypeClientBulkCreate, TypeCommentAdd, TypeCommentDelete, TypeFileDelete} {
		got = append(got, string(c))
	}
	var want []string
	for _, c := range commands.Types() {
		want = append(want, string(c))
	}
	if !slices.Equal(got, want) {
		t.Errorf("types %v, want %v: a type of the contract has no constant here", got, want)
	}
}

// fullClient sets every field of Client.
func fullClient() Client {
	return Client{
		Name: "James", Phone: "+1 315 555-0175", Surname: new("Smith"), MiddleName: new("Q"),
		Email: new("j@example.com"), GenderID: new(1), ImportanceID: new(3), Discount: new(12.5),
		Card: new("C-1"), BirthDate: new("1990-02-03"), Comment: new("<vip> & co"), Spent: new(100.25),
		Balance: new(-3.5), SMSCheck: new(1), SMSNot: new(0), Categories: []int64{4, 5},
		CustomFields: map[string]any{"shoe_size": "42"},
	}
}

func TestConstructorsBuildValidCommands(t *testing.T) {
	full := fullClient()
	for _, tc := range []struct {
		name  string
		cmd   Command
		check func(t *testing.T, c commands.Command)
	}{
		{"create", CreateClient(7, "crm-1", full), func(t *testing.T, c commands.Command) {
			f, err := c.ClientFields()
			if err != nil {
				t.Fatal(err)
			}
			b1, _ := commands.Marshal(f)
			b2, _ := commands.Marshal(full)
			if string(b1) != string(b2) {
				t.Errorf("client fields %s, want %s", b1, b2)
			}
			if c.ClientRef != "crm-1" || c.ClientID != 0 {
				t.Errorf("client_ref %q client_id %d", c.ClientRef, c.ClientID)
			}
		}},
		{"update", UpdateClient(7, ByRef("crm-1"), Client{Name: "J", Phone: "+13155550175", Email: new("")}), func(t *testing.T, c commands.Command) {
			p, err := c.ClientUpdate()
			if err != nil {
				t.Fatal(err)
			}
			if p.Mode != commands.UpdateMerge || p.Email == nil || *p.Email != "" || p.Surname != nil {
				t.Errorf("update payload %+v", p)
			}
		}},
		{"replace", ReplaceClient(7, ByID(99), Client{Name: "J", Phone: "+13155550175"}), func(t *testing.T, c commands.Command) {
			p, err := c.ClientUpdate()
			if err != nil {
				t.Fatal(err)
			}
			if p.Mode != commands.UpdateReplace || c.ClientID != 99 || c.ClientRef != "" {
				t.Errorf("mode %q client_id %d client_ref %q", p.Mode, c.ClientID, c.ClientRef)
			}
		}},
		{"delete", DeleteClient(7, ByRef("crm-1")), func(t *testing.T, c commands.Command) {
			if len(c.Payload) != 0 {
				t.Errorf("payload %s, want none", c.Payload)
			}
		}},
		{"bulk", BulkCreateClients(7, []Client{{Name: "A", Phone: "+13155550001"}, {Name: "B", Phone: "+13155550002"}}), func(t *testing.T, c commands.Command) {
			p, err := c.BulkCreate()
			if err != nil || len(p.Clients) != 2 || *p.Clients[1].Name != "B" {
				t.Errorf("bulk payload %+v, %v", p, err)
			}
		}},
		{"comment add", AddComment(7, ByRef("crm-1"), "hello"), func(t *testing.T, c commands.Command) {
			p, err := c.CommentAdd()
			if err != nil || p.Text != "hello" {
				t.Errorf("comment payload %+v, %v", p, err)
			}
		}},
		{"comment delete", DeleteComment(7, ByID(5), 11), func(t *testing.T, c commands.Command) {
			p, err := c.CommentDelete()
			if err != nil || p.CommentID != 11 {
				t.Errorf("comment delete payload %+v, %v", p, err)
			}
		}},
		{"file delete", DeleteFile(7, ByID(5), 12), func(t *testing.T, c commands.Command) {
			p, err := c.FileDelete()
			if err != nil || p.FileID != 12 {
				t.Errorf("file delete payload %+v, %v", p, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cmd.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			u, err := uuid.Parse(tc.cmd.ID)
			if err != nil || u.Version() != 7 || u.String() != tc.cmd.ID {
				t.Errorf("id %q is not a lowercase UUIDv7 (%v)", tc.cmd.ID, err)
			}
			data, err := json.Marshal(tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := json.Marshal(tc.cmd)
			if string(again) != string(data) {
				t.Errorf("encodings differ:\n%s\n%s", data, again)
			}
			c, err := commands.Decode(data)
			if err != nil {
				t.Fatalf("the contract's decoder refuses %s: %v", data, err)
			}
			if c.ID != tc.cmd.ID || string(c.Type) != string(tc.cmd.Type) || c.LocationID != 7 || c.SchemaVersion != commands.SchemaVersion {
				t.Errorf("decoded envelope %+v", c)
			}
			if c.OccurredAt.IsZero() {
				t.Error("occurred_at not set")
			}
			tc.check(t, c)
		})
	}
	if a, b := AddComment(1, ByRef("x"), "t"), AddComment(1, ByRef("x"), "t"); a.ID == b.ID {
		t.Errorf("two commands share the id %s", a.ID)
	}
}

func TestCommandRoundTripsThroughJSON(t *testing.T) {
	c := CreateClient(3, "crm-9", fullClient())
	c.CorrelationID = "order-77"
	data, err := c.encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"<vip> & co"`) {
		t.Errorf("the wire form is HTML-escaped: %s", data)
	}
	if viaJSON, err := json.Marshal(c); err != nil || !json.Valid(viaJSON) {
		t.Errorf("json.Marshal: %s, %v", viaJSON, err)
	}
	var back Command
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	again, err := back.encode()
	if err != nil || string(again) != string(data) {
		t.Errorf("round trip: %s (%v), want %s", again, err, data)
	}
}

func TestValidateReportsWhatIngestWould(t *testing.T) {
	long := strings.Repeat("x", MaxCommentLength+1)
	for _, tc := range []struct {
		name  string
		cmd   Command
		paths []string
	}{
		{"create without name, bad phone, location 0", CreateClient(0, "", Client{Phone: "12"}),
			[]string{"location_id", "payload.name", "payload.phone"}},
		{"update without a client", UpdateClient(1, Target{}, Client{Name: "J", Phone: "+13155550175"}),
			[]string{"client_id"}},
		{"comment too long, bad ref", AddComment(1, ByRef("has space"), long),
			[]string{"client_ref", "payload.text"}},
		{"bulk with a duplicate phone and custom fields",
			BulkCreateClients(1, []Client{{Name: "A", Phone: "+13155550001"}, {Name: "B", Phone: "13155550001", CustomFields: map[string]any{"k": "v"}}}),
			[]string{"payload.clients[1].custom_fields", "payload.clients[1].phone"}},
		{"empty bulk", BulkCreateClients(1, nil), []string{"payload.clients"}},
		{"custom field key too long", CreateClient(1, "", Client{Name: "J", Phone: "+13155550175", CustomFields: map[string]any{strings.Repeat("k", 65): 1}}),
			[]string{`payload.custom_fields.` + strings.Repeat("k", 65)}},
		{"no id", func() Command { c := DeleteClient(1, ByID(3)); c.ID = ""; return c }(), []string{"id"}},
		{"id not lowercase", func() Command { c := DeleteClient(1, ByID(3)); c.ID = strings.ToUpper(c.ID); return c }(), []string{"id"}},
		{"unknown type", func() Command { c := DeleteClient(1, ByID(3)); c.Type = "client.merge"; return c }(), []string{"type"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cmd.Validate()
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			var got []string
			for _, p := range ve.Problems {
				if p.Reason == "" {
					t.Errorf("problem at %q has no reason", p.Path)
				}
				got = append(got, p.Path)
			}
			if !slices.Equal(got, tc.paths) {
				t.Errorf("paths %v, want %v (%v)", got, tc.paths, err)
			}
			// The contract's decoder, which ingest runs on the body, says the
			// same (the id check aside, which only producers need).
			if tc.paths[0] == "id" && tc.cmd.ID == "" {
				return
			}
			data, _ := commands.Marshal(tc.cmd.contract())
			_, derr := commands.Decode(data)
			var cve *commands.ValidationError
			if !errors.As(derr, &cve) {
				t.Fatalf("Decode = %v", derr)
			}
			for i, p := range cve.Problems {
				if i >= len(ve.Problems) || ve.Problems[i].Path != p.Path || ve.Problems[i].Reason != p.Reason {
					t.Errorf("problem %d: decoder says %+v, Validate %+v", i, p, ve.Problems)
				}
			}
		})
	}
}

func TestValidateRefusesACommandTooLarge(t *testing.T) {
	c := CreateClient(1, "", Client{Name: "J", Phone: "+13155550175", CustomFields: map[string]any{"blob": strings.Repeat("x", MaxCommandSize)}})
	err := c.Validate()
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("Validate = %v, want ErrTooLarge", err)
	}
}

func TestEncodeAllPrefixesTheIndexOfABatch(t *testing.T) {
	good := AddComment(1, ByRef("a"), "ok")
	_, err := encodeAll([]Command{good, AddComment(1, ByRef("a"), " "), good, CreateClient(0, "", Client{Name: "J", Phone: "+13155550175"})})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("encodeAll = %v", err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, p.Path)
	}
	if want := []string{"[1].payload.text", "[3].location_id"}; !slices.Equal(got, want) {
		t.Errorf("paths %v, want %v", got, want)
	}
}

func TestTheSubjectAndHeadersAreTheContracts(t *testing.T) {
	c := AddComment(12, ByRef("crm-42"), "hi")
	c.CorrelationID = "corr-1"
	if got, want := c.subject(), "altegio.cmd.12.ref_crm-42.comment_add"; got != want {
		t.Errorf("subject %q, want %q", got, want)
	}
	h := c.headers()
	for name, want := range map[string]string{
		commands.HeaderMsgID: c.ID, commands.HeaderCommandID: c.ID, commands.HeaderCommandType: "client.comment.add",
		commands.HeaderCorrelationID: "corr-1", commands.HeaderClientKey: "ref_crm-42",
	} {
		if got := h[name]; len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %v, want %q", name, got, want)
		}
	}
}
