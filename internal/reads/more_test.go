package reads_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/readclient"
	"github.com/altegio-integrator/integrator/internal/reads"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/worker"
)

// The deprecated list answers full cards, and a filter the API dropped
// (it matched nobody, reference §6.7) is caught: nothing matches.
func TestListChecksTheFilterTheAPIMayDrop(t *testing.T) {
	t.Parallel()
	f := setup(t, reads.Config{}, nil)
	f.sb.SeedClient(f.loc, sandbox.ClientRecord{Name: "Bob", Phone: "15550000002", Paid: 50})
	list := func(body string) reads.ListResult {
		t.Helper()
		data, code, msg := f.ask(t, commands.ReadSubject(f.loc, commands.ReadList), body)
		var res reads.ListResult
		if code != "" || json.Unmarshal(data, &res) != nil {
			t.Fatalf("clients.list %s: %s %s %s", body, code, msg, data)
		}
		return res
	}
	if res := list(`{"fullname":"ann"}`); len(res.Clients) != 1 || res.Clients[0].ID != f.id || res.FilterIgnored {
		t.Errorf("fullname ann: %+v", res)
	}
	if res := list(`{"fullname":"nobody"}`); len(res.Clients) != 0 || !res.FilterIgnored || res.TotalCount != 0 {
		t.Errorf("a filter matching nobody: %+v, want no clients and filter_ignored", res)
	}
	// paid_min alone: the API would read paid_max as 0; the client sends a
	// large one.
	if res := list(`{"paid_min":10}`); len(res.Clients) != 1 || res.Clients[0].Name != "Bob" {
		t.Errorf("paid_min 10: %+v, want Bob", res)
	}
	if _, code, _ := f.ask(t, commands.ReadSubject(f.loc, commands.ReadList), `{"changed_after":"yesterday"}`); code != "400" {
		t.Errorf("a bad time: code %q, want 400", code)
	}
}

// An export emits every card once, in ascending id; interrupted, it
// resumes from the last id it emitted, finding the page by a binary search
// instead of reading from the start.
func TestExportResumesFromTheLastID(t *testing.T) {
	t.Parallel()
	f := setup(t, reads.Config{}, nil)
	const loc = 2
	var want []int64
	for i := range 700 {
		want = append(want, f.sb.SeedClient(loc, sandbox.ClientRecord{Name: fmt.Sprint("c", i), Phone: fmt.Sprintf("1555%07d", i)}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var got []int64
	stop := errors.New("interrupted")
	var last readclient.ExportProgress
	err := readclient.Export(ctx, f.nc, loc, 0, func(card json.RawMessage) error {
		if len(got) == 450 {
			return stop
		}
		got = append(got, cardID(t, card))
		return nil
	}, func(p readclient.ExportProgress) { last = p })
	if !errors.Is(err, stop) || last.Exported != 300 || last.LastID != got[299] || last.Pages != 3 {
		t.Fatalf("first run: %v, progress %+v after %d cards", err, last, len(got))
	}
	// Resume from the last id written, as a caller would from its file.
	f.sb.ResetStats()
	err = readclient.Export(ctx, f.nc, loc, got[len(got)-1], func(card json.RawMessage) error {
		got = append(got, cardID(t, card))
		return nil
	}, func(p readclient.ExportProgress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("exported %d cards (first %v), want the %d seeded once each in ascending id", len(got), got[:min(5, len(got))], len(want))
	}
	// Page 1 (the total), the search (page 2 holds id 451), page 3.
	if n := f.sb.Stats().ByOp[sandbox.OpClientList]; n > 3 {
		t.Errorf("the resume read %d pages, want at most 3 of the 3", n)
	}
	if last.Exported != 250 || last.LastID != want[len(want)-1] {
		t.Errorf("resume progress %+v, want 250 cards ending at %d", last, want[len(want)-1])
	}
}

// Exports take their share of the budget: a page that would wait past its
// deadline for it answers 503 with Retry-After.
func TestExportShareAnswers503(t *testing.T) {
	t.Parallel()
	f := setup(t, reads.Config{ExportRate: 0.001}, nil) // one page, then one per 1,000 s
	body := `{"page":1}`
	if _, code, msg := f.ask(t, commands.ReadSubject(f.loc, commands.ReadExport), body); code != "" {
		t.Fatalf("first page: %s %s", code, msg)
	}
	m, err := f.nc.RequestMsg(&nats.Msg{Subject: commands.ReadSubject(f.loc, commands.ReadExport), Data: []byte(body),
		Header: nats.Header{commands.HeaderReadTimeout: []string{"2s"}}}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "503" || m.Header.Get(commands.HeaderRetryAfter) == "" {
		t.Errorf("second page at once: code %q Retry-After %q, want 503 with Retry-After", code, m.Header.Get(commands.HeaderRetryAfter))
	}
}

// A read behind a busy budget answers 503 at once with the expected wait
// in Retry-After, instead of holding the caller until its deadline.
func TestBusyBudgetAnswersRetryAfter(t *testing.T) {
	t.Parallel()
	lim, err := ratelimit.New(nil, ratelimit.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	lim.Penalize(time.Hour) // as after a 429 with Retry-After: 3600
	f := setupWith(t, reads.Config{}, nil, lim)
	start := time.Now()
	m, err := f.nc.RequestMsg(&nats.Msg{Subject: commands.ReadSubject(f.loc, commands.ReadClient), Data: []byte(`{"client_id":` + jsonInt(f.id) + `}`),
		Header: nats.Header{commands.HeaderReadTimeout: []string{"5s"}}}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	retry, _ := strconv.Atoi(m.Header.Get(commands.HeaderRetryAfter))
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "503" || retry < 3500 || time.Since(start) > 4*time.Second {
		t.Errorf("code %q Retry-After %q after %v, want 503 at once with about an hour", code, m.Header.Get(commands.HeaderRetryAfter), time.Since(start))
	}
}

// commands.list asks the history; a client is named by one of id or ref.
func TestCommandsList(t *testing.T) {
	t.Parallel()
	var asked worker.HistoryQuery
	history := func(_ context.Context, loc int64, q worker.HistoryQuery) (worker.HistoryPage, error) {
		asked = q
		if q.Cursor == "bad" {
			return worker.HistoryPage{}, worker.ErrBadCursor
		}
		return worker.HistoryPage{Commands: []commands.Result{{CommandID: "c-1", LocationID: loc, Outcome: commands.OutcomeSucceeded}}, Next: "n"}, nil
	}
	f := setup(t, reads.Config{History: history}, nil)
	subject := commands.ReadSubject(f.loc, commands.ReadCommands)
	data, code, msg := f.ask(t, subject, `{"client_ref":"crm-1","since":"2026-12-01T00:00:00Z","limit":10,"cursor":"x"}`)
	var page worker.HistoryPage
	if code != "" || json.Unmarshal(data, &page) != nil || len(page.Commands) != 1 || page.Next != "n" {
		t.Fatalf("commands.list: %s %s %s", code, msg, data)
	}
	if asked.ClientRef != "crm-1" || asked.Limit != 10 || asked.Cursor != "x" || !asked.Since.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("history asked %+v", asked)
	}
	for body, want := range map[string]string{
		`{"client_ref":"crm-1","client_id":1}`: "400",
		`{}`:                                   "400",
		`{"client_id":1,"since":"today"}`:      "400",
		`{"client_id":1,"limit":501}`:          "400",
		`{"client_id":1,"cursor":"bad"}`:       "400",
	} {
		if _, code, _ := f.ask(t, subject, body); code != want {
			t.Errorf("%s: code %q, want %s", body, code, want)
		}
	}
	g := setup(t, reads.Config{}, nil)
	if _, code, _ := g.ask(t, commands.ReadSubject(g.loc, commands.ReadCommands), `{"client_id":1}`); code != "503" {
		t.Errorf("without a history: code %q, want 503", code)
	}
}

// With a cache, a second client.get is served without the API; a result
// event or a webhook event about the client drops it.
func TestClientCacheIsInvalidatedByEvents(t *testing.T) {
	t.Parallel()
	f := setup(t, reads.Config{CacheTTL: time.Minute}, nil)
	subject := commands.ReadSubject(f.loc, commands.ReadClient)
	body := `{"client_id":` + jsonInt(f.id) + `}`
	gets := func() int { return f.sb.Stats().ByOp[sandbox.OpClientGet] }
	name := func() string {
		data, code, msg := f.ask(t, subject, body)
		var c altegio.ClientRecord
		if code != "" || json.Unmarshal(data, &c) != nil {
			t.Fatalf("client.get: %s %s", code, msg)
		}
		return c.Name
	}
	name()
	name()
	if n := gets(); n != 1 {
		t.Fatalf("two reads made %d GETs, want 1 (cached)", n)
	}
	for i, ev := range []string{
		`{"location_id":1,"client_id":` + jsonInt(f.id) + `,"outcome":"succeeded"}`,
		`{"location_id":1,"resource_id":` + jsonInt(f.id) + `,"status":"update"}`,
	} {
		if err := f.nc.Publish("altegio.evt.1.x.y", []byte(ev)); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, func() error {
			name()
			if n := gets(); n != 2+i {
				return fmt.Errorf("%d GETs after event %d", n, i+1)
			}
			return nil
		})
	}
	if n := gets(); n != 3 || !strings.HasPrefix(name(), "Ann") {
		t.Errorf("%d GETs, want 3", n)
	}
}

// cardID reads the id of a client card.
func cardID(t *testing.T, card json.RawMessage) int64 {
	t.Helper()
	var c altegio.ClientRecord
	if err := json.Unmarshal(card, &c); err != nil {
		t.Fatalf("card %s: %v", card, err)
	}
	return c.ID
}
