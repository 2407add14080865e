package console

import (
	"crypto/tls"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/dlq"
)

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		tls                    bool
		origin, referer, fetch string
		want                   bool
	}{
		{name: "same origin", origin: "http://console.example:8080", want: true},
		{name: "same origin by referer", referer: "http://console.example:8080/ui/dlq", want: true},
		{name: "a TLS proxy in front", origin: "https://console.example:8080", want: true},
		{name: "same-origin fetch metadata", origin: "http://console.example:8080", fetch: "same-origin", want: true},
		{name: "another host", origin: "http://evil.example:8080"},
		{name: "another port", origin: "http://console.example:8081"},
		{name: "cross-site fetch metadata", origin: "http://console.example:8080", fetch: "cross-site"},
		{name: "same-site is not same-origin", origin: "http://console.example:8080", fetch: "same-site"},
		{name: "plain http to a TLS listener", tls: true, origin: "http://console.example:8080"},
		{name: "https to a TLS listener", tls: true, origin: "https://console.example:8080", want: true},
		{name: "null origin, no referer", origin: "null"},
		{name: "null origin, same referer", origin: "null", referer: "http://console.example:8080/ui/", want: true},
		{name: "neither"},
		{name: "not a URL", origin: "::"},
		{name: "another scheme", origin: "ftp://console.example:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://console.example:8080/ui/dlq/replay", nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range map[string]string{"Origin": tc.origin, "Referer": tc.referer, "Sec-Fetch-Site": tc.fetch} {
				if v != "" {
					r.Header.Set(k, v)
				}
			}
			if got := sameOrigin(r); got != tc.want {
				t.Errorf("sameOrigin = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"/ui/":                   "/ui/",
		"/ui/dlq?status=dead":    "/ui/dlq?status=dead",
		"/ui/commands/x?a=1&b=2": "/ui/commands/x?a=1&b=2",
		"":                       "/ui/",
		"/v1/dlq":                "/ui/",
		"//evil.example/ui/":     "/ui/",
		"https://evil.example/":  "/ui/",
		"/ui/../v1/dlq":          "/ui/",
		"/ui/%2e%2e/v1":          "/ui/",
		`/ui/\evil`:              "/ui/",
		"javascript:alert(1)":    "/ui/",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"90m":                       now.Add(-90 * time.Minute),
		"24h":                       now.Add(-24 * time.Hour),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2026-11-29T08:00:00Z":      time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC),
		"2026-11-29T08:00:00+02:00": time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC),
		"2026-11-29T08:00":          time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC),
		"2026-11-29":                time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-1h", "1x", "2026-13-01"} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q) accepted", bad)
		}
	}
}

// A selection written back for a confirmation form reads as the same
// filter, with absolute times.
func TestFilterValuesRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	q := url.Values{"location": {"1"}, "type": {"client.comment.add"}, "class": {"permanent"}, "http_status": {"404"},
		"since": {"24h"}, "until": {"2026-11-30T09:00:00Z"}, "client": {"crm-7"}, "q": {"not found"}, "status": {"dead"},
		"seq": {"3", "5"}, "id": {"0193f3c2-0000-7000-8000-000000000043"}, "csrf": {"x"}, "expected": {"2"}}
	f, _, err := dlqFilter(q, now)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Since.Equal(now.Add(-24*time.Hour)) || f.ClientRef != "crm-7" || len(f.Seqs) != 2 || f.Text != "not found" {
		t.Errorf("filter %+v", f)
	}
	back, _, err := dlqFilter(filterValues(f), now.Add(time.Hour))
	if err != nil || !reflect.DeepEqual(back, f) {
		t.Errorf("round trip: %+v (%v), want %+v", back, err, f)
	}
	f, _, _ = dlqFilter(url.Values{"client": {"999"}}, now)
	if f.ClientID != 999 || f.ClientRef != "" {
		t.Errorf("a numeric client: %+v", f)
	}
	for _, bad := range []url.Values{{"class": {"nope"}}, {"since": {"later"}}, {"location": {"x"}}, {"seq": {"a"}}} {
		if _, _, err := dlqFilter(bad, now); err == nil {
			t.Errorf("dlqFilter(%v) accepted", bad)
		}
	}
	if describe(dlq.Filter{}) != "every entry" || describe(dlq.Filter{Seqs: []uint64{4}}) != "entry 4" {
		t.Errorf("describe: %q, %q", describe(dlq.Filter{}), describe(dlq.Filter{Seqs: []uint64{4}}))
	}
}

func TestMinutes(t *testing.T) {
	now := time.Date(2026, 11, 30, 10, 30, 20, 0, time.UTC)
	m := newMinutes(func() time.Time { return now })
	m.add("x", now, 2)
	m.add("x", now.Add(-time.Minute), 3)
	m.add("x", now.Add(-59*time.Minute), 1)
	m.add("x", now.Add(-60*time.Minute), 100) // out of the window
	vals, start := m.last("x")
	if len(vals) != 60 || vals[59] != 2 || vals[58] != 3 || vals[0] != 1 || !start.Equal(time.Date(2026, 11, 30, 9, 31, 0, 0, time.UTC)) {
		t.Errorf("last = %v from %v", vals, start)
	}
	if got := m.sum("x", 2); got != 5 {
		t.Errorf("sum of 2 minutes = %v, want 5", got)
	}
	if got := m.sum("x", 60); got != 6 {
		t.Errorf("sum of the hour = %v, want 6", got)
	}
	m.reset("x")
	if got := m.sum("x", 60); got != 0 {
		t.Errorf("after reset: %v", got)
	}
}

func TestChart(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 1: 1, 1.5: 2, 3: 5, 7: 10, 10: 10, 11: 20, 250: 500, 1000: 1000} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
	start := time.Date(2026, 11, 30, 9, 1, 0, 0, time.UTC)
	vals := make([]float64, 60)
	vals[0], vals[59] = 4, 2
	c := newChart("x", "Succeeded", "c", "", vals, start)
	if c.Total != 6 || c.YMax != 5 || len(c.Bars) != 2 {
		t.Fatalf("chart %+v", c)
	}
	if b := c.Bars[0]; math.Abs(b.H-(chartBottom-chartTop)*0.8) > 1e-9 || math.Abs(b.Y+b.H-chartBottom) > 1e-9 || b.Label != "09:01 UTC: 4" {
		t.Errorf("first bar %+v", b)
	}
	if b := c.Bars[1]; b.X+b.W > c.Right+0.01 || b.Label != "10:00 UTC: 2" {
		t.Errorf("last bar %+v ends past the plot (%v)", b, c.Right)
	}
	if c.Summary != "Succeeded per minute from 09:01 to 10:00 UTC: 6 in total, at most 4 in a minute." {
		t.Errorf("summary %q", c.Summary)
	}
}

func TestWaterfallSurvivesBadData(t *testing.T) {
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	rows, total := waterfall([]Span{
		{Name: "self-parent", SpanID: "a", ParentID: "a", Start: at, End: at},
		{Name: "loop1", SpanID: "b", ParentID: "c", Start: at, End: at.Add(time.Second)},
		{Name: "loop2", SpanID: "c", ParentID: "b", Start: at, End: at.Add(time.Second)},
	})
	if total != time.Second || len(rows) != 1 || rows[0].Name != "self-parent" {
		// a cycle with no root is not reachable; the root still shows
		t.Errorf("rows %+v, total %v", rows, total)
	}
	if rows, _ := waterfall(nil); rows != nil {
		t.Errorf("no spans: %v", rows)
	}
}

func FuzzDLQFilter(f *testing.F) {
	f.Add("class=permanent&since=24h&client=crm-1&seq=1&seq=2")
	f.Add("location=1&until=2026-11-30T09:00&q=x&status=dead&all=true")
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		fl, _, err := dlqFilter(q, now)
		if err != nil {
			return
		}
		back, _, err := dlqFilter(filterValues(fl), now)
		if err != nil {
			t.Fatalf("the written-back filter %v does not read: %v", filterValues(fl), err)
		}
		if describe(back) != describe(fl) {
			t.Fatalf("round trip changed the selection: %q, want %q", describe(back), describe(fl))
		}
	})
}

func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"1h", "7d", "2026-11-30T10:00:00Z", "2026-11-30", "", "x"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseWhen(s, now)
		if err == nil && got.Location() != time.UTC && !got.IsZero() {
			t.Fatalf("parseWhen(%q) = %v, not UTC", s, got)
		}
	})
}

// TestLoginLimiter: failures are limited per address; guessers spread over
// addresses exhaust the global bucket for one another but never lock out
// an address that has not failed; attempts under way hold their token, so
// parallel guesses count; successes take nothing.
func TestLoginLimiter(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	l := newLoginLimiter(func() time.Time { return now })
	try := func(addr string, ok bool) bool {
		done, _, admitted := l.admit(addr)
		if admitted {
			done(ok)
		}
		return admitted
	}
	for i := range 20 {
		if !try("10.0.0.1", true) {
			t.Fatalf("success %d refused: successes must take no token", i+1)
		}
	}
	// Parallel guesses from one address: only the burst is admitted.
	var dones []func(bool)
	for range loginBurst + 3 {
		if done, _, ok := l.admit("10.0.0.2"); ok {
			dones = append(dones, done)
		}
	}
	if len(dones) != loginBurst {
		t.Fatalf("%d parallel attempts admitted, want %d", len(dones), loginBurst)
	}
	for _, done := range dones {
		done(false)
	}
	if try("10.0.0.2", true) {
		t.Error("an address with 5 failures may try again at once")
	}
	// Guessers on many addresses exhaust the global bucket…
	refused := 0
	for i := range 100 {
		addr := fmt.Sprintf("10.1.%d.%d", i/250, i%250)
		try(addr, false) // the first failure of each address
		if !try(addr, false) {
			refused++
		}
	}
	if refused == 0 {
		t.Error("100 guessing addresses were never refused: no global bound")
	}
	// …but an operator who has not failed still gets in.
	if !try("10.0.0.9", true) {
		t.Error("an address without failures was locked out by others' guessing")
	}
}
