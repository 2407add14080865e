package altegio

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ClientRecord is a client card as the API returns it (GET /client, create, update,
// the deprecated list, bulk created[] and webhooks). Decoding tolerates every
// documented quirk: phone and card as numbers, birth_date as a date, null, 0
// or a unix timestamp, custom_fields as {} or [], money as numbers or strings,
// and both spellings of renamed fields (middle_name/patronymic,
// gender_id/sex_id, gender/sex). Encoding uses the current names only.
type ClientRecord struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Surname     string `json:"surname,omitempty"`
	MiddleName  string `json:"middle_name,omitempty"` // also read from "patronymic"
	DisplayName string `json:"display_name,omitempty"`
	// Phone is the phone as text; a JSON number is written in plain digits.
	Phone string `json:"phone"`
	Email string `json:"email,omitempty"`
	// Card is the loyalty card number as text.
	Card string `json:"card,omitempty"`
	// BirthDate is "YYYY-MM-DD", or "" when the API sent null, 0 or "".
	// Unix timestamps are converted in UTC; an unrecognized string is kept.
	BirthDate string `json:"birth_date,omitempty"`
	Comment   string `json:"comment,omitempty"`
	// GenderID is 0 unknown, 1 male, 2 female (also read from "sex_id").
	GenderID int `json:"gender_id"`
	// Gender is the gender label (also read from "sex").
	Gender string `json:"gender,omitempty"`
	// ImportanceID is 0 none, 1 bronze, 2 silver, 3 gold.
	ImportanceID int    `json:"importance_id"`
	Importance   string `json:"importance,omitempty"`
	// Discount is a percentage.
	Discount float64 `json:"discount"`
	// Visits, Spent, Paid and Balance are lifetime values; money is in major
	// units.
	Visits  int     `json:"visits"`
	Spent   float64 `json:"spent"`
	Paid    float64 `json:"paid"`
	Balance float64 `json:"balance"`
	// SMSCheck 1 sends a birthday SMS; SMSNot 1 excludes the client from
	// campaigns.
	SMSCheck int `json:"sms_check"`
	SMSNot   int `json:"sms_not"`
	SMSBot   int `json:"sms_bot"`
	// Categories are the client's tags.
	Categories []Category `json:"categories,omitempty"`
	// CustomFields maps a field's API key to its value (numbers as
	// json.Number); nil when the API sent {} or [].
	CustomFields map[string]any `json:"custom_fields,omitempty"`
	// LastChangeDate is as sent, e.g. "2026-02-01T12:00:00-0500"; see ParseTime.
	LastChangeDate string `json:"last_change_date,omitempty"`
}

// Category is a client tag as read: {id, title, color}.
type Category struct {
	ID    int64  `json:"id"`
	Title string `json:"title,omitempty"`
	Color string `json:"color,omitempty"`
}

// UnmarshalJSON accepts {id, title, color} and a bare tag ID.
func (c *Category) UnmarshalJSON(raw []byte) error {
	if k := jsonKind(raw); k != '{' {
		var id flexInt
		_ = id.UnmarshalJSON(raw)
		*c = Category{ID: int64(id)}
		return nil
	}
	var w struct {
		ID    flexInt    `json:"id"`
		Title flexString `json:"title"`
		Color flexString `json:"color"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return err
	}
	*c = Category{ID: int64(w.ID), Title: string(w.Title), Color: string(w.Color)}
	return nil
}

// clientWire is the shape of a client card on the wire, every spelling.
type clientWire struct {
	ID             flexInt         `json:"id"`
	Name           flexString      `json:"name"`
	Surname        flexString      `json:"surname"`
	MiddleName     *flexString     `json:"middle_name"`
	Patronymic     *flexString     `json:"patronymic"`
	DisplayName    flexString      `json:"display_name"`
	Phone          flexString      `json:"phone"`
	Email          flexString      `json:"email"`
	Card           flexString      `json:"card"`
	BirthDate      flexDate        `json:"birth_date"`
	Comment        flexString      `json:"comment"`
	GenderID       *flexInt        `json:"gender_id"`
	SexID          *flexInt        `json:"sex_id"`
	Gender         *flexString     `json:"gender"`
	Sex            *flexString     `json:"sex"`
	ImportanceID   flexInt         `json:"importance_id"`
	Importance     flexString      `json:"importance"`
	Discount       flexFloat       `json:"discount"`
	Visits         flexInt         `json:"visits"`
	Spent          flexFloat       `json:"spent"`
	Paid           flexFloat       `json:"paid"`
	Balance        flexFloat       `json:"balance"`
	SMSCheck       flexInt         `json:"sms_check"`
	SMSNot         flexInt         `json:"sms_not"`
	SMSBot         flexInt         `json:"sms_bot"`
	Categories     json.RawMessage `json:"categories"`
	CustomFields   json.RawMessage `json:"custom_fields"`
	LastChangeDate flexString      `json:"last_change_date"`
}

// errNotObject is returned when a record is not a JSON object.
var errNotObject = errors.New("not a JSON object")

// UnmarshalJSON decodes a client card in any of its documented shapes. It
// fails only when raw is not a JSON object (null leaves c unchanged).
func (c *ClientRecord) UnmarshalJSON(raw []byte) error {
	var w clientWire
	if ok, err := unmarshalObject(raw, &w); !ok {
		return err
	}
	cats, _ := decodeList[Category](w.Categories)
	*c = ClientRecord{
		ID:             int64(w.ID),
		Name:           string(w.Name),
		Surname:        string(w.Surname),
		MiddleName:     pick(w.MiddleName, w.Patronymic),
		DisplayName:    string(w.DisplayName),
		Phone:          string(w.Phone),
		Email:          string(w.Email),
		Card:           string(w.Card),
		BirthDate:      string(w.BirthDate),
		Comment:        string(w.Comment),
		GenderID:       int(pickInt(w.GenderID, w.SexID)),
		Gender:         pick(w.Gender, w.Sex),
		ImportanceID:   int(w.ImportanceID),
		Importance:     string(w.Importance),
		Discount:       float64(w.Discount),
		Visits:         int(w.Visits),
		Spent:          float64(w.Spent),
		Paid:           float64(w.Paid),
		Balance:        float64(w.Balance),
		SMSCheck:       int(w.SMSCheck),
		SMSNot:         int(w.SMSNot),
		SMSBot:         int(w.SMSBot),
		Categories:     cats,
		CustomFields:   decodeObjectMap(w.CustomFields),
		LastChangeDate: string(w.LastChangeDate),
	}
	if len(c.Categories) == 0 {
		c.Categories = nil
	}
	return nil
}

// pick returns the first non-empty of the current and the legacy spelling.
func pick(current, legacy *flexString) string {
	if current != nil && *current != "" {
		return string(*current)
	}
	if legacy != nil {
		return string(*legacy)
	}
	return ""
}

func pickInt(current, legacy *flexInt) flexInt {
	if current != nil {
		return *current
	}
	if legacy != nil {
		return *legacy
	}
	return 0
}

// Input returns the writable fields of c as a ClientInput, for the
// read-merge-PUT pattern: every optional field is set, so a PUT does not
// clear what the caller did not mean to change. Spent and Balance are copied
// too; clear them when the update must not write them back.
func (c ClientRecord) Input() ClientInput {
	in := ClientInput{
		Name:         c.Name,
		Phone:        c.Phone,
		Surname:      new(c.Surname),
		MiddleName:   new(c.MiddleName),
		Email:        new(c.Email),
		GenderID:     new(c.GenderID),
		ImportanceID: new(c.ImportanceID),
		Discount:     new(c.Discount),
		Card:         new(c.Card),
		Comment:      new(c.Comment),
		Spent:        new(c.Spent),
		Balance:      new(c.Balance),
		SMSCheck:     new(c.SMSCheck),
		SMSNot:       new(c.SMSNot),
		Categories:   make([]int64, 0, len(c.Categories)),
	}
	if _, err := time.Parse(time.DateOnly, c.BirthDate); err == nil {
		in.BirthDate = new(c.BirthDate)
	}
	for _, cat := range c.Categories {
		in.Categories = append(in.Categories, cat.ID)
	}
	if len(c.CustomFields) > 0 {
		in.CustomFields = make(map[string]any, len(c.CustomFields))
		for k, v := range c.CustomFields {
			in.CustomFields[k] = v
		}
	}
	return in
}

// ClientInput is the body of create (POST /clients), update (PUT /client)
// and each item of bulk create. Name and Phone are required. A nil pointer,
// slice or map leaves the key out; a pointer to a zero value sends it (Go
// 1.26: new("") or new(0)). Categories are tag IDs: the client sends them as
// "categories" on create and bulk and as "labels" on update, as the API
// requires. Whether a PUT clears omitted keys is undocumented; read, merge
// (see ClientRecord.Input) and PUT the whole record.
type ClientInput struct {
	Name       string  `json:"name"`
	Phone      string  `json:"phone"`
	Surname    *string `json:"surname,omitempty"`
	MiddleName *string `json:"middle_name,omitempty"`
	Email      *string `json:"email,omitempty"`
	// GenderID is 0 unknown, 1 male, 2 female.
	GenderID *int `json:"gender_id,omitempty"`
	// ImportanceID is 0 to 3.
	ImportanceID *int `json:"importance_id,omitempty"`
	// Discount is a percentage.
	Discount *float64 `json:"discount,omitempty"`
	Card     *string  `json:"card,omitempty"`
	// BirthDate is "YYYY-MM-DD".
	BirthDate *string  `json:"birth_date,omitempty"`
	Comment   *string  `json:"comment,omitempty"`
	Spent     *float64 `json:"spent,omitempty"`
	Balance   *float64 `json:"balance,omitempty"`
	SMSCheck  *int     `json:"sms_check,omitempty"`
	SMSNot    *int     `json:"sms_not,omitempty"`
	// Categories are tag IDs; a non-nil empty slice sends [] (removes all tags).
	Categories []int64 `json:"categories,omitempty"`
	// CustomFields maps a field's API key to its value. Not sent by bulk
	// create, which does not document it.
	CustomFields map[string]any `json:"custom_fields,omitempty"`
}

// validate checks what the API documents as required.
func (in ClientInput) validate() error {
	if strings.TrimSpace(in.Name) == "" {
		return errors.New("name is required")
	}
	if strings.TrimSpace(in.Phone) == "" {
		return errors.New("phone is required")
	}
	if in.BirthDate != nil && *in.BirthDate != "" {
		if _, err := time.Parse(time.DateOnly, *in.BirthDate); err != nil {
			return errors.New("birth_date must be YYYY-MM-DD")
		}
	}
	return nil
}

// clientBody is the wire body of create, update and bulk items: the input's
// fields, except that the tags and custom fields are decided here. The outer
// fields shadow the embedded ones of the same JSON name (encoding/json picks
// the shallowest), so ClientInput.Categories and .CustomFields are never sent
// as they are.
type clientBody struct {
	ClientInput
	Categories   *[]int64       `json:"categories,omitempty"`
	Labels       *[]int64       `json:"labels,omitempty"`
	CustomFields map[string]any `json:"custom_fields,omitempty"`
}

// tagsKey selects how ClientInput.Categories is sent.
type tagsKey int

const (
	tagsAsCategories tagsKey = iota // create, bulk
	tagsAsLabels                    // update
)

func (in ClientInput) body(tags tagsKey, customFields bool) clientBody {
	b := clientBody{ClientInput: in}
	if in.Categories != nil {
		ids := in.Categories
		if tags == tagsAsLabels {
			b.Labels = &ids
		} else {
			b.Categories = &ids
		}
	}
	if customFields {
		b.CustomFields = in.CustomFields
	}
	return b
}

// NormalizePhone returns the digits of a phone number without leading zeros,
// the form in which the API may echo it as a JSON number. Use it to compare
// phones, not to send them.
func NormalizePhone(phone string) string {
	var b strings.Builder
	for _, r := range phone {
		if r >= '0' && r <= '9' {
			if b.Len() == 0 && r == '0' {
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// apiTimeLayouts are the datetime forms seen in API responses.
var apiTimeLayouts = []string{
	"2006-01-02T15:04:05-0700",
	time.RFC3339,
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	time.DateOnly,
}

// ParseTime parses a datetime as the API writes it: "2026-05-01T12:00:00-0500",
// RFC 3339, "2023-01-01 12:12:12" (no zone, returned in UTC) or a date.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	var firstErr error
	for _, layout := range apiTimeLayouts {
		t, err := time.Parse(layout, s)
		if err == nil {
			return t, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return time.Time{}, firstErr
}

// CardFingerprint returns a digest of what a client card says about the
// client: its names, phone digits, email, card, birth date, comment,
// gender, importance, discount, SMS flags, tags and custom fields. It
// leaves out what changes without an edit (visits, money, the change
// date), so two cards with one fingerprint describe the same edit of the
// client. ok is false when raw is not a client card.
func CardFingerprint(raw json.RawMessage) (fingerprint string, ok bool) {
	var c ClientRecord
	if jsonKind(raw) != '{' || json.Unmarshal(raw, &c) != nil || c.ID <= 0 {
		return "", false
	}
	tags := make([]int64, len(c.Categories))
	for i, t := range c.Categories {
		tags[i] = t.ID
	}
	slices.Sort(tags)
	fields := make([]string, 0, len(c.CustomFields))
	for k, v := range c.CustomFields {
		fields = append(fields, fmt.Sprintf("%s=%v", k, v))
	}
	slices.Sort(fields)
	phone := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, c.Phone)
	canonical, _ := json.Marshal([]any{c.ID, c.Name, c.Surname, c.MiddleName, phone, strings.ToLower(c.Email), c.Card,
		c.BirthDate, c.Comment, c.GenderID, c.ImportanceID, c.Discount, c.SMSCheck, c.SMSNot, tags, fields})
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:16]), true
}
