package altegio

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Payment statuses accepted in VisitSearchRequest.PaymentStatuses.
const (
	PaymentNotPaid     = "not_paid"
	PaymentPaidNotFull = "paid_not_full"
	PaymentPaidFull    = "paid_full"
	PaymentPaidOver    = "paid_over"
)

// VisitSearchRequest is the body of POST /company/{location_id}/clients/visits/search.
// Every key is sent, as null when unset, as the API requires. Identify the
// client by ClientID or ClientPhone.
type VisitSearchRequest struct {
	// ClientID 0 is sent as null.
	ClientID int64
	// ClientPhone "" is sent as null.
	ClientPhone string
	// From and To are dates ("2022-01-31"); "" is sent as null. To page, use
	// VisitSearchResult.NextRequest.
	From, To string
	// PaymentStatuses filters by payment status (Payment* constants); nil is
	// sent as [] (no filter).
	PaymentStatuses []string
	// Attendance is -1 no-show, 0 waiting, 1 arrived, 2 confirmed; nil is
	// sent as null.
	Attendance *int
}

// MarshalJSON writes every key, with null for unset values and [] for no
// payment status filter.
func (r VisitSearchRequest) MarshalJSON() ([]byte, error) {
	body := struct {
		ClientID        *int64   `json:"client_id"`
		ClientPhone     *string  `json:"client_phone"`
		From            *string  `json:"from"`
		To              *string  `json:"to"`
		PaymentStatuses []string `json:"payment_statuses"`
		Attendance      *int     `json:"attendance"`
	}{PaymentStatuses: r.PaymentStatuses, Attendance: r.Attendance}
	if r.ClientID != 0 {
		body.ClientID = &r.ClientID
	}
	if r.ClientPhone != "" {
		body.ClientPhone = &r.ClientPhone
	}
	if r.From != "" {
		body.From = &r.From
	}
	if r.To != "" {
		body.To = &r.To
	}
	if body.PaymentStatuses == nil {
		body.PaymentStatuses = []string{}
	}
	return json.Marshal(body)
}

func (r VisitSearchRequest) validate() error {
	if r.ClientID < 0 || (r.ClientID == 0 && r.ClientPhone == "") {
		return fmt.Errorf("client id or client phone is required")
	}
	for _, s := range r.PaymentStatuses {
		switch s {
		case PaymentNotPaid, PaymentPaidNotFull, PaymentPaidFull, PaymentPaidOver:
		default:
			return fmt.Errorf("unknown payment status %q", s)
		}
	}
	if r.Attendance != nil && (*r.Attendance < -1 || *r.Attendance > 2) {
		return fmt.Errorf("attendance must be -1 to 2, got %d", *r.Attendance)
	}
	return nil
}

// VisitSearchResult is one page of a client's visit history, newest first.
type VisitSearchResult struct {
	Records           []VisitRecord      `json:"records"`
	GoodsTransactions []GoodsTransaction `json:"goods_transactions"`
	// Cursor is meta.dateCursor.
	Cursor DateCursor `json:"cursor"`
}

// NextRequest returns req moved to the next page (From and To taken from
// Cursor.Next), and false when there is no next page.
func (r VisitSearchResult) NextRequest(req VisitSearchRequest) (VisitSearchRequest, bool) {
	if !r.Cursor.HasNext() {
		return req, false
	}
	req.From, req.To = r.Cursor.Next.From, r.Cursor.Next.To
	return req, true
}

// DateCursor pages the visit search by date windows of about 25 visits.
type DateCursor struct {
	Previous DateWindow `json:"previous"`
	Current  DateWindow `json:"current"`
	Next     DateWindow `json:"next"`
}

// HasNext reports whether Next names a window (both bounds null means the
// last page).
func (c DateCursor) HasNext() bool { return c.Next.From != "" || c.Next.To != "" }

// DateWindow is one window of a DateCursor; empty bounds were null.
type DateWindow struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Count int    `json:"count"`
}

// VisitRecord is an appointment in the visit history.
type VisitRecord struct {
	ID      int64  `json:"id"`
	Comment string `json:"comment"`
	Date    string `json:"date"`
	VisitID int64  `json:"visit_id"`
	// Attendance is -1 no-show, 0 waiting, 1 arrived, 2 confirmed.
	Attendance int            `json:"attendance"`
	Services   []VisitService `json:"services"`
	Staff      VisitStaff     `json:"staff"`
	Company    VisitCompany   `json:"company"`
	Tips       VisitTips      `json:"tips"`
	// Comer is who came (person, pet or vehicle); nil when absent.
	Comer *VisitComer `json:"comer"`
}

// VisitService is a service of an appointment; money in major units.
type VisitService struct {
	ID              int64   `json:"id"`
	Title           string  `json:"title"`
	FirstCost       float64 `json:"first_cost"`
	DiscountPercent float64 `json:"discount_percent"`
	CostToPay       float64 `json:"cost_to_pay"`
	PaidSum         float64 `json:"paid_sum"`
	PaymentStatus   string  `json:"payment_status"`
	// Consumables are kept as sent.
	Consumables []json.RawMessage `json:"consumables"`
}

// VisitStaff is the team member of an appointment or sale.
type VisitStaff struct {
	ID             int64  `json:"id"`
	Name           string `json:"name"`
	CompanyID      int64  `json:"company_id"`
	Specialization string `json:"specialization"`
	Avatar         string `json:"avatar"`
	AvatarBig      string `json:"avatar_big"`
	// Position is kept as sent (an object or a string).
	Position    json.RawMessage `json:"position"`
	IsPaidStaff bool            `json:"is_paid_staff"`
}

// VisitCompany is the location of an appointment or sale.
type VisitCompany struct {
	ID    int64  `json:"id"`
	Title string `json:"title"`
}

// VisitTips are the tips of an appointment.
type VisitTips struct {
	HasTips bool    `json:"has_tips"`
	Sum     float64 `json:"sum"`
}

// VisitComer is who the appointment was for; Slug is person, pet or vehicle.
type VisitComer struct {
	ID    int64  `json:"id"`
	Title string `json:"title"`
	Slug  string `json:"slug"`
}

// GoodsTransaction is a product sale in the visit history.
type GoodsTransaction struct {
	ID      int64  `json:"id"`
	Comment string `json:"comment"`
	Date    string `json:"date"`
	// VisitID and RecordID are 0 when the sale is not tied to one.
	VisitID  int64        `json:"visit_id"`
	RecordID int64        `json:"record_id"`
	Goods    []VisitGood  `json:"goods"`
	Staff    VisitStaff   `json:"staff"`
	Company  VisitCompany `json:"company"`
}

// VisitGood is one product line of a sale; money in major units.
type VisitGood struct {
	ID              int64   `json:"id"`
	Title           string  `json:"title"`
	Amount          float64 `json:"amount"`
	Unit            string  `json:"unit"`
	CostPerUnit     float64 `json:"cost_per_unit"`
	FirstCost       float64 `json:"first_cost"`
	DiscountPercent float64 `json:"discount_percent"`
	CostToPay       float64 `json:"cost_to_pay"`
	PaidSum         float64 `json:"paid_sum"`
	PaymentStatus   string  `json:"payment_status"`
}

// Wire shapes of the visit search, tolerant like the client card.
type (
	staffWire struct {
		ID             flexInt         `json:"id"`
		Name           flexString      `json:"name"`
		CompanyID      flexInt         `json:"company_id"`
		Specialization flexString      `json:"specialization"`
		Avatar         flexString      `json:"avatar"`
		AvatarBig      flexString      `json:"avatar_big"`
		Position       json.RawMessage `json:"position"`
		IsPaidStaff    flexBool        `json:"is_paid_staff"`
	}
	companyWire struct {
		ID    flexInt    `json:"id"`
		Title flexString `json:"title"`
	}
	serviceWire struct {
		ID              flexInt         `json:"id"`
		Title           flexString      `json:"title"`
		FirstCost       flexFloat       `json:"first_cost"`
		DiscountPercent flexFloat       `json:"discount_percent"`
		CostToPay       flexFloat       `json:"cost_to_pay"`
		PaidSum         flexFloat       `json:"paid_sum"`
		PaymentStatus   flexString      `json:"payment_status"`
		ConsumablesRaw  json.RawMessage `json:"consumables"`
	}
	goodWire struct {
		ID              flexInt    `json:"id"`
		Title           flexString `json:"title"`
		Amount          flexFloat  `json:"amount"`
		Unit            flexString `json:"unit"`
		CostPerUnit     flexFloat  `json:"cost_per_unit"`
		FirstCost       flexFloat  `json:"first_cost"`
		DiscountPercent flexFloat  `json:"discount_percent"`
		CostToPay       flexFloat  `json:"cost_to_pay"`
		PaidSum         flexFloat  `json:"paid_sum"`
		PaymentStatus   flexString `json:"payment_status"`
	}
	recordWire struct {
		ID         flexInt         `json:"id"`
		Comment    flexString      `json:"comment"`
		Date       flexString      `json:"date"`
		VisitID    flexInt         `json:"visit_id"`
		Attendance flexInt         `json:"attendance"`
		Services   json.RawMessage `json:"services"`
		Staff      json.RawMessage `json:"staff"`
		Company    json.RawMessage `json:"company"`
		Tips       json.RawMessage `json:"tips"`
		Comer      json.RawMessage `json:"comer"`
	}
	goodsTxWire struct {
		ID       flexInt         `json:"id"`
		Comment  flexString      `json:"comment"`
		Date     flexString      `json:"date"`
		VisitID  flexInt         `json:"visit_id"`
		RecordID flexInt         `json:"record_id"`
		Goods    json.RawMessage `json:"goods"`
		Staff    json.RawMessage `json:"staff"`
		Company  json.RawMessage `json:"company"`
	}
)

func decodeStaff(raw json.RawMessage) (VisitStaff, error) {
	var w staffWire
	if err := decodeObject(raw, &w); err != nil {
		return VisitStaff{}, err
	}
	return VisitStaff{ID: int64(w.ID), Name: string(w.Name), CompanyID: int64(w.CompanyID),
		Specialization: string(w.Specialization), Avatar: string(w.Avatar), AvatarBig: string(w.AvatarBig),
		Position: w.Position, IsPaidStaff: bool(w.IsPaidStaff)}, nil
}

func decodeCompany(raw json.RawMessage) (VisitCompany, error) {
	var w companyWire
	if err := decodeObject(raw, &w); err != nil {
		return VisitCompany{}, err
	}
	return VisitCompany{ID: int64(w.ID), Title: string(w.Title)}, nil
}

// UnmarshalJSON decodes an appointment tolerantly.
func (v *VisitRecord) UnmarshalJSON(raw []byte) error {
	var w recordWire
	if ok, err := unmarshalObject(raw, &w); !ok {
		return err
	}
	out := VisitRecord{ID: int64(w.ID), Comment: string(w.Comment), Date: string(w.Date),
		VisitID: int64(w.VisitID), Attendance: int(w.Attendance)}
	services, err := decodeList[serviceWire](w.Services)
	if err != nil {
		return err
	}
	for _, s := range services {
		cons, _ := decodeList[json.RawMessage](s.ConsumablesRaw)
		out.Services = append(out.Services, VisitService{ID: int64(s.ID), Title: string(s.Title),
			FirstCost: float64(s.FirstCost), DiscountPercent: float64(s.DiscountPercent),
			CostToPay: float64(s.CostToPay), PaidSum: float64(s.PaidSum),
			PaymentStatus: string(s.PaymentStatus), Consumables: cons})
	}
	if out.Staff, err = decodeStaff(w.Staff); err != nil {
		return err
	}
	if out.Company, err = decodeCompany(w.Company); err != nil {
		return err
	}
	var tips struct {
		HasTips flexBool  `json:"has_tips"`
		Sum     flexFloat `json:"sum"`
	}
	if err := decodeObject(w.Tips, &tips); err != nil {
		return err
	}
	out.Tips = VisitTips{HasTips: bool(tips.HasTips), Sum: float64(tips.Sum)}
	if jsonKind(w.Comer) == '{' {
		var c struct {
			ID    flexInt    `json:"id"`
			Title flexString `json:"title"`
			Slug  flexString `json:"slug"`
		}
		if err := json.Unmarshal(w.Comer, &c); err != nil {
			return err
		}
		out.Comer = &VisitComer{ID: int64(c.ID), Title: string(c.Title), Slug: string(c.Slug)}
	}
	*v = out
	return nil
}

// UnmarshalJSON decodes a product sale tolerantly.
func (g *GoodsTransaction) UnmarshalJSON(raw []byte) error {
	var w goodsTxWire
	if ok, err := unmarshalObject(raw, &w); !ok {
		return err
	}
	out := GoodsTransaction{ID: int64(w.ID), Comment: string(w.Comment), Date: string(w.Date),
		VisitID: int64(w.VisitID), RecordID: int64(w.RecordID)}
	goods, err := decodeList[goodWire](w.Goods)
	if err != nil {
		return err
	}
	for _, gw := range goods {
		out.Goods = append(out.Goods, VisitGood{ID: int64(gw.ID), Title: string(gw.Title),
			Amount: float64(gw.Amount), Unit: string(gw.Unit), CostPerUnit: float64(gw.CostPerUnit),
			FirstCost: float64(gw.FirstCost), DiscountPercent: float64(gw.DiscountPercent),
			CostToPay: float64(gw.CostToPay), PaidSum: float64(gw.PaidSum), PaymentStatus: string(gw.PaymentStatus)})
	}
	if out.Staff, err = decodeStaff(w.Staff); err != nil {
		return err
	}
	if out.Company, err = decodeCompany(w.Company); err != nil {
		return err
	}
	*g = out
	return nil
}

// SearchVisits reads a client's visit history:
// POST /company/{location_id}/clients/visits/search. Results come newest
// first in pages of about 25; use NextRequest on the result to page. A
// request without ClientID and ClientPhone, or with an unknown payment status
// or attendance, is refused (ErrInvalidRequest). Validation failures from the
// API are 422 with FieldErrors.
func (c *Client) SearchVisits(ctx context.Context, locationID int64, req VisitSearchRequest) (VisitSearchResult, error) {
	const op = OpSearchVisits
	if err := checkID(op, "location id", locationID); err != nil {
		return VisitSearchResult{}, err
	}
	if err := req.validate(); err != nil {
		return VisitSearchResult{}, invalidRequest(op, "%v", err)
	}
	r := request{op: op, method: http.MethodPost, location: locationID,
		path: fmt.Sprintf("/company/%d/clients/visits/search", locationID), body: req}
	env, status, err := c.call(ctx, r)
	if err != nil {
		return VisitSearchResult{}, err
	}
	var data struct {
		Records json.RawMessage `json:"records"`
		Goods   json.RawMessage `json:"goods_transactions"`
	}
	if err := decodeObject(env.Data, &data); err != nil {
		return VisitSearchResult{}, c.decodeError(r, status, err)
	}
	var res VisitSearchResult
	if res.Records, err = decodeList[VisitRecord](data.Records); err != nil {
		return VisitSearchResult{}, c.decodeError(r, status, err)
	}
	if res.GoodsTransactions, err = decodeList[GoodsTransaction](data.Goods); err != nil {
		return VisitSearchResult{}, c.decodeError(r, status, err)
	}
	res.Cursor = decodeDateCursor(env.Meta)
	return res, nil
}

// decodeDateCursor reads meta.dateCursor; missing parts are empty windows.
func decodeDateCursor(meta json.RawMessage) DateCursor {
	var m struct {
		DateCursor json.RawMessage `json:"dateCursor"`
	}
	_ = decodeObject(meta, &m)
	var w struct {
		Previous, Current, Next json.RawMessage
	}
	_ = decodeObject(m.DateCursor, &w)
	window := func(raw json.RawMessage) DateWindow {
		var d struct {
			From  flexString `json:"from"`
			To    flexString `json:"to"`
			Count flexInt    `json:"count"`
		}
		_ = decodeObject(raw, &d)
		return DateWindow{From: string(d.From), To: string(d.To), Count: int(d.Count)}
	}
	return DateCursor{Previous: window(w.Previous), Current: window(w.Current), Next: window(w.Next)}
}
