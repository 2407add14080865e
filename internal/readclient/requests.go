package readclient

// ClientRequest names a client by id or by client_ref (one of them).
type ClientRequest struct {
	ClientID  int64  `json:"client_id,omitempty"`
	ClientRef string `json:"client_ref,omitempty"`
}

// VisitsRequest is the request of visits.search: the client (by id, by
// client_ref, or by phone), a date range and the API's filters; the answer's
// cursor gives the next page's range.
type VisitsRequest struct {
	ClientRequest
	ClientPhone     string   `json:"client_phone,omitempty"`
	From            string   `json:"from,omitempty"`
	To              string   `json:"to,omitempty"`
	PaymentStatuses []string `json:"payment_statuses,omitempty"`
	Attendance      *int     `json:"attendance,omitempty"`
}

// CommandsRequest is the request of commands.list: the client (by id or by
// client_ref), and optionally since (RFC 3339), limit and the cursor of
// the previous page.
type CommandsRequest struct {
	ClientRequest
	Since  string `json:"since,omitempty"`
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

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

// ExportPageSize is the page size of an export: the list's maximum.
const ExportPageSize = 300
