package reads

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
)

// ListRequest is the request of clients.list, the deprecated list of full
// cards (reference §6.7): a page (1-based) of count cards (at most 300),
// and the API's filters. Times are RFC 3339, or "2006-01-02T15:04:05" in
// UTC.
type ListRequest struct {
	Page          int      `json:"page,omitempty"`
	Count         int      `json:"count,omitempty"`
	Fullname      string   `json:"fullname,omitempty"`
	Phone         string   `json:"phone,omitempty"`
	Email         string   `json:"email,omitempty"`
	Card          string   `json:"card,omitempty"`
	PaidMin       *float64 `json:"paid_min,omitempty"`
	PaidMax       *float64 `json:"paid_max,omitempty"`
	IDs           []int64  `json:"ids,omitempty"`
	ChangedAfter  string   `json:"changed_after,omitempty"`
	ChangedBefore string   `json:"changed_before,omitempty"`
}

// ExportRequest is the request of clients.export: one page of every
// client, in ascending id, throttled to the export share of the budget.
type ExportRequest struct {
	Page  int `json:"page,omitempty"`
	Count int `json:"count,omitempty"`
}

// ListResult is the answer of clients.list and clients.export.
type ListResult struct {
	// Clients are full cards, in ascending id.
	Clients []altegio.ClientRecord `json:"clients"`
	Page    int                    `json:"page"`
	// TotalCount is the API's total across all pages (-1 when it sent
	// none).
	TotalCount int `json:"total_count"`
	// FilterIgnored says that the API answered rows its filter does not
	// match: it drops a filter that matches nobody and answers the
	// unfiltered list (reference §6.7). Nothing matches then: Clients is
	// empty and TotalCount 0.
	FilterIgnored bool `json:"filter_ignored,omitempty"`
}

// ExportPageSize is the page size of an export: the list's maximum.
const ExportPageSize = 300

// errExportBusy is a page of an export that would wait past its deadline
// for the export share.
var errExportBusy = errors.New("exports are using their whole share of the API budget; retry later")

// list reads one page of the deprecated list and checks every row against
// the filter, which the API may have dropped.
func (s *Service) list(ctx context.Context, loc int64, r ListRequest) (ListResult, error) {
	p := altegio.ListClientsParams{Page: r.Page, Count: r.Count, Fullname: r.Fullname, Phone: r.Phone,
		Email: r.Email, Card: r.Card, PaidMin: r.PaidMin, PaidMax: r.PaidMax, IDs: r.IDs}
	var err error
	if p.ChangedAfter, err = listTime("changed_after", r.ChangedAfter); err != nil {
		return ListResult{}, err
	}
	if p.ChangedBefore, err = listTime("changed_before", r.ChangedBefore); err != nil {
		return ListResult{}, err
	}
	res, err := s.api.ListClientsDeprecated(ctx, loc, p)
	if err != nil {
		return ListResult{}, err
	}
	out := ListResult{Clients: res.Clients, Page: res.Page, TotalCount: res.TotalCount}
	if slices.ContainsFunc(res.Clients, func(c altegio.ClientRecord) bool { return !matches(p, c) }) {
		out = ListResult{Clients: []altegio.ClientRecord{}, Page: res.Page, FilterIgnored: true}
	}
	if out.Clients == nil {
		out.Clients = []altegio.ClientRecord{}
	}
	return out, nil
}

// exportPage reads one page of an export, after the export share allows.
func (s *Service) exportPage(ctx context.Context, loc int64, r ExportRequest) (ListResult, error) {
	if r.Page < 0 || r.Count < 0 || r.Count > ExportPageSize {
		return ListResult{}, &badRequest{fmt.Sprintf("page must be positive and count 1 to %d", ExportPageSize)}
	}
	if s.export != nil {
		if err := s.export.Wait(ctx); err != nil {
			return ListResult{}, fmt.Errorf("%w (%v)", errExportBusy, err)
		}
	}
	count := r.Count
	if count == 0 {
		count = ExportPageSize
	}
	return s.list(ctx, loc, ListRequest{Page: max(r.Page, 1), Count: count})
}

// listTime reads a time filter: RFC 3339, or the API's form without an
// offset, read as UTC.
func listTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, &badRequest{fmt.Sprintf("%s must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z", field)}
}

// matches reports whether card c satisfies the filter of p as the API
// documents it: substrings of the full name, phone (digits), email and
// card; the ids; the amount paid; the change window. A field the card does
// not carry in a form we can read (an unparsable change date) passes.
func matches(p altegio.ListClientsParams, c altegio.ClientRecord) bool {
	contains := func(have, want string) bool {
		return want == "" || strings.Contains(strings.ToLower(have), strings.ToLower(strings.TrimSpace(want)))
	}
	if !contains(strings.Join([]string{c.Name, c.Surname, c.MiddleName}, " "), p.Fullname) ||
		!contains(digits(c.Phone), digits(p.Phone)) || !contains(c.Email, p.Email) || !contains(c.Card, p.Card) {
		return false
	}
	if len(p.IDs) > 0 && !slices.Contains(p.IDs, c.ID) {
		return false
	}
	if (p.PaidMin != nil && c.Paid < *p.PaidMin) || (p.PaidMax != nil && c.Paid > *p.PaidMax) {
		return false
	}
	if changed, err := altegio.ParseTime(c.LastChangeDate); err == nil {
		if (!p.ChangedAfter.IsZero() && changed.Before(p.ChangedAfter)) || (!p.ChangedBefore.IsZero() && changed.After(p.ChangedBefore)) {
			return false
		}
	}
	return true
}

// digits keeps the digits of s.
func digits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}
