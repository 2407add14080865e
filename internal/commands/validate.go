package commands

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrUnknownType is matched (errors.Is) by a *ValidationError whose command
// type is not one of Types. An HTTP front door maps it, like any
// *ValidationError, to 422, but may want to say so in the problem's title.
var ErrUnknownType = errors.New("unknown command type")

// ErrUnsupportedVersion is matched (errors.Is) by a *ValidationError whose
// schema_version is neither 0 nor SchemaVersion.
var ErrUnsupportedVersion = errors.New("unsupported schema version")

// Problem is one thing wrong with a command. The same shape carries the
// API's field errors in Result and DLQRecord.
type Problem struct {
	// Path locates the value: "location_id", "payload.phone",
	// "payload.clients[3].name", or payload["odd key"] for names that are
	// not identifiers. Empty means the whole document (or, for an API error,
	// no particular field).
	Path string `json:"path"`
	// Reason says what is wrong, in lower case, e.g. "must be greater than 0".
	Reason string `json:"reason"`
}

// ValidationError lists every problem found in a command, in a stable order,
// at most MaxProblems of them. Problems is never empty. It is meant to become
// the "errors" member of an RFC 9457 problem+json body (status 422).
//
// errors.Is(err, ErrUnknownType) and errors.Is(err, ErrUnsupportedVersion)
// tell those two problems apart from field validation.
type ValidationError struct {
	Problems []Problem `json:"errors"`

	unknownType        bool
	unsupportedVersion bool
}

// Error joins the problems into one line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid command: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
		b.WriteString(p.Reason)
	}
	return b.String()
}

// Unwrap returns ErrUnknownType and ErrUnsupportedVersion when they apply.
func (e *ValidationError) Unwrap() []error {
	var errs []error
	if e.unknownType {
		errs = append(errs, ErrUnknownType)
	}
	if e.unsupportedVersion {
		errs = append(errs, ErrUnsupportedVersion)
	}
	return errs
}

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

// clientObject names the object client fields are read from, which decides
// the members it may have besides the ClientFields ones.
type clientObject int

const (
	createPayload clientObject = iota // client.create: nothing more
	updatePayload                     // client.update: also mode
	bulkItem                          // a client.bulk_create item: no custom_fields
)

// decodeClientFields decodes and checks one client object at path. The mode
// is read from an update payload only; it is UpdateMerge when absent (and
// for other objects).
func decodeClientFields(d *decoder, path string, raw json.RawMessage, obj clientObject) (ClientFields, UpdateMode) {
	var f ClientFields
	mode := UpdateMerge
	members, ok := d.object(path, raw)
	if !ok {
		return f, mode
	}
	for _, m := range members {
		p := fieldPath(path, m.key)
		switch m.key {
		case "mode":
			if obj != updatePayload {
				d.add(p, "unknown field; mode is for client.update only")
				continue
			}
			if v, ok := d.string(p, m.value); ok {
				switch UpdateMode(v) {
				case UpdateMerge, UpdateReplace:
					mode = UpdateMode(v)
				default:
					d.add(p, fmt.Sprintf("must be %q or %q", UpdateMerge, UpdateReplace))
				}
			}
		case "name":
			f.Name = d.stringPtr(p, m.value)
		case "phone":
			f.Phone = d.stringPtr(p, m.value)
		case "surname":
			f.Surname = d.stringPtr(p, m.value)
		case "middle_name":
			f.MiddleName = d.stringPtr(p, m.value)
		case "email":
			f.Email = d.stringPtr(p, m.value)
		case "gender_id":
			f.GenderID = d.intPtr(p, m.value)
		case "importance_id":
			f.ImportanceID = d.intPtr(p, m.value)
		case "discount":
			f.Discount = d.numberPtr(p, m.value)
		case "card":
			f.Card = d.stringPtr(p, m.value)
		case "birth_date":
			f.BirthDate = d.stringPtr(p, m.value)
		case "comment":
			f.Comment = d.stringPtr(p, m.value)
		case "spent":
			f.Spent = d.numberPtr(p, m.value)
		case "balance":
			f.Balance = d.numberPtr(p, m.value)
		case "sms_check":
			f.SMSCheck = d.intPtr(p, m.value)
		case "sms_not":
			f.SMSNot = d.intPtr(p, m.value)
		case "categories":
			f.Categories = decodeCategories(d, p, m.value)
		case "custom_fields":
			if obj == bulkItem {
				d.add(p, "not supported by client.bulk_create; use client.create")
				continue
			}
			f.CustomFields = decodeCustomFields(d, p, m.value)
		default:
			d.unknownField(p, m.key)
		}
	}
	if mode == UpdateReplace {
		// A replace is PUT as it is, and the API requires name and phone
		// on PUT. checkClientFields requires them on every update too; this
		// says why for a replace, and holds if merge updates stop doing so.
		if f.Name == nil {
			d.add(fieldPath(path, "name"), "required with mode replace")
		}
		if f.Phone == nil {
			d.add(fieldPath(path, "phone"), "required with mode replace")
		}
	}
	checkClientFields(d, path, f)
	return f, mode
}

func decodeCategories(d *decoder, path string, raw json.RawMessage) []int64 {
	items, ok := d.array(path, raw)
	if !ok {
		return nil
	}
	ids := make([]int64, 0, len(items))
	for i, item := range items {
		p := indexPath(path, i)
		id, ok := d.integer(p, item)
		if !ok {
			continue
		}
		if id <= 0 {
			d.add(p, "must be greater than 0")
		}
		ids = append(ids, id)
	}
	return ids
}

func decodeCustomFields(d *decoder, path string, raw json.RawMessage) map[string]any {
	members, ok := d.object(path, raw)
	if !ok {
		return nil
	}
	fields := make(map[string]any, len(members))
	for _, m := range members {
		p := fieldPath(path, m.key)
		if n := utf8.RuneCountInString(m.key); n == 0 || n > MaxCustomFieldKeyLength {
			d.add(p, fmt.Sprintf("key must be 1 to %d characters", MaxCustomFieldKeyLength))
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(m.value))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			d.add(p, "malformed JSON")
			continue
		}
		fields[m.key] = v
	}
	return fields
}

// checkClientFields applies the value rules to decoded client fields.
func checkClientFields(d *decoder, path string, f ClientFields) {
	p := func(name string) string { return fieldPath(path, name) }

	if f.Name == nil {
		d.add(p("name"), "required")
	} else {
		checkText(d, p("name"), *f.Name, MaxTextLength, true)
	}
	if f.Phone == nil {
		d.add(p("phone"), "required")
	} else {
		checkPhone(d, p("phone"), *f.Phone)
	}
	for _, t := range []struct {
		name string
		v    *string
	}{{"surname", f.Surname}, {"middle_name", f.MiddleName}, {"card", f.Card}} {
		if t.v != nil {
			checkText(d, p(t.name), *t.v, MaxTextLength, false)
		}
	}
	if f.Comment != nil {
		checkText(d, p("comment"), *f.Comment, MaxClientCommentLength, false)
	}
	if f.Email != nil && *f.Email != "" {
		switch {
		case utf8.RuneCountInString(*f.Email) > MaxEmailLength:
			d.add(p("email"), fmt.Sprintf("must be at most %d characters", MaxEmailLength))
		case !emailRE.MatchString(*f.Email):
			d.add(p("email"), "must be an email address such as name@example.com, or empty")
		}
	}
	if f.BirthDate != nil && *f.BirthDate != "" && !isDate(*f.BirthDate) {
		d.add(p("birth_date"), "must be a real date as YYYY-MM-DD, or empty")
	}
	checkRange(d, p("gender_id"), f.GenderID, 0, 2)
	checkRange(d, p("importance_id"), f.ImportanceID, 0, 3)
	checkRange(d, p("sms_check"), f.SMSCheck, 0, 1)
	checkRange(d, p("sms_not"), f.SMSNot, 0, 1)
	if f.Discount != nil && (*f.Discount < 0 || *f.Discount > 100) {
		d.add(p("discount"), "must be between 0 and 100")
	}
	for i, id := range f.Categories {
		if id <= 0 {
			d.add(indexPath(p("categories"), i), "must be greater than 0")
		}
	}
}

// checkText checks a length in characters and, when notBlank, that s has
// something besides whitespace.
func checkText(d *decoder, path, s string, maxLen int, notBlank bool) {
	switch {
	case notBlank && strings.TrimSpace(s) == "":
		d.add(path, "must not be blank")
	case utf8.RuneCountInString(s) > maxLen:
		d.add(path, fmt.Sprintf("must be at most %d characters", maxLen))
	}
}

func checkPhone(d *decoder, path, s string) {
	switch {
	case utf8.RuneCountInString(s) > MaxPhoneLength:
		d.add(path, fmt.Sprintf("must be at most %d characters", MaxPhoneLength))
	case !phoneRE.MatchString(s):
		d.add(path, "must have 9 to 15 digits, with an optional leading + and the separators space, -, ( and )")
	}
}

func checkRange(d *decoder, path string, v *int, lo, hi int) {
	if v != nil && (*v < lo || *v > hi) {
		d.add(path, fmt.Sprintf("must be between %d and %d", lo, hi))
	}
}

// isDate reports whether s is a real calendar date as YYYY-MM-DD.
func isDate(s string) bool {
	if !dateRE.MatchString(s) {
		return false
	}
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}

func decodeBulkCreate(d *decoder, path string, raw json.RawMessage) BulkCreatePayload {
	var p BulkCreatePayload
	members, ok := d.object(path, raw)
	if !ok {
		return p
	}
	clientsPath := fieldPath(path, "clients")
	var saw bool
	for _, m := range members {
		if m.key != "clients" {
			d.unknownField(fieldPath(path, m.key), m.key)
			continue
		}
		saw = true
		items, ok := d.array(clientsPath, m.value)
		if !ok {
			continue
		}
		switch {
		case len(items) == 0:
			d.add(clientsPath, "must have at least 1 client")
		case len(items) > MaxBulkClients:
			d.add(clientsPath, fmt.Sprintf("must have at most %d clients", MaxBulkClients))
		}
		p.Clients = make([]ClientFields, 0, len(items))
		for i, item := range items {
			f, _ := decodeClientFields(d, indexPath(clientsPath, i), item, bulkItem)
			p.Clients = append(p.Clients, f)
		}
	}
	if !saw {
		d.add(clientsPath, "required")
	}
	// The API reports per-item errors by phone, not by position.
	first := make(map[string]int, len(p.Clients))
	for i, f := range p.Clients {
		phonePath := fieldPath(indexPath(clientsPath, i), "phone")
		if f.Phone == nil || d.has(phonePath) {
			continue
		}
		n := NormalizePhone(*f.Phone)
		if j, dup := first[n]; dup {
			d.add(phonePath, "duplicates the phone of "+indexPath(clientsPath, j))
			continue
		}
		first[n] = i
	}
	return p
}

func decodeCommentAdd(d *decoder, path string, raw json.RawMessage) CommentAddPayload {
	var p CommentAddPayload
	members, ok := d.object(path, raw)
	if !ok {
		return p
	}
	textPath := fieldPath(path, "text")
	var saw bool
	for _, m := range members {
		if m.key != "text" {
			d.unknownField(fieldPath(path, m.key), m.key)
			continue
		}
		saw = true
		if v, ok := d.string(textPath, m.value); ok {
			p.Text = v
			if v == "" {
				d.add(textPath, "must not be empty")
			}
			checkText(d, textPath, v, MaxCommentLength, true)
		}
	}
	if !saw {
		d.add(textPath, "required")
	}
	return p
}

// decodeIDPayload decodes an object with one required positive integer
// member, name.
func decodeIDPayload(d *decoder, path string, raw json.RawMessage, name string) int64 {
	members, ok := d.object(path, raw)
	if !ok {
		return 0
	}
	idPath := fieldPath(path, name)
	var id int64
	var saw bool
	for _, m := range members {
		if m.key != name {
			d.unknownField(fieldPath(path, m.key), m.key)
			continue
		}
		saw = true
		if v, ok := d.integer(idPath, m.value); ok {
			if v <= 0 {
				d.add(idPath, "must be greater than 0")
			}
			id = v
		}
	}
	if !saw {
		d.add(idPath, "required")
	}
	return id
}
