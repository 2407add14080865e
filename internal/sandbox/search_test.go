package sandbox

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// seedSearchClients stores five clients with distinct attributes.
func seedSearchClients(e *env) []int64 {
	return []int64{
		e.sb.SeedClient(testLoc, ClientRecord{Name: "Ann", Surname: "Lee", Phone: "79990000001", GenderID: 2, ImportanceID: 3, Categories: []int64{1}, Card: "CARD-9", Spent: 100}),
		e.sb.SeedClient(testLoc, ClientRecord{Name: "Bob", Phone: "79990000002", GenderID: 1, ImportanceID: 0, Spent: 300}),
		e.sb.SeedClient(testLoc, ClientRecord{Name: "Cid", Phone: "79990000003", GenderID: 1, ImportanceID: 1, Categories: []int64{1, 2}, Spent: 200}),
		e.sb.SeedClient(testLoc, ClientRecord{Name: "Dan", Phone: "14155550004", GenderID: 0, ImportanceID: 2}),
		e.sb.SeedClient(testLoc, ClientRecord{Name: "Eve", Phone: "14155550005", GenderID: 2, ImportanceID: 3, Categories: []int64{2}}),
	}
}

func filter(typ string, state map[string]any) map[string]any {
	return map[string]any{"type": typ, "state": state}
}

func TestSearch(t *testing.T) {
	e := newEnv(t, nil)
	ids := seedSearchClients(e)

	tests := []struct {
		name    string
		body    map[string]any
		wantIDs []int64
		total   int
	}{
		{"all, default id projection", map[string]any{}, ids, 5},
		{"by id", map[string]any{"filters": []any{filter("id", map[string]any{"value": []int64{ids[1], ids[3]}})}}, []int64{ids[1], ids[3]}, 2},
		{"quick search phone", map[string]any{"filters": []any{filter("quick_search", map[string]any{"value": "+1 415"})}}, []int64{ids[3], ids[4]}, 2},
		{"quick search name", map[string]any{"filters": []any{filter("quick_search", map[string]any{"value": "lee"})}}, []int64{ids[0]}, 1},
		{"quick search card", map[string]any{"filters": []any{filter("quick_search", map[string]any{"value": "card-9"})}}, []int64{ids[0]}, 1},
		{"importance", map[string]any{"filters": []any{filter("importance", map[string]any{"value": []int{3}})}}, []int64{ids[0], ids[4]}, 2},
		{"gender inverted", map[string]any{"filters": []any{filter("gender", map[string]any{"value": []int{1}, "invert": true})}}, []int64{ids[0], ids[3], ids[4]}, 3},
		{"category", map[string]any{"filters": []any{filter("category", map[string]any{"value": []int{2}})}}, []int64{ids[2], ids[4]}, 2},
		{"and", map[string]any{"filters": []any{
			filter("category", map[string]any{"value": []int{1}}), filter("gender", map[string]any{"value": []int{1}}),
		}}, []int64{ids[2]}, 1},
		{"or", map[string]any{"operation": "OR", "filters": []any{
			filter("importance", map[string]any{"value": []int{0}}), filter("gender", map[string]any{"value": []int{0}}),
		}}, []int64{ids[1], ids[3]}, 2},
		{"order by sold amount desc", map[string]any{"order_by": "sold_amount", "order_by_direction": "desc", "page_size": 3},
			[]int64{ids[1], ids[2], ids[0]}, 5},
		{"second page", map[string]any{"page": 2, "page_size": 2}, []int64{ids[2], ids[3]}, 5},
		{"past the end", map[string]any{"page": 9, "page_size": 2}, nil, 5},
	}
	for _, tt := range tests {
		for _, prefix := range []string{"/company", "/locations"} {
			t.Run(tt.name+prefix, func(t *testing.T) {
				r := e.do(http.MethodPost, prefix+"/4242/clients/search", tt.body)
				wantSuccess(t, r, http.StatusOK)
				if got := r.meta()["total_count"]; got != float64(tt.total) {
					t.Errorf("total_count = %v, want %d", got, tt.total)
				}
				var got []int64
				for _, row := range r.list() {
					m := row.(map[string]any)
					if len(m) != 1 {
						t.Errorf("row %v, want only id by default", m)
					}
					got = append(got, int64(m["id"].(float64)))
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.wantIDs) {
					t.Errorf("ids = %v, want %v", got, tt.wantIDs)
				}
			})
		}
	}

	t.Run("projection", func(t *testing.T) {
		e.sb.SeedVisit(testLoc, Visit{ClientID: ids[0], Date: e.clock.Now()})
		r := e.do(http.MethodPost, "/company/4242/clients/search", map[string]any{
			"fields":  []string{"id", "name", "phone", "sold_amount", "last_visit_date"},
			"filters": []any{filter("id", map[string]any{"value": []int64{ids[0]}})},
		})
		wantSuccess(t, r, http.StatusOK)
		row := r.list()[0].(map[string]any)
		if row["name"] != "Ann Lee" || row["phone"] != "79990000001" || row["sold_amount"] != float64(100) || row["last_visit_date"] == nil {
			t.Errorf("row = %v", row)
		}
	})
}

func TestSearchErrors(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name  string
		path  string
		body  any
		field string
	}{
		{"unknown filter", "/company/4242/clients/search", map[string]any{"filters": []any{filter("nope", map[string]any{"value": 1})}}, "filters"},
		{"bad state", "/company/4242/clients/search", map[string]any{"filters": []any{filter("importance", map[string]any{"value": "gold"})}}, "filters"},
		{"importance out of range", "/company/4242/clients/search", map[string]any{"filters": []any{filter("importance", map[string]any{"value": []int{9}})}}, "filters"},
		{"unsupported filter", "/company/4242/clients/search", map[string]any{"filters": []any{filter("record", map[string]any{})}}, "filters"},
		{"page size over 200", "/company/4242/clients/search", map[string]any{"page_size": 201}, "page_size"},
		{"unknown field", "/company/4242/clients/search", map[string]any{"fields": []string{"categories"}}, "fields"},
		{"bad order", "/company/4242/clients/search", map[string]any{"order_by": "surname"}, "order_by"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodPost, tt.path, tt.body)
			wantError(t, r, http.StatusBadRequest, "")
			errs, ok := r.meta()["errors"].(map[string]any)
			if !ok || errs[tt.field] == nil {
				t.Errorf("meta.errors = %v, want an object keyed by %q", r.meta()["errors"], tt.field)
			}
		})
	}

	t.Run("location not an integer", func(t *testing.T) {
		r := e.do(http.MethodPost, "/company/abc/clients/search", map[string]any{})
		wantError(t, r, http.StatusNotFound, "Not found")
		if _, ok := r.meta()["errors"].([]any); !ok {
			t.Errorf("meta.errors = %v, want an array", r.meta()["errors"])
		}
	})
	t.Run("unlicensed", func(t *testing.T) {
		e.sb.SetUnlicensed(testLoc)
		defer e.sb.RenewLicense(testLoc)
		r := e.do(http.MethodPost, "/company/4242/clients/search", map[string]any{})
		wantError(t, r, http.StatusPaymentRequired, "It is necessary to renew the license in the branch with id: 4242")
	})
}

func TestDeprecatedList(t *testing.T) {
	e := newEnv(t, nil)
	ids := seedSearchClients(e)
	e.clock.Advance(time.Hour)
	changed := e.sb.SeedClient(testLoc, ClientRecord{Name: "Fay", Phone: "79990000006", Email: "fay@example.com", Paid: 50})

	tests := []struct {
		name    string
		query   string
		wantIDs []int64
		total   int
	}{
		{"all", "", append(append([]int64(nil), ids...), changed), 6},
		{"paged", "?page=2&count=2", []int64{ids[2], ids[3]}, 6},
		{"fullname", "?fullname=an", []int64{ids[0], ids[3]}, 2},
		{"phone", "?phone=%2B1415", []int64{ids[3], ids[4]}, 2},
		{"email", "?email=FAY@", []int64{changed}, 1},
		{"ids", "?id[]=" + itoa(ids[1]) + "&id[]=" + itoa(ids[4]), []int64{ids[1], ids[4]}, 2},
		{"changed after", "?changed_after=" + e.clock.Now().UTC().Format("2006-01-02T15:04:05"), []int64{changed}, 1},
		{"paid range", "?paid_min=10&paid_max=100", []int64{changed}, 1},
		// ref §6.7: paid_max is read as 0, and the empty result drops the filter.
		{"paid_min alone is dropped", "?paid_min=10", append(append([]int64(nil), ids...), changed), 6},
		{"filter matching nobody is dropped", "?fullname=zzz&email=fay", []int64{changed}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodGet, "/clients/4242"+tt.query, nil)
			wantSuccess(t, r, http.StatusOK)
			if r.meta()["total_count"] != float64(tt.total) || r.meta()["page"] == nil {
				t.Errorf("meta = %v, want total_count %d and page", r.meta(), tt.total)
			}
			var got []int64
			for _, row := range r.list() {
				m := row.(map[string]any)
				if _, ok := m["sex_id"]; !ok {
					t.Errorf("row without legacy sex_id: %v", m)
				}
				got = append(got, int64(m["id"].(float64)))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantIDs) {
				t.Errorf("ids = %v, want %v", got, tt.wantIDs)
			}
		})
	}

	t.Run("count capped at 300", func(t *testing.T) {
		for i := range 305 {
			e.sb.SeedClient(9, ClientRecord{Name: "N", Phone: fmt.Sprintf("7999%07d", i)})
		}
		r := e.do(http.MethodGet, "/clients/9?count=1000", nil)
		wantSuccess(t, r, http.StatusOK)
		if n := len(r.list()); n != 300 {
			t.Errorf("rows = %d, want 300", n)
		}
		if n := len(e.do(http.MethodGet, "/clients/9", nil).list()); n != 20 {
			t.Errorf("default rows = %d, want 20", n)
		}
	})
}
