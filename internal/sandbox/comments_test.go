package sandbox

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestComments(t *testing.T) {
	e := newEnv(t, nil)
	id := e.createClient(map[string]any{"name": "Ann", "phone": "79990001122"})
	base := "/company/4242/clients/" + itoa(id) + "/comments"

	r := e.do(http.MethodPost, base, map[string]any{"text": "first"})
	wantSuccess(t, r, http.StatusCreated)
	d := r.data()
	if d["text"] != "first" || d["type"] != "default" || d["create_date"] == nil {
		t.Errorf("comment = %v", d)
	}
	if u, _ := d["user"].(map[string]any); u["name"] != testLogin {
		t.Errorf("comment user = %v", d["user"])
	}
	first := int64(d["id"].(float64))
	e.clock.Advance(time.Minute)
	second := e.do(http.MethodPost, strings.Replace(base, "/company/", "/locations/", 1), map[string]any{"text": "second"})
	wantSuccess(t, second, http.StatusCreated)
	if m1, m2 := string(mustField(t, r.raw, "meta")), string(mustField(t, second.raw, "meta")); m1 == m2 {
		t.Errorf("add metas %s and %s, want both {} and [] over two calls", m1, m2)
	}

	r = e.do(http.MethodGet, base, nil)
	wantSuccess(t, r, http.StatusOK)
	if r.meta()["count"] != float64(2) || r.list()[0].(map[string]any)["text"] != "second" {
		t.Errorf("list = %s, want 2 comments newest first", r.raw)
	}

	for _, tt := range []struct {
		name string
		body any
	}{
		{"missing", map[string]any{}},
		{"blank", map[string]any{"text": "   "}},
		{"too long", map[string]any{"text": strings.Repeat("я", 256)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(http.MethodPost, base, tt.body)
			wantError(t, r, http.StatusUnprocessableEntity, msgErrorOccurred)
			errs, _ := r.meta()["errors"].([]any)
			if len(errs) != 1 || errs[0].(map[string]any)["message"] == nil {
				t.Errorf("meta.errors = %v, want an array of objects with message", r.meta()["errors"])
			}
		})
	}
	wantSuccess(t, e.do(http.MethodPost, base, map[string]any{"text": strings.Repeat("я", 255)}), http.StatusCreated)

	// Delete: 204 empty; then 404; a comment of another client is 404.
	other := e.createClient(map[string]any{"name": "Bob", "phone": "79990001133"})
	wantError(t, e.do(http.MethodDelete, "/company/4242/clients/"+itoa(other)+"/comments/"+itoa(first), nil), http.StatusNotFound, "")
	r = e.do(http.MethodDelete, base+"/"+itoa(first), nil)
	wantStatus(t, r, http.StatusNoContent)
	if len(r.raw) != 0 {
		t.Errorf("delete body = %q, want empty", r.raw)
	}
	wantError(t, e.do(http.MethodDelete, base+"/"+itoa(first), nil), http.StatusNotFound, "")
	if n := len(e.sb.Comments(testLoc, id)); n != 2 {
		t.Errorf("comments = %d, want 2", n)
	}

	// Unknown client.
	wantError(t, e.do(http.MethodGet, "/company/4242/clients/1/comments", nil), http.StatusNotFound, "")
	wantError(t, e.do(http.MethodPost, "/company/4242/clients/1/comments", map[string]any{"text": "x"}), http.StatusNotFound, "")

	// The published docs path is not served by default (ref §6.8).
	wantError(t, e.do(http.MethodGet, "/clients/4242/clients/"+itoa(id)+"/comments", nil), http.StatusNotFound, "")
}

func TestPublishedCommentPaths(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ServePublishedCommentPaths = true })
	id := e.createClient(map[string]any{"name": "Ann", "phone": "79990001122"})
	base := "/clients/4242/clients/" + itoa(id) + "/comments"
	r := e.do(http.MethodPost, base, map[string]any{"text": "hi"})
	wantSuccess(t, r, http.StatusCreated)
	wantSuccess(t, e.do(http.MethodGet, base, nil), http.StatusOK)
	wantStatus(t, e.do(http.MethodDelete, base+"/"+itoa(int64(r.data()["id"].(float64))), nil), http.StatusNoContent)
}

func TestFiles(t *testing.T) {
	e := newEnv(t, nil)
	id := e.createClient(map[string]any{"name": "Ann", "phone": "79990001122"})
	fileID, ok := e.sb.SeedFile(testLoc, File{ClientID: id, Name: "test.txt", Mime: "text/plain", Size: 9, UserName: "Victor"})
	if !ok {
		t.Fatal("SeedFile failed")
	}
	if _, ok := e.sb.SeedFile(testLoc, File{ClientID: 1}); ok {
		t.Error("SeedFile for an unknown client succeeded")
	}

	for _, prefix := range []string{"/company", "/locations"} {
		r := e.do(http.MethodGet, prefix+"/4242/clients/files/"+itoa(id), nil)
		wantSuccess(t, r, http.StatusOK)
		if r.meta()["count"] != float64(1) {
			t.Errorf("meta = %v", r.meta())
		}
		f := r.list()[0].(map[string]any)
		if f["size"] != "9 B" || f["extension"] != "txt" || f["user_name"] != "Victor" ||
			f["link"] != "/client_files/download/4242/"+itoa(fileID)+"/" || f["full_link"] == nil {
			t.Errorf("file = %v", f)
		}
	}
	// The upload shows up in the comments as a "file" comment (ref §6.8).
	if cms := e.sb.Comments(testLoc, id); len(cms) != 1 || cms[0].Type != "file" {
		t.Errorf("comments = %+v, want one file comment", cms)
	}

	wantError(t, e.do(http.MethodGet, "/company/4242/clients/files/1", nil), http.StatusNotFound, "")
	wantError(t, e.do(http.MethodDelete, "/company/4242/clients/files/"+itoa(id)+"/1", nil), http.StatusNotFound, "")
	r := e.do(http.MethodDelete, "/locations/4242/clients/files/"+itoa(id)+"/"+itoa(fileID), nil)
	wantStatus(t, r, http.StatusAccepted)
	if string(r.raw) != `{"success":true,"data":null,"meta":{"message":"Accepted"}}` {
		t.Errorf("delete body = %s", r.raw)
	}
	if n := len(e.sb.Files(testLoc, id)); n != 0 {
		t.Errorf("files = %d, want 0", n)
	}
}

func TestDeleteClientCascades(t *testing.T) {
	e := newEnv(t, nil)
	id := e.createClient(map[string]any{"name": "Ann", "phone": "79990001122"})
	e.sb.SeedFile(testLoc, File{ClientID: id, Name: "a.pdf", Size: 98970})
	e.sb.SeedComment(testLoc, Comment{ClientID: id, Text: "hello"})
	e.sb.SeedVisit(testLoc, Visit{ClientID: id, Date: e.clock.Now()})
	wantStatus(t, e.do(http.MethodDelete, "/client/4242/"+itoa(id), nil), http.StatusNoContent)
	if len(e.sb.Comments(testLoc, id)) != 0 || len(e.sb.Files(testLoc, id)) != 0 {
		t.Error("comments or files survived the client delete")
	}
	// Re-creating with the same phone is allowed after the delete.
	e.createClient(map[string]any{"name": "Ann", "phone": "79990001122"})
	if got := e.sb.Stats().CreatesByPhone["79990001122"]; got != 2 {
		t.Errorf("CreatesByPhone = %d, want 2", got)
	}
}

func TestVisitSearch(t *testing.T) {
	e := newEnv(t, nil)
	id := e.createClient(map[string]any{"name": "Ann", "phone": "79990001122"})
	start := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	// 30 visits on 28 days: days 0..27, with day 3 holding three visits.
	for i := range 28 {
		e.sb.SeedVisit(testLoc, Visit{ClientID: id, Date: start.AddDate(0, 0, i), PaymentStatus: "paid_full", Cost: 10, ServiceTitle: "Cut"})
	}
	for range 2 {
		e.sb.SeedVisit(testLoc, Visit{ClientID: id, Date: start.AddDate(0, 0, 3).Add(time.Hour), Attendance: 1})
	}
	body := func(from, to any) map[string]any {
		return map[string]any{"client_id": id, "client_phone": nil, "from": from, "to": to, "payment_statuses": []string{}, "attendance": nil}
	}

	r := e.do(http.MethodPost, "/company/4242/clients/visits/search", body(nil, nil))
	wantSuccess(t, r, http.StatusOK)
	recs, _ := r.data()["records"].([]any)
	if len(recs) != 27 {
		t.Fatalf("records = %d, want 27", len(recs))
	}
	if _, ok := r.data()["goods_transactions"].([]any); !ok {
		t.Error("goods_transactions missing")
	}
	rec := recs[0].(map[string]any)
	if rec["date"] == nil || rec["services"] == nil || rec["staff"] == nil || rec["company"] == nil {
		t.Errorf("record = %v", rec)
	}
	cur := r.meta()["dateCursor"].(map[string]any)
	next := cur["next"].(map[string]any)
	// Newest first: days 27..4 hold 24 visits and day 3 three, so the 25th
	// visit is the first of day 3 and its two siblings join the page.
	if next["to"] != "2026-01-03" || next["from"] != "2026-01-01" || next["count"] != float64(3) {
		t.Errorf("next = %v, want 2026-01-01..2026-01-03 with 3", next)
	}

	// Page 2 via the cursor; then no more pages.
	r = e.do(http.MethodPost, "/locations/4242/clients/visits/search", body(next["from"], next["to"]))
	wantSuccess(t, r, http.StatusOK)
	if n := len(r.data()["records"].([]any)); n != 3 {
		t.Errorf("page 2 records = %d, want 3", n)
	}
	next = r.meta()["dateCursor"].(map[string]any)["next"].(map[string]any)
	if next["from"] != nil || next["to"] != nil {
		t.Errorf("last page next = %v, want nulls", next)
	}

	// Filters and lookup by phone.
	r = e.do(http.MethodPost, "/company/4242/clients/visits/search", map[string]any{
		"client_id": nil, "client_phone": "+7 999 000-11-22", "from": nil, "to": nil, "payment_statuses": []string{}, "attendance": 1,
	})
	wantSuccess(t, r, http.StatusOK)
	if n := len(r.data()["records"].([]any)); n != 2 {
		t.Errorf("attendance=1 records = %d, want 2", n)
	}

	for _, tt := range []struct {
		name   string
		body   map[string]any
		status int
	}{
		{"missing key", map[string]any{"client_id": id, "from": nil, "to": nil, "payment_statuses": []string{}, "attendance": nil}, http.StatusUnprocessableEntity},
		{"no client", body(nil, nil), http.StatusUnprocessableEntity},
		{"bad status", map[string]any{"client_id": id, "client_phone": nil, "from": nil, "to": nil, "payment_statuses": []string{"free"}, "attendance": nil}, http.StatusUnprocessableEntity},
		{"unknown client", map[string]any{"client_id": 1, "client_phone": nil, "from": nil, "to": nil, "payment_statuses": []string{}, "attendance": nil}, http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "no client" {
				tt.body["client_id"] = nil
			}
			r := e.do(http.MethodPost, "/company/4242/clients/visits/search", tt.body)
			wantError(t, r, tt.status, "")
			if tt.status == http.StatusUnprocessableEntity {
				if _, ok := r.meta()["errors"].([]any); !ok {
					t.Errorf("meta.errors = %v, want an array", r.meta()["errors"])
				}
			}
		})
	}
}
