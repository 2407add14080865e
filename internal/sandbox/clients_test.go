package sandbox

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestClientLifecycle(t *testing.T) {
	e := newEnv(t, nil)

	// Create: 201, phone as a JSON number, birth_date as a timestamp string.
	r := e.do(http.MethodPost, "/clients/4242", map[string]any{
		"name": "James", "surname": "Smith", "phone": "+1 (315) 555-0179", "email": "j@example.com",
		"gender_id": 1, "importance_id": 1, "discount": 15, "card": "555888666", "birth_date": "2000-03-03",
		"categories": []int{101}, "labels": []int{999}, "custom_fields": map[string]any{"key-1": "value-1"},
	})
	wantSuccess(t, r, http.StatusCreated)
	if !strings.Contains(string(r.raw), `"phone":13155550179`) {
		t.Errorf("create phone is not a JSON number: %s", r.raw)
	}
	if !strings.Contains(string(r.raw), `"meta":[]`) {
		t.Errorf("create meta is not []: %s", r.raw)
	}
	d := r.data()
	if d["birth_date"] != "952041600" || d["importance"] != "Bronze" || d["gender"] != "Male" {
		t.Errorf("created = %v", d)
	}
	id := int64(d["id"].(float64))
	created, ok := e.sb.Client(testLoc, id)
	if !ok || created.Phone != "13155550179" || !reflect.DeepEqual(created.Categories, []int64{101}) {
		t.Fatalf("stored = %+v, %v", created, ok)
	}
	path := "/client/4242/" + itoa(id)

	// Get: 200, phone as a string, categories as objects.
	r = e.do(http.MethodGet, path, nil)
	wantSuccess(t, r, http.StatusOK)
	d = r.data()
	if d["phone"] != "13155550179" || d["middle_name"] == nil || d["birth_date"] != "2000-03-03" {
		t.Errorf("get = %v", d)
	}
	cats, _ := d["categories"].([]any)
	if len(cats) != 1 || cats[0].(map[string]any)["id"] != float64(101) || cats[0].(map[string]any)["title"] == nil {
		t.Errorf("categories = %v", d["categories"])
	}
	if cf, _ := d["custom_fields"].(map[string]any); cf["key-1"] != "value-1" {
		t.Errorf("custom_fields = %v", d["custom_fields"])
	}

	// PUT replaces: omitted fields are cleared, tags come from labels only.
	e.clock.Advance(time.Hour)
	r = e.do(http.MethodPut, path, map[string]any{
		"name": "Jim", "phone": "13155550179", "labels": []int{7}, "categories": []int{8},
	})
	wantSuccess(t, r, http.StatusOK)
	got, _ := e.sb.Client(testLoc, id)
	if got.Name != "Jim" || got.Email != "" || got.Card != "" || got.Surname != "" || got.CustomFields != nil {
		t.Errorf("after PUT = %+v, want omitted fields cleared", got)
	}
	if !reflect.DeepEqual(got.Categories, []int64{7}) {
		t.Errorf("categories after PUT = %v, want [7] from labels", got.Categories)
	}
	if !got.LastChangeDate.Equal(e.clock.Now()) || got.LastChangeDate.Equal(created.LastChangeDate) {
		t.Errorf("last_change_date = %v, want %v", got.LastChangeDate, e.clock.Now())
	}
	if !strings.Contains(string(r.raw), `"custom_fields":[]`) {
		t.Errorf("empty custom_fields is not []: %s", r.raw)
	}

	// PUT validation and 404.
	wantError(t, e.do(http.MethodPut, path, map[string]any{"name": "Jim"}), http.StatusUnprocessableEntity, msgErrorOccurred)
	wantError(t, e.do(http.MethodPut, "/client/4242/999", map[string]any{"name": "x", "phone": "79990001122"}), http.StatusNotFound, "")

	// Delete: 204, empty body; then 404 with an empty meta.
	r = e.do(http.MethodDelete, path, nil)
	wantStatus(t, r, http.StatusNoContent)
	if len(r.raw) != 0 {
		t.Errorf("delete body = %q, want empty", r.raw)
	}
	metas := map[string]bool{}
	for range 2 {
		r = e.do(http.MethodGet, path, nil)
		wantError(t, r, http.StatusNotFound, "")
		metas[string(mustField(t, r.raw, "meta"))] = true
	}
	if !metas["{}"] || !metas["[]"] {
		t.Errorf("404 metas = %v, want both {} and []", metas)
	}
	wantError(t, e.do(http.MethodDelete, path, nil), http.StatusNotFound, "")
	wantError(t, e.do(http.MethodGet, "/client/4242/abc", nil), http.StatusNotFound, "")
}

func mustField(t *testing.T, raw []byte, key string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return m[key]
}

func TestCreateClientValidation(t *testing.T) {
	e := newEnv(t, nil)
	e.createClient(map[string]any{"name": "Ann", "phone": "79990001122"})

	tests := []struct {
		name string
		body any
		want string
	}{
		{"no name", map[string]any{"phone": "79990001133"}, msgNoName},
		{"no phone", map[string]any{"name": "Bob"}, msgNoPhone},
		{"short phone", map[string]any{"name": "Bob", "phone": "123"}, msgPhoneDigits},
		{"long phone", map[string]any{"name": "Bob", "phone": "1234567890123456"}, msgPhoneDigits},
		{"duplicate phone", map[string]any{"name": "Bob", "phone": "+7 999 000-11-22"}, msgPhoneExists},
		{"bad gender", map[string]any{"name": "Bob", "phone": "79990001144", "gender_id": 5}, "The selected gender_id is invalid."},
		{"bad birth date", map[string]any{"name": "Bob", "phone": "79990001144", "birth_date": "03.04.1990"}, "The birth_date does not match the format Y-m-d."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodPost, "/clients/4242", tt.body)
			wantError(t, r, http.StatusUnprocessableEntity, msgErrorOccurred)
			errs, _ := r.meta()["errors"].([]any)
			found := false
			for _, e := range errs {
				found = found || e == tt.want
			}
			if !found {
				t.Errorf("meta.errors = %v, want %q", errs, tt.want)
			}
		})
	}
	if n := len(e.sb.Clients(testLoc)); n != 1 {
		t.Errorf("clients = %d, want 1", n)
	}
	if got := e.sb.Stats().CreateAttemptsByPhone["79990001122"]; got != 2 {
		t.Errorf("create attempts for the duplicated phone = %d, want 2", got)
	}
}

func TestBulkCreate(t *testing.T) {
	e := newEnv(t, nil)
	e.createClient(map[string]any{"name": "Ann", "phone": "79213237567"})

	r := e.do(http.MethodPost, "/clients/4242/bulk", []any{
		map[string]any{"name": "Bob", "phone": "79990001122", "sex_id": 1, "categories": []int{101}},
		map[string]any{"name": "James", "surname": "Smith", "phone": 79213237567},
		map[string]any{"phone": "721828834101"},
		map[string]any{"name": "James Smith", "phone": 123},
		map[string]any{"name": "Theodore Hicks"},
		map[string]any{"name": "Bob again", "phone": "79990001122"},
	})
	wantSuccess(t, r, http.StatusOK)
	created, _ := r.data()["created"].([]any)
	errs, _ := r.data()["errors"].([]any)
	if len(created) != 1 || len(errs) != 5 {
		t.Fatalf("created %d errors %d, want 1 and 5: %s", len(created), len(errs), r.raw)
	}
	c := created[0].(map[string]any)
	if c["sex_id"] != float64(1) || c["phone"] != float64(79990001122) || c["paid"] == nil || c["sms_bot"] == nil {
		t.Errorf("created item = %v, want legacy names and numeric phone", c)
	}
	want := []map[string]any{
		{"phone": float64(79213237567), "name": "James Smith", "error": msgPhoneExists},
		{"phone": float64(721828834101), "error": msgNoName},
		{"phone": float64(123), "name": "James Smith", "error": msgPhoneDigits},
		{"name": "Theodore Hicks", "error": msgNoPhone},
		{"phone": float64(79990001122), "name": "Bob again", "error": msgPhoneExists},
	}
	for i, w := range want {
		if got := errs[i].(map[string]any); !reflect.DeepEqual(got, w) {
			t.Errorf("errors[%d] = %v, want %v", i, got, w)
		}
	}
	wantError(t, e.do(http.MethodPost, "/clients/4242/bulk", map[string]any{"name": "x"}), http.StatusUnprocessableEntity, msgErrorOccurred)
	if got := e.sb.Stats().CreatesByPhone; got["79990001122"] != 1 || got["79213237567"] != 1 {
		t.Errorf("CreatesByPhone = %v", got)
	}
}
