package altegio

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Operation names, used as APIError.Op and TransportError.Op, in logs and as
// the "op" metric label (never the path).
const (
	OpLogin         = "auth"
	OpGetClient     = "client.get"
	OpUpdateClient  = "client.update"
	OpDeleteClient  = "client.delete"
	OpCreateClient  = "client.create"
	OpBulkCreate    = "client.bulk_create"
	OpSearchClients = "client.search"
	OpListClients   = "client.list_deprecated"
	OpListComments  = "client.comment.list"
	OpAddComment    = "client.comment.add"
	OpDeleteComment = "client.comment.delete"
	OpListFiles     = "client.file.list"
	OpDeleteFile    = "client.file.delete"
	OpSearchVisits  = "client.visit.search"
)

const (
	maxSearchPage    = 200 // page_size limit of the client search
	maxDeprecatedCnt = 300 // count limit of the deprecated list
)

// GetClient reads a client card: GET /client/{location_id}/{id}. A missing
// client is an *APIError wrapping ErrNotFound.
func (c *Client) GetClient(ctx context.Context, locationID, clientID int64) (ClientRecord, error) {
	if err := checkIDs(OpGetClient, locationID, clientID); err != nil {
		return ClientRecord{}, err
	}
	r := request{op: OpGetClient, method: http.MethodGet, location: locationID,
		path: fmt.Sprintf("/client/%d/%d", locationID, clientID)}
	return c.clientCall(ctx, r)
}

// UpdateClient replaces a client card: PUT /client/{location_id}/{id}, with
// in.Categories sent as "labels". It returns the card as stored. Name and
// phone are required (ErrInvalidRequest otherwise, nothing sent). PUT is
// idempotent.
func (c *Client) UpdateClient(ctx context.Context, locationID, clientID int64, in ClientInput) (ClientRecord, error) {
	if err := checkIDs(OpUpdateClient, locationID, clientID); err != nil {
		return ClientRecord{}, err
	}
	if err := in.validate(); err != nil {
		return ClientRecord{}, invalidRequest(OpUpdateClient, "%v", err)
	}
	r := request{op: OpUpdateClient, method: http.MethodPut, location: locationID,
		path: fmt.Sprintf("/client/%d/%d", locationID, clientID),
		body: in.body(tagsAsLabels, true)}
	return c.clientCall(ctx, r)
}

// DeleteClient deletes a client: DELETE /client/{location_id}/{id}, answered
// 204 with no body (an envelope is tolerated). A client that is already gone
// is an *APIError wrapping ErrNotFound.
func (c *Client) DeleteClient(ctx context.Context, locationID, clientID int64) error {
	if err := checkIDs(OpDeleteClient, locationID, clientID); err != nil {
		return err
	}
	_, _, err := c.call(ctx, request{op: OpDeleteClient, method: http.MethodDelete, location: locationID, noData: true,
		path: fmt.Sprintf("/client/%d/%d", locationID, clientID)})
	return err
}

// CreateClient creates a client: POST /clients/{location_id}, answered 201
// with the card. Name and phone are required. The call is not idempotent: on
// a *TransportError the client may exist; look it up by phone before
// retrying.
func (c *Client) CreateClient(ctx context.Context, locationID int64, in ClientInput) (ClientRecord, error) {
	if err := checkID(OpCreateClient, "location id", locationID); err != nil {
		return ClientRecord{}, err
	}
	if err := in.validate(); err != nil {
		return ClientRecord{}, invalidRequest(OpCreateClient, "%v", err)
	}
	r := request{op: OpCreateClient, method: http.MethodPost, location: locationID,
		path: fmt.Sprintf("/clients/%d", locationID),
		body: in.body(tagsAsCategories, true)}
	return c.clientCall(ctx, r)
}

func (c *Client) clientCall(ctx context.Context, r request) (ClientRecord, error) {
	env, status, err := c.call(ctx, r)
	if err != nil {
		return ClientRecord{}, err
	}
	var out ClientRecord
	if err := c.decodeData(r, status, env, &out); err != nil {
		return ClientRecord{}, err
	}
	return out, nil
}

func checkIDs(op string, locationID, clientID int64) error {
	if err := checkID(op, "location id", locationID); err != nil {
		return err
	}
	return checkID(op, "client id", clientID)
}

// SearchFilter is one entry of SearchClientsRequest.Filters:
// {"type": …, "state": …}. State is encoded as JSON as it is.
type SearchFilter struct {
	Type  string `json:"type"`
	State any    `json:"state"`
}

// QuickSearchFilter matches phone, extra phone, name and card by text.
func QuickSearchFilter(text string) SearchFilter {
	return SearchFilter{Type: "quick_search", State: map[string]any{"value": text}}
}

// IDFilter matches clients by ID.
func IDFilter(ids ...int64) SearchFilter {
	return SearchFilter{Type: "id", State: map[string]any{"value": ids}}
}

// SearchClientsRequest is the body of POST /company/{location_id}/clients/search.
// Zero values are left to the API's defaults, except Fields.
type SearchClientsRequest struct {
	// Page is 1-based; 0 leaves it out (the API starts at 1).
	Page int `json:"page,omitempty"`
	// PageSize is at most 200; 0 leaves it out (the API uses 25).
	PageSize int `json:"page_size,omitempty"`
	// Fields are the columns to return. Empty sends ["id", "name", "phone"]:
	// the API itself would return only "id".
	Fields []string `json:"fields"`
	// OrderBy is a column such as "id", "name" or "last_visit_date".
	OrderBy string `json:"order_by,omitempty"`
	// OrderByDirection is "ASC" or "DESC" (API default ASC).
	OrderByDirection string `json:"order_by_direction,omitempty"`
	// Operation combines the filters: "AND" (API default) or "OR".
	Operation string         `json:"operation,omitempty"`
	Filters   []SearchFilter `json:"filters,omitempty"`
}

// defaultSearchFields are requested when SearchClientsRequest.Fields is empty.
var defaultSearchFields = []string{"id", "name", "phone"}

// ClientRow is one row of a client search: only the requested columns are
// filled. Columns holds every column as sent, including ones without a field
// here.
type ClientRow struct {
	ID             int64
	Name           string
	Phone          string
	Email          string
	Discount       float64
	FirstVisitDate string
	LastVisitDate  string
	SoldAmount     float64
	VisitsCount    int
	DepositBalance float64
	Columns        map[string]json.RawMessage
}

// UnmarshalJSON decodes a search row tolerantly (numbers or strings).
func (r *ClientRow) UnmarshalJSON(raw []byte) error {
	var w struct {
		ID             flexInt    `json:"id"`
		Name           flexString `json:"name"`
		Phone          flexString `json:"phone"`
		Email          flexString `json:"email"`
		Discount       flexFloat  `json:"discount"`
		FirstVisitDate flexString `json:"first_visit_date"`
		LastVisitDate  flexString `json:"last_visit_date"`
		SoldAmount     flexFloat  `json:"sold_amount"`
		VisitsCount    flexInt    `json:"visits_count"`
		VisitCount     *flexInt   `json:"visit_count"`
		DepositBalance flexFloat  `json:"deposit_balance"`
	}
	if ok, err := unmarshalObject(raw, &w); !ok {
		return err
	}
	var cols map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cols); err != nil {
		return err
	}
	*r = ClientRow{
		ID: int64(w.ID), Name: string(w.Name), Phone: string(w.Phone), Email: string(w.Email),
		Discount: float64(w.Discount), FirstVisitDate: string(w.FirstVisitDate),
		LastVisitDate: string(w.LastVisitDate), SoldAmount: float64(w.SoldAmount),
		VisitsCount: int(w.VisitsCount), DepositBalance: float64(w.DepositBalance), Columns: cols,
	}
	if r.VisitsCount == 0 && w.VisitCount != nil {
		r.VisitsCount = int(*w.VisitCount)
	}
	return nil
}

// SearchClientsResult is one page of a client search.
type SearchClientsResult struct {
	Clients []ClientRow
	// TotalCount is meta.total_count, the total across all pages; -1 when the
	// API did not send it.
	TotalCount int
}

// SearchClients searches clients: POST /company/{location_id}/clients/search.
// The search returns only the projected columns (no tags, no custom fields);
// use GetClient or ListClientsDeprecated for full cards. A page size above 200
// is refused (ErrInvalidRequest). A bad filter is a 400, an expired licence a
// 402 (ErrLicense).
func (c *Client) SearchClients(ctx context.Context, locationID int64, req SearchClientsRequest) (SearchClientsResult, error) {
	const op = OpSearchClients
	if err := checkID(op, "location id", locationID); err != nil {
		return SearchClientsResult{}, err
	}
	if req.PageSize < 0 || req.PageSize > maxSearchPage {
		return SearchClientsResult{}, invalidRequest(op, "page_size must be 1 to %d, got %d", maxSearchPage, req.PageSize)
	}
	if req.Page < 0 {
		return SearchClientsResult{}, invalidRequest(op, "page must be positive, got %d", req.Page)
	}
	if len(req.Fields) == 0 {
		req.Fields = defaultSearchFields
	}
	r := request{op: op, method: http.MethodPost, location: locationID,
		path: fmt.Sprintf("/company/%d/clients/search", locationID), body: req}
	env, status, err := c.call(ctx, r)
	if err != nil {
		return SearchClientsResult{}, err
	}
	rows, err := decodeList[ClientRow](env.Data)
	if err != nil {
		return SearchClientsResult{}, c.decodeError(r, status, err)
	}
	var meta struct {
		TotalCount *flexInt `json:"total_count"`
	}
	_ = decodeObject(env.Meta, &meta)
	res := SearchClientsResult{Clients: rows, TotalCount: -1}
	if meta.TotalCount != nil {
		res.TotalCount = int(*meta.TotalCount)
	}
	return res, nil
}

// ListClientsParams are the query parameters of the deprecated list. Zero
// values are left out.
type ListClientsParams struct {
	// Page is 1-based.
	Page int
	// Count is the page size, at most 300 (API default 20).
	Count int
	// Fullname, Phone, Email and Card are substring matches.
	Fullname, Phone, Email, Card string
	// PaidMin and PaidMax bound the amount paid. When only PaidMin is set,
	// paid_max is sent as PaidMaxUnbounded: the API reads a missing paid_max
	// as 0.
	PaidMin, PaidMax *float64
	// IDs selects clients by ID (sent as id, or id[] for several).
	IDs []int64
	// ChangedAfter and ChangedBefore select cards created or changed in the
	// window; sent as "2006-01-02T15:04:05" in the time's own location.
	ChangedAfter, ChangedBefore time.Time
}

// PaidMaxUnbounded is the paid_max sent when only PaidMin is set.
const PaidMaxUnbounded = 1e12

func (p ListClientsParams) query() url.Values {
	q := url.Values{}
	setInt := func(k string, v int) {
		if v != 0 {
			q.Set(k, strconv.Itoa(v))
		}
	}
	setStr := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	setFloat := func(k string, v *float64) {
		if v != nil {
			q.Set(k, strconv.FormatFloat(*v, 'f', -1, 64))
		}
	}
	setInt("page", p.Page)
	setInt("count", p.Count)
	setStr("fullname", p.Fullname)
	setStr("phone", p.Phone)
	setStr("email", p.Email)
	setStr("card", p.Card)
	setFloat("paid_min", p.PaidMin)
	if p.PaidMin != nil && p.PaidMax == nil {
		q.Set("paid_max", strconv.FormatFloat(PaidMaxUnbounded, 'f', -1, 64))
	} else {
		setFloat("paid_max", p.PaidMax)
	}
	switch len(p.IDs) {
	case 0:
	case 1:
		q.Set("id", strconv.FormatInt(p.IDs[0], 10))
	default:
		for _, id := range p.IDs {
			q.Add("id[]", strconv.FormatInt(id, 10))
		}
	}
	const layout = "2006-01-02T15:04:05"
	if !p.ChangedAfter.IsZero() {
		q.Set("changed_after", p.ChangedAfter.Format(layout))
	}
	if !p.ChangedBefore.IsZero() {
		q.Set("changed_before", p.ChangedBefore.Format(layout))
	}
	return q
}

// ListClientsResult is one page of the deprecated list.
type ListClientsResult struct {
	// Clients are full cards, ordered by ascending ID.
	Clients []ClientRecord
	// Page and TotalCount are from meta; TotalCount is -1 when absent.
	Page       int
	TotalCount int
}

// ListClientsDeprecated lists full client cards: GET /clients/{location_id}.
// The endpoint is deprecated but is the only one returning tags and custom
// fields in bulk. Beware: when a filter matches nobody the API drops it and
// returns the unfiltered list, so check the rows against the filter.
func (c *Client) ListClientsDeprecated(ctx context.Context, locationID int64, p ListClientsParams) (ListClientsResult, error) {
	const op = OpListClients
	if err := checkID(op, "location id", locationID); err != nil {
		return ListClientsResult{}, err
	}
	if p.Count < 0 || p.Count > maxDeprecatedCnt {
		return ListClientsResult{}, invalidRequest(op, "count must be 1 to %d, got %d", maxDeprecatedCnt, p.Count)
	}
	if p.Page < 0 {
		return ListClientsResult{}, invalidRequest(op, "page must be positive, got %d", p.Page)
	}
	r := request{op: op, method: http.MethodGet, location: locationID,
		path: fmt.Sprintf("/clients/%d", locationID), query: p.query()}
	env, status, err := c.call(ctx, r)
	if err != nil {
		return ListClientsResult{}, err
	}
	cards, err := decodeList[ClientRecord](env.Data)
	if err != nil {
		return ListClientsResult{}, c.decodeError(r, status, err)
	}
	var meta struct {
		Page       flexInt  `json:"page"`
		TotalCount *flexInt `json:"total_count"`
	}
	_ = decodeObject(env.Meta, &meta)
	res := ListClientsResult{Clients: cards, Page: int(meta.Page), TotalCount: -1}
	if meta.TotalCount != nil {
		res.TotalCount = int(*meta.TotalCount)
	}
	return res, nil
}
