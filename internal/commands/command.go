package commands

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/google/uuid"
)

// Limits of the contract. Only the phone rule (9 to 15 digits) and the
// comment length (Altegio's own tools) come from the API's side; the others
// are our choices, made to bound the work and the message size of one
// command, and can be raised within a schema version.
const (
	// MaxCommandSize is the largest encoded command Decode accepts, in bytes.
	// It keeps a command, and the DLQ record that wraps it, below the NATS
	// default max_payload of 1 MiB.
	MaxCommandSize = 512 << 10
	// MaxBulkClients is the most clients one client.bulk_create may carry.
	// The API documents no limit; 100 keeps one call moderate.
	MaxBulkClients = 100
	// MaxCommentLength is the longest comment text, in characters (runes).
	MaxCommentLength = 255
	// MaxClientRefLength is the longest client_ref, in characters.
	MaxClientRefLength = 64
	// MaxCorrelationIDLength is the longest correlation_id, in characters.
	MaxCorrelationIDLength = 128
	// MaxTextLength is the longest name, surname, middle_name or card, in
	// characters.
	MaxTextLength = 255
	// MaxEmailLength is the longest email address, in characters.
	MaxEmailLength = 254
	// MaxClientCommentLength is the longest client card comment (the
	// "comment" field of ClientFields, not a client.comment.add text), in
	// characters.
	MaxClientCommentLength = 1000
	// MaxPhoneLength is the longest phone string, separators included.
	MaxPhoneLength = 32
	// MaxCustomFieldKeyLength is the longest custom field key, in characters.
	MaxCustomFieldKeyLength = 64
	// MaxProblems is the most problems one ValidationError lists; a final
	// problem with an empty path says when more were found.
	MaxProblems = 100
)

// ErrPayloadType is returned (wrapped) by the payload accessors of Command
// when the command's type does not carry the requested payload.
var ErrPayloadType = errors.New("payload does not match command type")

// Command is the envelope every command travels in, on the HTTP API and on
// NATS. Decode a producer's bytes with Decode; build one in Go and check it
// with Validate.
type Command struct {
	// SchemaVersion is the contract version; 0 or absent means SchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// ID is the idempotency key: a lowercase UUID chosen by the producer, or
	// empty until ingest assigns one (see NewID). It is also the Nats-Msg-Id
	// of the command's first publication.
	ID string `json:"id"`
	// Type selects the operation and the payload's shape.
	Type Type `json:"type"`
	// LocationID is the Altegio location (company) the command acts in.
	LocationID int64 `json:"location_id"`
	// ClientID is the Altegio client id, when known. It must be absent on
	// client.create and client.bulk_create.
	ClientID int64 `json:"client_id,omitempty"`
	// ClientRef is the producer's own id for the client (1 to 64 printable
	// characters, no whitespace). The worker maps it to a client id after the
	// client is created. When set, it decides the command's ClientKey.
	ClientRef string `json:"client_ref,omitempty"`
	// Payload is the type-specific body; read it with the typed accessors
	// (ClientFields, ClientUpdate, BulkCreate, CommentAdd, CommentDelete,
	// FileDelete) and set it with SetPayload.
	Payload json.RawMessage `json:"payload,omitempty"`
	// CorrelationID is an opaque producer value copied to every result
	// event (1 to 128 printable characters).
	CorrelationID string `json:"correlation_id,omitempty"`
	// OccurredAt is when the producer created the command (RFC 3339).
	OccurredAt time.Time `json:"occurred_at,omitzero"`
}

// ClientFields is the payload of client.create and client.update, and one
// item of client.bulk_create. The JSON names are the API's own (reference
// §6.2, §6.4).
//
// Every field is optional in Go so that presence is visible: a nil pointer,
// slice or map means "absent". On update, an absent field keeps the client's
// current value (the worker reads, merges with ApplyTo and PUTs), and an
// empty string clears a text field; an update with mode UpdateReplace clears
// absent fields instead (see UpdatePayload). The API requires name and phone
// on every write, so Name and Phone are required on create, in every bulk
// item and on a replace; a merge update may leave them out (the card it
// reads has them) but must carry at least one field. JSON null is rejected: omit the field
// instead. ClientFields has no mode: create and bulk items reject one.
type ClientFields struct {
	// Name is the first name, required, 1 to MaxTextLength characters, not
	// blank.
	Name *string `json:"name,omitempty"`
	// Phone is required: 9 to 15 digits, optionally with a leading '+' and
	// the separators space, '-', '(' and ')'. See NormalizePhone.
	Phone *string `json:"phone,omitempty"`
	// Surname is the last name, up to MaxTextLength characters.
	Surname *string `json:"surname,omitempty"`
	// MiddleName is the middle name (the API's legacy "patronymic").
	MiddleName *string `json:"middle_name,omitempty"`
	// Email is empty or a basic user@domain.tld address.
	Email *string `json:"email,omitempty"`
	// GenderID is 0 unknown, 1 male, 2 female.
	GenderID *int `json:"gender_id,omitempty"`
	// ImportanceID is 0 none, 1 bronze, 2 silver, 3 gold.
	ImportanceID *int `json:"importance_id,omitempty"`
	// Discount is a percentage from 0 to 100.
	Discount *float64 `json:"discount,omitempty"`
	// Card is the loyalty card number.
	Card *string `json:"card,omitempty"`
	// BirthDate is empty or a real date as YYYY-MM-DD.
	BirthDate *string `json:"birth_date,omitempty"`
	// Comment is the note on the client's card, up to MaxClientCommentLength
	// characters.
	Comment *string `json:"comment,omitempty"`
	// Spent is the lifetime amount spent, in major units.
	Spent *float64 `json:"spent,omitempty"`
	// Balance is the client's balance, in major units; it may be negative.
	Balance *float64 `json:"balance,omitempty"`
	// SMSCheck is 1 to send a birthday SMS, else 0.
	SMSCheck *int `json:"sms_check,omitempty"`
	// SMSNot is 1 to exclude the client from SMS campaigns, else 0.
	SMSNot *int `json:"sms_not,omitempty"`
	// Categories are client tag ids (each > 0). The contract calls them
	// "categories" for create and update alike; the API client sends them
	// as "categories" on create and bulk, and as "labels" on update, as the
	// API requires. A non-nil empty slice removes every tag.
	Categories []int64 `json:"categories,omitzero"`
	// CustomFields maps a custom field's API key (1 to
	// MaxCustomFieldKeyLength characters) to its value; numbers decode as
	// json.Number. Not allowed in bulk items: the bulk endpoint does not
	// document custom fields.
	CustomFields map[string]any `json:"custom_fields,omitzero"`
}

// ApplyTo returns current with every field present in f written over it:
// the merge step of an update's read-merge-PUT. Categories, when present,
// replace the current list; CustomFields are merged key by key, so keys f
// does not mention keep their current value. Neither argument is modified.
func (f ClientFields) ApplyTo(current ClientFields) ClientFields {
	out := current
	overlay(&out.Name, f.Name)
	overlay(&out.Phone, f.Phone)
	overlay(&out.Surname, f.Surname)
	overlay(&out.MiddleName, f.MiddleName)
	overlay(&out.Email, f.Email)
	overlay(&out.GenderID, f.GenderID)
	overlay(&out.ImportanceID, f.ImportanceID)
	overlay(&out.Discount, f.Discount)
	overlay(&out.Card, f.Card)
	overlay(&out.BirthDate, f.BirthDate)
	overlay(&out.Comment, f.Comment)
	overlay(&out.Spent, f.Spent)
	overlay(&out.Balance, f.Balance)
	overlay(&out.SMSCheck, f.SMSCheck)
	overlay(&out.SMSNot, f.SMSNot)
	if f.Categories != nil {
		out.Categories = append([]int64{}, f.Categories...)
	}
	if f.CustomFields != nil {
		merged := make(map[string]any, len(current.CustomFields)+len(f.CustomFields))
		maps.Copy(merged, current.CustomFields)
		maps.Copy(merged, f.CustomFields)
		out.CustomFields = merged
	}
	return out
}

// overlay points *dst at a copy of *src when src is present.
func overlay[T any](dst **T, src *T) {
	if src != nil {
		*dst = new(*src)
	}
}

// UpdateMode says how a client.update applies its fields to the card.
type UpdateMode string

// The update modes. A payload without "mode" is an UpdateMerge.
const (
	// UpdateMerge reads the card, writes the payload's fields over it
	// (ClientFields.ApplyTo) and PUTs the result: fields the payload leaves
	// out keep their current value. Two API requests. The default.
	UpdateMerge UpdateMode = "merge"
	// UpdateReplace PUTs the payload as the complete card, without reading
	// it first: one API request, and fields the payload leaves out are
	// cleared. For producers that own the whole card. Name and phone are
	// required, as the API requires them on PUT.
	UpdateReplace UpdateMode = "replace"
)

// UpdatePayload is the payload of client.update: the client fields and an
// optional mode, side by side in one flat JSON object
// ({"mode":"replace","name":...,"phone":...}; ClientFields is embedded).
type UpdatePayload struct {
	// Mode is UpdateMerge or UpdateReplace. Empty means absent, which is
	// UpdateMerge; Command.ClientUpdate reports an absent mode as
	// UpdateMerge.
	Mode UpdateMode `json:"mode,omitempty"`
	ClientFields
}

// BulkCreatePayload is the payload of client.bulk_create: 1 to
// MaxBulkClients clients, each with name and phone, no custom_fields, and no
// two with the same phone (the API reports per-item errors by phone, not by
// position, so phones must tell the items apart).
type BulkCreatePayload struct {
	Clients []ClientFields `json:"clients"`
}

// CommentAddPayload is the payload of client.comment.add.
type CommentAddPayload struct {
	// Text is 1 to MaxCommentLength characters and not blank.
	Text string `json:"text"`
}

// CommentDeletePayload is the payload of client.comment.delete.
type CommentDeletePayload struct {
	// CommentID is the Altegio comment id, > 0.
	CommentID int64 `json:"comment_id"`
}

// FileDeletePayload is the payload of client.file.delete.
type FileDeletePayload struct {
	// FileID is the Altegio file id, > 0.
	FileID int64 `json:"file_id"`
}

// NewID returns a new command id: a lowercase, time-ordered UUID (version 7).
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system's randomness does.
		return uuid.NewString()
	}
	return id.String()
}

// Marshal is json.Marshal without HTML escaping, for everything the
// integrator stores or publishes (commands, results, DLQ records): text is
// kept as sent instead of every <, > and & growing to six bytes.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// SetPayload encodes v (typically a ClientFields, UpdatePayload,
// BulkCreatePayload, CommentAddPayload, CommentDeletePayload or
// FileDeletePayload) as c's payload, without HTML escaping. It returns the
// encoding error, if any; it does not validate.
func (c *Command) SetPayload(v any) error {
	b, err := Marshal(v)
	if err != nil {
		return fmt.Errorf("encode payload: %w", err)
	}
	c.Payload = b
	return nil
}

// ClientFields returns the client fields of a client.create or
// client.update command; an update's mode is left out (see ClientUpdate). It
// returns an error wrapping ErrPayloadType for other types, and a
// *ValidationError when the payload breaks the contract.
func (c Command) ClientFields() (ClientFields, error) {
	if c.Type != TypeClientCreate && c.Type != TypeClientUpdate {
		return ClientFields{}, payloadTypeError(c.Type, "client fields")
	}
	obj := createPayload
	if c.Type == TypeClientUpdate {
		obj = updatePayload
	}
	d := &decoder{}
	var f ClientFields
	if raw, ok := c.payload(d); ok {
		f, _ = decodeClientFields(d, "payload", raw, obj)
	}
	if err := d.err(); err != nil {
		return ClientFields{}, err
	}
	return f, nil
}

// ClientUpdate returns the payload of a client.update command: its fields
// and its mode, UpdateMerge when the payload names none. It returns an error
// wrapping ErrPayloadType for other types, and a *ValidationError when the
// payload breaks the contract.
func (c Command) ClientUpdate() (UpdatePayload, error) {
	if c.Type != TypeClientUpdate {
		return UpdatePayload{}, payloadTypeError(c.Type, "update payload")
	}
	d := &decoder{}
	var p UpdatePayload
	if raw, ok := c.payload(d); ok {
		p.ClientFields, p.Mode = decodeClientFields(d, "payload", raw, updatePayload)
	}
	if err := d.err(); err != nil {
		return UpdatePayload{}, err
	}
	return p, nil
}

// BulkCreate returns the payload of a client.bulk_create command. It returns
// an error wrapping ErrPayloadType for other types, and a *ValidationError
// when the payload breaks the contract.
func (c Command) BulkCreate() (BulkCreatePayload, error) {
	if c.Type != TypeClientBulkCreate {
		return BulkCreatePayload{}, payloadTypeError(c.Type, "bulk create payload")
	}
	d := &decoder{}
	var p BulkCreatePayload
	if raw, ok := c.payload(d); ok {
		p = decodeBulkCreate(d, "payload", raw)
	}
	if err := d.err(); err != nil {
		return BulkCreatePayload{}, err
	}
	return p, nil
}

// CommentAdd returns the payload of a client.comment.add command. It returns
// an error wrapping ErrPayloadType for other types, and a *ValidationError
// when the payload breaks the contract.
func (c Command) CommentAdd() (CommentAddPayload, error) {
	if c.Type != TypeCommentAdd {
		return CommentAddPayload{}, payloadTypeError(c.Type, "comment add payload")
	}
	d := &decoder{}
	var p CommentAddPayload
	if raw, ok := c.payload(d); ok {
		p = decodeCommentAdd(d, "payload", raw)
	}
	if err := d.err(); err != nil {
		return CommentAddPayload{}, err
	}
	return p, nil
}

// CommentDelete returns the payload of a client.comment.delete command. It
// returns an error wrapping ErrPayloadType for other types, and a
// *ValidationError when the payload breaks the contract.
func (c Command) CommentDelete() (CommentDeletePayload, error) {
	if c.Type != TypeCommentDelete {
		return CommentDeletePayload{}, payloadTypeError(c.Type, "comment delete payload")
	}
	d := &decoder{}
	var p CommentDeletePayload
	if raw, ok := c.payload(d); ok {
		p.CommentID = decodeIDPayload(d, "payload", raw, "comment_id")
	}
	if err := d.err(); err != nil {
		return CommentDeletePayload{}, err
	}
	return p, nil
}

// FileDelete returns the payload of a client.file.delete command. It returns
// an error wrapping ErrPayloadType for other types, and a *ValidationError
// when the payload breaks the contract.
func (c Command) FileDelete() (FileDeletePayload, error) {
	if c.Type != TypeFileDelete {
		return FileDeletePayload{}, payloadTypeError(c.Type, "file delete payload")
	}
	d := &decoder{}
	var p FileDeletePayload
	if raw, ok := c.payload(d); ok {
		p.FileID = decodeIDPayload(d, "payload", raw, "file_id")
	}
	if err := d.err(); err != nil {
		return FileDeletePayload{}, err
	}
	return p, nil
}

func payloadTypeError(t Type, what string) error {
	return fmt.Errorf("%w: %q has no %s", ErrPayloadType, t, what)
}
