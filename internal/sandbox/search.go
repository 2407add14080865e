package sandbox

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Search limits (ref §6.6).
const (
	defaultSearchPageSize = 25
	maxSearchPageSize     = 200
	msgInvalidFilter      = "Invalid filter value"
)

// searchFields are the documented projected columns (ref §6.6).
var searchFields = []string{
	"id", "name", "phone", "email", "discount", "first_visit_date", "last_visit_date",
	"sold_amount", "visits_count", "passteam_card_id", "deposit_balance",
}

// searchOrders are the documented order_by values; both spellings of the
// visit count are accepted (ref §6.6).
var searchOrders = []string{
	"id", "name", "phone", "email", "discount", "first_visit_date", "last_visit_date",
	"sold_amount", "visit_count", "visits_count",
}

// unsupportedFilters are documented filter types the sandbox does not
// evaluate; it answers 400 rather than silently ignoring them. [I]
var unsupportedFilters = []string{
	"has_mobile_app", "has_passteam_card", "passteam_card_ids", "birthday",
	"sms_notification", "record", "sale", "client",
}

type searchRequest struct {
	Page             *int           `json:"page"`
	PageSize         *int           `json:"page_size"`
	Fields           []string       `json:"fields"`
	OrderBy          string         `json:"order_by"`
	OrderByDirection string         `json:"order_by_direction"`
	Operation        string         `json:"operation"`
	Filters          []searchFilter `json:"filters"`
}

type searchFilter struct {
	Type  string          `json:"type"`
	State json.RawMessage `json:"state"`
}

// predicate tests one client.
type predicate func(c *ClientRecord) bool

// handleSearch is POST /company|locations/{location_id}/clients/search
// (ref §6.6). Invalid parameters answer the documented 400 shape with
// meta.errors keyed by field; page_size above 200 is rejected rather than
// clamped, so a client cannot silently lose rows. [I]
func (s *Server) handleSearch(c *call) response {
	var req searchRequest
	if err := json.Unmarshal(orEmptyObject(c.body), &req); err != nil {
		return invalidJSON(err)
	}
	page, pageSize := 1, defaultSearchPageSize
	if req.Page != nil {
		page = *req.Page
	}
	if req.PageSize != nil {
		pageSize = *req.PageSize
	}
	if page < 1 {
		return fieldError("Invalid page value", "page", "The page must be at least 1.")
	}
	if pageSize < 1 || pageSize > maxSearchPageSize {
		return fieldError("Invalid page_size value", "page_size",
			fmt.Sprintf("The page size must be between 1 and %d.", maxSearchPageSize))
	}
	fields := req.Fields
	if len(fields) == 0 {
		fields = []string{"id"} // ref §6.6: the default projection is id only
	}
	for _, f := range fields {
		if !slices.Contains(searchFields, f) {
			return fieldError("Invalid fields value", "fields", fmt.Sprintf("Unknown field %q.", f))
		}
	}
	orderBy := cmp.Or(req.OrderBy, "id")
	if !slices.Contains(searchOrders, orderBy) {
		return fieldError("Invalid order_by value", "order_by", fmt.Sprintf("Unknown order %q.", orderBy))
	}
	desc := false
	switch strings.ToUpper(req.OrderByDirection) {
	case "", "ASC":
	case "DESC":
		desc = true
	default:
		return fieldError("Invalid order_by_direction value", "order_by_direction", "Must be ASC or DESC.")
	}
	or := false
	switch strings.ToUpper(req.Operation) {
	case "", "AND":
	case "OR":
		or = true
	default:
		return fieldError("Invalid operation value", "operation", "Must be AND or OR.")
	}
	preds := make([]predicate, 0, len(req.Filters))
	for _, f := range req.Filters {
		p, msg := compileFilter(f)
		if msg != "" {
			return fieldError(msgInvalidFilter, "filters", msg)
		}
		preds = append(preds, p)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(c.loc)
	var matched []*ClientRecord
	for _, rec := range s.sortedClients(l) {
		if matchAll(preds, or, rec) {
			matched = append(matched, rec)
		}
	}
	first, last := visitBounds(l)
	key := func(rec *ClientRecord) any { return searchValue(rec, orderBy, first, last) }
	slices.SortStableFunc(matched, func(a, b *ClientRecord) int {
		n := compareAny(key(a), key(b))
		if desc {
			n = -n
		}
		return cmp.Or(n, cmp.Compare(a.ID, b.ID))
	})
	total := len(matched)
	rows := make([]map[string]any, 0, pageSize)
	for _, rec := range paginate(matched, page, pageSize) {
		row := make(map[string]any, len(fields))
		for _, f := range fields {
			row[f] = searchValue(rec, f, first, last)
		}
		rows = append(rows, row)
	}
	return envelope(http.StatusOK, rows, map[string]any{"total_count": total})
}

func matchAll(preds []predicate, or bool, rec *ClientRecord) bool {
	if len(preds) == 0 {
		return true
	}
	for _, p := range preds {
		if p(rec) == or {
			return or
		}
	}
	return !or
}

func paginate[T any](items []T, page, size int) []T {
	start := (page - 1) * size
	if start >= len(items) {
		return nil
	}
	return items[start:min(start+size, len(items))]
}

// searchValue is the projected value of one search column. name is the
// display name "name surname", as in the docs sample (ref §6.6).
func searchValue(rec *ClientRecord, field string, first, last map[int64]string) any {
	switch field {
	case "id":
		return rec.ID
	case "name":
		return strings.TrimSpace(rec.Name + " " + rec.Surname)
	case "phone":
		return rec.Phone
	case "email":
		return rec.Email
	case "discount":
		return rec.Discount
	case "first_visit_date":
		return nullIfEmpty(first[rec.ID])
	case "last_visit_date":
		return nullIfEmpty(last[rec.ID])
	case "sold_amount":
		return rec.Spent
	case "visits_count", "visit_count":
		return rec.Visits
	case "deposit_balance":
		return rec.Balance
	default: // passteam_card_id
		return nil
	}
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// compareAny orders values of one search column; nil sorts first.
func compareAny(a, b any) int {
	switch x := a.(type) {
	case int64:
		return cmp.Compare(x, b.(int64))
	case int:
		return cmp.Compare(x, b.(int))
	case float64:
		return cmp.Compare(x, b.(float64))
	case string:
		y, _ := b.(string)
		return strings.Compare(strings.ToLower(x), strings.ToLower(y))
	}
	as, _ := a.(string)
	bs, _ := b.(string)
	return strings.Compare(as, bs)
}

// visitBounds returns each client's first and last visit date. Callers
// hold s.mu.
func visitBounds(l *location) (first, last map[int64]string) {
	first, last = make(map[int64]string), make(map[int64]string)
	for _, v := range l.visits {
		d := formatTime(v.Date)
		if f, ok := first[v.ClientID]; !ok || d < f {
			first[v.ClientID] = d
		}
		if d > last[v.ClientID] {
			last[v.ClientID] = d
		}
	}
	return first, last
}

// compileFilter turns one documented filter into a predicate; msg is the
// 400 detail when the filter is invalid (ref §3, §6.6). Every supported
// state accepts invert: true.
func compileFilter(f searchFilter) (p predicate, msg string) {
	var st struct {
		Value  json.RawMessage `json:"value"`
		From   *float64        `json:"from"`
		To     *float64        `json:"to"`
		Invert bool            `json:"invert"`
	}
	if len(f.State) == 0 || json.Unmarshal(f.State, &st) != nil {
		return nil, "Invalid filter state value"
	}
	switch f.Type {
	case "id":
		var ids []int64
		if json.Unmarshal(st.Value, &ids) != nil || len(ids) == 0 {
			return nil, "Invalid filter state value"
		}
		p = func(c *ClientRecord) bool { return slices.Contains(ids, c.ID) }
	case "quick_search":
		var text string
		if json.Unmarshal(st.Value, &text) != nil {
			return nil, "Invalid filter state value"
		}
		p = quickSearch(text)
	case "importance", "gender":
		var codes []int
		if json.Unmarshal(st.Value, &codes) != nil || len(codes) == 0 {
			return nil, "Invalid filter state value"
		}
		hi := map[string]int{"importance": 3, "gender": 2}[f.Type]
		for _, code := range codes {
			if code < 0 || code > hi {
				return nil, "Invalid filter state value"
			}
		}
		if f.Type == "importance" {
			p = func(c *ClientRecord) bool { return slices.Contains(codes, c.ImportanceID) }
		} else {
			p = func(c *ClientRecord) bool { return slices.Contains(codes, c.GenderID) }
		}
	case "category":
		var ids []int64
		if json.Unmarshal(st.Value, &ids) != nil || len(ids) == 0 {
			return nil, "Invalid filter state value"
		}
		p = func(c *ClientRecord) bool {
			return slices.ContainsFunc(c.Categories, func(id int64) bool { return slices.Contains(ids, id) })
		}
	case "sold_amount":
		if st.From == nil && st.To == nil {
			return nil, "Invalid filter state value"
		}
		from, to := st.From, st.To
		p = func(c *ClientRecord) bool {
			return (from == nil || c.Spent >= *from) && (to == nil || c.Spent <= *to)
		}
	default:
		if slices.Contains(unsupportedFilters, f.Type) {
			return nil, fmt.Sprintf("Filter type %q is not supported by the sandbox", f.Type)
		}
		return nil, "Invalid filter type value"
	}
	if st.Invert {
		inner := p
		p = func(c *ClientRecord) bool { return !inner(c) }
	}
	return p, ""
}

// quickSearch matches phone digits, name, surname, middle name and card,
// case-insensitively (ref §6.6). Empty text matches everyone.
func quickSearch(text string) predicate {
	text = strings.ToLower(strings.TrimSpace(text))
	digits := normalizePhone(text)
	return func(c *ClientRecord) bool {
		if text == "" {
			return true
		}
		full := strings.ToLower(strings.Join([]string{c.Name, c.Surname, c.MiddleName}, " "))
		switch {
		case strings.Contains(full, text),
			strings.Contains(strings.ToLower(c.Card), text),
			digits != "" && isPhoneLike(text) && strings.Contains(c.Phone, digits):
			return true
		}
		return false
	}
}

// isPhoneLike reports whether text holds only phone punctuation and digits.
func isPhoneLike(text string) bool {
	return strings.Trim(text, "0123456789+-() ") == ""
}
