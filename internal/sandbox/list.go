package sandbox

import (
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Deprecated list limits (ref §6.7).
const (
	defaultListCount = 20
	maxListCount     = 300
)

// handleListClients is the deprecated GET /clients/{location_id}
// (ref §6.7): full cards in the legacy style, ordered by ascending ID, with
// meta.page and meta.total_count.
//
// It reproduces both documented traps:
//   - paid_min without paid_max reads paid_max as 0;
//   - a filter that matches nobody is silently dropped: filters are applied
//     one after the other, and one that would leave no rows is skipped.
//
// Invalid page or count values fall back to the defaults, and count is
// capped at 300. Times without an offset are read as UTC. [I]
func (s *Server) handleListClients(c *call) response {
	q := c.r.URL.Query()
	page := queryInt(q, "page", 1, 1, math.MaxInt32)
	count := queryInt(q, "count", defaultListCount, 1, math.MaxInt32)
	count = min(count, maxListCount)
	filters := listFilters(q)

	s.mu.Lock()
	defer s.mu.Unlock()
	rows := s.sortedClients(s.loc(c.loc))
	for _, f := range filters {
		var kept []*ClientRecord
		for _, rec := range rows {
			if f(rec) {
				kept = append(kept, rec)
			}
		}
		if len(kept) > 0 {
			rows = kept
		}
	}
	data := make([]map[string]any, 0, count)
	for _, rec := range paginate(rows, page, count) {
		data = append(data, renderClient(rec, styleLegacy, false))
	}
	return envelope(http.StatusOK, data, map[string]any{"page": page, "total_count": len(rows)})
}

func queryInt(q url.Values, key string, def, lo, hi int) int {
	n, err := strconv.Atoi(q.Get(key))
	if err != nil || n < lo || n > hi {
		return def
	}
	return n
}

// listFilters compiles the query filters of the deprecated list in a fixed
// order.
func listFilters(q url.Values) []predicate {
	var out []predicate
	substr := func(key string, get func(*ClientRecord) string) {
		v := strings.ToLower(strings.TrimSpace(q.Get(key)))
		if v == "" {
			return
		}
		out = append(out, func(c *ClientRecord) bool { return strings.Contains(strings.ToLower(get(c)), v) })
	}
	substr("fullname", func(c *ClientRecord) string {
		return strings.Join([]string{c.Name, c.Surname, c.MiddleName}, " ")
	})
	if p := normalizePhone(q.Get("phone")); p != "" {
		out = append(out, func(c *ClientRecord) bool { return strings.Contains(c.Phone, p) })
	}
	substr("email", func(c *ClientRecord) string { return c.Email })
	substr("card", func(c *ClientRecord) string { return c.Card })

	var ids []int64
	for _, v := range append(q["id"], q["id[]"]...) {
		for part := range strings.SplitSeq(v, ",") {
			if id, ok := parseID(strings.TrimSpace(part)); ok {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) > 0 {
		out = append(out, func(c *ClientRecord) bool { return slices.Contains(ids, c.ID) })
	}

	if after, ok := parseQueryTime(q.Get("changed_after")); ok {
		out = append(out, func(c *ClientRecord) bool { return !c.LastChangeDate.Before(after) })
	}
	if before, ok := parseQueryTime(q.Get("changed_before")); ok {
		out = append(out, func(c *ClientRecord) bool { return !c.LastChangeDate.After(before) })
	}

	paidMin, hasMin := parseFloat(q.Get("paid_min"))
	paidMax, hasMax := parseFloat(q.Get("paid_max"))
	if hasMin || hasMax {
		if !hasMax {
			paidMax = 0 // the documented trap (ref §6.7)
		}
		if !hasMin {
			paidMin = math.Inf(-1)
		}
		out = append(out, func(c *ClientRecord) bool { return c.Paid >= paidMin && c.Paid <= paidMax })
	}
	return out
}

func parseFloat(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil
}

// parseQueryTime accepts the forms seen in the docs: with or without an
// offset, or a bare date (ref §1, §6.7).
func parseQueryTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05-0700", "2006-01-02T15:04:05", "2006-01-02 15:04:05", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
