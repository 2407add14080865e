package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/console"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// result is the body of a result event for publishEvent.
func result(id string, t commands.Type, loc int64, o commands.Outcome, extra map[string]any) map[string]any {
	r := map[string]any{"schema_version": 1, "command_id": id, "type": t, "location_id": loc, "outcome": o, "attempts": 1}
	for k, v := range extra {
		r[k] = v
	}
	return r
}

// The overview charts what happened in the last hour from the events and
// this process's counter, and shows lag, NATS, the outbox and, from the
// workers' metrics, the API and the accounts.
func TestOverview(t *testing.T) {
	t.Parallel()
	w := newWorker(t)
	w.tokenAge.WithLabelValues("main").Set(600)
	w.logins.WithLabelValues("main", "success").Add(1)
	w.requests.WithLabelValues("client.create", "201").Add(3)
	w.flowWaiting.WithLabelValues("main/7").Set(4)
	w.flowGranted.WithLabelValues("main/7").Add(1)
	w.flowGranted.WithLabelValues("main/9").Add(1)
	e := newEnv(t, envOpts{workers: []string{w.url()}})
	e.ingest.WithLabelValues("accepted", "").Add(2)
	e.ingest.WithLabelValues("spooled", "").Add(1)
	e.ingest.WithLabelValues("duplicate", "").Add(5) // not accepted again
	e.outbox.Set(1)
	ids := []string{commands.NewID(), commands.NewID(), commands.NewID()}
	e.publishEvent(result(ids[0], commands.TypeClientCreate, 1, commands.OutcomeSucceeded, nil))
	e.publishEvent(result(ids[1], commands.TypeClientUpdate, 1, commands.OutcomeFailed, map[string]any{"error_class": "transient", "http_status": 503}))
	e.publishEvent(result(ids[1], commands.TypeClientUpdate, 1, commands.OutcomeSucceeded, map[string]any{"attempts": 2}))
	e.publishEvent(result(ids[2], commands.TypeCommentAdd, 1, commands.OutcomeDeadLettered, map[string]any{"error_class": "permanent", "http_status": 404}))
	// Not result events: not counted.
	e.publishAttention(1, map[string]any{"schema_version": 1, "kind": "account.needs_attention", "location_id": 1, "account": "main",
		"reason": "login refused", "command_id": ids[2], "at": time.Now().UTC()})
	s := e.login()

	// The API's counters move after the console's first scrape: their
	// increase is what it charts.
	testenv.WaitFor(t, 10*time.Second, func() error {
		if r := e.get("/ui/", s.cookie); !strings.Contains(r.body, "3 requests in the last 5 minutes") {
			w.requests.WithLabelValues("client.create", "201").Add(1)
			w.requests.WithLabelValues("client.update", "429").Add(1)
			w.requests.WithLabelValues("client.update", "503").Add(1)
			w.flowGranted.WithLabelValues("main/9").Add(1)
			return fmt.Errorf("no API increase shown yet")
		}
		return nil
	})
	r := e.waitPage("/ui/", s.cookie,
		"<strong>Accepted</strong> <span class=\"total\">3 in the last hour",
		"<strong>Succeeded</strong> <span class=\"total\">2 in the last hour",
		"<strong>Retried</strong> <span class=\"total\">1 in the last hour",
		"<strong>Dead-lettered</strong> <span class=\"total\">1 in the last hour",
		"commands waiting for JetStream: 1")
	mustContain(t, "the overview", r.body,
		"this ingest process's own count", "worker-p0", "worker-p7", "0 in all",
		`<span class="badge s-ok">CONNECTED</span>`, "Stream COMMANDS", "Stream EVENTS", "Stream DLQ",
		"3 requests in the last 5 minutes, 1 failed (5xx or no answer), 1 answered 429",
		`<span class="badge h-degraded">degraded</span>`, "of a budget of 200",
		`<span class="badge s-ok">up</span> <code>`+w.url()+`</code>`,
		`<a href="/ui/accounts">main</a></th><td>yes</td>`,
		`role="img" aria-label="Dead-lettered per minute from`,
		// Budget by location: main/7 waits; main/9 got slots after the
		// first scrape, which is what the hour counts.
		"<tr><td>main</td><td>7</td><td>4</td>")
	if !regexp.MustCompile(`<tr><td>main</td><td>9</td><td>0</td><td>[0-9]+</td><td>[1-9][0-9]*</td></tr>`).MatchString(r.body) {
		t.Errorf("the overview's budget by location lacks main/9's slots in the hour:\n%s", r.body)
	}
	if n := strings.Count(r.body, `<figure class="chart"`); n != 6 {
		t.Errorf("the overview has %d charts, want 6", n)
	}

	// Without worker metrics, and with a worker that does not answer,
	// the workers' figures are unknown, not zero.
	none := newEnv(t, envOpts{})
	r = none.get("/ui/", none.login().cookie)
	mustContain(t, "the overview without worker metrics", r.body,
		"unknown: no worker metrics configured (--console-worker-metrics)")
	down := newEnv(t, envOpts{workers: []string{"http://127.0.0.1:1/metrics"}})
	r = down.get("/ui/", down.login().cookie)
	mustContain(t, "the overview with an unreachable worker", r.body,
		`<span class="badge s-bad">unreachable</span>`, "unknown: no worker's metrics could be read")
}

// When the events cannot be read, the charts of the events say so
// instead of showing zeros, and the rest of the overview still works.
func TestOverviewWithoutEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.js.DeleteStream(ctx, "EVENTS"); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.con.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	s := e.login()
	r := e.waitPage("/ui/", s.cookie, "The result events cannot be read: read events:")
	if n := strings.Count(r.body, `<p class="unknown">unknown: read events:`); n != 3 {
		t.Errorf("%d event charts say the events are unknown, want 3", n)
	}
	mustContain(t, "the overview", r.body, "worker-p0", "Stream EVENTS</dt>\n    <dd><span class=\"unknown\">unknown:")
}

// The commands list shows each command's latest result event, newest
// first, narrowed by every filter; a command id opens its timeline.
func TestCommandsList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})
	a, b, c := commands.NewID(), commands.NewID(), commands.NewID()
	e.publishEvent(result(a, commands.TypeClientCreate, 1, commands.OutcomeSucceeded, map[string]any{"client_ref": "crm-1", "client_id": 1001}))
	e.publishEvent(result(b, commands.TypeCommentAdd, 2, commands.OutcomeFailed, map[string]any{"client_id": 999, "error_class": "transient", "http_status": 503}))
	e.publishEvent(result(b, commands.TypeCommentAdd, 2, commands.OutcomeDeadLettered, map[string]any{"client_id": 999, "error_class": "permanent", "http_status": 404, "api_message": "Client not found"}))
	e.publishEvent(result(c, commands.TypeClientUpdate, 1, commands.OutcomeSucceeded, map[string]any{"client_ref": "crm-2"}))
	s := e.login()

	rows := func(query string) []string {
		t.Helper()
		r := e.get("/ui/commands"+query, s.cookie)
		if r.status != http.StatusOK {
			t.Fatalf("GET /ui/commands%s: %d %s", query, r.status, r.body)
		}
		var got []string
		for _, m := range regexp.MustCompile(`<a class="id" href="/ui/commands/([0-9a-f-]{36})\?`).FindAllStringSubmatch(r.body, -1) {
			got = append(got, m[1])
		}
		return got
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{c, b, a}},
		{"?location=2", []string{b}},
		{"?type=client.create", []string{a}},
		{"?outcome=failed", []string{b}},
		{"?outcome=succeeded&location=1", []string{c, a}},
		{"?client=crm-2", []string{c}},
		{"?client=999", []string{b}},
		{"?client=1001", []string{a}},
		{"?since=&until=1h", nil},
		{"?since=7d", []string{c, b, a}},
		{"?location=3", nil},
	} {
		if got := rows(tc.query); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("commands%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	r := e.get("/ui/commands?outcome=dead_lettered", s.cookie)
	mustContain(t, "the dead-lettered commands", r.body, `<span class="badge o-dead-lettered">dead_lettered</span>`, "permanent · 404 · Client not found")
	if r := e.get("/ui/commands?id="+b, s.cookie); r.status != http.StatusSeeOther || r.header.Get("Location") != "/ui/commands/"+b {
		t.Errorf("commands?id=: %d to %q, want its timeline", r.status, r.header.Get("Location"))
	}
	for _, bad := range []string{"?id=not-an-id", "?since=yesterday", "?type=client.explode", "?location=x", "?since=1h&until=2h"} {
		if r := e.get("/ui/commands"+bad, s.cookie); r.status != http.StatusBadRequest || !strings.Contains(r.body, `class="error"`) {
			t.Errorf("commands%s: %d, want 400 with the problem", bad, r.status)
		}
	}
}

// A command's timeline: accepted, its attempts with their errors, its
// deferrals, the dead letter, the replay and the result, with its trace.
func TestTimeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true, trace: "http://jaeger:16686/trace/{trace_id}"})
	cmd := comment(1, 999)
	id := cmd.ID
	trace := "4bf92f3577b34da6a3ce929d0e0e4736"
	start := time.Now().UTC().Add(-time.Minute)
	e.publishEvent(result(id, cmd.Type, 1, commands.OutcomeFailed, map[string]any{"client_id": 999, "error_class": "transient",
		"http_status": 503, "api_message": "Service Unavailable", "total_ms": 1500, "completed_at": start.Add(1500 * time.Millisecond), "trace_id": trace}))
	e.publishEvent(result(id, cmd.Type, 1, commands.OutcomeDeadLettered, map[string]any{"client_id": 999, "error_class": "permanent",
		"http_status": 404, "api_message": "Client not found", "attempts": 2, "total_ms": 4000, "completed_at": start.Add(4 * time.Second), "trace_id": trace}))
	seq := e.publishDLQ(cmd, commands.ClassPermanent, 404, "comment for client 999: status 404: Client not found", 0)
	e.publishEvent(result(id, cmd.Type, 1, commands.OutcomeReplayed, map[string]any{"client_id": 999, "replay": 1, "replay_of": seq,
		"note": "replayed from the DLQ by console:1234abcd"}))
	e.publishEvent(result(id, cmd.Type, 1, commands.OutcomeSucceeded, map[string]any{"client_id": 999, "replay": 1, "attempts": 3,
		"data": map[string]any{"id": 77, "text": "hello"}, "trace_id": trace}))
	e.putRecord(id, idem.Record{State: idem.StateDone, Attempts: 3, Deferrals: 2, StreamSeq: 9, FirstAttemptAt: start.Add(time.Second),
		Result: &commands.Result{CommandID: id, Type: cmd.Type, LocationID: 1, ClientID: 999, Outcome: commands.OutcomeSucceeded}})
	s := e.login()

	r := e.get("/ui/commands/"+id, s.cookie)
	if r.status != http.StatusOK {
		t.Fatalf("timeline: %d %s", r.status, r.body)
	}
	steps := []string{"<strong>Accepted</strong>", "<strong>Deferred 2 times</strong>", "<strong>Attempt 1 failed</strong>",
		"<strong>Dead-lettered</strong>", "<strong>Replayed from the DLQ (generation 1)</strong>", "<strong>Succeeded (replay 1)</strong>"}
	last := -1
	for _, st := range steps {
		i := strings.Index(r.body, st)
		if i < 0 {
			t.Errorf("the timeline lacks %s", st)
			continue
		}
		if i < last {
			t.Errorf("the timeline has %s out of order", st)
		}
		last = i
	}
	mustContain(t, "the timeline", r.body,
		"HTTP 503 <q>Service Unavailable</q>", "HTTP 404 <q>comment for client 999: status 404: Client not found</q>",
		fmt.Sprintf(`<a href="/ui/dlq/%d">DLQ entry %d</a>`, seq, seq), "replayed from the DLQ by console:1234abcd",
		`<span class="badge st-done">done</span>`, "3, and 2 deferrals (not attempts)", "client.comment.add", "id 999",
		"<code>"+trace+"</code>", `href="http://jaeger:16686/trace/`+trace+`"`, "&#34;text&#34;: &#34;hello&#34;")
	if strings.Contains(r.body, "Replay DLQ entry") {
		t.Errorf("the timeline offers to replay an entry already replayed")
	}

	// A dead command offers its replay; an unknown one is not found.
	dead := comment(1, 998)
	dseq := e.publishDLQ(dead, commands.ClassPermanent, 404, "client 998 not found", 0)
	r = e.get("/ui/commands/"+dead.ID, s.cookie)
	mustContain(t, "a dead command's timeline", r.body, fmt.Sprintf(`href="/ui/dlq/replay?seq=%d">Replay DLQ entry %d…`, dseq, dseq),
		"after 1 attempt (from the DLQ entry)")
	if r := e.get("/ui/commands/"+commands.NewID(), s.cookie); r.status != http.StatusNotFound || !strings.Contains(r.body, "Nothing is known of this command") {
		t.Errorf("an unknown command: %d", r.status)
	}
	if r := e.get("/ui/commands/not-an-id", s.cookie); r.status != http.StatusNotFound {
		t.Errorf("a malformed id: %d", r.status)
	}
	// In flight: the record's last error.
	busy := commands.NewID()
	e.putRecord(busy, idem.Record{State: idem.StateInFlight, Attempts: 2, FirstAttemptAt: time.Now(), LastFailureAt: time.Now(),
		LastError: "status 502: bad gateway", LastClass: commands.ClassTransient, LastStatus: 502})
	r = e.get("/ui/commands/"+busy, s.cookie)
	mustContain(t, "a command in flight", r.body, "<strong>Being retried</strong>", "HTTP 502 <q>status 502: bad gateway</q>",
		"<strong>First attempt started</strong>")
}

// traces is a fixed trace store.
type traces map[string][]console.Span

func (t traces) Trace(_ context.Context, id string) ([]console.Span, error) { return t[id], nil }

// The trace page draws the spans as a waterfall under their parents; with
// no store it links to the trace viewer.
func TestTracePage(t *testing.T) {
	t.Parallel()
	id := "4bf92f3577b34da6a3ce929d0e0e4736"
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	store := traces{id: {
		{Name: "worker handle", SpanID: "b", ParentID: "a", Start: at.Add(10 * time.Millisecond), End: at.Add(90 * time.Millisecond), Status: "ok"},
		{Name: "POST /v1/commands", SpanID: "a", Start: at, End: at.Add(100 * time.Millisecond), Status: "ok", Attributes: map[string]string{"http.status": "202"}},
		{Name: "altegio comment.add", SpanID: "c", ParentID: "b", Start: at.Add(20 * time.Millisecond), End: at.Add(80 * time.Millisecond), Status: "error"},
		{Name: "orphan", SpanID: "d", ParentID: "gone", Start: at.Add(95 * time.Millisecond), End: at.Add(100 * time.Millisecond)},
	}}
	e := newEnv(t, envOpts{noRun: true, traces: store, trace: "http://jaeger:16686/trace/{trace_id}"})
	s := e.login()
	r := e.get("/ui/traces/"+id, s.cookie)
	if r.status != http.StatusOK {
		t.Fatalf("trace: %d", r.status)
	}
	order := regexp.MustCompile(`<li class="span d(\d+)( err)?">\s*<div class="name"><span class="label">([^<]+)</span>`).FindAllStringSubmatch(r.body, -1)
	var got []string
	for _, m := range order {
		got = append(got, m[3]+"@"+m[1]+m[2])
	}
	want := "POST /v1/commands@0,worker handle@1,altegio comment.add@2 err,orphan@0"
	if strings.Join(got, ",") != want {
		t.Errorf("waterfall %v, want %s", got, want)
	}
	mustContain(t, "the trace", r.body, "4 spans over 100ms", `<rect x="10.0" width="80.0" height="10">`, "http.status",
		`href="http://jaeger:16686/trace/`+id+`"`)
	if r := e.get("/ui/traces/"+strings.Repeat("0", 32), s.cookie); !strings.Contains(r.body, "No span of this trace is known") {
		t.Errorf("an unknown trace: %s", r.body)
	}
	if r := e.get("/ui/traces/XYZ", s.cookie); r.status != http.StatusNotFound {
		t.Errorf("a malformed trace id: %d", r.status)
	}
	// Without a store: the id and the viewer's link.
	plain := newEnv(t, envOpts{noRun: true, trace: "http://jaeger:16686/trace/{trace_id}"})
	r = plain.get("/ui/traces/"+id, plain.login().cookie)
	mustContain(t, "the trace without a store", r.body, "<code>"+id+"</code>", `href="http://jaeger:16686/trace/`+id+`"`)
}

// The DLQ page groups the entries by reason and lists them, newest first,
// narrowed by the filters.
func TestDLQPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})
	s1 := e.publishDLQ(comment(1, 999), commands.ClassPermanent, 404, "client 999 not found", 0)
	s2 := e.publishDLQ(comment(1, 998), commands.ClassPermanent, 404, "client 998 not found", 0)
	s3 := e.publishDLQ(comment(2, 5), commands.ClassExhausted, 503, "retries exhausted", 0)
	s := e.login()
	r := e.get("/ui/dlq", s.cookie)
	if r.status != http.StatusOK {
		t.Fatalf("dlq: %d", r.status)
	}
	mustContain(t, "the DLQ page", r.body, "3 entries (every entry)", " · 3 dead",
		`<td class="n"><a href="/ui/dlq?class=permanent&amp;http_status=404">2</a></td><td>permanent</td><td>404</td>`,
		`<a href="/ui/dlq?class=exhausted&amp;http_status=503">1</a>`, "Replay every dead entry…")
	if i3, i1 := strings.Index(r.body, fmt.Sprintf(`value="%d"`, s3)), strings.Index(r.body, fmt.Sprintf(`value="%d"`, s1)); i3 < 0 || i1 < 0 || i3 > i1 {
		t.Errorf("entries not newest first")
	}
	r = e.get("/ui/dlq?class=permanent&location=1", s.cookie)
	mustContain(t, "the filtered DLQ", r.body, "2 entries (location 1, class permanent)",
		"/ui/dlq/replay?class=permanent&amp;location=1", "/ui/dlq/purge?class=permanent&amp;location=1")
	if strings.Contains(r.body, fmt.Sprintf(`value="%d"`, s3)) {
		t.Errorf("the filter lists entry %d of another class", s3)
	}
	r = e.get(fmt.Sprintf("/ui/dlq/%d", s2), s.cookie)
	mustContain(t, "an entry", r.body, "client 998 not found", "&#34;client_id&#34;: 998", fmt.Sprintf(`href="/ui/dlq/replay?seq=%d"`, s2))
	if r := e.get("/ui/dlq/424242", s.cookie); r.status != http.StatusNotFound {
		t.Errorf("an unknown entry: %d", r.status)
	}
	if r := e.get("/ui/dlq?class=bogus", s.cookie); r.status != http.StatusBadRequest {
		t.Errorf("a bad filter: %d", r.status)
	}
}

// Replay shows the count first and changes nothing; the confirmation
// replays exactly what was counted (one, a selection or a filter), and a
// stale confirmation shows the new count instead.
func TestReplayCountsThenConfirms(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})
	one := e.publishDLQ(comment(1, 999), commands.ClassPermanent, 404, "client 999 not found", 0)
	a := e.publishDLQ(comment(1, 901), commands.ClassPermanent, 422, "bad text", 0)
	b := e.publishDLQ(comment(1, 902), commands.ClassPermanent, 422, "bad text", 0)
	x := e.publishDLQ(comment(2, 903), commands.ClassExhausted, 503, "retries exhausted", 0)
	s := e.login()

	plan := e.get(fmt.Sprintf("/ui/dlq/replay?seq=%d", one), s.cookie)
	mustContain(t, "the plan", plan.body, "<strong>1</strong> of the 1 selected entry would be replayed (dry run",
		`name="expected" value="1"`, fmt.Sprintf(`name="seq" value="%d"`, one), "Replay 1 entry")
	if st, _ := e.entryStatus(one); st != dlq.StatusDead {
		t.Fatalf("after the plan the entry is %q", st)
	}
	confirm := func(v url.Values) response {
		v.Set("csrf", s.csrf)
		return e.post("/ui/dlq/replay", s.cookie, v)
	}
	r := confirm(url.Values{"seq": {fmt.Sprint(one)}, "expected": {"1"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "1 entry was replayed") {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	if st, _ := e.entryStatus(one); st != dlq.StatusReplayed {
		t.Errorf("after the confirmation the entry is %q, want replayed", st)
	}
	// The same confirmation again: nothing is left, nothing happens.
	r = confirm(url.Values{"seq": {fmt.Sprint(one)}, "expected": {"1"}})
	if r.status != http.StatusConflict || !strings.Contains(r.body, "it now counts 0") {
		t.Errorf("a repeated confirmation: %d, want 409 with the new count", r.status)
	}

	// A selection of two.
	plan = e.get(fmt.Sprintf("/ui/dlq/replay?seq=%d&seq=%d", a, b), s.cookie)
	mustContain(t, "the selection's plan", plan.body, "<strong>2</strong> of the 2 selected entries", fmt.Sprintf("entries %d, %d", a, b))
	if r := confirm(url.Values{"seq": {fmt.Sprint(a), fmt.Sprint(b)}, "expected": {"2"}}); !strings.Contains(r.body, "2 entries were replayed") {
		t.Errorf("confirm the selection: %d %s", r.status, r.body)
	}

	// A filter: counted with absolute times, confirmed with them.
	plan = e.get("/ui/dlq/replay?class=exhausted&since=1h", s.cookie)
	mustContain(t, "the filter's plan", plan.body, "<strong>1</strong> of the 1 selected entry", `name="class" value="exhausted"`)
	if !regexp.MustCompile(`name="since" value="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"`).MatchString(plan.body) {
		t.Errorf("the plan does not carry an absolute since")
	}
	since := regexp.MustCompile(`name="since" value="([^"]+)"`).FindStringSubmatch(plan.body)[1]
	if r := confirm(url.Values{"class": {"exhausted"}, "since": {since}, "expected": {"1"}}); !strings.Contains(r.body, "1 entry was replayed") {
		t.Errorf("confirm the filter: %d %s", r.status, r.body)
	}
	if st, _ := e.entryStatus(x); st != dlq.StatusReplayed {
		t.Errorf("entry %d after the filter's replay: %q", x, st)
	}
	// Everything without a selection is refused.
	if r := e.get("/ui/dlq/replay", s.cookie); r.status != http.StatusBadRequest {
		t.Errorf("a plan without a selection: %d", r.status)
	}
	if r := confirm(url.Values{"expected": {"0"}}); r.status != http.StatusBadRequest {
		t.Errorf("a confirmation without a selection: %d", r.status)
	}
}

// Purge shows the count and deletes on confirmation only.
func TestPurgeCountsThenConfirms(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{noRun: true})
	keep := e.publishDLQ(comment(1, 901), commands.ClassPermanent, 404, "client 901 not found", 0)
	gone := e.publishDLQ(comment(2, 902), commands.ClassExhausted, 503, "retries exhausted", 0)
	s := e.login()
	plan := e.get("/ui/dlq/purge?location=2", s.cookie)
	mustContain(t, "the purge plan", plan.body, "<strong>1</strong> entry would be deleted", "Delete 1 entry",
		`name="until"`) // bounded at the plan's time: nothing dead-lettered later is purged
	if _, err := e.entryStatus(gone); err != nil {
		t.Fatalf("the plan deleted the entry: %v", err)
	}
	r := e.post("/ui/dlq/purge", s.cookie, url.Values{"location": {"2"}, "expected": {"2"}, "csrf": {s.csrf}})
	if r.status != http.StatusConflict {
		t.Errorf("a purge confirming the wrong count: %d", r.status)
	}
	r = e.post("/ui/dlq/purge", s.cookie, url.Values{"location": {"2"}, "expected": {"1"}, "csrf": {s.csrf}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "1 entry was deleted") {
		t.Fatalf("purge: %d %s", r.status, r.body)
	}
	if _, err := e.entryStatus(gone); err == nil {
		t.Errorf("entry %d still there after the purge", gone)
	}
	if st, err := e.entryStatus(keep); err != nil || st != dlq.StatusDead {
		t.Errorf("entry %d outside the selection: %q %v", keep, st, err)
	}
}

// The accounts page: each account's session, logins, 401s and pauses
// from the workers' metrics, and its latest needs_attention event.
func TestAccountsPage(t *testing.T) {
	t.Parallel()
	w := newWorker(t)
	w.tokenAge.WithLabelValues("main").Set(120)
	w.logins.WithLabelValues("main", "success").Add(2)
	w.unauthorized.WithLabelValues("main").Add(1)
	w.logins.WithLabelValues("branch", "invalid_credentials").Add(1)
	w.backoff.WithLabelValues("branch").Set(90)
	w.backoff.WithLabelValues("main").Set(0)
	w.paused.WithLabelValues("branch").Add(0)
	e := newEnv(t, envOpts{workers: []string{w.url()}})
	e.publishAttention(7, map[string]any{"schema_version": 1, "kind": "account.needs_attention", "location_id": 7, "account": "branch",
		"reason": "login refused: invalid credentials", "command_id": commands.NewID(), "paused": true, "at": time.Now().UTC()})
	s := e.login()
	// The pauses happen after the console's first scrape.
	testenv.WaitFor(t, 10*time.Second, func() error {
		r := e.get("/ui/accounts", s.cookie)
		if !strings.Contains(r.body, "paused: its commands wait") {
			w.paused.WithLabelValues("branch").Add(3)
			return fmt.Errorf("no pause shown yet")
		}
		return nil
	})
	r := e.waitPage("/ui/accounts", s.cookie, "login refused: invalid credentials")
	mustContain(t, "the accounts", r.body,
		`<th scope="row">branch</th>`, `<span class="badge s-bad">paused: its commands wait for the account to work again</span>`,
		`<th scope="row">main</th>`, "<td>yes</td>", `<span class="badge s-ok">working</span>`, "(2m0s old)", "location 7: login refused",
		"<td>next login in 1m30s</td>", "<td>none</td>")
	none := newEnv(t, envOpts{noRun: true})
	r = none.get("/ui/accounts", none.login().cookie)
	mustContain(t, "the accounts without worker metrics", r.body, "unknown: no worker metrics configured")
}
