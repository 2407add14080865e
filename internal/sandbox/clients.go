package sandbox

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// clientStyle selects one of the documented renderings of a client.
type clientStyle int

const (
	// styleCard is GET and PUT /client (ref §6.1): current names, phone as
	// a string, birth_date "YYYY-MM-DD" or null.
	styleCard clientStyle = iota
	// styleCreated is POST /clients (ref §6.4 sample): current names, phone
	// as a JSON number, birth_date as a unix-timestamp string.
	styleCreated
	// styleLegacy is bulk created[] (phone as a number) and the deprecated
	// list (phone as a string): legacy names patronymic, sex_id, sex, plus
	// sms_bot and paid (ref §6.5, §6.7, §8), birth_date 0 when unset.
	styleLegacy
)

var (
	genderLabels     = []string{"unknown", "Male", "Female"}
	importanceLabels = []string{"No importance class", "Bronze", "Silver", "Gold"}
)

// renderClient builds the JSON object for c in the given style.
func renderClient(c *ClientRecord, style clientStyle, phoneAsNumber bool) map[string]any {
	out := map[string]any{
		"id":               c.ID,
		"name":             c.Name,
		"surname":          c.Surname,
		"email":            c.Email,
		"categories":       renderCategories(c.Categories),
		"discount":         c.Discount,
		"importance_id":    c.ImportanceID,
		"importance":       label(importanceLabels, c.ImportanceID),
		"card":             c.Card,
		"comment":          c.Comment,
		"sms_check":        c.SMSCheck,
		"sms_not":          c.SMSNot,
		"spent":            c.Spent,
		"balance":          c.Balance,
		"visits":           c.Visits,
		"last_change_date": formatTime(c.LastChangeDate),
		"custom_fields":    renderCustomFields(c.CustomFields),
	}
	if phoneAsNumber {
		out["phone"] = phoneNumber(c.Phone)
	} else {
		out["phone"] = c.Phone
	}
	switch style {
	case styleCard, styleCreated:
		out["middle_name"] = c.MiddleName
		out["gender_id"] = c.GenderID
		out["gender"] = label(genderLabels, c.GenderID)
	case styleLegacy:
		out["patronymic"] = c.MiddleName
		out["sex_id"] = c.GenderID
		out["sex"] = label(genderLabels, c.GenderID)
		out["sms_bot"] = 0
		out["paid"] = c.Paid
	}
	out["birth_date"] = renderBirthDate(c.BirthDate, style)
	return out
}

// label names a code; seeded records may hold codes outside the table.
func label(labels []string, code int) string {
	if code < 0 || code >= len(labels) {
		return ""
	}
	return labels[code]
}

// renderBirthDate follows the documented variety (ref §6.1, §8).
func renderBirthDate(d string, style clientStyle) any {
	if d == "" {
		if style == styleLegacy {
			return 0
		}
		return nil
	}
	if style == styleCreated {
		t, err := time.Parse(time.DateOnly, d)
		if err == nil {
			return itoa(t.Unix())
		}
	}
	return d
}

func renderCategories(ids []int64) []map[string]any {
	out := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		out = append(out, map[string]any{"id": id, "title": "Tag " + itoa(id), "color": "#bfd4f2"})
	}
	return out
}

// renderCustomFields answers [] when empty, as the docs do (ref §8).
func renderCustomFields(m map[string]string) any {
	if len(m) == 0 {
		return emptyArray{}
	}
	return m
}

// id parses an ID path segment; ok is false for a non-integer, which
// answers 404.
func (c *call) id(name string) (int64, bool) {
	return parseID(c.params[name])
}

// handleGetClient is GET /client/{location_id}/{id} (ref §6.1).
func (s *Server) handleGetClient(c *call) response {
	id, ok := c.id("client_id")
	if !ok {
		return s.notFound()
	}
	s.mu.Lock()
	rec, found := s.loc(c.loc).clients[id]
	var data map[string]any
	if found {
		data = renderClient(rec, styleCard, false)
	}
	s.mu.Unlock()
	if !found {
		return s.notFound()
	}
	return envelope(http.StatusOK, data, emptyArray{})
}

// handleUpdateClient is PUT /client/{location_id}/{id} (ref §6.2).
//
// Whether PUT clears omitted fields is unknown (ref §6.2, §9.8). The
// sandbox replaces the whole writable record: every field left out is
// cleared, so a client must read, merge and PUT. Tags are read from
// "labels"; "categories" is ignored on update. Visits and paid are not
// writable and are kept. [I]
func (s *Server) handleUpdateClient(c *call) response {
	id, ok := c.id("client_id")
	if !ok {
		return s.notFound()
	}
	fields, err := decodeObject(c.body)
	if err != nil {
		return invalidJSON(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(c.loc)
	old, found := l.clients[id]
	if !found {
		return s.notFoundLocked()
	}
	form := readClientForm(fields, "labels", true)
	if len(form.errs) > 0 {
		return validationError(toAny(form.errs)...)
	}
	if l.phoneTaken(form.rec.Phone, id) {
		return validationError(msgPhoneExists)
	}
	rec := form.rec
	rec.ID = id
	rec.Visits = old.Visits
	rec.Paid = old.Paid
	rec.LastChangeDate = s.cfg.Now()
	l.clients[id] = &rec
	s.notifyClientLocked(c, eventUpdate, &rec)
	return s.savedLocked(envelope(http.StatusOK, renderClient(&rec, styleCard, false), emptyArray{}))
}

// handleDeleteClient is DELETE /client/{location_id}/{id}: 204 with an
// empty body (ref §6.3). The client's comments, files and visits go too.
func (s *Server) handleDeleteClient(c *call) response {
	id, ok := c.id("client_id")
	if !ok {
		return s.notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(c.loc)
	old, found := l.clients[id]
	if !found {
		return s.notFoundLocked()
	}
	l.deleteClient(id)
	// ref §7 leaves data on delete undocumented; the sandbox sends the card
	// as it was before the deletion. [I]
	s.notifyClientLocked(c, eventDelete, old)
	return s.savedLocked(noContent())
}

// handleCreateClient is POST /clients/{location_id} (ref §6.4): 201 with
// the created client, phone as a JSON number as in the docs sample.
//
// A duplicate phone in the location is undocumented for the single create;
// the sandbox answers 422 with the bulk message (ref §6.4, §6.5). [I]
func (s *Server) handleCreateClient(c *call) response {
	fields, err := decodeObject(c.body)
	if err != nil {
		return invalidJSON(err)
	}
	form := readClientForm(fields, "categories", true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countCreateAttempt(form.rec.Phone)
	if len(form.errs) > 0 {
		return validationError(toAny(form.errs)...)
	}
	l := s.loc(c.loc)
	if l.phoneTaken(form.rec.Phone, 0) {
		return validationError(msgPhoneExists)
	}
	rec := s.insertClient(l, form.rec)
	s.notifyClientLocked(c, eventCreate, rec)
	return s.savedLocked(envelope(http.StatusCreated, renderClient(rec, styleCreated, true), emptyArray{}))
}

// insertClient stores a new client. Callers hold s.mu.
func (s *Server) insertClient(l *location, rec ClientRecord) *ClientRecord {
	s.nextID.client++
	rec.ID = s.nextID.client
	rec.LastChangeDate = s.cfg.Now()
	l.clients[rec.ID] = &rec
	s.countCreate(rec.Phone)
	return &rec
}

// handleBulkCreate is POST /clients/{location_id}/bulk (ref §6.5): the body
// is an array of clients; the answer is 200 with data.created and
// data.errors even when items fail. Error items carry phone (a number) and
// name when known, never the input index. custom_fields is not read, as
// the docs do not list it for bulk. No batch limit is documented; none is
// enforced. [I]
func (s *Server) handleBulkCreate(c *call) response {
	var items []json.RawMessage
	if err := json.Unmarshal(c.body, &items); err != nil || items == nil {
		return validationError("The request body must be an array of clients.")
	}
	created := make([]map[string]any, 0)
	errs := make([]map[string]any, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(c.loc)
	for _, item := range items {
		fields, err := decodeObject(item)
		if err != nil {
			errs = append(errs, map[string]any{"error": "Invalid client data"})
			continue
		}
		form := readClientForm(fields, "categories", false)
		s.countCreateAttempt(form.rec.Phone)
		msg := ""
		switch {
		case len(form.errs) > 0:
			msg = form.errs[0]
		case l.phoneTaken(form.rec.Phone, 0):
			msg = msgPhoneExists
		}
		if msg != "" {
			errs = append(errs, bulkErrorItem(form, msg))
			continue
		}
		rec := s.insertClient(l, form.rec)
		s.notifyClientLocked(c, eventCreate, rec)
		created = append(created, renderClient(rec, styleLegacy, true))
	}
	resp := envelope(http.StatusOK, map[string]any{"created": created, "errors": errs}, emptyArray{})
	if len(created) == 0 {
		return resp // nothing changed
	}
	return s.savedLocked(resp)
}

func bulkErrorItem(f clientForm, msg string) map[string]any {
	item := map[string]any{"error": msg}
	if f.rec.Phone != "" {
		item["phone"] = phoneNumber(f.rec.Phone)
	}
	if name := strings.TrimSpace(f.rec.Name + " " + f.rec.Surname); f.rec.Name != "" {
		item["name"] = name
	}
	return item
}

// phoneNumber renders phone digits as a JSON number, as the create and bulk
// samples do (ref §6.4, §6.5). A number cannot keep leading zeros, so they
// are dropped ("07700900123" becomes 7700900123), as a backend casting the
// phone to an integer would; json.Number would otherwise fail to encode.
func phoneNumber(digits string) json.Number {
	n := strings.TrimLeft(digits, "0")
	if n == "" {
		n = "0"
	}
	return json.Number(n)
}

func toAny[T any](in []T) []any {
	out := make([]any, len(in))
	for i, v := range in {
		out[i] = v
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
