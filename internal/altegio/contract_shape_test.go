package altegio_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/sandbox"
)

// wantRequest is what the reference says one request must look like.
type wantRequest struct {
	method, path string
	// user is the user token expected after "User "; "" means a
	// partner-only call (POST /auth, ref §2.2).
	user string
	// body checks the JSON body; nil means the request has no body.
	body func(t *testing.T, body []byte)
}

// checkRequest compares a recorded request with the reference (ref §2.1,
// §5, §6): exact Accept, the Authorization form, Content-Type exactly when
// a body is sent, and the path.
func checkRequest(t *testing.T, got recordedCall, want wantRequest) {
	t.Helper()
	if got.Method != want.method || got.Path != want.path {
		t.Errorf("request = %s %s, want %s %s", got.Method, got.Path, want.method, want.path)
	}
	if v := got.Header.Values("Accept"); !slices.Equal(v, []string{mediaTypeV2}) {
		t.Errorf("%s %s: Accept = %q, want exactly %q", got.Method, got.Path, v, mediaTypeV2)
	}
	wantAuth := "Bearer " + ctPartner
	if want.user != "" {
		wantAuth += ", User " + want.user
	}
	if v := got.Header.Values("Authorization"); !slices.Equal(v, []string{wantAuth}) {
		t.Errorf("%s %s: Authorization = %q, want %q", got.Method, got.Path, v, wantAuth)
	}
	ct := got.Header.Values("Content-Type")
	if want.body == nil {
		if len(got.Body) != 0 || len(ct) != 0 {
			t.Errorf("%s %s: body %q with Content-Type %q, want neither", got.Method, got.Path, got.Body, ct)
		}
		return
	}
	if !slices.Equal(ct, []string{"application/json"}) {
		t.Errorf("%s %s: Content-Type = %q, want %q", got.Method, got.Path, ct, "application/json")
	}
	if !json.Valid(got.Body) {
		t.Fatalf("%s %s: body is not JSON: %q", got.Method, got.Path, got.Body)
	}
	want.body(t, got.Body)
}

// objectKeys decodes a JSON object and returns it with its sorted keys.
func objectKeys(t *testing.T, body []byte) (map[string]json.RawMessage, []string) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		t.Fatalf("body %s is not a JSON object: %v", body, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return m, keys
}

// exactKeys checks that the object has exactly keys.
func exactKeys(keys ...string) func(t *testing.T, body []byte) {
	return func(t *testing.T, body []byte) {
		t.Helper()
		_, got := objectKeys(t, body)
		want := slices.Sorted(slices.Values(keys))
		if !slices.Equal(got, want) {
			t.Errorf("body keys = %v, want %v (body %s)", got, want, body)
		}
	}
}

// clientBody checks a create, update or bulk item body: it must carry the
// tags under tagKey, never under the other spelling, use only current field
// names, and never send custom_fields when withCustom is false.
func clientBody(t *testing.T, m map[string]json.RawMessage, tagKey string, wantTags []int64, withCustom bool) {
	t.Helper()
	other := map[string]string{"labels": "categories", "categories": "labels"}[tagKey]
	if _, ok := m[other]; ok {
		t.Errorf("body has %q; tags go in %q here (ref §6.2, §6.4)", other, tagKey)
	}
	var tags []int64
	if err := json.Unmarshal(m[tagKey], &tags); err != nil || !slices.Equal(tags, wantTags) {
		t.Errorf("%s = %s, want %v", tagKey, m[tagKey], wantTags)
	}
	for _, legacy := range []string{"patronymic", "sex_id", "sex"} {
		if _, ok := m[legacy]; ok {
			t.Errorf("body uses the legacy key %q", legacy)
		}
	}
	if _, ok := m["custom_fields"]; ok != withCustom {
		t.Errorf("custom_fields present = %v, want %v", ok, withCustom)
	}
	for _, k := range []string{"name", "phone"} {
		var s string
		if err := json.Unmarshal(m[k], &s); err != nil || s == "" {
			t.Errorf("%s = %s, want a non-empty string", k, m[k])
		}
	}
}

// TestContractRequestShapes records every request the client makes against
// the sandbox and checks it against the reference, one step per operation.
func TestContractRequestShapes(t *testing.T) {
	e := newRecordedEnv(t)
	const loc = ctLoc
	id := e.seedClient(t, loc, fullClient("13155550178"))
	other := e.seedClient(t, loc, sandbox.ClientRecord{Name: "Other", Phone: "13155550199"})
	fileID, ok := e.sb.SeedFile(loc, sandbox.File{ClientID: id, Name: "test.txt", Size: 9})
	if !ok {
		t.Fatal("SeedFile failed")
	}
	base := time.Date(2026, 3, 31, 10, 0, 0, 0, time.UTC)
	for i := range 30 {
		if _, ok := e.sb.SeedVisit(loc, sandbox.Visit{ClientID: id, Date: base.AddDate(0, 0, -i)}); !ok {
			t.Fatal("SeedVisit failed")
		}
	}

	var (
		card      altegio.ClientRecord
		commentID int64
		visits    altegio.VisitSearchResult
		visitsReq = altegio.VisitSearchRequest{ClientID: id}
	)
	clientPath := fmt.Sprintf("/api/v1/client/%d/%d", loc, id)
	commentsPath := fmt.Sprintf("/api/v1/company/%d/clients/%d/comments", loc, id)
	steps := []struct {
		name string
		do   func(t *testing.T) error
		want wantRequest
		// resp checks the recorded answer.
		resp func(t *testing.T, got recordedCall)
	}{
		{
			name: "login",
			do: func(t *testing.T) error {
				_, err := e.client.Login(t.Context(), ctPartner, ctLogin, ctPassword)
				return err
			},
			want: wantRequest{method: http.MethodPost, path: "/api/v1/auth", body: func(t *testing.T, body []byte) {
				exactKeys("login", "password")(t, body)
				m, _ := objectKeys(t, body)
				if string(m["login"]) != `"owner"` || string(m["password"]) != `"s3cret"` {
					t.Errorf("auth body = %s", body)
				}
			}},
			resp: wantStatus(http.StatusCreated),
		},
		{
			name: "get client",
			do: func(t *testing.T) error {
				var err error
				card, err = e.client.GetClient(t.Context(), loc, id)
				return err
			},
			want: wantRequest{method: http.MethodGet, path: clientPath, user: ctToken},
			resp: wantStatus(http.StatusOK),
		},
		{
			name: "update client",
			do: func(t *testing.T) error {
				in := card.Input()
				in.Comment = new("updated")
				_, err := e.client.UpdateClient(t.Context(), loc, id, in)
				return err
			},
			want: wantRequest{method: http.MethodPut, path: clientPath, user: ctToken, body: func(t *testing.T, body []byte) {
				m, keys := objectKeys(t, body)
				clientBody(t, m, "labels", []int64{3, 5}, true)
				// Read-merge-PUT sends every writable field (ref §6.2).
				want := []string{"balance", "birth_date", "card", "comment", "custom_fields", "discount", "email",
					"gender_id", "importance_id", "labels", "middle_name", "name", "phone", "sms_check", "sms_not",
					"spent", "surname"}
				if !slices.Equal(keys, want) {
					t.Errorf("PUT keys = %v, want %v", keys, want)
				}
			}},
			resp: wantStatus(http.StatusOK),
		},
		{
			name: "create client",
			do: func(t *testing.T) error {
				got, err := e.client.CreateClient(t.Context(), loc, altegio.ClientInput{
					Name: "James", Phone: "+1 315 555 0179", Categories: []int64{101, 102},
					CustomFields: map[string]any{"key-1": "value-1"},
				})
				if err == nil && got.Phone != "13155550179" {
					t.Errorf("decoded phone = %q, want %q", got.Phone, "13155550179")
				}
				return err
			},
			want: wantRequest{method: http.MethodPost, path: fmt.Sprintf("/api/v1/clients/%d", loc), user: ctToken,
				body: func(t *testing.T, body []byte) {
					m, _ := objectKeys(t, body)
					clientBody(t, m, "categories", []int64{101, 102}, true)
				}},
			resp: func(t *testing.T, got recordedCall) {
				t.Helper()
				wantStatus(http.StatusCreated)(t, got)
				// ref §6.4: the create sample has the phone as a JSON number.
				var env struct {
					Data struct {
						Phone json.RawMessage `json:"phone"`
					} `json:"data"`
				}
				if err := json.Unmarshal(got.RespBody, &env); err != nil || string(env.Data.Phone) != "13155550179" {
					t.Errorf("response phone = %s, want the number 13155550179 (%v)", env.Data.Phone, err)
				}
			},
		},
		{
			name: "bulk create",
			do: func(t *testing.T) error {
				_, err := e.client.BulkCreateClients(t.Context(), loc, []altegio.ClientInput{
					{Name: "Ann", Phone: "79210000001", Categories: []int64{101}},
					{Name: "Bob", Phone: "79210000002", Surname: new("Stone")},
				})
				return err
			},
			want: wantRequest{method: http.MethodPost, path: fmt.Sprintf("/api/v1/clients/%d/bulk", loc), user: ctToken,
				body: func(t *testing.T, body []byte) {
					// ref §6.5: the body is a JSON array of client objects.
					var items []map[string]json.RawMessage
					if err := json.Unmarshal(body, &items); err != nil || len(items) != 2 {
						t.Fatalf("bulk body %s is not an array of 2 objects: %v", body, err)
					}
					clientBody(t, items[0], "categories", []int64{101}, false)
					if _, ok := items[1]["categories"]; ok {
						t.Errorf("item without tags sends categories: %s", body)
					}
					if string(items[1]["surname"]) != `"Stone"` {
						t.Errorf("item 1 surname = %s", items[1]["surname"])
					}
				}},
			resp: wantStatus(http.StatusOK),
		},
		{
			name: "search clients",
			do: func(t *testing.T) error {
				_, err := e.client.SearchClients(t.Context(), loc, altegio.SearchClientsRequest{
					PageSize: 50, Filters: []altegio.SearchFilter{altegio.QuickSearchFilter("james"), altegio.IDFilter(id)},
				})
				return err
			},
			want: wantRequest{method: http.MethodPost, path: fmt.Sprintf("/api/v1/company/%d/clients/search", loc), user: ctToken,
				body: func(t *testing.T, body []byte) {
					var got struct {
						PageSize int      `json:"page_size"`
						Fields   []string `json:"fields"`
						Filters  []struct {
							Type  string                     `json:"type"`
							State map[string]json.RawMessage `json:"state"`
						} `json:"filters"`
					}
					if err := json.Unmarshal(body, &got); err != nil {
						t.Fatal(err)
					}
					// ref §6.6: the default projection is id only, so name
					// must be asked for.
					if !slices.Contains(got.Fields, "name") || got.PageSize != 50 {
						t.Errorf("search body = %s", body)
					}
					if len(got.Filters) != 2 || got.Filters[0].Type != "quick_search" || string(got.Filters[0].State["value"]) != `"james"` ||
						got.Filters[1].Type != "id" || string(got.Filters[1].State["value"]) != fmt.Sprintf("[%d]", id) {
						t.Errorf("filters = %s", body)
					}
				}},
			resp: wantStatus(http.StatusOK),
		},
		{
			name: "deprecated list",
			do: func(t *testing.T) error {
				_, err := e.client.ListClientsDeprecated(t.Context(), loc, altegio.ListClientsParams{
					Page: 2, Count: 10, IDs: []int64{id, other}, PaidMin: new(5.0),
					ChangedAfter: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
				})
				return err
			},
			want: wantRequest{method: http.MethodGet, path: fmt.Sprintf("/api/v1/clients/%d", loc), user: ctToken},
			resp: func(t *testing.T, got recordedCall) {
				t.Helper()
				wantStatus(http.StatusOK)(t, got)
				q, err := url.ParseQuery(got.RawQuery)
				if err != nil {
					t.Fatal(err)
				}
				want := url.Values{
					"page": {"2"}, "count": {"10"}, "id[]": {fmt.Sprint(id), fmt.Sprint(other)},
					"paid_min": {"5"}, "paid_max": {"1000000000000"}, "changed_after": {"2026-01-02T03:04:05"},
				}
				if q.Encode() != want.Encode() {
					t.Errorf("query = %s, want %s", q.Encode(), want.Encode())
				}
			},
		},
		{
			name: "add comment",
			do: func(t *testing.T) error {
				cm, err := e.client.AddComment(t.Context(), loc, id, "Prefers mornings")
				commentID = cm.ID
				return err
			},
			want: wantRequest{method: http.MethodPost, path: commentsPath, user: ctToken, body: func(t *testing.T, body []byte) {
				exactKeys("text")(t, body)
			}},
			resp: wantStatus(http.StatusCreated),
		},
		{
			name: "list comments",
			do: func(t *testing.T) error {
				_, err := e.client.ListComments(t.Context(), loc, id)
				return err
			},
			want: wantRequest{method: http.MethodGet, path: commentsPath, user: ctToken},
			resp: wantStatus(http.StatusOK),
		},
		{
			name: "delete comment",
			do: func(t *testing.T) error {
				return e.client.DeleteComment(t.Context(), loc, id, commentID)
			},
			want: wantRequest{method: http.MethodDelete, path: commentsPath + "/", user: ctToken},
			resp: wantStatus(http.StatusNoContent),
		},
		{
			name: "list files",
			do: func(t *testing.T) error {
				_, err := e.client.ListFiles(t.Context(), loc, id)
				return err
			},
			want: wantRequest{method: http.MethodGet, path: fmt.Sprintf("/api/v1/company/%d/clients/files/%d", loc, id), user: ctToken},
			resp: wantStatus(http.StatusOK),
		},
		{
			name: "delete file",
			do: func(t *testing.T) error {
				return e.client.DeleteFile(t.Context(), loc, id, fileID)
			},
			// ref §2.1: the old docs list the partner token only; send both.
			want: wantRequest{method: http.MethodDelete, path: fmt.Sprintf("/api/v1/company/%d/clients/files/%d/%d", loc, id, fileID), user: ctToken},
			resp: wantStatus(http.StatusAccepted),
		},
		{
			name: "search visits",
			do: func(t *testing.T) error {
				var err error
				visits, err = e.client.SearchVisits(t.Context(), loc, visitsReq)
				return err
			},
			want: wantRequest{method: http.MethodPost, path: fmt.Sprintf("/api/v1/company/%d/clients/visits/search", loc), user: ctToken,
				body: func(t *testing.T, body []byte) {
					// ref §6.10: every key is sent, null when unset, and
					// payment_statuses is [] when not filtering.
					m, _ := objectKeys(t, body)
					exactKeys("client_id", "client_phone", "from", "to", "payment_statuses", "attendance")(t, body)
					want := map[string]string{"client_id": fmt.Sprint(id), "client_phone": "null", "from": "null",
						"to": "null", "payment_statuses": "[]", "attendance": "null"}
					for k, v := range want {
						if string(m[k]) != v {
							t.Errorf("%s = %s, want %s", k, m[k], v)
						}
					}
				}},
			resp: wantStatus(http.StatusOK),
		},
		{
			name: "search visits next page",
			do: func(t *testing.T) error {
				next, ok := visits.NextRequest(visitsReq)
				if !ok {
					t.Fatal("no next page after 30 visits")
				}
				_, err := e.client.SearchVisits(t.Context(), loc, next)
				return err
			},
			want: wantRequest{method: http.MethodPost, path: fmt.Sprintf("/api/v1/company/%d/clients/visits/search", loc), user: ctToken,
				body: func(t *testing.T, body []byte) {
					m, _ := objectKeys(t, body)
					exactKeys("client_id", "client_phone", "from", "to", "payment_statuses", "attendance")(t, body)
					if string(m["from"]) != `"2026-03-02"` || string(m["to"]) != `"2026-03-06"` {
						t.Errorf("next page window = %s..%s, want the cursor's 2026-03-02..2026-03-06", m["from"], m["to"])
					}
				}},
			resp: wantStatus(http.StatusOK),
		},
		{
			name: "delete client",
			do: func(t *testing.T) error {
				return e.client.DeleteClient(t.Context(), loc, id)
			},
			want: wantRequest{method: http.MethodDelete, path: clientPath, user: ctToken},
			resp: wantStatus(http.StatusNoContent),
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			n := e.rec.len()
			mustNoErr(t, st.name, st.do(t))
			calls := e.rec.since(n)
			if len(calls) != 1 {
				t.Fatalf("%d requests, want 1: %+v", len(calls), calls)
			}
			want := st.want
			if strings.HasSuffix(want.path, "/") { // delete comment: ID known only after "add comment"
				want.path += fmt.Sprint(commentID)
			}
			checkRequest(t, calls[0], want)
			if st.resp != nil {
				st.resp(t, calls[0])
			}
		})
	}

	t.Run("refresh after 401 re-logs in with the partner token only", func(t *testing.T) {
		c := e.newLoginClient(t)
		target := e.seedClient(t, loc, sandbox.ClientRecord{Name: "Target", Phone: "13155550150"})
		n := e.rec.len()
		_, err := c.GetClient(t.Context(), loc, target) // first login, then the call
		mustNoErr(t, "GetClient", err)
		tokenBefore, _ := e.sb.UserToken(ctLogin)
		newToken, err := e.sb.RotateUserToken(ctLogin)
		mustNoErr(t, "RotateUserToken", err)
		_, err = c.GetClient(t.Context(), loc, target)
		mustNoErr(t, "GetClient after rotation", err)

		path := fmt.Sprintf("/api/v1/client/%d/%d", loc, target)
		authBody := exactKeys("login", "password")
		want := []wantRequest{
			{method: http.MethodPost, path: "/api/v1/auth", body: authBody},
			{method: http.MethodGet, path: path, user: tokenBefore},
			{method: http.MethodGet, path: path, user: tokenBefore}, // rejected with 401
			{method: http.MethodPost, path: "/api/v1/auth", body: authBody},
			{method: http.MethodGet, path: path, user: newToken},
		}
		calls := e.rec.since(n)
		if len(calls) != len(want) {
			t.Fatalf("%d requests, want %d", len(calls), len(want))
		}
		for i, w := range want {
			checkRequest(t, calls[i], w)
		}
		if got := []int{calls[2].Status, calls[4].Status}; !slices.Equal(got, []int{http.StatusUnauthorized, http.StatusOK}) {
			t.Errorf("statuses of the rejected call and its retry = %v, want [401 200]", got)
		}
	})

	t.Run("blank comment sent raw is a 422", func(t *testing.T) {
		// The client refuses blank text before sending (ErrInvalidRequest),
		// so check the sandbox's side of the contract directly (ref §6.8).
		target := e.seedClient(t, loc, sandbox.ClientRecord{Name: "Raw", Phone: "13155550151"})
		token, _ := e.sb.UserToken(ctLogin) // rotated by the subtest above
		for _, body := range []string{`{"text": "   "}`, `{}`} {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
				fmt.Sprintf("%s/company/%d/clients/%d/comments", e.url, loc, target), bytes.NewBufferString(body))
			mustNoErr(t, "NewRequest", err)
			req.Header.Set("Accept", mediaTypeV2)
			req.Header.Set("Authorization", "Bearer "+ctPartner+", User "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			mustNoErr(t, "POST comment", err)
			var env struct {
				Success bool `json:"success"`
				Meta    struct {
					Message string `json:"message"`
					Errors  []struct {
						Field   string `json:"field"`
						Message string `json:"message"`
					} `json:"errors"`
				} `json:"meta"`
			}
			err = json.NewDecoder(resp.Body).Decode(&env)
			_ = resp.Body.Close()
			mustNoErr(t, "decode 422", err)
			if resp.StatusCode != http.StatusUnprocessableEntity || env.Success || env.Meta.Message == "" ||
				len(env.Meta.Errors) != 1 || env.Meta.Errors[0].Field != "text" {
				t.Errorf("body %s: status %d, envelope %+v; want 422 with meta.errors for text (ref §3)", body, resp.StatusCode, env)
			}
		}
		if got := e.sb.Comments(loc, target); len(got) != 0 {
			t.Errorf("comments stored: %+v", got)
		}
	})
}

// wantStatus checks the recorded answer's status.
func wantStatus(status int) func(t *testing.T, got recordedCall) {
	return func(t *testing.T, got recordedCall) {
		t.Helper()
		if got.Status != status {
			t.Errorf("%s %s answered %d, want %d (body %s)", got.Method, got.Path, got.Status, status, got.RespBody)
		}
	}
}
