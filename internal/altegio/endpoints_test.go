package altegio

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// Documented response bodies (reference §6).
const (
	clientCardJSON = `{"success": true,
 "data": {"id": 16, "name": "James", "surname": "Smith", "middle_name": "A", "phone": "13155550178",
          "email": "", "categories": [{"id": 3, "title": "VIP", "color": "#e8d313"}],
          "gender": "Male", "gender_id": 1, "discount": 10, "importance": "Gold", "importance_id": 3,
          "card": "123456789", "birth_date": "1990-04-03", "comment": "regular", "sms_check": 1, "sms_not": 0,
          "spent": 71842, "balance": -200, "visits": 34, "last_change_date": "2026-02-01T12:00:00-0500",
          "custom_fields": {"vip_note": "prefers mornings"}},
 "meta": []}`
	createdClientJSON = `{"success": true,
   "data": {"id": 1121412, "name": "James", "surname": "Smith", "middle_name": "James", "phone": 13155550179,
            "email": "j.smith@example.com", "categories": [], "gender": "Male", "gender_id": 1, "discount": 15,
            "importance_id": 1, "importance": "Bronze", "card": 555888666, "birth_date": "952041600",
            "comment": "...", "sms_check": 0, "sms_not": 0, "spent": 1000, "balance": -1200, "visits": 0,
            "last_change_date": "2026-05-01T12:00:00-0500", "custom_fields": {"key-1": "value-1"}},
   "meta": []}`
	bulkJSON = `{"success": true,
   "data": {
     "created": [ { "id": 19153889, "name": "Ann", "phone": 79213237568, "email": "", "card": "555888666",
                    "birth_date": 0, "comment": "", "discount": 15, "visits": 0, "sex_id": 2, "sex": "Female",
                    "sms_check": 0, "sms_bot": 0, "spent": 1000, "paid": 0, "balance": -1200,
                    "importance_id": 1, "importance": "Bronze",
                    "categories": [{"id": 101, "title": "Loyal", "color": "#bfd4f2"}],
                    "last_change_date": "2020-09-08T13:33:39+0400", "custom_fields": [] } ],
     "errors": [
       {"phone": 79213237567, "name": "James Smith", "error": "The client with the specified phone number already exists in the database"},
       {"phone": 721828834101, "error": "Client name not specified"},
       {"phone": 123, "name": "James Smith", "error": "Phone must contain 9 to 15 digits"},
       {"name": "Theodore Hicks", "error": "Customer phone number cannot be empty"}
     ]},
   "meta": []}`
	commentsJSON = `{"success": true,
 "data": [{"id": 123, "create_date": "2026-01-01T12:12:12-05:00", "update_date": "2026-01-01T12:12:12-05:00",
           "type": "default", "text": "Comment for a client", "files": [],
           "user": {"id": 123, "name": "John Johnson", "avatar": "https://api.alteg.io/images/avatar.png"}},
          {"id": 124, "create_date": "2023-01-01 12:12:12", "type": "file", "text": "",
           "files": [{"link": "/f/1", "filename": "a.txt"}], "user": null}],
 "meta": {"count": 2}}`
	filesJSON = `{"success": true,
   "data": [{"id": 123, "client_id": 123456, "name": "test.txt", "description": "", "date_create": "2026-01-01T12:00:00-0500",
             "extension": "txt", "mime": "text/plain", "link": "/client_files/download/456/123/",
             "user_name": "Victor Sitnikov", "user_avatar": "/images/no-master.png", "size": "9 B", "can_edit": false},
            {"id": 124, "client_id": "123456", "name": "b.pdf", "username": "Ann", "size": "96.65 KB", "can_edit": 1,
             "full_link": "https://app.alteg.io/client_files/download/456/124/"}],
   "meta": {"count": 2}}`
	visitsJSON = `{"success": true,
 "data": {"records": [{"id": 1, "comment": "", "date": "2022-01-31 10:00:00", "visit_id": 77, "attendance": 1,
     "services": [{"id": 5, "title": "Cut", "first_cost": 100, "discount_percent": 10, "cost_to_pay": "90.5",
                   "paid_sum": 90.5, "payment_status": "paid_full", "consumables": []}],
     "staff": {"id": 9, "name": "Kate", "company_id": 42, "specialization": "stylist", "avatar": "", "avatar_big": "",
               "position": {"id": 1, "title": "Senior"}, "is_paid_staff": true},
     "company": {"id": 42, "title": "Salon"}, "tips": {"has_tips": false, "sum": 0},
     "comer": {"id": 3, "title": "Rex", "slug": "pet"}}],
   "goods_transactions": [{"id": 2, "comment": "", "date": "2022-01-30", "visit_id": 0, "record_id": 0,
     "goods": [{"id": 8, "title": "Shampoo", "amount": 1, "unit": "pcs", "cost_per_unit": 12, "first_cost": 12,
                "discount_percent": 0, "cost_to_pay": 12, "paid_sum": 12, "payment_status": "paid_full"}],
     "staff": [], "company": {"id": 42, "title": "Salon"}}]},
 "meta": {"dateCursor": {"previous": {"from": null, "to": null, "count": 0},
                         "current": {"from": "2022-01-01", "to": "2022-02-01", "count": 2},
                         "next": {"from": "2021-12-01", "to": "2021-12-31", "count": 25}}}}`
)

func TestEndpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		replies   []reply
		call      func(ctx context.Context, c *Client) (any, error)
		method    string
		path      string
		query     map[string][]string
		body      string // "" = no body
		checkResp func(t *testing.T, got any)
	}{
		{
			name:    "get client",
			replies: []reply{{status: 200, body: clientCardJSON}},
			call:    func(ctx context.Context, c *Client) (any, error) { return c.GetClient(ctx, 42, 16) },
			method:  "GET", path: "/api/v1/client/42/16",
			checkResp: func(t *testing.T, got any) {
				c := got.(ClientRecord)
				if c.ID != 16 || c.Phone != "13155550178" || c.MiddleName != "A" || c.GenderID != 1 ||
					c.ImportanceID != 3 || c.BirthDate != "1990-04-03" || c.Spent != 71842 || c.Balance != -200 ||
					len(c.Categories) != 1 || c.Categories[0] != (Category{ID: 3, Title: "VIP", Color: "#e8d313"}) ||
					c.CustomFields["vip_note"] != "prefers mornings" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name:    "update client sends labels",
			replies: []reply{{status: 200, body: clientCardJSON}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.UpdateClient(ctx, 42, 16, ClientInput{Name: "James", Phone: "+13155550178",
					MiddleName: new("A"), GenderID: new(0), BirthDate: new("1990-04-03"),
					Categories: []int64{3, 4}, CustomFields: map[string]any{"vip_note": "x"}})
			},
			method: "PUT", path: "/api/v1/client/42/16",
			body: `{"name":"James","phone":"+13155550178","middle_name":"A","gender_id":0,"birth_date":"1990-04-03",
			        "labels":[3,4],"custom_fields":{"vip_note":"x"}}`,
		},
		{
			name:    "update client with empty tags sends labels []",
			replies: []reply{{status: 200, body: clientCardJSON}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.UpdateClient(ctx, 42, 16, ClientInput{Name: "J", Phone: "1", Categories: []int64{}})
			},
			method: "PUT", path: "/api/v1/client/42/16",
			body: `{"name":"J","phone":"1","labels":[]}`,
		},
		{
			name:    "delete client 204",
			replies: []reply{{status: 204}},
			call:    func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteClient(ctx, 42, 16) },
			method:  "DELETE", path: "/api/v1/client/42/16",
		},
		{
			name:    "delete client 200 envelope",
			replies: []reply{{status: 200, body: `{"success":true,"data":null,"meta":{}}`}},
			call:    func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteClient(ctx, 42, 16) },
			method:  "DELETE", path: "/api/v1/client/42/16",
		},
		{
			name:    "create client sends categories",
			replies: []reply{{status: 201, body: createdClientJSON}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CreateClient(ctx, 42, ClientInput{Name: "James", Phone: "13155550179", Surname: new("Smith"),
					Email: new("j.smith@example.com"), Discount: new(15.0), Card: new("555888666"),
					SMSNot: new(0), Categories: []int64{101, 102}})
			},
			method: "POST", path: "/api/v1/clients/42",
			body: `{"name":"James","phone":"13155550179","surname":"Smith","email":"j.smith@example.com",
			        "discount":15,"card":"555888666","sms_not":0,"categories":[101,102]}`,
			checkResp: func(t *testing.T, got any) {
				c := got.(ClientRecord)
				if c.ID != 1121412 || c.Phone != "13155550179" || c.Card != "555888666" ||
					c.BirthDate != "2000-03-03" || c.Categories != nil || c.CustomFields["key-1"] != "value-1" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name:    "bulk create",
			replies: []reply{{status: 200, body: bulkJSON}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.BulkCreateClients(ctx, 42, []ClientInput{
					{Name: "James", Surname: new("Smith"), Phone: "+7 921 323-75-67"},
					{Name: "Ann", Phone: "79213237568", GenderID: new(2), Categories: []int64{101}},
					{Name: "", Phone: "721828834101"},
					{Name: "Theodore Hicks", Phone: ""},
					{Name: "James Smith", Phone: "123"},
					{Name: "Nobody", Phone: "5550000000"},
				})
			},
			method: "POST", path: "/api/v1/clients/42/bulk",
			body: `[{"name":"James","phone":"+7 921 323-75-67","surname":"Smith"},
			        {"name":"Ann","phone":"79213237568","gender_id":2,"categories":[101]},
			        {"name":"","phone":"721828834101"},
			        {"name":"Theodore Hicks","phone":""},
			        {"name":"James Smith","phone":"123"},
			        {"name":"Nobody","phone":"5550000000"}]`,
			checkResp: func(t *testing.T, got any) {
				r := got.(BulkCreateResult)
				want := []BulkOutcome{BulkFailed, BulkCreated, BulkFailed, BulkFailed, BulkFailed, BulkUnknown}
				for i, it := range r.Items {
					if it.Index != i || it.Outcome != want[i] {
						t.Errorf("item %d: index %d outcome %v, want %v", i, it.Index, it.Outcome, want[i])
					}
				}
				if r.Items[1].Client == nil || r.Items[1].Client.ID != 19153889 || r.Items[1].Client.GenderID != 2 {
					t.Errorf("created item = %+v", r.Items[1].Client)
				}
				if e := r.Items[4].Error; e == nil || e.Message != "Phone must contain 9 to 15 digits" {
					t.Errorf("item 4 error = %+v", e)
				}
				if u := r.Unmatched(); !reflect.DeepEqual(u, []int{5}) {
					t.Errorf("Unmatched = %v, want [5]", u)
				}
				if len(r.UnmatchedCreated) != 0 || len(r.UnmatchedErrors) != 0 {
					t.Errorf("unmatched API items: %+v %+v", r.UnmatchedCreated, r.UnmatchedErrors)
				}
			},
		},
		{
			name: "search clients default fields",
			replies: []reply{{status: 200,
				body: `{"success": true, "data": [{"id": 2, "name": "James Smith", "phone": 79001234567}, {"id": 3, "name": "Taylor Reed"}], "meta": {"total_count": 908}}`}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SearchClients(ctx, 42, SearchClientsRequest{Page: 1, PageSize: 200})
			},
			method: "POST", path: "/api/v1/company/42/clients/search",
			body: `{"page":1,"page_size":200,"fields":["id","name","phone"]}`,
			checkResp: func(t *testing.T, got any) {
				r := got.(SearchClientsResult)
				if r.TotalCount != 908 || len(r.Clients) != 2 || r.Clients[0].Phone != "79001234567" || r.Clients[1].Name != "Taylor Reed" {
					t.Errorf("got %+v", r)
				}
			},
		},
		{
			name:    "search clients with filters and fields",
			replies: []reply{{status: 200, body: `{"success": true, "data": [], "meta": []}`}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SearchClients(ctx, 42, SearchClientsRequest{Fields: []string{"id", "email"}, OrderBy: "id",
					OrderByDirection: "DESC", Operation: "AND",
					Filters: []SearchFilter{QuickSearchFilter("+7921"), IDFilter(1, 2)}})
			},
			method: "POST", path: "/api/v1/company/42/clients/search",
			body: `{"fields":["id","email"],"order_by":"id","order_by_direction":"DESC","operation":"AND",
			        "filters":[{"type":"quick_search","state":{"value":"+7921"}},{"type":"id","state":{"value":[1,2]}}]}`,
			checkResp: func(t *testing.T, got any) {
				if r := got.(SearchClientsResult); r.TotalCount != -1 || len(r.Clients) != 0 {
					t.Errorf("got %+v", r)
				}
			},
		},
		{
			name: "deprecated list",
			replies: []reply{{status: 200, body: `{"success":true,"data":[{"id":1,"name":"A","phone":79000000001,"patronymic":"P","sex_id":2,"sex":"Female","custom_fields":[]}],
				"meta":{"page":2,"total_count":8}}`}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ListClientsDeprecated(ctx, 42, ListClientsParams{Page: 2, Count: 300, Fullname: "An",
					PaidMin: new(10.5), IDs: []int64{1, 2},
					ChangedAfter: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)})
			},
			method: "GET", path: "/api/v1/clients/42",
			query: map[string][]string{"page": {"2"}, "count": {"300"}, "fullname": {"An"}, "paid_min": {"10.5"},
				"paid_max": {"1000000000000"}, "id[]": {"1", "2"}, "changed_after": {"2000-01-01T00:00:00"}},
			checkResp: func(t *testing.T, got any) {
				r := got.(ListClientsResult)
				if r.Page != 2 || r.TotalCount != 8 || len(r.Clients) != 1 {
					t.Fatalf("got %+v", r)
				}
				if c := r.Clients[0]; c.MiddleName != "P" || c.GenderID != 2 || c.Gender != "Female" || c.Phone != "79000000001" || c.CustomFields != nil {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name:    "list comments",
			replies: []reply{{status: 200, body: commentsJSON}},
			call:    func(ctx context.Context, c *Client) (any, error) { return c.ListComments(ctx, 42, 7) },
			method:  "GET", path: "/api/v1/company/42/clients/7/comments",
			checkResp: func(t *testing.T, got any) {
				l := got.([]Comment)
				if len(l) != 2 || l[0].User == nil || l[0].User.Name != "John Johnson" || l[1].User != nil ||
					l[1].Type != "file" || len(l[1].Files) != 1 || l[1].Files[0].Filename != "a.txt" {
					t.Errorf("got %+v", l)
				}
			},
		},
		{
			name:    "add comment 201",
			replies: []reply{{status: 201, body: `{"success":true,"data":{"id":5,"type":"default","text":"hello","files":[],"user":null},"meta":{}}`}},
			call:    func(ctx context.Context, c *Client) (any, error) { return c.AddComment(ctx, 42, 7, "hello") },
			method:  "POST", path: "/api/v1/company/42/clients/7/comments",
			body: `{"text":"hello"}`,
			checkResp: func(t *testing.T, got any) {
				if c := got.(Comment); c.ID != 5 || c.Text != "hello" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name:    "delete comment 204 empty",
			replies: []reply{{status: 204}},
			call:    func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteComment(ctx, 42, 7, 5) },
			method:  "DELETE", path: "/api/v1/company/42/clients/7/comments/5",
		},
		{
			name:    "delete comment envelope",
			replies: []reply{{status: 200, body: `{"success": true, "data": null, "meta": {}}`}},
			call:    func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteComment(ctx, 42, 7, 5) },
			method:  "DELETE", path: "/api/v1/company/42/clients/7/comments/5",
		},
		{
			name:    "list files",
			replies: []reply{{status: 200, body: filesJSON}},
			call:    func(ctx context.Context, c *Client) (any, error) { return c.ListFiles(ctx, 42, 123456) },
			method:  "GET", path: "/api/v1/company/42/clients/files/123456",
			checkResp: func(t *testing.T, got any) {
				l := got.([]ClientFile)
				if len(l) != 2 || l[0].UserName != "Victor Sitnikov" || l[0].Size != "9 B" || l[1].UserName != "Ann" ||
					l[1].ClientID != 123456 || !l[1].CanEdit || l[1].FullLink == "" {
					t.Errorf("got %+v", l)
				}
			},
		},
		{
			name:    "delete file 202 with body",
			replies: []reply{{status: 202, body: `{"success": true, "data": null, "meta": {"message": "Accepted"}}`}},
			call:    func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteFile(ctx, 42, 7, 9) },
			method:  "DELETE", path: "/api/v1/company/42/clients/files/7/9",
		},
		{
			name:    "delete file 202 without body",
			replies: []reply{{status: 202}},
			call:    func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteFile(ctx, 42, 7, 9) },
			method:  "DELETE", path: "/api/v1/company/42/clients/files/7/9",
		},
		{
			name:    "search visits sends every key",
			replies: []reply{{status: 200, body: visitsJSON}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SearchVisits(ctx, 42, VisitSearchRequest{ClientID: 123, From: "2022-01-31"})
			},
			method: "POST", path: "/api/v1/company/42/clients/visits/search",
			body: `{"client_id":123,"client_phone":null,"from":"2022-01-31","to":null,"payment_statuses":[],"attendance":null}`,
			checkResp: func(t *testing.T, got any) {
				r := got.(VisitSearchResult)
				if len(r.Records) != 1 || len(r.GoodsTransactions) != 1 {
					t.Fatalf("got %+v", r)
				}
				rec := r.Records[0]
				if rec.VisitID != 77 || rec.Services[0].CostToPay != 90.5 || rec.Staff.Name != "Kate" ||
					rec.Company.Title != "Salon" || rec.Comer == nil || rec.Comer.Slug != "pet" || !rec.Staff.IsPaidStaff {
					t.Errorf("record %+v", rec)
				}
				if g := r.GoodsTransactions[0]; g.Goods[0].Title != "Shampoo" || g.Staff.ID != 0 {
					t.Errorf("goods %+v", g)
				}
				next, ok := r.NextRequest(VisitSearchRequest{ClientID: 123})
				if !ok || next.From != "2021-12-01" || next.To != "2021-12-31" || r.Cursor.Current.Count != 2 {
					t.Errorf("cursor %+v, next %+v %v", r.Cursor, next, ok)
				}
			},
		},
		{
			name:    "search visits by phone with filters",
			replies: []reply{{status: 200, body: `{"success":true,"data":{"records":[],"goods_transactions":[]},"meta":{"dateCursor":{"next":{"from":null,"to":null,"count":0}}}}`}},
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SearchVisits(ctx, 42, VisitSearchRequest{ClientPhone: "79001234567",
					PaymentStatuses: []string{PaymentPaidFull}, Attendance: new(-1)})
			},
			method: "POST", path: "/api/v1/company/42/clients/visits/search",
			body: `{"client_id":null,"client_phone":"79001234567","from":null,"to":null,"payment_statuses":["paid_full"],"attendance":-1}`,
			checkResp: func(t *testing.T, got any) {
				if _, ok := got.(VisitSearchResult).NextRequest(VisitSearchRequest{}); ok {
					t.Error("NextRequest on the last page reported a next page")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newAPIServer(t, tt.replies...)
			c := newTestClient(t, srv, nil, nil)
			got, err := tt.call(t.Context(), c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("got %d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if req.Method != tt.method || req.Path != tt.path {
				t.Errorf("request %s %s, want %s %s", req.Method, req.Path, tt.method, tt.path)
			}
			checkHeaders(t, req, wantAuth, tt.body != "")
			if tt.body != "" {
				jsonEqual(t, req.Body, tt.body)
			}
			if tt.query != nil && !reflect.DeepEqual(req.Query, tt.query) {
				t.Errorf("query = %v, want %v", req.Query, tt.query)
			}
			if tt.checkResp != nil {
				tt.checkResp(t, got)
			}
		})
	}
}

func TestInvalidRequestsAreNotSent(t *testing.T) {
	t.Parallel()
	srv := newAPIServer(t)
	c := newTestClient(t, srv, nil, nil)
	ctx := t.Context()
	calls := map[string]func() error{
		"create without phone": func() error { _, err := c.CreateClient(ctx, 1, ClientInput{Name: "A"}); return err },
		"update without name":  func() error { _, err := c.UpdateClient(ctx, 1, 2, ClientInput{Phone: "1"}); return err },
		"bad birth date": func() error {
			_, err := c.CreateClient(ctx, 1, ClientInput{Name: "A", Phone: "1", BirthDate: new("03.04.1990")})
			return err
		},
		"zero location":    func() error { _, err := c.GetClient(ctx, 0, 1); return err },
		"page size 201":    func() error { _, err := c.SearchClients(ctx, 1, SearchClientsRequest{PageSize: 201}); return err },
		"count 301":        func() error { _, err := c.ListClientsDeprecated(ctx, 1, ListClientsParams{Count: 301}); return err },
		"blank comment":    func() error { _, err := c.AddComment(ctx, 1, 2, "  "); return err },
		"zero comment id":  func() error { return c.DeleteComment(ctx, 1, 2, 0) },
		"zero file id":     func() error { return c.DeleteFile(ctx, 1, 2, 0) },
		"visits no client": func() error { _, err := c.SearchVisits(ctx, 1, VisitSearchRequest{}); return err },
		"visits bad status": func() error {
			_, err := c.SearchVisits(ctx, 1, VisitSearchRequest{ClientID: 1, PaymentStatuses: []string{"x"}})
			return err
		},
		"bulk custom fields": func() error {
			_, err := c.BulkCreateClients(ctx, 1, []ClientInput{{Name: "A", Phone: "1", CustomFields: map[string]any{"k": "v"}}})
			return err
		},
		"login without password": func() error { _, err := c.Login(ctx, testPartner, "a@b.c", ""); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, ErrInvalidRequest) || ClassOf(err) != ClassPermanent {
			t.Errorf("%s: err = %v (class %v), want ErrInvalidRequest/permanent", name, err, ClassOf(err))
		}
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
	if r, err := c.BulkCreateClients(ctx, 1, nil); err != nil || len(r.Items) != 0 {
		t.Errorf("empty bulk = %+v, %v", r, err)
	}
}
