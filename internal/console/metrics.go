package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The metrics the console reads. The workers' come from internal/altegio
// (altegio_api_*), internal/auth (altegio_auth_*), internal/ratelimit
// (altegio_ratelimit_*) and internal/worker (worker_*); ingest's from
// internal/ingest and internal/outbox. Named here as strings: ingest links
// no worker code.
const (
	metricAPIRequests    = "altegio_api_requests_total"
	metricLogins         = "altegio_auth_logins_total"
	metricUnauthorized   = "altegio_auth_unauthorized_total"
	metricTokenAge       = "altegio_auth_token_age_seconds"
	metricLoginBackoff   = "altegio_auth_login_backoff_seconds"
	metricWaiting        = "altegio_ratelimit_waiting"
	metricFlowWaiting    = "altegio_ratelimit_flow_waiting"
	metricFlowGranted    = "altegio_ratelimit_flow_granted_total"
	metricMargin         = "altegio_ratelimit_margin_seconds"
	metricPenalties      = "altegio_ratelimit_penalties_total"
	metricPaused         = "worker_account_paused_total"
	metricInFlight       = "worker_in_flight"
	metricIngestCommands = "ingest_commands_total"
	metricOutboxEntries  = "outbox_entries"
	metricOutboxOldest   = "outbox_oldest_entry_age_seconds"
)

// Series kept per minute (minutes), besides the result events'.
const (
	seriesAccepted    = "accepted"
	seriesAPIRequests = "api.requests"
	seriesAPI429      = "api.429"
	seriesAPIErrors   = "api.errors" // 5xx and transport failures
	seriesPenalties   = "ratelimit.penalties"
	prefixPaused      = "paused:"
	prefixUnauth      = "unauthorized:"
	prefixLoginFailed = "login_failed:"
	prefixLoginOK     = "login_ok:"
	prefixGranted     = "granted:" // budget slots by flow (account/location)
)

// families indexes metric families by name.
type families map[string]*dto.MetricFamily

// value returns a sample's value, whatever its type.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// label returns a sample's label value.
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// sum adds the samples of name that keep accepts (nil: all); ok is false
// when the family is absent.
func (f families) sum(name string, keep func(*dto.Metric) bool) (float64, bool) {
	mf, ok := f[name]
	if !ok {
		return 0, false
	}
	total := 0.0
	for _, m := range mf.GetMetric() {
		if keep == nil || keep(m) {
			total += value(m)
		}
	}
	return total, true
}

// byLabel sums the samples of name per value of label.
func (f families) byLabel(name, lbl string, keep func(*dto.Metric) bool) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f[name].GetMetric() {
		if keep == nil || keep(m) {
			out[label(m, lbl)] += value(m)
		}
	}
	return out
}

func labelIs(name string, values ...string) func(*dto.Metric) bool {
	return func(m *dto.Metric) bool { return slices.Contains(values, label(m, name)) }
}

func labelIsNot(name, v string) func(*dto.Metric) bool {
	return func(m *dto.Metric) bool { return label(m, name) != v }
}

// apiError reports a request that failed on the API's side or on the way:
// a 5xx or no answer.
func apiError(m *dto.Metric) bool {
	code := label(m, "code")
	return strings.HasPrefix(code, "5") || code == "transport"
}

// counters returns the counters whose increase the console charts per
// minute, keyed by series name.
func (f families) counters() map[string]float64 {
	out := map[string]float64{}
	out[seriesAPIRequests], _ = f.sum(metricAPIRequests, nil)
	out[seriesAPI429], _ = f.sum(metricAPIRequests, labelIs("code", "429"))
	out[seriesAPIErrors], _ = f.sum(metricAPIRequests, apiError)
	out[seriesPenalties], _ = f.sum(metricPenalties, nil)
	for a, v := range f.byLabel(metricPaused, "account", nil) {
		out[prefixPaused+a] = v
	}
	for flow, v := range f.byLabel(metricFlowGranted, "flow", nil) {
		out[prefixGranted+flow] = v
	}
	for a, v := range f.byLabel(metricUnauthorized, "account", nil) {
		out[prefixUnauth+a] = v
	}
	for a, v := range f.byLabel(metricLogins, "account", labelIs("result", "success")) {
		out[prefixLoginOK+a] = v
	}
	for a, v := range f.byLabel(metricLogins, "account", labelIsNot("result", "success")) {
		out[prefixLoginFailed+a] = v
	}
	return out
}

// target is one scrape of a worker's /metrics.
type target struct {
	URL  string
	At   time.Time
	Err  error
	fams families
}

// scraper scrapes the workers' /metrics and adds the increase of their
// counters to the per-minute series. Safe for concurrent use.
type scraper struct {
	client *http.Client
	urls   []string
	series *minutes
	now    func() time.Time
	log    *slog.Logger

	mu   sync.Mutex
	prev map[string]scraped // by URL
}

// scraped is the last counters read from one URL.
type scraped struct {
	at       time.Time
	counters map[string]float64
}

func newScraper(client *http.Client, urls []string, series *minutes, now func() time.Time, log *slog.Logger) *scraper {
	return &scraper{client: client, urls: urls, series: series, now: now, log: log, prev: map[string]scraped{}}
}

// scrape reads every URL at once and returns what each answered, in the
// order of the URLs. The first scrape of a URL sets the base line of its
// counters; later ones add their increase (a counter that went down was
// reset by a restart: its value is the increase).
func (s *scraper) scrape(ctx context.Context) []target {
	out := make([]target, len(s.urls))
	var wg sync.WaitGroup
	for i, u := range s.urls {
		wg.Go(func() {
			// Stamped when it starts: of two overlapping scrapes (a page
			// view beside the periodic one), the one that started first
			// read the older counters, and is dropped below if it ends
			// last, instead of reading as a counter reset.
			at := s.now()
			fams, err := s.fetch(ctx, u)
			out[i] = target{URL: u, At: at, Err: err, fams: fams}
		})
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range out {
		if t.Err != nil {
			continue
		}
		cur := t.fams.counters()
		prev, seen := s.prev[t.URL]
		if seen && t.At.Before(prev.at) {
			continue // a slower scrape that started earlier
		}
		if seen {
			for k, v := range cur {
				d := v - prev.counters[k]
				if d < 0 {
					d = v
				}
				s.series.add(k, t.At, d)
			}
		}
		s.prev[t.URL] = scraped{at: t.At, counters: cur}
	}
	return out
}

// maxMetricsBody bounds a scraped body.
const maxMetricsBody = 16 << 20

// fetch reads and parses one /metrics in the text format.
func (s *scraper) fetch(ctx context.Context, u string) (families, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("scrape: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsBody))
	if err != nil {
		s.log.Warn("console: unreadable worker metrics", "url", u, "error", err)
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return fams, nil
}

// localSampler counts this process's accepted commands per minute from
// its own registry and keeps its last gathering (the outbox figures). Safe
// for concurrent use.
type localSampler struct {
	g      prometheus.Gatherer
	series *minutes
	now    func() time.Time

	mu       sync.Mutex
	accepted float64 // the counter at the last sample; it starts at 0 with the process
	fams     families
	err      error
}

func newLocalSampler(g prometheus.Gatherer, series *minutes, now func() time.Time) *localSampler {
	return &localSampler{g: g, series: series, now: now}
}

// sample gathers the registry and adds the commands accepted since the
// last sample (accepted into JetStream or spooled to the outbox) to the
// current minute.
func (l *localSampler) sample() {
	if l.g == nil {
		return
	}
	// Under the lock: two samples gathered in one order and applied in
	// the other would count a decrease.
	l.mu.Lock()
	defer l.mu.Unlock()
	mfs, err := l.g.Gather()
	fams := families{}
	for _, mf := range mfs {
		fams[mf.GetName()] = mf
	}
	l.err = err
	l.fams = fams
	n, ok := fams.sum(metricIngestCommands, labelIs("result", "accepted", "spooled"))
	if !ok {
		return
	}
	d := max(n-l.accepted, 0) // this process's own counter: it never goes down
	l.accepted = n
	l.series.add(seriesAccepted, l.now(), d)
}

// last returns the last gathering, nil before the first or without a
// registry.
func (l *localSampler) last() families {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fams
}
