package producer

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// Type names what a command asks for, as in the contract's "type" field.
type Type string

// The command types of the contract (schema version 1), as
// internal/commands names them.
const (
	// TypeClientCreate creates a client (CreateClient).
	TypeClientCreate = Type(commands.TypeClientCreate)
	// TypeClientUpdate changes a client (UpdateClient, ReplaceClient).
	TypeClientUpdate = Type(commands.TypeClientUpdate)
	// TypeClientDelete deletes a client (DeleteClient).
	TypeClientDelete = Type(commands.TypeClientDelete)
	// TypeClientBulkCreate creates up to MaxBulkClients clients in one API
	// call (BulkCreateClients).
	TypeClientBulkCreate = Type(commands.TypeClientBulkCreate)
	// TypeCommentAdd adds a comment to a client's card (AddComment).
	TypeCommentAdd = Type(commands.TypeCommentAdd)
	// TypeCommentDelete deletes a comment (DeleteComment).
	TypeCommentDelete = Type(commands.TypeCommentDelete)
	// TypeFileDelete deletes a file from a client's card (DeleteFile).
	TypeFileDelete = Type(commands.TypeFileDelete)
)

// Limits of the contract that a producer meets first: the contract's own.
const (
	// MaxBulkClients is the most clients one BulkCreateClients may carry.
	MaxBulkClients = commands.MaxBulkClients
	// MaxCommentLength is the longest comment text, in characters.
	MaxCommentLength = commands.MaxCommentLength
	// MaxClientRefLength is the longest client reference, in characters.
	MaxClientRefLength = commands.MaxClientRefLength
	// MaxCommandSize is the largest encoded command, in bytes.
	MaxCommandSize = commands.MaxCommandSize
)

// Client is the payload of a create or an update, and one item of a bulk
// create. The JSON names are the contract's (and the Altegio API's).
//
// Name and Phone are required on a create, in a bulk item and on
// ReplaceClient; UpdateClient may leave them empty (the card keeps its
// own) but must set at least one field. The other fields are optional and
// pointers, so that "absent" differs from a zero value: on UpdateClient an
// absent field keeps the client's current value, and a present zero value
// ("" or 0) is written. Set one with new(value), e.g.
// Email: new("j@example.com").
type Client struct {
	// Name is the first name: 1 to 255 characters, not blank.
	Name string `json:"name,omitempty"`
	// Phone is 9 to 15 digits, optionally with a leading '+' and the
	// separators space, '-', '(' and ')'.
	Phone string `json:"phone,omitempty"`
	// Surname is the last name, up to 255 characters.
	Surname *string `json:"surname,omitempty"`
	// MiddleName is the middle name (the API's legacy "patronymic").
	MiddleName *string `json:"middle_name,omitempty"`
	// Email is empty or a user@domain.tld address.
	Email *string `json:"email,omitempty"`
	// GenderID is 0 unknown, 1 male, 2 female.
	GenderID *int `json:"gender_id,omitempty"`
	// ImportanceID is 0 none, 1 bronze, 2 silver, 3 gold.
	ImportanceID *int `json:"importance_id,omitempty"`
	// Discount is a percentage from 0 to 100.
	Discount *float64 `json:"discount,omitempty"`
	// Card is the loyalty card number.
	Card *string `json:"card,omitempty"`
	// BirthDate is empty or a date as YYYY-MM-DD.
	BirthDate *string `json:"birth_date,omitempty"`
	// Comment is the note on the client's card, up to 1000 characters (not
	// a comment of AddComment).
	Comment *string `json:"comment,omitempty"`
	// Spent is the lifetime amount spent, in major units.
	Spent *float64 `json:"spent,omitempty"`
	// Balance is the client's balance, in major units; it may be negative.
	Balance *float64 `json:"balance,omitempty"`
	// SMSCheck is 1 to send a birthday SMS, else 0.
	SMSCheck *int `json:"sms_check,omitempty"`
	// SMSNot is 1 to exclude the client from SMS campaigns, else 0.
	SMSNot *int `json:"sms_not,omitempty"`
	// Categories are client tag ids (each > 0). Nil is absent; a non-nil
	// empty slice removes every tag on update.
	Categories []int64 `json:"categories,omitzero"`
	// CustomFields maps a custom field's API key to its value. Not allowed
	// in bulk items.
	CustomFields map[string]any `json:"custom_fields,omitzero"`
}

// Target names the existing client a command acts on: ByRef (the
// producer's own reference, preferred) or ByID (Altegio's client id).
// Address a client the same way in every command: commands are applied in
// order per client reference or per client id, not across the two.
type Target struct {
	// Ref is the producer's reference for the client (client_ref).
	Ref string
	// ID is Altegio's client id (client_id).
	ID int64
}

// ByRef names a client by the reference it was created with (client_ref):
// 1 to MaxClientRefLength printable characters without whitespace.
func ByRef(ref string) Target { return Target{Ref: ref} }

// ByID names a client by its Altegio client id (client_id).
func ByID(id int64) Target { return Target{ID: id} }

// Command is one command envelope, ready to send with HTTP.Send or
// NATS.Send. Build it with CreateClient, UpdateClient and the other
// constructors; they set ID and OccurredAt. Its fields may be changed
// (CorrelationID in particular) before the first send; keep ID unchanged
// across retries, since it is the idempotency key.
//
// json.Marshal of a Command gives its wire form (the contract's JSON), and
// Validate checks it as ingest and the worker will.
type Command struct {
	// ID is the idempotency key: a lowercase UUID (NewID, version 7). Ingest
	// and JetStream deduplicate commands with the same ID, and the worker
	// carries out an ID once.
	ID string `json:"id"`
	// Type selects the operation and the payload's shape.
	Type Type `json:"type"`
	// LocationID is the Altegio location (company), > 0.
	LocationID int64 `json:"location_id"`
	// ClientID is Altegio's client id, when the command names it.
	ClientID int64 `json:"client_id,omitempty"`
	// ClientRef is the producer's reference for the client.
	ClientRef string `json:"client_ref,omitempty"`
	// Payload is the type's payload as JSON; empty for DeleteClient.
	Payload json.RawMessage `json:"payload,omitempty"`
	// CorrelationID is an opaque value (1 to 128 printable characters)
	// copied to every result event of the command.
	CorrelationID string `json:"correlation_id,omitempty"`
	// OccurredAt is when the producer created the command.
	OccurredAt time.Time `json:"occurred_at,omitzero"`

	// err is a payload that could not be encoded, reported by Validate.
	err error
}

// NewID returns a new command id: a lowercase, time-ordered UUID (version
// 7), as the constructors set.
func NewID() string { return commands.NewID() }

// newCommand is the envelope every constructor starts from.
func newCommand(t Type, location int64, payload any) Command {
	c := Command{ID: NewID(), Type: t, LocationID: location, OccurredAt: time.Now().UTC()}
	if payload != nil {
		b, err := commands.Marshal(payload)
		if err != nil {
			c.err = fmt.Errorf("encode %s payload: %w", t, err)
		}
		c.Payload = b
	}
	return c
}

// target sets the client a command acts on.
func (c Command) target(t Target) Command {
	c.ClientRef, c.ClientID = t.Ref, t.ID
	return c
}

// CreateClient returns a client.create command in location. ref, when not
// empty, is the producer's reference for the new client (client_ref): later
// commands name the client with ByRef(ref), and the commands of one ref
// are applied in order.
func CreateClient(location int64, ref string, c Client) Command {
	cmd := newCommand(TypeClientCreate, location, c)
	cmd.ClientRef = ref
	return cmd
}

// updatePayload is the payload of client.update: the fields and the mode,
// in one flat object.
type updatePayload struct {
	Mode string `json:"mode,omitempty"`
	Client
}

// UpdateClient returns a client.update command that writes the fields of c
// present over the client's card (read, merge, PUT): fields left absent
// (Name and Phone included) keep their value; at least one must be set.
func UpdateClient(location int64, t Target, c Client) Command {
	return newCommand(TypeClientUpdate, location, updatePayload{Client: c}).target(t)
}

// ReplaceClient returns a client.update command in "replace" mode: c is the
// whole card, written in one PUT without reading it first, and every field
// left absent is cleared. For producers that own the whole card.
func ReplaceClient(location int64, t Target, c Client) Command {
	return newCommand(TypeClientUpdate, location, updatePayload{Mode: "replace", Client: c}).target(t)
}

// DeleteClient returns a client.delete command. Deleting a client that no
// longer exists succeeds.
func DeleteClient(location int64, t Target) Command {
	return newCommand(TypeClientDelete, location, nil).target(t)
}

// BulkCreateClients returns a client.bulk_create command: 1 to
// MaxBulkClients clients, each with name and phone, no two with the same
// phone, no custom fields. The clients get no references; the result
// event lists what became of each.
func BulkCreateClients(location int64, clients []Client) Command {
	return newCommand(TypeClientBulkCreate, location, struct {
		Clients []Client `json:"clients"`
	}{clients})
}

// AddComment returns a client.comment.add command: text is 1 to
// MaxCommentLength characters, not blank.
func AddComment(location int64, t Target, text string) Command {
	return newCommand(TypeCommentAdd, location, struct {
		Text string `json:"text"`
	}{text}).target(t)
}

// DeleteComment returns a client.comment.delete command for the comment
// with Altegio id commentID.
func DeleteComment(location int64, t Target, commentID int64) Command {
	return newCommand(TypeCommentDelete, location, struct {
		CommentID int64 `json:"comment_id"`
	}{commentID}).target(t)
}

// DeleteFile returns a client.file.delete command for the file with
// Altegio id fileID.
func DeleteFile(location int64, t Target, fileID int64) Command {
	return newCommand(TypeFileDelete, location, struct {
		FileID int64 `json:"file_id"`
	}{fileID}).target(t)
}

// contract returns c as the contract's envelope.
func (c Command) contract() commands.Command {
	return commands.Command{
		SchemaVersion: commands.SchemaVersion,
		ID:            c.ID,
		Type:          commands.Type(c.Type),
		LocationID:    c.LocationID,
		ClientID:      c.ClientID,
		ClientRef:     c.ClientRef,
		Payload:       c.Payload,
		CorrelationID: c.CorrelationID,
		OccurredAt:    c.OccurredAt,
	}
}

// MarshalJSON encodes c as the contract's JSON, with schema_version. It
// returns the payload's encoding error, if the constructor met one.
// (json.Marshal escapes <, > and & in what a MarshalJSON returns; the
// senders send text unescaped.)
func (c Command) MarshalJSON() ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	return commands.Marshal(c.contract())
}

// Validate checks c as ingest and the worker will, strictly: it encodes c
// and decodes it with the contract's decoder. It returns nil, or a
// *ValidationError listing every problem with its path ("payload.phone",
// "client_id"), the same problems ingest would answer 422 with; a command
// too large matches ErrTooLarge. Unlike ingest, it also requires ID, since
// a producer that sends a command without one cannot retry it safely.
func (c Command) Validate() error {
	_, err := c.encode()
	return err
}

// encode returns c's wire form, validated.
func (c Command) encode() ([]byte, error) {
	var problems []FieldError
	if c.ID == "" {
		problems = append(problems, FieldError{Path: "id", Reason: "required: set it once with NewID and keep it across retries"})
	}
	if c.err != nil {
		return nil, &ValidationError{Problems: append(problems, FieldError{Path: "payload", Reason: c.err.Error()})}
	}
	data, err := commands.Marshal(c.contract())
	if err != nil {
		return nil, &ValidationError{Problems: append(problems, FieldError{Reason: err.Error()})}
	}
	_, err = commands.Decode(data)
	if err != nil || len(problems) > 0 {
		return nil, validationError(problems, err)
	}
	return data, nil
}

// subject is the NATS subject c is published on.
func (c Command) subject() string { return commands.CommandSubject(c.contract()) }

// headers are the NATS headers c is published with.
func (c Command) headers() map[string][]string { return commands.CommandHeaders(c.contract()) }
