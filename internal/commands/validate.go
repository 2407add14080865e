package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Patterns shared by the Go checks and the JSON Schema (Go regexp syntax;
// tests check that the schema uses exactly these).
const (
	uuidPattern          = `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	clientRefPattern     = `^[\p{L}\p{M}\p{N}\p{P}\p{S}]+$`
	correlationIDPattern = `^[\p{L}\p{M}\p{N}\p{P}\p{S} ]+$`
	phonePattern         = `^\+?[ ()-]*(?:[0-9][ ()-]*){9,15}$`
	emailPattern         = `^[^\s@]+@[^\s@]+\.[^\s@]+$`
	datePattern          = `^[0-9]{4}-[0-9]{2}-[0-9]{2}$`
	nilUUID              = "00000000-0000-0000-0000-000000000000"
)

var (
	uuidRE          = regexp.MustCompile(uuidPattern)
	clientRefRE     = regexp.MustCompile(clientRefPattern)
	correlationIDRE = regexp.MustCompile(correlationIDPattern)
	phoneRE         = regexp.MustCompile(phonePattern)
	emailRE         = regexp.MustCompile(emailPattern)
	dateRE          = regexp.MustCompile(datePattern)
)

// NormalizePhone returns the digits of phone without leading zeros, for
// comparing phones (reconciliation, duplicate detection in a bulk): the API
// may echo a phone as a JSON number, which drops the '+', the separators and
// leading zeros. Use it to compare, not to send.
func NormalizePhone(phone string) string {
	digits := make([]byte, 0, len(phone))
	for i := 0; i < len(phone); i++ {
		c := phone[i]
		if c < '0' || c > '9' || (c == '0' && len(digits) == 0) {
			continue
		}
		digits = append(digits, c)
	}
	return string(digits)
}

// Validate checks c against the contract and returns a *ValidationError
// listing every problem, or nil. The rules:
//
//   - schema_version is 0 or SchemaVersion;
//   - id, when set, is a lowercase UUID other than the nil UUID;
//   - type is one of Types; location_id > 0;
//   - client.update, client.delete, client.comment.* and client.file.delete
//     need client_id > 0 or client_ref; client.create takes no client_id;
//     client.bulk_create takes neither;
//   - client_ref: 1 to MaxClientRefLength printable characters, no
//     whitespace; correlation_id: 1 to MaxCorrelationIDLength printable
//     characters;
//   - the payload matches the type (see ClientFields, UpdatePayload,
//     BulkCreatePayload, CommentAddPayload, CommentDeletePayload,
//     FileDeletePayload), decoded as strictly as Decode does; client.delete
//     takes none, null or {}.
//
// Validate does not require an id: ingest assigns one to commands without it.
func (c Command) Validate() error {
	d := &decoder{}
	c.validate(d)
	return d.err()
}

func (c Command) validate(d *decoder) {
	if c.SchemaVersion != 0 && c.SchemaVersion != SchemaVersion {
		if d.add("schema_version", fmt.Sprintf("unsupported schema version %d; want %d", c.SchemaVersion, SchemaVersion)) {
			d.badVersion = true
		}
	}
	if c.ID != "" {
		switch {
		case !uuidRE.MatchString(c.ID):
			d.add("id", "must be a lowercase UUID such as 0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7d")
		case c.ID == nilUUID:
			d.add("id", "must not be the nil UUID")
		}
	}
	switch {
	case c.Type == "":
		d.add("type", "required")
	case !c.Type.Valid():
		if d.add("type", fmt.Sprintf("unknown command type %q; want one of %s", c.Type, typeList())) {
			d.unknownType = true
		}
	}
	if c.LocationID <= 0 {
		d.add("location_id", "must be greater than 0")
	}
	if c.ClientID < 0 {
		d.add("client_id", "must be greater than 0")
	}
	if c.ClientRef != "" {
		switch {
		case utf8.RuneCountInString(c.ClientRef) > MaxClientRefLength:
			d.add("client_ref", fmt.Sprintf("must be at most %d characters", MaxClientRefLength))
		case !clientRefRE.MatchString(c.ClientRef):
			d.add("client_ref", "must be printable characters without whitespace")
		}
	}
	if c.CorrelationID != "" {
		switch {
		case utf8.RuneCountInString(c.CorrelationID) > MaxCorrelationIDLength:
			d.add("correlation_id", fmt.Sprintf("must be at most %d characters", MaxCorrelationIDLength))
		case !correlationIDRE.MatchString(c.CorrelationID):
			d.add("correlation_id", "must be printable characters")
		}
	}
	if y := c.OccurredAt.Year(); !c.OccurredAt.IsZero() && (y < 0 || y > 9999) {
		d.add("occurred_at", "year must be between 0 and 9999")
	}
	if !c.Type.Valid() {
		return // the payload's shape is unknown
	}
	switch {
	case c.Type == TypeClientCreate:
		if c.ClientID != 0 {
			d.add("client_id", "must be absent for client.create; the client does not exist yet")
		}
	case c.Type == TypeClientBulkCreate:
		if c.ClientID != 0 {
			d.add("client_id", "must be absent for client.bulk_create")
		}
		if c.ClientRef != "" {
			d.add("client_ref", "must be absent for client.bulk_create")
		}
	case c.Type.needsClient():
		if c.ClientID == 0 && c.ClientRef == "" {
			d.add("client_id", fmt.Sprintf("client_id or client_ref is required for %s", c.Type))
		}
	}
	c.validatePayload(d)
}

func typeList() string {
	names := make([]string, 0, len(Types()))
	for _, t := range Types() {
		names = append(names, string(t))
	}
	return strings.Join(names, ", ")
}

func (c Command) validatePayload(d *decoder) {
	if c.Type == TypeClientDelete {
		if len(bytes.TrimSpace(c.Payload)) == 0 {
			return
		}
		raw, ok := c.payload(d)
		if !ok || kind(raw) == 'n' {
			return
		}
		members, _ := d.object("payload", raw)
		for _, m := range members {
			d.add(fieldPath("payload", m.key), "unknown field; client.delete takes no payload")
		}
		return
	}
	raw, ok := c.payload(d)
	if !ok {
		return
	}
	switch c.Type {
	case TypeClientCreate:
		decodeClientFields(d, "payload", raw, createPayload)
	case TypeClientUpdate:
		decodeClientFields(d, "payload", raw, updatePayload)
	case TypeClientBulkCreate:
		decodeBulkCreate(d, "payload", raw)
	case TypeCommentAdd:
		decodeCommentAdd(d, "payload", raw)
	case TypeCommentDelete:
		decodeIDPayload(d, "payload", raw, "comment_id")
	case TypeFileDelete:
		decodeIDPayload(d, "payload", raw, "file_id")
	}
}

// payload returns c's payload, reporting a missing or malformed one.
func (c Command) payload(d *decoder) (json.RawMessage, bool) {
	raw := bytes.TrimSpace(c.Payload)
	if len(raw) == 0 {
		d.add("payload", "required")
		return nil, false
	}
	if !json.Valid(raw) {
		d.add("payload", "malformed JSON")
		return nil, false
	}
	return raw, true
}
