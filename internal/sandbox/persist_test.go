package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// stateEnv starts a sandbox that keeps its state in path.
func stateEnv(t *testing.T, path string) *env {
	t.Helper()
	return newEnv(t, func(c *Config) { c.StateFile = path })
}

// reopen makes a new Server from the same config, as a restarted process.
func reopen(t *testing.T, e *env) *Server {
	t.Helper()
	cfg := e.sb.cfg
	sb, err := New(cfg)
	if err != nil {
		t.Fatalf("New from %s: %v", cfg.StateFile, err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	return sb
}

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Records, licence flags, webhook settings and ID counters written through
// the API and the Go methods are all there after a restart, and the next
// IDs are new ones.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sandbox-state.json")
	e := stateEnv(t, path)

	kept := e.createClient(map[string]any{"name": "Ann", "surname": "Lee", "phone": "+1 555 010 0001",
		"email": "ann@example.com", "categories": []int{3}, "custom_fields": map[string]any{"crm": "42"}})
	gone := e.createClient(map[string]any{"name": "Bob", "phone": "15550100002"})
	wantSuccess(t, e.do(http.MethodPost, fmt.Sprintf("/company/4242/clients/%d/comments", kept),
		map[string]any{"text": "prefers mornings"}), http.StatusCreated)
	wantStatus(t, e.do(http.MethodDelete, fmt.Sprintf("/client/4242/%d", gone), nil), http.StatusNoContent)
	wantSuccess(t, e.do(http.MethodPost, "/hooks_settings/4242",
		map[string]any{"urls": []string{"http://127.0.0.1:9/hook"}, "active": 1, "client": 1}), http.StatusCreated)
	if _, ok := e.sb.SeedFile(testLoc, File{ClientID: kept, Name: "card.pdf", Size: 1200}); !ok {
		t.Fatal("SeedFile: no client")
	}
	if _, ok := e.sb.SeedVisit(testLoc, Visit{ClientID: kept, Date: e.clock.Now(), Cost: 50}); !ok {
		t.Fatal("SeedVisit: no client")
	}
	e.sb.SetUnlicensed(7)

	before := e.sb.Clients(testLoc)
	beforeComments := e.sb.Comments(testLoc, kept)
	beforeFiles := e.sb.Files(testLoc, kept)
	beforeSnap := func() stateDoc {
		e.sb.mu.Lock()
		defer e.sb.mu.Unlock()
		return e.sb.snapshotLocked()
	}()

	sb := reopen(t, e)
	if got := sb.Clients(testLoc); !equalJSON(t, got, before) {
		t.Errorf("clients after restart:\n got %+v\nwant %+v", got, before)
	}
	if got := sb.Comments(testLoc, kept); !equalJSON(t, got, beforeComments) || len(got) != 2 {
		t.Errorf("comments after restart (want the text and the upload):\n got %+v\nwant %+v", got, beforeComments)
	}
	if got := sb.Files(testLoc, kept); !equalJSON(t, got, beforeFiles) || len(got) != 1 {
		t.Errorf("files after restart:\n got %+v\nwant %+v", got, beforeFiles)
	}
	if h, ok := sb.HookSettingsOf(testLoc); !ok || !slices.Equal(h.URLs, []string{"http://127.0.0.1:9/hook"}) ||
		h.Flags["active"] != 1 || h.Flags["client"] != 1 || h.WrittenBy != testLogin {
		t.Errorf("hook settings after restart: %+v (found %v)", h, ok)
	}
	if !sb.unlicensed(7) || sb.unlicensed(testLoc) {
		t.Errorf("licences after restart: 7 unlicensed %v, %d unlicensed %v", sb.unlicensed(7), testLoc, sb.unlicensed(testLoc))
	}
	sb.mu.Lock()
	afterSnap := sb.snapshotLocked()
	sb.mu.Unlock()
	if !equalJSON(t, afterSnap, beforeSnap) {
		t.Errorf("state after restart differs:\n got %+v\nwant %+v", afterSnap, beforeSnap)
	}

	// The restarted server answers the API with the same data and hands
	// out IDs above every earlier one, the deleted client's included.
	e.sb = sb
	r := e.do(http.MethodGet, fmt.Sprintf("/client/4242/%d", kept), nil)
	wantSuccess(t, r, http.StatusOK)
	if r.data()["name"] != "Ann" || r.data()["email"] != "ann@example.com" {
		t.Errorf("GET the kept client: %s", r.raw)
	}
	wantStatus(t, e.do(http.MethodGet, fmt.Sprintf("/client/4242/%d", gone), nil), http.StatusNotFound)
	next := e.createClient(map[string]any{"name": "Cid", "phone": "15550100003"})
	if next <= max(kept, gone) {
		t.Errorf("new client id %d, want above %d and %d", next, kept, gone)
	}
	r = e.do(http.MethodPost, fmt.Sprintf("/company/4242/clients/%d/comments", next), map[string]any{"text": "new"})
	wantSuccess(t, r, http.StatusCreated)
	for _, c := range beforeComments {
		if id := int64(r.data()["id"].(float64)); id <= c.ID {
			t.Errorf("new comment id %d, want above %d", id, c.ID)
		}
	}
	// The third generation sees the second's changes.
	third := reopen(t, e)
	if _, ok := third.Client(testLoc, next); !ok {
		t.Errorf("client %d created after the restart is lost at the next one", next)
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"sandbox-state.json"}) {
		t.Errorf("state directory holds %v, want only the state file", got)
	}
}

// equalJSON compares values by their JSON form, which ignores a time's
// location pointer and monotonic reading but not its instant and offset.
func equalJSON(t *testing.T, got, want any) bool {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	return string(g) == string(w)
}

// Every field of every record survives the file: no field is lost to a
// missing or duplicate JSON name.
func TestStateRoundTripsEveryField(t *testing.T) {
	var c ClientRecord
	var cm Comment
	var f File
	var v Visit
	for _, p := range []any{&c, &cm, &f, &v} {
		fillNonZero(t, reflect.ValueOf(p).Elem())
	}
	path := filepath.Join(t.TempDir(), "state.json")
	sb, err := New(Config{PartnerToken: "p", StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	cm.ClientID, f.ClientID, v.ClientID = c.ID, c.ID, c.ID
	sb.mu.Lock()
	l := sb.loc(testLoc)
	l.clients[c.ID], l.comments[cm.ID], l.files[f.ID], l.visits[v.ID] = &c, &cm, &f, &v
	err = sb.saveLocked()
	sb.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}

	again, err := New(Config{PartnerToken: "p", StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Close() })
	gl := again.locations[testLoc]
	for _, pair := range []struct{ got, want any }{
		{gl.clients[c.ID], &c}, {gl.comments[cm.ID], &cm}, {gl.files[f.ID], &f}, {gl.visits[v.ID], &v},
	} {
		if !reflect.DeepEqual(pair.got, pair.want) {
			t.Errorf("after the file:\n got %+v\nwant %+v", pair.got, pair.want)
		}
	}
}

// fillNonZero sets every exported field of v, recursively, to a non-zero
// value of its kind.
func fillNonZero(t *testing.T, v reflect.Value) {
	t.Helper()
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x-" + v.Type().Name())
	case reflect.Int, reflect.Int64:
		v.SetInt(7_000_123)
	case reflect.Float64:
		v.SetFloat(12.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fillNonZero(t, v.Index(0))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillNonZero(t, k)
		fillNonZero(t, e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillNonZero(t, v.Field(i))
			}
		}
	default:
		t.Fatalf("fillNonZero: add kind %s (%s)", v.Kind(), v.Type())
	}
}

// A state file that cannot be read or is not a state document fails New
// with its path; nothing is silently reset.
func TestStateFileUnusable(t *testing.T) {
	for _, tc := range []struct {
		name, content string
	}{
		{"truncated", `{"version":1,"next_id":{"client":100`},
		{"not json", "hello"},
		{"empty", ""},
		{"other version", `{"version":2,"next_id":{},"locations":[],"hooks":[]}`},
		{"no version", `{"next_id":{},"locations":[],"hooks":[]}`},
		{"unknown field", `{"version":1,"clients":[]}`},
		{"two documents", `{"version":1} {"version":1}`},
		{"bad id", `{"version":1,"locations":[{"id":1,"clients":[{"id":0,"name":"A","phone":"1"}]}]}`},
		{"duplicate id", `{"version":1,"locations":[{"id":1,"clients":[{"id":5,"phone":"1"},{"id":5,"phone":"2"}]}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			sb, err := New(Config{PartnerToken: "p", StateFile: path})
			if err == nil {
				_ = sb.Close()
				t.Fatalf("New succeeded on %q", tc.content)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			if got, _ := os.ReadFile(path); string(got) != tc.content {
				t.Errorf("the file was changed to %q", got)
			}
		})
	}
	t.Run("unreadable", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		if err := os.Mkdir(path, 0o700); err != nil { // a directory cannot be read as a file
			t.Fatal(err)
		}
		_, err := New(Config{PartnerToken: "p", StateFile: path})
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("New = %v, want an error naming %s", err, path)
		}
	})
	t.Run("unwritable", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "missing-dir", "state.json")
		_, err := New(Config{PartnerToken: "p", StateFile: path})
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("New = %v, want an error naming %s", err, path)
		}
	})
}

// A missing file is a fresh start, written at once.
func TestStateFileMissingStartsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	e := stateEnv(t, path)
	if got := e.sb.Clients(testLoc); len(got) != 0 {
		t.Fatalf("clients: %+v", got)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("state file not written by New: %v", err)
	}
	if !strings.HasPrefix(string(b), `{"version":1,`) {
		t.Errorf("state file %s", b)
	}
	if id := e.createClient(map[string]any{"name": "A", "phone": "15550100001"}); id != 1_000_001 {
		t.Errorf("first client id %d, want 1000001", id)
	}
}

// A change that cannot be saved answers 500, leaves no temporary file, and
// reaches the file with the next change that can be.
func TestStateSaveFailureAnswers500(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state.json")
	e := stateEnv(t, path)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r := e.do(http.MethodPost, "/clients/4242", map[string]any{"name": "Lost", "phone": "15550100001"})
	wantError(t, r, http.StatusInternalServerError, "The sandbox could not save its state.")

	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Fatalf("directory holds %v before the next save", got)
	}
	next := e.createClient(map[string]any{"name": "Saved", "phone": "15550100002"})
	sb := reopen(t, e)
	var names []string
	for _, c := range sb.Clients(testLoc) {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"Lost", "Saved"}) {
		t.Errorf("clients after restart %v, want the unsaved change with the next one", names)
	}
	if _, ok := sb.Client(testLoc, next); !ok {
		t.Errorf("client %d missing", next)
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"state.json"}) {
		t.Errorf("directory holds %v, want only the state file", got)
	}
}

// Without a state file the sandbox writes nothing.
func TestNoStateFileWritesNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	e := newEnv(t, nil)
	id := e.createClient(map[string]any{"name": "A", "phone": "15550100001"})
	wantSuccess(t, e.do(http.MethodPost, fmt.Sprintf("/company/4242/clients/%d/comments", id),
		map[string]any{"text": "hi"}), http.StatusCreated)
	e.sb.SeedClient(testLoc, ClientRecord{Name: "B", Phone: "15550100002"})
	e.sb.SetUnlicensed(testLoc)
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Errorf("the working directory holds %v", got)
	}
}

// The state file is outside input: New rejects or loads any bytes without
// panicking, and what it loads it writes back unchanged.
func FuzzStateFile(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"next_id":{"client":1000002},"locations":[{"id":1,"clients":[{"id":1000002,"name":"A","phone":"1","last_change_date":"2026-01-02T03:04:05Z"}],"comments":[],"files":[],"visits":[]}],"hooks":[{"location_id":1,"urls":["http://x/"],"flags":{"active":1},"written_by":"u"}]}`,
		`{"version":1}`,
		`{"version":1,"locations":[{"id":2,"unlicensed":true}]}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "state.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := Config{PartnerToken: "p", Users: []User{{Login: "u", Password: "p"}}, StateFile: path}
		sb, err := New(cfg)
		if err != nil {
			return
		}
		defer sb.Close()
		sb.mu.Lock()
		err = sb.saveLocked()
		sb.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		first, _ := os.ReadFile(path)
		again, err := New(cfg)
		if err != nil {
			t.Fatalf("New on the file it wrote: %v\n%s", err, first)
		}
		defer again.Close()
		again.mu.Lock()
		err = again.saveLocked()
		again.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if second, _ := os.ReadFile(path); string(second) != string(first) {
			t.Errorf("state changed on reload:\n%s\n%s", first, second)
		}
	})
}

// BenchmarkCreateWithStateFile measures a create and the rewrite of the
// state file it causes, in a location that already holds n clients: the
// cost per change grows with the state.
func BenchmarkCreateWithStateFile(b *testing.B) {
	for _, n := range []int{0, 1_000, 10_000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			sb, err := New(Config{PartnerToken: "p", RatePerSecond: -1, RatePerMinute: -1,
				Users:     []User{{Login: "u", Password: "p", Token: "t"}},
				StateFile: filepath.Join(b.TempDir(), "state.json")})
			if err != nil {
				b.Fatal(err)
			}
			defer sb.Close()
			for i := range n {
				sb.mu.Lock()
				sb.insertClient(sb.loc(1), ClientRecord{Name: "Seeded", Phone: fmt.Sprintf("1555%07d", i)})
				sb.mu.Unlock()
			}
			for i := 0; b.Loop(); i++ {
				sb.mu.Lock()
				sb.insertClient(sb.loc(1), ClientRecord{Name: "New", Phone: fmt.Sprintf("1666%07d", i)})
				err := sb.saveLocked()
				sb.mu.Unlock()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSkipClientIDs: clients created after SkipClientIDs(n) get IDs above
// n, and a restart from the state file keeps that.
func TestSkipClientIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	sb, err := New(Config{PartnerToken: "p", StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	sb.SkipClientIDs(1_000_050)
	sb.SkipClientIDs(1_000_010) // never lowers
	sb2, err := New(Config{PartnerToken: "p", StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if id := sb2.SeedClient(1, ClientRecord{Name: "A", Phone: "15550000001"}); id != 1_000_051 {
		t.Errorf("first client after SkipClientIDs(1000050) and a restart got id %d, want 1000051", id)
	}
}
