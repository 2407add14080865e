package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

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
	fields := 0 // client fields present, mode aside
	for _, m := range members {
		p := fieldPath(path, m.key)
		if m.key != "mode" {
			fields++
		}
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
	// The API requires name and phone on every write. A create, a bulk
	// item and a replace are sent as they are, so they must carry both; a
	// merge update takes whatever it leaves out from the card it reads.
	switch {
	case obj != updatePayload:
		requireNameAndPhone(d, path, f, "required")
	case mode == UpdateReplace:
		requireNameAndPhone(d, path, f, "required with mode replace")
	case fields == 0:
		d.add(path, "names no field to change")
	}
	checkClientFields(d, path, f)
	return f, mode
}

func requireNameAndPhone(d *decoder, path string, f ClientFields, reason string) {
	if f.Name == nil {
		d.add(fieldPath(path, "name"), reason)
	}
	if f.Phone == nil {
		d.add(fieldPath(path, "phone"), reason)
	}
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

	if f.Name != nil {
		checkText(d, p("name"), *f.Name, MaxTextLength, true)
	}
	if f.Phone != nil {
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

// member decodes an object at path whose only member is name, which it is
// required to have: every other member is reported as unknown, and
// decodeValue gets name's path and value.
func (d *decoder) member(path string, raw json.RawMessage, name string, decodeValue func(p string, v json.RawMessage)) {
	members, ok := d.object(path, raw)
	if !ok {
		return
	}
	p := fieldPath(path, name)
	var saw bool
	for _, m := range members {
		if m.key != name {
			d.unknownField(fieldPath(path, m.key), m.key)
			continue
		}
		saw = true
		decodeValue(p, m.value)
	}
	if !saw {
		d.add(p, "required")
	}
}

func decodeBulkCreate(d *decoder, path string, raw json.RawMessage) BulkCreatePayload {
	var p BulkCreatePayload
	clientsPath := fieldPath(path, "clients")
	d.member(path, raw, "clients", func(_ string, v json.RawMessage) {
		items, ok := d.array(clientsPath, v)
		if !ok {
			return
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
	})
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
	d.member(path, raw, "text", func(textPath string, raw json.RawMessage) {
		if v, ok := d.string(textPath, raw); ok {
			p.Text = v
			if v == "" {
				d.add(textPath, "must not be empty")
			}
			checkText(d, textPath, v, MaxCommentLength, true)
		}
	})
	return p
}

// decodeIDPayload decodes an object with one required positive integer
// member, name.
func decodeIDPayload(d *decoder, path string, raw json.RawMessage, name string) int64 {
	var id int64
	d.member(path, raw, name, func(idPath string, raw json.RawMessage) {
		if v, ok := d.integer(idPath, raw); ok {
			if v <= 0 {
				d.add(idPath, "must be greater than 0")
			}
			id = v
		}
	})
	return id
}
