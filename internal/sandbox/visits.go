package sandbox

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// visitPageSize is the page size of the visits search (ref §6.10).
const visitPageSize = 25

var (
	visitKeys       = []string{"client_id", "client_phone", "from", "to", "payment_statuses", "attendance"}
	paymentStatuses = []string{"not_paid", "paid_not_full", "paid_full", "paid_over"}
)

type visitQuery struct {
	clientID   int64
	phone      string
	from, to   string // YYYY-MM-DD or ""
	statuses   []string
	attendance *int
}

// parseVisitQuery validates the body of the visits search; every key is
// required but nullable (ref §6.10). It returns the 422 messages.
func parseVisitQuery(body []byte) (visitQuery, []string) {
	var q visitQuery
	fields, err := decodeObject(body)
	if err != nil {
		return q, []string{"The request body must be a JSON object."}
	}
	var errs []string
	for _, k := range visitKeys {
		if _, ok := fields[k]; !ok {
			errs = append(errs, "The "+k+" field must be present.")
		}
	}
	if len(errs) > 0 {
		return q, errs
	}
	r := &fieldReader{fields: fields}
	if v, _, ok := r.raw("client_id"); ok {
		if json.Unmarshal(v, &q.clientID) != nil || q.clientID <= 0 {
			r.fail("The client_id must be an integer.")
		}
	}
	q.phone = normalizePhone(r.strOrNumber("client_phone"))
	q.from = r.date("from")
	q.to = r.date("to")
	if v, _, ok := r.raw("payment_statuses"); ok {
		if json.Unmarshal(v, &q.statuses) != nil {
			r.fail("The payment_statuses must be an array.")
		}
		for _, st := range q.statuses {
			if !slices.Contains(paymentStatuses, st) {
				r.fail("The selected payment_statuses is invalid.")
				break
			}
		}
	}
	if v, _, ok := r.raw("attendance"); ok {
		var a int
		if json.Unmarshal(v, &a) != nil || a < -1 || a > 2 {
			r.fail("The selected attendance is invalid.")
		} else {
			q.attendance = &a
		}
	}
	if q.clientID == 0 && q.phone == "" && len(r.errs) == 0 {
		r.fail("The client_id or client_phone field is required.")
	}
	if q.from != "" && q.to != "" && q.from > q.to {
		r.fail("The to must be a date after or equal to from.")
	}
	return q, r.errs
}

// handleVisitSearch is POST .../clients/visits/search (ref §6.10): the
// client's appointments newest first in pages of 25, keeping visits of the
// page's last day together, with meta.dateCursor {previous,current,next}.
// The next page is fetched by resending with next.from and next.to; both
// null means no more pages. goods_transactions is always empty (no goods
// are modelled). A missing key answers 422; an unknown client 404.
func (s *Server) handleVisitSearch(c *call) response {
	q, errs := parseVisitQuery(c.body)
	if len(errs) > 0 {
		return validationError(toAny(errs)...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(c.loc)
	client := s.findVisitClient(l, q)
	if client == nil {
		return s.notFoundLocked()
	}

	var all []*Visit // matching every filter but the date window
	for _, v := range l.visits {
		if v.ClientID != client.ID ||
			(len(q.statuses) > 0 && !slices.Contains(q.statuses, v.PaymentStatus)) ||
			(q.attendance != nil && *q.attendance != v.Attendance) {
			continue
		}
		all = append(all, v)
	}
	slices.SortFunc(all, func(a, b *Visit) int {
		return cmp.Or(b.Date.Compare(a.Date), cmp.Compare(b.ID, a.ID))
	})
	var inWindow, newer []*Visit
	for _, v := range all {
		d := day(v.Date)
		switch {
		case q.to != "" && d > q.to:
			newer = append(newer, v)
		case q.from != "" && d < q.from:
		default:
			inWindow = append(inWindow, v)
		}
	}

	page := inWindow
	if len(page) > visitPageSize {
		n := visitPageSize
		last := day(page[n-1].Date)
		for n < len(page) && day(page[n].Date) == last {
			n++
		}
		page = page[:n]
	}
	rest := inWindow[len(page):]

	current := cursor{From: q.from, To: q.to, Count: len(page)}
	if len(page) > 0 {
		current.From = cmp.Or(q.from, day(page[len(page)-1].Date))
		current.To = cmp.Or(q.to, day(page[0].Date))
	}
	next := cursor{}
	if len(rest) > 0 {
		next = cursor{
			From:  cmp.Or(q.from, day(rest[len(rest)-1].Date)),
			To:    dayBefore(day(page[len(page)-1].Date)),
			Count: len(rest),
		}
	}
	previous := cursor{}
	if len(newer) > 0 {
		previous = cursor{From: dayAfter(q.to), To: day(newer[0].Date), Count: len(newer)}
	}

	records := make([]map[string]any, 0, len(page))
	for _, v := range page {
		records = append(records, renderVisit(c.loc, v))
	}
	return envelope(http.StatusOK, map[string]any{
		"records":            records,
		"goods_transactions": []any{},
	}, map[string]any{"dateCursor": map[string]any{
		"previous": previous.render(),
		"current":  current.render(),
		"next":     next.render(),
	}})
}

// findVisitClient resolves client_id, else client_phone. Callers hold s.mu.
func (s *Server) findVisitClient(l *location, q visitQuery) *ClientRecord {
	if q.clientID != 0 {
		return l.clients[q.clientID]
	}
	for _, c := range s.sortedClients(l) {
		if c.Phone == q.phone {
			return c
		}
	}
	return nil
}

// cursor is one entry of meta.dateCursor; empty dates render as null.
type cursor struct {
	From, To string
	Count    int
}

func (c cursor) render() map[string]any {
	return map[string]any{"from": nullIfEmpty(c.From), "to": nullIfEmpty(c.To), "count": c.Count}
}

func day(t time.Time) string { return t.Format(time.DateOnly) }

func dayBefore(d string) string { return shiftDay(d, -1) }
func dayAfter(d string) string  { return shiftDay(d, 1) }

func shiftDay(d string, n int) string {
	t, err := time.Parse(time.DateOnly, d)
	if err != nil {
		return ""
	}
	return t.AddDate(0, 0, n).Format(time.DateOnly)
}

// renderVisit builds one data.records[] item with the documented keys
// (ref §6.10).
func renderVisit(loc int64, v *Visit) map[string]any {
	paid := map[string]float64{
		"not_paid": 0, "paid_not_full": v.Cost / 2, "paid_full": v.Cost, "paid_over": v.Cost * 1.1,
	}[v.PaymentStatus]
	return map[string]any{
		"id":         v.ID,
		"comment":    v.Comment,
		"date":       formatTime(v.Date),
		"visit_id":   v.ID,
		"attendance": v.Attendance,
		"services": []map[string]any{{
			"id":               v.ServiceID,
			"title":            v.ServiceTitle,
			"first_cost":       v.Cost,
			"discount_percent": 0,
			"cost_to_pay":      v.Cost,
			"paid_sum":         paid,
			"payment_status":   v.PaymentStatus,
			"consumables":      []any{},
		}},
		"staff": map[string]any{
			"id":             v.StaffID,
			"name":           v.StaffName,
			"company_id":     loc,
			"specialization": "",
			"avatar":         "",
			"avatar_big":     "",
			"position":       map[string]any{},
			"is_paid_staff":  true,
		},
		"company": map[string]any{"id": loc, "title": "Location " + itoa(loc)},
		"tips":    map[string]any{"has_tips": false, "sum": 0},
		"comer":   nil,
	}
}
