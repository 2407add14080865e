package altegio_test

// Contract tests: the real client (package altegio) against the real
// sandbox (package sandbox), two independent implementations of
// shared/reference/altegio-api.md ("ref §N" below), talking HTTP over
// loopback. This file holds the shared helpers and the per-endpoint suite;
// contract_errors_test.go covers every error class and
// contract_shape_test.go checks the bytes on the wire against the reference.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

const (
	ctPartner      = "partner-token"
	ctLogin        = "owner"
	ctEmail        = "owner@example.com"
	ctPhone        = "+1 315 555 0100"
	ctPassword     = "s3cret"
	ctToken        = "owner-token"
	ctUserID       = int64(42)
	ct2FALogin     = "twofactor@example.com"
	ctLimitedLogin = "limited@example.com"
	ctLimitedToken = "limited-token"

	ctLoc      = int64(101)
	ctOtherLoc = int64(202)

	mediaTypeV2 = "application/vnd.api.v2+json"
)

// contractEnv is one fresh sandbox and a client pointed at it.
type contractEnv struct {
	sb     *sandbox.Server
	url    string // base URL the client uses, ending in /api/v1
	client *altegio.Client
	rec    *recorder // nil unless the env records requests
}

// contractConfig is the sandbox configuration every test starts from:
// an owner with a fixed token, a 2FA user and a user limited to ctLoc.
// The rate limit is off unless a test turns it on.
func contractConfig() sandbox.Config {
	return sandbox.Config{
		PartnerToken: ctPartner,
		Users: []sandbox.User{
			{Login: ctLogin, Password: ctPassword, Token: ctToken, ID: ctUserID, Name: "Owner", Email: ctEmail, Phone: ctPhone},
			{Login: ct2FALogin, Password: ctPassword, TwoFactor: true, Phone: "+1 315 555 0101"},
			{Login: ctLimitedLogin, Password: ctPassword, Token: ctLimitedToken, Locations: []int64{ctLoc}},
		},
		RatePerSecond: -1,
		RatePerMinute: -1,
	}
}

// newEnv starts a sandbox (testenv.Sandbox) and a client with the owner's
// static token. mutate adjusts the sandbox configuration.
func newEnv(t *testing.T, mutate ...func(*sandbox.Config)) *contractEnv {
	t.Helper()
	cfg := contractConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	sb, url := testenv.Sandbox(t, cfg)
	e := &contractEnv{sb: sb, url: url}
	e.client = e.newClient(t, altegio.StaticAuthorizer{PartnerToken: ctPartner, UserToken: ctToken})
	return e
}

// newRecordedEnv is newEnv with a recording HTTP server in front of the
// sandbox handler: the client talks to the recorder, which keeps every
// request and response and hands the request to the sandbox.
func newRecordedEnv(t *testing.T, mutate ...func(*sandbox.Config)) *contractEnv {
	t.Helper()
	e := newEnv(t, mutate...)
	e.rec = &recorder{next: e.sb}
	ts := httptest.NewServer(e.rec)
	t.Cleanup(ts.Close)
	e.url = ts.URL + sandbox.BasePath
	e.client = e.newClient(t, altegio.StaticAuthorizer{PartnerToken: ctPartner, UserToken: ctToken})
	return e
}

// newClient returns a client of the env's base URL with auth and no limiter.
func (e *contractEnv) newClient(t *testing.T, auth altegio.Authorizer) *altegio.Client {
	t.Helper()
	c, err := altegio.New(altegio.Config{BaseURL: e.url, Timeout: 10 * time.Second}, auth, nil)
	if err != nil {
		t.Fatalf("altegio.New: %v", err)
	}
	return c
}

// seedClient stores a client in the sandbox and returns its ID.
func (e *contractEnv) seedClient(t *testing.T, loc int64, c sandbox.ClientRecord) int64 {
	t.Helper()
	return e.sb.SeedClient(loc, c)
}

// fullClient is a client card with every writable field set (ref §6.1).
func fullClient(phone string) sandbox.ClientRecord {
	return sandbox.ClientRecord{
		Name: "James", Surname: "Smith", MiddleName: "A", Phone: phone, Email: "j.smith@example.com",
		GenderID: 1, ImportanceID: 3, Discount: 10, Card: "123456789", BirthDate: "1990-04-03",
		Comment: "regular", SMSCheck: 1, SMSNot: 0, Spent: 71842, Balance: -200, Paid: 500, Visits: 34,
		Categories:   []int64{3, 5},
		CustomFields: map[string]string{"vip_note": "prefers mornings"},
	}
}

// loginAuthorizer logs in through Client.Login on first use and again,
// single-flight, when a call reports a 401 (ref §2.2: treat any 401 as
// "re-login needed").
type loginAuthorizer struct {
	api                      *altegio.Client // used for Login only
	partner, login, password string

	mu    sync.Mutex
	creds altegio.Credentials
}

func (a *loginAuthorizer) Credentials(ctx context.Context, _ int64) (altegio.Credentials, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.creds.UserToken == "" {
		return a.loginLocked(ctx)
	}
	return a.creds, nil
}

func (a *loginAuthorizer) Refresh(ctx context.Context, _ int64, rejected altegio.Credentials) (altegio.Credentials, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.creds.UserToken != "" && a.creds.Version != rejected.Version {
		return a.creds, nil // another call already replaced the rejected token
	}
	return a.loginLocked(ctx)
}

func (a *loginAuthorizer) loginLocked(ctx context.Context) (altegio.Credentials, error) {
	res, err := a.api.Login(ctx, a.partner, a.login, a.password)
	if err != nil {
		return altegio.Credentials{}, err
	}
	a.creds = altegio.Credentials{PartnerToken: a.partner, UserToken: res.UserToken, Version: a.creds.Version + 1}
	return a.creds, nil
}

// newLoginClient returns a client whose authorizer logs in as the owner.
func (e *contractEnv) newLoginClient(t *testing.T) *altegio.Client {
	t.Helper()
	a := &loginAuthorizer{partner: ctPartner, login: ctLogin, password: ctPassword}
	c := e.newClient(t, a)
	a.api = c
	return c
}

// recordedCall is one exchange seen by the recorder.
type recordedCall struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
	Status                 int
	RespBody               []byte
}

// recorder is an http.Handler that records each request and its answer
// and passes the request on to next.
type recorder struct {
	next http.Handler

	mu    sync.Mutex
	calls []recordedCall
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	rw := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
	r.next.ServeHTTP(rw, req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, recordedCall{
		Method: req.Method, Path: req.URL.Path, RawQuery: req.URL.RawQuery,
		Header: req.Header.Clone(), Body: body,
		Status: rw.status, RespBody: rw.body.Bytes(),
	})
}

// since returns the calls recorded after the first n.
func (r *recorder) since(n int) []recordedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls[n:])
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// recordingWriter keeps the status and body; Unwrap lets the sandbox hijack
// the connection (resets) and flush (slow bodies) through it.
type recordingWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *recordingWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// categoryIDs returns the tag IDs of a card.
func categoryIDs(cats []altegio.Category) []int64 {
	out := make([]int64, 0, len(cats))
	for _, c := range cats {
		out = append(out, c.ID)
	}
	return out
}

func rowIDs(rows []altegio.ClientRow) []int64 {
	out := make([]int64, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

func recordIDs(recs []altegio.ClientRecord) []int64 {
	out := make([]int64, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func sorted(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// mustNoErr fails the test when err is not nil.
func mustNoErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantNotFound checks that err is the API's 404, classified permanent.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	var ae *altegio.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || !errors.Is(err, altegio.ErrNotFound) {
		t.Fatalf("%s: got error %v, want a 404 *APIError wrapping ErrNotFound", what, err)
	}
	if got, want := altegio.ClassOf(err), altegio.ClassPermanent; got != want {
		t.Errorf("%s: ClassOf = %v, want %v", what, got, want)
	}
}

func TestContractEndpoints(t *testing.T) {
	t.Run("get client card", func(t *testing.T) {
		e := newEnv(t)
		changed := time.Date(2026, 2, 1, 17, 0, 0, 0, time.UTC)
		seed := fullClient("13155550178")
		seed.LastChangeDate = changed
		id := e.seedClient(t, ctLoc, seed)

		got, err := e.client.GetClient(t.Context(), ctLoc, id)
		mustNoErr(t, "GetClient", err)
		want := altegio.ClientRecord{
			ID: id, Name: "James", Surname: "Smith", MiddleName: "A", Phone: "13155550178",
			Email: "j.smith@example.com", Card: "123456789", BirthDate: "1990-04-03", Comment: "regular",
			GenderID: 1, Gender: "Male", ImportanceID: 3, Importance: "Gold", Discount: 10,
			Visits: 34, Spent: 71842, Balance: -200, SMSCheck: 1,
			Categories: []altegio.Category{
				{ID: 3, Title: "Tag 3", Color: "#bfd4f2"},
				{ID: 5, Title: "Tag 5", Color: "#bfd4f2"},
			},
			CustomFields:   map[string]any{"vip_note": "prefers mornings"},
			LastChangeDate: "2026-02-01T17:00:00+0000",
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetClient:\n got %+v\nwant %+v", got, want)
		}
		ts, err := altegio.ParseTime(got.LastChangeDate)
		if err != nil || !ts.Equal(changed) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", got.LastChangeDate, ts, err, changed)
		}
	})

	t.Run("update is read-merge-PUT and keeps untouched fields", func(t *testing.T) {
		e := newEnv(t)
		id := e.seedClient(t, ctLoc, fullClient("13155550178"))
		before, err := e.client.GetClient(t.Context(), ctLoc, id)
		mustNoErr(t, "GetClient", err)

		in := before.Input()
		in.Email = new("new@example.com")
		in.Categories = append(in.Categories, 9)
		got, err := e.client.UpdateClient(t.Context(), ctLoc, id, in)
		mustNoErr(t, "UpdateClient", err)

		want := before
		want.Email = "new@example.com"
		want.Categories = append(slices.Clone(before.Categories), altegio.Category{ID: 9, Title: "Tag 9", Color: "#bfd4f2"})
		want.LastChangeDate = got.LastChangeDate
		if !reflect.DeepEqual(got, want) {
			t.Errorf("UpdateClient answer:\n got %+v\nwant %+v", got, want)
		}
		stored, ok := e.sb.Client(ctLoc, id)
		if !ok {
			t.Fatalf("client %d is gone from the sandbox", id)
		}
		wantStored := fullClient("13155550178")
		wantStored.ID = id
		wantStored.Email = "new@example.com"
		wantStored.Categories = []int64{3, 5, 9}
		wantStored.LastChangeDate = stored.LastChangeDate
		if !reflect.DeepEqual(stored, wantStored) {
			t.Errorf("sandbox state after PUT:\n got %+v\nwant %+v", stored, wantStored)
		}
		reread, err := e.client.GetClient(t.Context(), ctLoc, id)
		mustNoErr(t, "GetClient after PUT", err)
		if !reflect.DeepEqual(reread, got) {
			t.Errorf("GetClient after PUT:\n got %+v\nwant %+v", reread, got)
		}
	})

	t.Run("update without merge clears omitted fields", func(t *testing.T) {
		// ref §6.2, §9.8: whether PUT clears omitted fields is unknown; the
		// sandbox clears them, which is why the client offers Input().
		e := newEnv(t)
		id := e.seedClient(t, ctLoc, fullClient("13155550178"))
		got, err := e.client.UpdateClient(t.Context(), ctLoc, id, altegio.ClientInput{Name: "James", Phone: "13155550178"})
		mustNoErr(t, "UpdateClient", err)
		if got.Surname != "" || got.Categories != nil || got.CustomFields != nil || got.BirthDate != "" {
			t.Errorf("bare PUT kept fields: %+v", got)
		}
		if got.Visits != 34 {
			t.Errorf("Visits = %d, want 34 (read-only, kept)", got.Visits)
		}
	})

	t.Run("delete answers 204 and then get is not found", func(t *testing.T) {
		e := newEnv(t)
		id := e.seedClient(t, ctLoc, fullClient("13155550178"))
		_, ok := e.sb.SeedComment(ctLoc, sandbox.Comment{ClientID: id, Text: "note"})
		if !ok {
			t.Fatal("SeedComment failed")
		}
		mustNoErr(t, "DeleteClient", e.client.DeleteClient(t.Context(), ctLoc, id))
		if got, want := e.sb.Stats().ByStatus[http.StatusNoContent], 1; got != want {
			t.Errorf("204 answers = %d, want %d", got, want)
		}
		if _, ok := e.sb.Client(ctLoc, id); ok {
			t.Error("client still in the sandbox after DeleteClient")
		}
		_, err := e.client.GetClient(t.Context(), ctLoc, id)
		wantNotFound(t, "GetClient after delete", err)
		wantNotFound(t, "DeleteClient again", e.client.DeleteClient(t.Context(), ctLoc, id))
		_, err = e.client.ListComments(t.Context(), ctLoc, id)
		wantNotFound(t, "ListComments of a deleted client", err)
	})

	t.Run("create answers 201 with phone as a number", func(t *testing.T) {
		e := newEnv(t)
		in := altegio.ClientInput{
			Name: "James", Phone: "+1 (315) 555-0179", Surname: new("Smith"), MiddleName: new("J"),
			Email: new("j.smith@example.com"), GenderID: new(1), ImportanceID: new(1), Discount: new(15.0),
			Card: new("555888666"), BirthDate: new("2000-03-03"), Comment: new("vip"),
			Spent: new(1000.0), Balance: new(-1200.0), SMSCheck: new(0), SMSNot: new(1),
			Categories:   []int64{101, 102},
			CustomFields: map[string]any{"key-1": "value-1"},
		}
		got, err := e.client.CreateClient(t.Context(), ctLoc, in)
		mustNoErr(t, "CreateClient", err)
		if got.ID <= 0 {
			t.Fatalf("created ID = %d", got.ID)
		}
		if got.Phone != "13155550179" {
			t.Errorf("Phone = %q, want the JSON number decoded as %q", got.Phone, "13155550179")
		}
		// The create sample sends birth_date as a unix-timestamp string
		// (ref §6.4); the client turns it back into a date.
		if got.BirthDate != "2000-03-03" {
			t.Errorf("BirthDate = %q, want %q", got.BirthDate, "2000-03-03")
		}
		if got, want := categoryIDs(got.Categories), []int64{101, 102}; !slices.Equal(got, want) {
			t.Errorf("Categories = %v, want %v", got, want)
		}
		if got.Surname != "Smith" || got.MiddleName != "J" || got.Gender != "Male" || got.Importance != "Bronze" ||
			got.Discount != 15 || got.Card != "555888666" || got.SMSNot != 1 || got.Spent != 1000 || got.Balance != -1200 ||
			got.CustomFields["key-1"] != "value-1" {
			t.Errorf("created card = %+v", got)
		}
		stored, ok := e.sb.Client(ctLoc, got.ID)
		if !ok {
			t.Fatalf("created client %d not in the sandbox", got.ID)
		}
		if stored.Phone != "13155550179" || stored.BirthDate != "2000-03-03" || !slices.Equal(stored.Categories, []int64{101, 102}) ||
			stored.CustomFields["key-1"] != "value-1" {
			t.Errorf("sandbox state = %+v", stored)
		}
		if got, want := e.sb.Stats().ByStatus[http.StatusCreated], 1; got != want {
			t.Errorf("201 answers = %d, want %d", got, want)
		}
	})

	t.Run("create with a leading-zero phone", func(t *testing.T) {
		// A JSON number cannot carry leading zeros: the API echoes the phone
		// without them and the client compares with NormalizePhone.
		e := newEnv(t)
		got, err := e.client.CreateClient(t.Context(), ctLoc, altegio.ClientInput{Name: "Zoe", Phone: "07700 900123"})
		mustNoErr(t, "CreateClient", err)
		if got, want := altegio.NormalizePhone(got.Phone), altegio.NormalizePhone("07700 900123"); got != want {
			t.Errorf("echoed phone %q, want it to normalize to %q", got, want)
		}
		card, err := e.client.GetClient(t.Context(), ctLoc, got.ID)
		mustNoErr(t, "GetClient", err)
		if card.Phone != "07700900123" {
			t.Errorf("card phone = %q, want %q (a string keeps the zero)", card.Phone, "07700900123")
		}
	})

	t.Run("bulk create matches created and errors back to inputs", func(t *testing.T) {
		e := newEnv(t)
		e.seedClient(t, ctLoc, sandbox.ClientRecord{Name: "Existing", Phone: "79213237567"})
		inputs := []altegio.ClientInput{
			0: {Name: "James", Surname: new("Smith"), Phone: "+7 921 323-75-67"},                       // duplicate of a stored client
			1: {Name: "", Phone: "721828834101"},                                                       // missing name
			2: {Name: "Ann", Surname: new("Lee"), Phone: "+7 921 000 00 01", Categories: []int64{101}}, // created
			3: {Name: "James", Surname: new("Smith"), Phone: "123"},                                    // bad phone
			4: {Name: "Theodore", Surname: new("Hicks"), Phone: ""},                                    // missing phone
			5: {Name: "Bob", Phone: "79210000004"},                                                     // created
			6: {Name: "Twin", Phone: "7 921 000 00 04"},                                                // duplicate within the batch
			7: {Name: "Zoe", Phone: "07700 900123"},                                                    // created, echoed without the zero
		}
		res, err := e.client.BulkCreateClients(t.Context(), ctLoc, inputs)
		mustNoErr(t, "BulkCreateClients", err)
		want := []altegio.BulkOutcome{
			altegio.BulkFailed, altegio.BulkFailed, altegio.BulkCreated, altegio.BulkFailed,
			altegio.BulkFailed, altegio.BulkCreated, altegio.BulkFailed, altegio.BulkCreated,
		}
		if len(res.Items) != len(inputs) {
			t.Fatalf("Items = %d, want %d", len(res.Items), len(inputs))
		}
		for i, it := range res.Items {
			if it.Index != i || it.Outcome != want[i] {
				t.Errorf("item %d: index %d outcome %v, want index %d outcome %v", i, it.Index, it.Outcome, i, want[i])
				continue
			}
			switch it.Outcome {
			case altegio.BulkCreated:
				if it.Client == nil || altegio.NormalizePhone(it.Client.Phone) != altegio.NormalizePhone(inputs[i].Phone) {
					t.Errorf("item %d: created card %+v does not carry the input phone", i, it.Client)
					continue
				}
				stored, ok := e.sb.Client(ctLoc, it.Client.ID)
				if !ok || stored.Name != inputs[i].Name {
					t.Errorf("item %d: sandbox has %+v (found %v), want name %q", i, stored, ok, inputs[i].Name)
				}
			case altegio.BulkFailed:
				if it.Error == nil || it.Error.Message == "" {
					t.Errorf("item %d: failed without a message: %+v", i, it.Error)
				}
			}
		}
		if got := res.Items[2].Client; got != nil && !slices.Equal(categoryIDs(got.Categories), []int64{101}) {
			t.Errorf("item 2 categories = %v, want [101]", categoryIDs(got.Categories))
		}
		if len(res.UnmatchedCreated) != 0 || len(res.UnmatchedErrors) != 0 || len(res.Unmatched()) != 0 {
			t.Errorf("unmatched: created %v, errors %v, inputs %v", res.UnmatchedCreated, res.UnmatchedErrors, res.Unmatched())
		}
		if got, want := len(e.sb.Clients(ctLoc)), 1+3; got != want {
			t.Errorf("sandbox holds %d clients, want %d", got, want)
		}
	})

	t.Run("search", func(t *testing.T) {
		e := newEnv(t)
		anna := e.seedClient(t, ctLoc, sandbox.ClientRecord{Name: "Anna", Surname: "Smith", Phone: "79990000001", Email: "anna@example.com", Discount: 5})
		annaB := e.seedClient(t, ctLoc, sandbox.ClientRecord{Name: "Anna", Surname: "Brown", Phone: "79990000002"})
		boris := e.seedClient(t, ctLoc, sandbox.ClientRecord{Name: "Boris", Surname: "Ivanov", Phone: "79990000003", Card: "CARD-777"})
		all := []int64{anna, annaB, boris}
		for i := range 27 {
			all = append(all, e.seedClient(t, ctLoc, sandbox.ClientRecord{Name: "Filler", Surname: fmt.Sprintf("%02d", i), Phone: fmt.Sprintf("7999100%04d", i)}))
		}
		e.seedClient(t, ctOtherLoc, sandbox.ClientRecord{Name: "Anna", Surname: "Elsewhere", Phone: "79990000009"})

		tests := []struct {
			name      string
			req       altegio.SearchClientsRequest
			wantIDs   []int64 // in order
			wantTotal int
			wantCols  []string
		}{
			{"quick search by name", altegio.SearchClientsRequest{Filters: []altegio.SearchFilter{altegio.QuickSearchFilter("anna")}},
				[]int64{anna, annaB}, 2, []string{"id", "name", "phone"}},
			{"quick search by phone", altegio.SearchClientsRequest{Filters: []altegio.SearchFilter{altegio.QuickSearchFilter("+7 999 000-00-03")}},
				[]int64{boris}, 1, nil},
			{"quick search by card", altegio.SearchClientsRequest{Filters: []altegio.SearchFilter{altegio.QuickSearchFilter("card-777")}},
				[]int64{boris}, 1, nil},
			{"id filter", altegio.SearchClientsRequest{Filters: []altegio.SearchFilter{altegio.IDFilter(boris, anna)}},
				[]int64{anna, boris}, 2, nil},
			{"id and quick search with OR", altegio.SearchClientsRequest{Operation: "OR",
				Filters: []altegio.SearchFilter{altegio.IDFilter(boris), altegio.QuickSearchFilter("brown")}},
				[]int64{annaB, boris}, 2, nil},
			{"id and quick search with AND", altegio.SearchClientsRequest{
				Filters: []altegio.SearchFilter{altegio.IDFilter(boris), altegio.QuickSearchFilter("brown")}},
				[]int64{}, 0, nil},
			{"projected columns", altegio.SearchClientsRequest{Fields: []string{"id", "email", "discount"},
				Filters: []altegio.SearchFilter{altegio.IDFilter(anna)}},
				[]int64{anna}, 1, []string{"discount", "email", "id"}},
			{"order by name", altegio.SearchClientsRequest{OrderBy: "name",
				Filters: []altegio.SearchFilter{altegio.QuickSearchFilter("anna")}},
				[]int64{annaB, anna}, 2, nil},
			{"order by name descending", altegio.SearchClientsRequest{OrderBy: "name", OrderByDirection: "DESC",
				Filters: []altegio.SearchFilter{altegio.QuickSearchFilter("anna")}},
				[]int64{anna, annaB}, 2, nil},
			{"page 2 of 10", altegio.SearchClientsRequest{Page: 2, PageSize: 10, OrderBy: "id"},
				all[10:20], 30, nil},
			{"page past the end", altegio.SearchClientsRequest{Page: 4, PageSize: 10},
				[]int64{}, 30, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := e.client.SearchClients(t.Context(), ctLoc, tt.req)
				mustNoErr(t, "SearchClients", err)
				if ids := rowIDs(got.Clients); !slices.Equal(ids, tt.wantIDs) {
					t.Errorf("IDs = %v, want %v", ids, tt.wantIDs)
				}
				if got.TotalCount != tt.wantTotal {
					t.Errorf("TotalCount = %d, want %d", got.TotalCount, tt.wantTotal)
				}
				if tt.wantCols != nil && len(got.Clients) > 0 {
					var cols []string
					for k := range got.Clients[0].Columns {
						cols = append(cols, k)
					}
					sort.Strings(cols)
					if !slices.Equal(cols, tt.wantCols) {
						t.Errorf("columns = %v, want %v", cols, tt.wantCols)
					}
				}
			})
		}

		t.Run("row values", func(t *testing.T) {
			got, err := e.client.SearchClients(t.Context(), ctLoc, altegio.SearchClientsRequest{
				Fields:  []string{"id", "name", "phone", "email", "discount"},
				Filters: []altegio.SearchFilter{altegio.IDFilter(anna)},
			})
			mustNoErr(t, "SearchClients", err)
			if len(got.Clients) != 1 {
				t.Fatalf("rows = %d, want 1", len(got.Clients))
			}
			row := got.Clients[0]
			if row.Name != "Anna Smith" || row.Phone != "79990000001" || row.Email != "anna@example.com" || row.Discount != 5 {
				t.Errorf("row = %+v", row)
			}
		})

		t.Run("every page via total_count", func(t *testing.T) {
			var seen []int64
			for page := 1; ; page++ {
				got, err := e.client.SearchClients(t.Context(), ctLoc, altegio.SearchClientsRequest{Page: page, PageSize: 7})
				mustNoErr(t, "SearchClients", err)
				seen = append(seen, rowIDs(got.Clients)...)
				if page*7 >= got.TotalCount {
					break
				}
				if page > 10 {
					t.Fatal("paging does not end")
				}
			}
			if !slices.Equal(seen, all) {
				t.Errorf("paged IDs = %v, want %v", seen, all)
			}
		})
	})

	t.Run("deprecated list", func(t *testing.T) {
		e := newEnv(t)
		day := func(d int) time.Time { return time.Date(2026, 1, d, 12, 0, 0, 0, time.UTC) }
		var ids []int64
		for i, paid := range []float64{0, 100, 250, 0, 900} {
			ids = append(ids, e.seedClient(t, ctLoc, sandbox.ClientRecord{
				Name: fmt.Sprintf("Client%d", i), Surname: "Doe", MiddleName: "Q", Phone: fmt.Sprintf("7999200000%d", i),
				GenderID: 2, Paid: paid, Categories: []int64{7}, CustomFields: map[string]string{"k": "v"},
				LastChangeDate: day(i + 1),
			}))
		}
		tests := []struct {
			name      string
			params    altegio.ListClientsParams
			wantIDs   []int64
			wantTotal int
		}{
			{"first page", altegio.ListClientsParams{Page: 1, Count: 2}, ids[:2], 5},
			{"last page", altegio.ListClientsParams{Page: 3, Count: 2}, ids[4:], 5},
			{"one id", altegio.ListClientsParams{IDs: []int64{ids[3]}}, ids[3:4], 1},
			{"several ids", altegio.ListClientsParams{IDs: []int64{ids[4], ids[1]}}, []int64{ids[1], ids[4]}, 2},
			// ref §6.7 trap: paid_min alone reads paid_max as 0; the client
			// sends an unbounded paid_max.
			{"paid_min alone", altegio.ListClientsParams{PaidMin: new(200.0)}, []int64{ids[2], ids[4]}, 2},
			{"paid range", altegio.ListClientsParams{PaidMin: new(50.0), PaidMax: new(300.0)}, []int64{ids[1], ids[2]}, 2},
			{"changed after", altegio.ListClientsParams{ChangedAfter: day(3).Add(-time.Hour)}, ids[2:], 3},
			{"changed window", altegio.ListClientsParams{ChangedAfter: day(2), ChangedBefore: day(3)}, ids[1:3], 2},
			{"phone substring", altegio.ListClientsParams{Phone: "9992000003"}, ids[3:4], 1},
			// ref §6.7 trap: a filter that matches nobody is dropped and the
			// unfiltered list comes back; callers must check the rows.
			{"filter matching nobody is dropped", altegio.ListClientsParams{Fullname: "nobody"}, ids, 5},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := e.client.ListClientsDeprecated(t.Context(), ctLoc, tt.params)
				mustNoErr(t, "ListClientsDeprecated", err)
				if ids := recordIDs(got.Clients); !slices.Equal(ids, tt.wantIDs) {
					t.Errorf("IDs = %v, want %v", ids, tt.wantIDs)
				}
				if got.TotalCount != tt.wantTotal {
					t.Errorf("TotalCount = %d, want %d", got.TotalCount, tt.wantTotal)
				}
				wantPage := max(tt.params.Page, 1)
				if got.Page != wantPage {
					t.Errorf("Page = %d, want %d", got.Page, wantPage)
				}
			})
		}

		t.Run("full legacy cards", func(t *testing.T) {
			got, err := e.client.ListClientsDeprecated(t.Context(), ctLoc, altegio.ListClientsParams{IDs: []int64{ids[4]}})
			mustNoErr(t, "ListClientsDeprecated", err)
			if len(got.Clients) != 1 {
				t.Fatalf("rows = %d, want 1", len(got.Clients))
			}
			c := got.Clients[0]
			// The list uses patronymic, sex_id and sex (ref §6.1, §8).
			// birth_date is 0 there when unset (ref §6.1).
			if c.MiddleName != "Q" || c.GenderID != 2 || c.Gender != "Female" || c.Paid != 900 || c.BirthDate != "" ||
				c.Phone != "79992000004" || !slices.Equal(categoryIDs(c.Categories), []int64{7}) || c.CustomFields["k"] != "v" {
				t.Errorf("card = %+v", c)
			}
		})
	})

	t.Run("comments list add delete", func(t *testing.T) {
		e := newEnv(t)
		id := e.seedClient(t, ctLoc, fullClient("13155550178"))
		other := e.seedClient(t, ctLoc, sandbox.ClientRecord{Name: "Other", Phone: "13155550199"})
		old := time.Now().Add(-time.Hour)
		seeded, ok := e.sb.SeedComment(ctLoc, sandbox.Comment{ClientID: id, Text: "first", CreateDate: old, UpdateDate: old})
		if !ok {
			t.Fatal("SeedComment failed")
		}

		added, err := e.client.AddComment(t.Context(), ctLoc, id, "Prefers mornings")
		mustNoErr(t, "AddComment", err)
		if added.ID <= 0 || added.Type != "default" || added.Text != "Prefers mornings" ||
			added.User == nil || added.User.ID != ctUserID || added.User.Name != "Owner" {
			t.Errorf("added comment = %+v (user %+v)", added, added.User)
		}
		if _, err := altegio.ParseTime(added.CreateDate); err != nil {
			t.Errorf("create_date %q: %v", added.CreateDate, err)
		}
		// The add answer's meta is {} or [] (both documented, ref §6.8); the
		// sandbox alternates, so a second add sees the other spelling.
		second, err := e.client.AddComment(t.Context(), ctLoc, id, "Second")
		mustNoErr(t, "AddComment (other meta spelling)", err)
		mustNoErr(t, "DeleteComment", e.client.DeleteComment(t.Context(), ctLoc, id, second.ID))

		list, err := e.client.ListComments(t.Context(), ctLoc, id)
		mustNoErr(t, "ListComments", err)
		if got, want := commentIDs(list), []int64{added.ID, seeded}; !slices.Equal(got, want) {
			t.Errorf("comments = %v, want newest first %v", got, want)
		}
		if len(list) == 2 && (list[1].User != nil || list[1].Text != "first") {
			t.Errorf("seeded comment = %+v, want text %q and a null user", list[1], "first")
		}

		wantNotFound(t, "DeleteComment of another client's comment", e.client.DeleteComment(t.Context(), ctLoc, other, added.ID))
		mustNoErr(t, "DeleteComment", e.client.DeleteComment(t.Context(), ctLoc, id, added.ID))
		list, err = e.client.ListComments(t.Context(), ctLoc, id)
		mustNoErr(t, "ListComments", err)
		if got, want := commentIDs(list), []int64{seeded}; !slices.Equal(got, want) {
			t.Errorf("comments after delete = %v, want %v", got, want)
		}
		wantNotFound(t, "DeleteComment again", e.client.DeleteComment(t.Context(), ctLoc, id, added.ID))
		empty, err := e.client.ListComments(t.Context(), ctLoc, other)
		mustNoErr(t, "ListComments of a client without comments", err)
		if len(empty) != 0 {
			t.Errorf("comments of other = %v, want none", empty)
		}
	})

	t.Run("files list delete", func(t *testing.T) {
		e := newEnv(t)
		id := e.seedClient(t, ctLoc, fullClient("13155550178"))
		t1 := time.Now().Add(-2 * time.Hour)
		txt, ok1 := e.sb.SeedFile(ctLoc, sandbox.File{ClientID: id, Name: "test.txt", Mime: "text/plain", Size: 9, UserName: "Victor Sitnikov", CreateDate: t1})
		pdf, ok2 := e.sb.SeedFile(ctLoc, sandbox.File{ClientID: id, Name: "scan.pdf", Mime: "application/pdf", Size: 98970, UserName: "Victor Sitnikov", CreateDate: t1.Add(time.Hour)})
		if !ok1 || !ok2 {
			t.Fatal("SeedFile failed")
		}

		files, err := e.client.ListFiles(t.Context(), ctLoc, id)
		mustNoErr(t, "ListFiles", err)
		if len(files) != 2 {
			t.Fatalf("files = %+v, want 2", files)
		}
		link := fmt.Sprintf("/client_files/download/%d/%d/", ctLoc, pdf)
		want := altegio.ClientFile{
			ID: pdf, ClientID: id, Name: "scan.pdf", Extension: "pdf", Mime: "application/pdf",
			Link: link, FullLink: "https://app.alteg.io" + link, UserName: "Victor Sitnikov",
			UserAvatar: "/images/no-master.png", Size: "96.65 KB", DateCreate: files[0].DateCreate,
		}
		if !reflect.DeepEqual(files[0], want) {
			t.Errorf("newest file:\n got %+v\nwant %+v", files[0], want)
		}
		if files[1].ID != txt || files[1].Size != "9 B" || files[1].Extension != "txt" {
			t.Errorf("older file = %+v", files[1])
		}

		mustNoErr(t, "DeleteFile", e.client.DeleteFile(t.Context(), ctLoc, id, txt))
		if got, want := e.sb.Stats().ByStatus[http.StatusAccepted], 1; got != want {
			t.Errorf("202 answers = %d, want %d", got, want)
		}
		files, err = e.client.ListFiles(t.Context(), ctLoc, id)
		mustNoErr(t, "ListFiles after delete", err)
		if len(files) != 1 || files[0].ID != pdf {
			t.Errorf("files after delete = %+v, want only %d", files, pdf)
		}
		wantNotFound(t, "DeleteFile again", e.client.DeleteFile(t.Context(), ctLoc, id, txt))

		// ref §6.8: the comment list holds the upload history, and deleting a
		// file leaves its comment.
		comments, err := e.client.ListComments(t.Context(), ctLoc, id)
		mustNoErr(t, "ListComments", err)
		if len(comments) != 2 {
			t.Fatalf("comments = %+v, want the 2 upload records", comments)
		}
		for _, c := range comments {
			if c.Type != "file" || c.Text != "" || len(c.Files) != 1 {
				t.Errorf("upload comment = %+v", c)
			}
		}
		if got := comments[1].Files[0]; got.Filename != "test.txt" || got.Link != fmt.Sprintf("/client_files/download/%d/%d/", ctLoc, txt) {
			t.Errorf("upload record of the deleted file = %+v", got)
		}
	})

	t.Run("visits search pages by date cursor", func(t *testing.T) {
		e := newEnv(t)
		id := e.seedClient(t, ctLoc, sandbox.ClientRecord{Name: "Visitor", Phone: "+7 999 300 00 01"})
		other := e.seedClient(t, ctLoc, sandbox.ClientRecord{Name: "Other", Phone: "79993000002"})
		base := time.Date(2026, 3, 31, 10, 0, 0, 0, time.UTC)
		var all []int64
		paidArrived := 0
		seed := func(client int64, at time.Time, i int) int64 {
			v := sandbox.Visit{ClientID: client, Date: at, Comment: fmt.Sprintf("visit %d", i),
				ServiceID: 1, ServiceTitle: "Haircut", Cost: 100, StaffID: 9, StaffName: "Kate"}
			if i%10 == 0 {
				v.PaymentStatus, v.Attendance = altegio.PaymentPaidFull, 1
			}
			vid, ok := e.sb.SeedVisit(ctLoc, v)
			if !ok {
				t.Fatal("SeedVisit failed")
			}
			return vid
		}
		// 40 days with one visit each, and two more on the 25th newest day,
		// so the first page must grow past 25 to keep that day together.
		for i := range 40 {
			at := base.AddDate(0, 0, -i)
			all = append(all, seed(id, at, i))
			if i%10 == 0 {
				paidArrived++
			}
			if i == 24 {
				all = append(all, seed(id, at.Add(time.Hour), 101), seed(id, at.Add(2*time.Hour), 102))
			}
		}
		seed(other, base, 1)

		req := altegio.VisitSearchRequest{ClientID: id}
		var seen []int64
		var sizes []int
		var lastDate string
		for page := 0; ; page++ {
			if page > 5 {
				t.Fatal("paging does not end")
			}
			res, err := e.client.SearchVisits(t.Context(), ctLoc, req)
			mustNoErr(t, "SearchVisits", err)
			sizes = append(sizes, len(res.Records))
			if res.Cursor.Current.Count != len(res.Records) {
				t.Errorf("page %d: current.count = %d, records = %d", page, res.Cursor.Current.Count, len(res.Records))
			}
			if page > 0 && res.Cursor.Previous.Count != sizes[0] {
				t.Errorf("page %d: previous.count = %d, want %d", page, res.Cursor.Previous.Count, sizes[0])
			}
			for _, r := range res.Records {
				seen = append(seen, r.ID)
				if lastDate != "" && r.Date > lastDate {
					t.Errorf("visit %d on %s comes after %s: not newest first", r.ID, r.Date, lastDate)
				}
				lastDate = r.Date
				if len(r.Services) != 1 || r.Services[0].Title != "Haircut" || r.Staff.Name != "Kate" || r.Company.ID != ctLoc {
					t.Errorf("visit record = %+v", r)
				}
			}
			next, ok := res.NextRequest(req)
			if !ok {
				if res.Cursor.Next != (altegio.DateWindow{}) {
					t.Errorf("last page: next = %+v, want null bounds", res.Cursor.Next)
				}
				break
			}
			if next.From == "" || next.To == "" || next.ClientID != id {
				t.Errorf("next request = %+v", next)
			}
			req = next
		}
		if want := []int{27, 15}; !slices.Equal(sizes, want) {
			t.Errorf("page sizes = %v, want %v", sizes, want)
		}
		if !slices.Equal(sorted(seen), sorted(all)) {
			t.Errorf("visits seen = %v, want each of %v once", seen, all)
		}

		t.Run("by phone with filters", func(t *testing.T) {
			res, err := e.client.SearchVisits(t.Context(), ctLoc, altegio.VisitSearchRequest{
				ClientPhone: "+7 (999) 300-00-01", PaymentStatuses: []string{altegio.PaymentPaidFull}, Attendance: new(1),
			})
			mustNoErr(t, "SearchVisits", err)
			if len(res.Records) != paidArrived || res.Cursor.HasNext() {
				t.Errorf("records = %d (next %+v), want %d on one page", len(res.Records), res.Cursor.Next, paidArrived)
			}
			for _, r := range res.Records {
				if r.Attendance != 1 || r.Services[0].PaymentStatus != altegio.PaymentPaidFull || r.Services[0].PaidSum != 100 {
					t.Errorf("record = %+v", r)
				}
			}
		})

		t.Run("date window", func(t *testing.T) {
			res, err := e.client.SearchVisits(t.Context(), ctLoc, altegio.VisitSearchRequest{ClientID: id, From: "2026-03-29", To: "2026-03-30"})
			mustNoErr(t, "SearchVisits", err)
			if len(res.Records) != 2 || res.Cursor.Previous.Count != 1 || res.Cursor.HasNext() {
				t.Errorf("records = %d, cursor = %+v; want 2 records, 1 newer, no next", len(res.Records), res.Cursor)
			}
		})

		t.Run("unknown client", func(t *testing.T) {
			_, err := e.client.SearchVisits(t.Context(), ctLoc, altegio.VisitSearchRequest{ClientID: 999})
			wantNotFound(t, "SearchVisits", err)
		})
	})

	t.Run("login", func(t *testing.T) {
		e := newEnv(t)
		for _, login := range []string{ctLogin, ctEmail, ctPhone, "13155550100"} {
			t.Run(login, func(t *testing.T) {
				res, err := e.client.Login(t.Context(), ctPartner, login, ctPassword)
				mustNoErr(t, "Login", err)
				if res.UserToken != ctToken || res.UserID != ctUserID || res.Name != "Owner" || res.Login != ctLogin ||
					res.Email != ctEmail || !res.IsApproved || res.TwoFactor != nil {
					t.Errorf("Login(%q) = %+v (token ok %v)", login, res, res.UserToken == ctToken)
				}
			})
		}
		if got, want := e.sb.Stats().Logins, 4; got != want {
			t.Errorf("Stats().Logins = %d, want %d", got, want)
		}
		// The token from /auth works on user endpoints.
		res, err := e.client.Login(t.Context(), ctPartner, ctLogin, ctPassword)
		mustNoErr(t, "Login", err)
		c := e.newClient(t, altegio.StaticAuthorizer{PartnerToken: ctPartner, UserToken: res.UserToken})
		_, err = c.SearchClients(t.Context(), ctLoc, altegio.SearchClientsRequest{})
		mustNoErr(t, "SearchClients with the login token", err)
	})
}

func commentIDs(cs []altegio.Comment) []int64 {
	out := make([]int64, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestContractRefreshAfterRotation(t *testing.T) {
	e := newEnv(t)
	id := e.seedClient(t, ctLoc, fullClient("13155550178"))
	c := e.newLoginClient(t)

	_, err := c.GetClient(t.Context(), ctLoc, id)
	mustNoErr(t, "GetClient (first login)", err)
	if got := e.sb.Stats().Logins; got != 1 {
		t.Fatalf("Logins after first call = %d, want 1", got)
	}

	if _, err := e.sb.RotateUserToken(ctLogin); err != nil {
		t.Fatal(err)
	}
	before := e.sb.Stats()
	got, err := c.GetClient(t.Context(), ctLoc, id)
	mustNoErr(t, "GetClient after rotation", err)
	if got.ID != id {
		t.Errorf("GetClient ID = %d, want %d", got.ID, id)
	}
	after := e.sb.Stats()
	if d := after.Logins - before.Logins; d != 1 {
		t.Errorf("re-logins = %d, want 1", d)
	}
	if d := after.Unauthorized - before.Unauthorized; d != 1 {
		t.Errorf("401 answers = %d, want 1", d)
	}
	if d := after.ByOp[sandbox.OpClientGet] - before.ByOp[sandbox.OpClientGet]; d != 2 {
		t.Errorf("GET /client calls = %d, want 2 (rejected, then retried)", d)
	}

	// Concurrent calls that all hit the rotated token re-login once.
	if _, err := e.sb.RotateUserToken(ctLogin); err != nil {
		t.Fatal(err)
	}
	before = e.sb.Stats()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = c.GetClient(t.Context(), ctLoc, id)
		})
	}
	wg.Wait()
	for i, err := range errs {
		mustNoErr(t, fmt.Sprintf("concurrent GetClient %d", i), err)
	}
	if d := e.sb.Stats().Logins - before.Logins; d != 1 {
		t.Errorf("re-logins for 4 concurrent calls = %d, want 1", d)
	}
}
