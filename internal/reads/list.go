package reads

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/readclient"
)

// ListResult is the answer of clients.list and clients.export.
type ListResult struct {
	// Clients are full cards, in ascending id.
	Clients []altegio.ClientRecord `json:"clients"`
	Page    int                    `json:"page"`
	// TotalCount is the API's total across all pages (-1 when it sent
	// none).
	TotalCount int `json:"total_count"`
	// FilterIgnored says that the API answered rows none of which match
	// one of the filters: it drops a filter that matches nobody and
	// answers the unfiltered list (reference §6.7). Nothing matches then:
	// Clients is empty and TotalCount 0.
	FilterIgnored bool `json:"filter_ignored,omitempty"`
}

// errExportBusy is a page of an export that would wait past its deadline
// for the export share.
var errExportBusy = errors.New("exports are using their whole share of the API budget; retry later")

// list reads one page of the deprecated list and checks every row against
// the filter, which the API may have dropped.
func (s *Service) list(ctx context.Context, loc int64, r readclient.ListRequest) (ListResult, error) {
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
	if droppedFilter(p, res.Clients) {
		out = ListResult{Clients: []altegio.ClientRecord{}, Page: res.Page, FilterIgnored: true}
	}
	if out.Clients == nil {
		out.Clients = []altegio.ClientRecord{}
	}
	return out, nil
}

// exportPage reads one page of an export, after the export share allows.
func (s *Service) exportPage(ctx context.Context, loc int64, r readclient.ExportRequest) (ListResult, error) {
	if r.Page < 0 || r.Count < 0 || r.Count > readclient.ExportPageSize {
		return ListResult{}, &badRequest{fmt.Sprintf("page must be positive and count 1 to %d", readclient.ExportPageSize)}
	}
	if s.export != nil {
		if err := s.export.Wait(ctx); err != nil {
			return ListResult{}, fmt.Errorf("%w (%v)", errExportBusy, err)
		}
	}
	count := r.Count
	if count == 0 {
		count = readclient.ExportPageSize
	}
	return s.list(ctx, loc, readclient.ListRequest{Page: max(r.Page, 1), Count: count})
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

// droppedFilter reports whether the API dropped one of p's filters: it
// does so only with a filter that matches nobody (reference §6.7), so no
// row of the answer matches that filter, while every row matches a filter
// it applied. A filter that some rows match and others do not is one we
// read differently from the API (a name form, a time zone): the API's
// answer stands.
func droppedFilter(p altegio.ListClientsParams, rows []altegio.ClientRecord) bool {
	if len(rows) == 0 {
		return false
	}
	for _, f := range listFilters(p) {
		if !slices.ContainsFunc(rows, f) {
			return true
		}
	}
	return false
}

// timeSlack widens the change window when the rows are checked: the API
// may read a time without an offset in the location's zone, at most 14
// hours from UTC.
const timeSlack = 14 * time.Hour

// listFilters returns a predicate per filter p sets, as the API documents
// them: substrings of the full name, phone (digits), email and card; the
// ids; the amount paid; the change window (widened by timeSlack; a card
// whose change date cannot be read passes).
func listFilters(p altegio.ListClientsParams) []func(altegio.ClientRecord) bool {
	var out []func(altegio.ClientRecord) bool
	substr := func(want string, have func(altegio.ClientRecord) string) {
		if want = strings.ToLower(strings.TrimSpace(want)); want != "" {
			out = append(out, func(c altegio.ClientRecord) bool { return strings.Contains(strings.ToLower(have(c)), want) })
		}
	}
	substr(p.Fullname, func(c altegio.ClientRecord) string {
		return strings.Join([]string{c.Name, c.Surname, c.MiddleName}, " ")
	})
	substr(digits(p.Phone), func(c altegio.ClientRecord) string { return digits(c.Phone) })
	substr(p.Email, func(c altegio.ClientRecord) string { return c.Email })
	substr(p.Card, func(c altegio.ClientRecord) string { return c.Card })
	if len(p.IDs) > 0 {
		out = append(out, func(c altegio.ClientRecord) bool { return slices.Contains(p.IDs, c.ID) })
	}
	if p.PaidMin != nil || p.PaidMax != nil {
		out = append(out, func(c altegio.ClientRecord) bool {
			return (p.PaidMin == nil || c.Paid >= *p.PaidMin) && (p.PaidMax == nil || c.Paid <= *p.PaidMax)
		})
	}
	if !p.ChangedAfter.IsZero() || !p.ChangedBefore.IsZero() {
		out = append(out, func(c altegio.ClientRecord) bool {
			changed, err := altegio.ParseTime(c.LastChangeDate)
			return err != nil ||
				(p.ChangedAfter.IsZero() || !changed.Before(p.ChangedAfter.Add(-timeSlack))) &&
					(p.ChangedBefore.IsZero() || !changed.After(p.ChangedBefore.Add(timeSlack)))
		})
	}
	return out
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
