package deploy_test

// The Grafana dashboard (grafana/altegio-integrator.json), the Prometheus
// alert rules (prometheus/alerts.yml) and the example Prometheus config
// (prometheus/prometheus.yml): their structure, and that every metric their
// PromQL names is one the binaries export. That is checked for real: the
// whole pipeline runs in-process (internal/devstack), is driven through
// successes, a retry, a 429, a paused account, a dead letter, a read and a
// webhook, and its /metrics endpoints are scraped.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/altegio-integrator/integrator/internal/devstack"
	"github.com/altegio-integrator/integrator/internal/devstack/devtest"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv/poll"
	"github.com/altegio-integrator/integrator/internal/worker"
)

// Paths of the observability files, relative to this package.
const (
	dashboardFile  = "grafana/altegio-integrator.json"
	alertsFile     = "prometheus/alerts.yml"
	promConfigFile = "prometheus/prometheus.yml"
)

// The scrape jobs of prometheus.yml, which AltegioTargetDown names.
var promJobs = map[string]string{"altegio-ingest": "ingest", "altegio-worker": "worker"}

// promOwnSeries are series Prometheus makes itself rather than scrapes.
var promOwnSeries = map[string]string{
	"up": "1 when Prometheus scraped the target, 0 when not",
}

// notDrivenMetrics are metrics the dashboard or the alerts use that a short
// run of the dev stack cannot make appear: counter vectors whose first
// series only a rare failure creates (vectors without series are not
// exposed). Each must still be a metric the code defines, which
// TestObservabilityMetricsAreExported checks against the source.
var notDrivenMetrics = map[string]string{
	"worker_index_errors_total":             "a failed write of the client history or own changes (NATS KV trouble)",
	"altegio_ratelimit_slots_dropped_total": "a leased slot going unused (late, expired, unclaimed, penalized): timing-dependent",
}

// --- The dashboard ---------------------------------------------------------

type grafanaDashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaVariable struct {
	Name       string        `json:"name"`
	Type       string        `json:"type"`
	Query      any           `json:"query"`
	Datasource *grafanaDSRef `json:"datasource"`
	IncludeAll bool          `json:"includeAll"`
	AllValue   string        `json:"allValue"`
}

type grafanaDSRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int           `json:"id"`
	Type       string        `json:"type"`
	Title      string        `json:"title"`
	Datasource *grafanaDSRef `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string        `json:"refId"`
		Expr       string        `json:"expr"`
		Datasource *grafanaDSRef `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // of a collapsed row
}

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value", dashboardFile)
	}
	return d
}

// dashboardPanels returns the panels that show data (not rows), including
// those of collapsed rows.
func dashboardPanels(d grafanaDashboard) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Panels...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// variableQueries returns the PromQL selectors or expressions of the
// dashboard's query variables: label_values(<selector>, <label>) gives
// its selector, query_result(<expr>) its expression.
func variableQueries(t *testing.T, d grafanaDashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, ok := v.Query.(string)
		if !ok {
			m, _ := v.Query.(map[string]any)
			q, _ = m["query"].(string)
		}
		q = strings.TrimSpace(q)
		if m := regexp.MustCompile(`^label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)$`).FindStringSubmatch(q); m != nil {
			out[v.Name] = m[1]
		} else if m := regexp.MustCompile(`^query_result\((.*)\)$`).FindStringSubmatch(q); m != nil {
			out[v.Name] = m[1]
		} else if !regexp.MustCompile(`^label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)$`).MatchString(q) {
			t.Errorf("variable %s: query %q is not label_values or query_result", v.Name, q)
		}
	}
	return out
}

// The dashboard imports as is: a Prometheus data source variable, job and
// instance filters on every selector, unique ids, no overlapping panels.
func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for a stable import", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want one current Grafana (10, 11) imports as is", d.SchemaVersion)
	}

	// The variables: a Prometheus data source and job/instance filters.
	vars := map[string]grafanaVariable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if ds := vars["datasource"]; ds.Type != "datasource" || ds.Query != "prometheus" {
		t.Errorf("variable datasource = %+v, want a Prometheus data source variable", ds)
	}
	for _, name := range []string{"job", "instance"} {
		v := vars[name]
		if v.Type != "query" || v.Datasource == nil || v.Datasource.UID != "${datasource}" || !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("variable %s = %+v, want a query on ${datasource} with All meaning .*", name, v)
		}
	}
	for name, q := range variableQueries(t, d) {
		if _, err := promSelectors(q); err != nil {
			t.Errorf("variable %s: %v", name, err)
		}
	}

	// Panels: unique ids, on the grid, each with the data source variable
	// and PromQL targets that filter on job and instance.
	ids := map[int]string{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	var all []grafanaPanel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	for _, p := range all {
		if p.ID == 0 {
			t.Errorf("panel %q has no id", p.Title)
		} else if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, g)
		}
	overlap:
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at column %d row %d", other, p.Title, x, y)
					break overlap
				}
				taken[cell{x, y}] = p.Title
			}
		}
	}
	panels := dashboardPanels(d)
	if len(panels) < 20 {
		t.Errorf("%d panels; the dashboard lost most of its content", len(panels))
	}
	for _, p := range panels {
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: target %s has no expr", p.Title, tg.RefID)
				continue
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q is empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: target %s uses data source %+v", p.Title, tg.RefID, tg.Datasource)
			}
			sels, err := promSelectors(tg.Expr)
			if err != nil {
				t.Errorf("panel %q, target %s: %v", p.Title, tg.RefID, err)
				continue
			}
			if len(sels) == 0 {
				t.Errorf("panel %q, target %s selects no metric: %s", p.Title, tg.RefID, tg.Expr)
			}
			for _, s := range sels {
				for _, want := range []string{`job=~"$job"`, `instance=~"$instance"`} {
					if !strings.Contains(s.matchers, want) {
						t.Errorf("panel %q, target %s: %s{%s} lacks %s", p.Title, tg.RefID, s.name, s.matchers, want)
					}
				}
			}
		}
	}
}

// --- The alerts ------------------------------------------------------------

type alertRules struct {
	Groups []struct {
		Name  string      `yaml:"name"`
		Rules []alertRule `yaml:"rules"`
	} `yaml:"groups"`
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlerts(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f alertRules
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true) // a misspelt key (annotation:, label:) fails
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []alertRule
	groups := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q is empty or repeated", g.Name)
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			t.Errorf("group %s has no rules", g.Name)
		}
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", alertsFile)
	}
	return rules
}

// promDurationRe is Prometheus's duration syntax (1h30m, 0m, 24h, 1d).
var promDurationRe = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

// Every alert has what Alertmanager and the on-call need, and its runbook
// points at sections and commands that exist.
func TestAlertRulesStructure(t *testing.T) {
	rules := loadAlerts(t)
	workerMain := readSource(t, "cmd/worker/main.go")
	var workerSrc strings.Builder
	files, _ := filepath.Glob("../cmd/worker/*.go")
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			b, _ := os.ReadFile(f)
			workerSrc.Write(b)
		}
	}
	names := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			t.Errorf("recording rule %s: this file holds alerts only", r.Record)
			continue
		}
		if !regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`).MatchString(r.Alert) || names[r.Alert] {
			t.Errorf("alert name %q is not CamelCase or is repeated", r.Alert)
		}
		names[r.Alert] = true
		if !promDurationRe.MatchString(r.For) {
			t.Errorf("%s: for %q is missing or not a Prometheus duration", r.Alert, r.For)
		}
		if s := r.Labels["severity"]; !slices.Contains([]string{"info", "warning", "critical"}, s) {
			t.Errorf("%s: severity %q, want info, warning or critical", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		sels, err := promSelectors(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", r.Alert, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s selects no metric: %s", r.Alert, r.Expr)
		}
		if strings.Contains(r.Expr, "$") {
			t.Errorf("%s: a Grafana variable in a Prometheus rule: %s", r.Alert, r.Expr)
		}
		// Jobs named in a rule are the scrape jobs of prometheus.yml.
		for _, s := range sels {
			if m := regexp.MustCompile(`job=~?"([^"]*)"`).FindStringSubmatch(s.matchers); m != nil {
				for _, job := range strings.Split(m[1], "|") {
					if _, ok := promJobs[job]; !ok {
						t.Errorf("%s: job %q is not a scrape job of %s", r.Alert, job, promConfigFile)
					}
				}
			}
		}
		// A label the annotations print must be one the expression keeps.
		for _, text := range r.Annotations {
			for _, m := range regexp.MustCompile(`\$labels\.([a-z_]+)`).FindAllStringSubmatch(text, -1) {
				if !strings.Contains(r.Expr, m[1]) && !(m[1] == "instance" || m[1] == "job") {
					t.Errorf("%s: the annotations print $labels.%s, which the expression drops", r.Alert, m[1])
				}
				if (m[1] == "instance" || m[1] == "job") && regexp.MustCompile(`^\s*\(?\s*(sum|max|min|avg|count)\s*\(`).MatchString(r.Expr) {
					t.Errorf("%s: the annotations print $labels.%s, which the aggregation drops", r.Alert, m[1])
				}
			}
		}
		// The runbook points at README sections that exist and at worker
		// subcommands and flags that exist.
		checkRunbook(t, r.Alert, r.Annotations["runbook"], workerMain, workerSrc.String())
	}
	for _, want := range []string{
		"AltegioCommandsDeadLettered", "AltegioDeadLetterBurst", "AltegioConsumerLagGrowing", "AltegioConsumerLagHigh",
		"AltegioAPIRateLimited", "AltegioBudgetWaitingHigh", "AltegioLoginFailures", "AltegioAccountPaused",
		"IngestOutboxBacklog", "IngestOutboxStale", "AltegioWorkerNoResults",
	} {
		if !names[want] {
			t.Errorf("alert %s is gone", want)
		}
	}
}

// checkRunbook checks the README anchors and the worker commands a runbook
// names.
func checkRunbook(t *testing.T, alert, runbook, workerMain, workerSrc string) {
	t.Helper()
	if !strings.Contains(runbook, "README.md") && !strings.Contains(runbook, "worker ") {
		t.Errorf("%s: the runbook names neither a README section nor a worker command", alert)
	}
	for _, m := range regexp.MustCompile(`((?:deploy/)?README\.md)(?:#([a-z0-9-]+))?`).FindAllStringSubmatch(runbook, -1) {
		if m[2] == "" {
			continue
		}
		if !slices.Contains(markdownAnchors(t, m[1]), m[2]) {
			t.Errorf("%s: %s has no section #%s", alert, m[1], m[2])
		}
	}
	for _, m := range regexp.MustCompile("`worker ([a-z]+) ([a-z]+)([^`]*)`").FindAllStringSubmatch(runbook, -1) {
		if !regexp.MustCompile(`(?m)^\s+` + m[1] + ` [a-z|]*\b` + m[2] + `\b`).MatchString(workerMain) {
			t.Errorf("%s: `worker %s %s` is not a command in worker --help", alert, m[1], m[2])
		}
		for _, f := range regexp.MustCompile(`--([a-z-]+)`).FindAllStringSubmatch(m[3], -1) {
			if !regexp.MustCompile(`fs\.\w+\([^,]*,\s*"` + f[1] + `"`).MatchString(workerSrc) {
				t.Errorf("%s: `worker %s %s` has no flag --%s", alert, m[1], m[2], f[1])
			}
		}
	}
}

// markdownAnchors returns the GitHub anchors of a Markdown file's headings,
// the file named relative to the module root.
func markdownAnchors(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`).FindAllStringSubmatch(readSource(t, name), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// --- The Prometheus config -------------------------------------------------

// The example config loads the rules and scrapes both binaries on their
// ports, under the job names the alerts use.
func TestPrometheusConfig(t *testing.T) {
	var cfg struct {
		Global        map[string]any `yaml:"global"`
		RuleFiles     []string       `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	b, err := os.ReadFile(promConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("%s: %v", promConfigFile, err)
	}
	// The rules are loaded, relative to the config file.
	loaded := false
	for _, rf := range cfg.RuleFiles {
		if filepath.Join(filepath.Dir(promConfigFile), rf) == filepath.Clean(alertsFile) {
			loaded = true
		}
	}
	if !loaded {
		t.Errorf("rule_files %v does not load %s", cfg.RuleFiles, alertsFile)
	}
	// Each binary is scraped on its default port at /metrics.
	bins := binaries(t)
	seen := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		bin, ok := promJobs[sc.JobName]
		if !ok {
			t.Errorf("scrape job %s: unknown; the alerts know %v", sc.JobName, promJobs)
			continue
		}
		seen[sc.JobName] = true
		if sc.MetricsPath != "/metrics" {
			t.Errorf("%s: metrics_path %q, want /metrics", sc.JobName, sc.MetricsPath)
		}
		port := bins[bin].port
		n := 0
		for _, s := range sc.StaticConfigs {
			for _, tg := range s.Targets {
				n++
				if !strings.HasSuffix(tg, ":"+port) {
					t.Errorf("%s: target %s, %s listens on :%s", sc.JobName, tg, bin, port)
				}
			}
		}
		for _, s := range sc.DNSSDConfigs {
			n += len(s.Names)
			if fmt.Sprint(s.Port) != port {
				t.Errorf("%s: DNS discovery port %d, %s listens on :%s", sc.JobName, s.Port, bin, port)
			}
		}
		if n == 0 {
			t.Errorf("%s: no targets", sc.JobName)
		}
	}
	for job := range promJobs {
		if !seen[job] {
			t.Errorf("no scrape job %s", job)
		}
	}
}

// TestObservabilityCompose checks the optional Prometheus and Grafana
// services of compose.yaml (profile observability): off the default path,
// mounting these files.
func TestObservabilityCompose(t *testing.T) {
	services, _ := decodeAll(t, "compose.yaml")[0]["services"].(map[string]any)
	for svc, mounts := range map[string][]string{
		"prometheus": {"./prometheus:/etc/prometheus:ro"},
		"grafana":    {"./grafana/provisioning:/etc/grafana/provisioning:ro", "./grafana:/etc/grafana/dashboards:ro"},
	} {
		if get(services, svc) == nil {
			t.Errorf("compose.yaml has no %s service", svc)
			continue
		}
		if p := list(services, svc, "profiles"); len(p) != 1 || p[0] != "observability" {
			t.Errorf("%s: profiles %v, want [observability] (off by default)", svc, p)
		}
		vols := list(services, svc, "volumes")
		for _, m := range mounts {
			if !slices.Contains(vols, any(m)) {
				t.Errorf("%s: volumes %v lack %s", svc, vols, m)
			}
			if _, err := os.Stat(strings.SplitN(m, ":", 2)[0]); err != nil {
				t.Errorf("%s mounts %s: %v", svc, m, err)
			}
		}
	}
	if c := fmt.Sprint(list(services, "prometheus", "command")); !strings.Contains(c, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus: command %s does not load prometheus.yml", c)
	}
	// Grafana's provisioning finds the dashboard where compose mounts it.
	prov := decodeAll(t, "grafana/provisioning/dashboards/altegio.yml")[0]
	if p := str(prov, "providers", 0, "options", "path"); p != "/etc/grafana/dashboards" {
		t.Errorf("dashboard provider path %q, want /etc/grafana/dashboards", p)
	}
	ds := decodeAll(t, "grafana/provisioning/datasources/prometheus.yml")[0]
	if typ, url := str(ds, "datasources", 0, "type"), str(ds, "datasources", 0, "url"); typ != "prometheus" || url != "http://prometheus:9090" {
		t.Errorf("provisioned data source %s at %s, want prometheus at http://prometheus:9090", typ, url)
	}
}

// --- PromQL ----------------------------------------------------------------

// promSelector is one vector selector of a PromQL expression: the metric
// name and the text between its braces.
type promSelector struct {
	name     string
	matchers string
}

// promFunctions are PromQL's functions and aggregations, and the few
// Grafana adds in variable queries.
var promFunctions = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`
		sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
		abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
		day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count histogram_fraction
		histogram_quantile histogram_stddev histogram_stdvar histogram_sum double_exponential_smoothing
		holt_winters hour idelta increase irate label_join label_replace ln log2 log10 minute month
		predict_linear rate resets round scalar sgn sort sort_desc sort_by_label sort_by_label_desc sqrt
		time timestamp vector year avg_over_time min_over_time max_over_time sum_over_time count_over_time
		quantile_over_time stddev_over_time stdvar_over_time last_over_time present_over_time mad_over_time
		acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg rad pi info start end
		label_values query_result`) {
		promFunctions[f] = true
	}
}

// promKeywords are the words of PromQL that are neither metrics nor
// functions; those taking a label list in parentheses are marked true.
var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": false, "offset": false, "and": false, "or": false, "unless": false, "atan2": false,
	"inf": false, "nan": false,
}

// promToken is one token of a PromQL expression.
type promToken struct {
	kind byte // 'i' identifier, 'n' number or duration, 's' string, 'v' Grafana variable, 'o' an operator character, else the bracket or comma itself
	text string
	pos  int
}

// lexPromQL splits expr into tokens, dropping white space and comments. It
// fails on an unterminated string.
func lexPromQL(expr string) ([]promToken, error) {
	var toks []promToken
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(expr) && expr[j] != c; j++ {
				if expr[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			toks = append(toks, promToken{'s', expr[i : j+1], i})
			i = j + 1
		case c == '#': // a comment to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '$':
			j := i + 1
			if j < len(expr) && expr[j] == '{' {
				k := strings.IndexByte(expr[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unterminated variable at %d", i)
				}
				j += k + 1
			} else {
				for j < len(expr) && expr[j] != ':' && isIdent(expr[j]) {
					j++
				}
			}
			toks = append(toks, promToken{'v', expr[i:j], i})
			i = j
		case isDigit(c) || c == '.' && i+1 < len(expr) && isDigit(expr[i+1]):
			j := i
			for j < len(expr) && (isIdent(expr[j]) || expr[j] == '.' ||
				(expr[j] == '+' || expr[j] == '-') && (expr[j-1] == 'e' || expr[j-1] == 'E') && !strings.ContainsAny(expr[i:j], "xX")) {
				j++
			}
			toks = append(toks, promToken{'n', expr[i:j], i})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			toks = append(toks, promToken{'i', expr[i:j], i})
			i = j
		case strings.IndexByte("(){}[],", c) >= 0:
			toks = append(toks, promToken{c, string(c), i})
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		default: // an operator
			toks = append(toks, promToken{'o', string(c), i})
			i++
		}
	}
	return toks, nil
}

// promSelectors returns the vector selectors of a PromQL expression (or a
// Grafana panel's, with its $variables) and fails when the expression is
// not well formed: unbalanced brackets, an unterminated string, a call of
// an unknown function, a label list that is not one, a selector without
// a metric name.
func promSelectors(expr string) ([]promSelector, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return nil, err
	}
	var sels []promSelector
	var stack []byte
	closing := map[byte]byte{'(': ')', '{': '}', '[': ']'}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := func() byte {
			if i+1 < len(toks) {
				return toks[i+1].kind
			}
			return 0
		}
		switch tk.kind {
		case '(':
			stack = append(stack, '(')
		case ')', '}', ']':
			if len(stack) == 0 || closing[stack[len(stack)-1]] != tk.kind {
				return nil, fmt.Errorf("unbalanced %q at %d in %s", tk.text, tk.pos, expr)
			}
			stack = stack[:len(stack)-1]
		case '[':
			// A range or subquery: durations, numbers, Grafana variables
			// and colons only.
			j := i + 1
			for ; j < len(toks) && toks[j].kind != ']'; j++ {
				if k := toks[j].kind; k != 'n' && k != 'v' && !(k == 'i' && strings.HasPrefix(toks[j].text, ":")) {
					return nil, fmt.Errorf("%q inside a range at %d in %s", toks[j].text, toks[j].pos, expr)
				}
			}
			if j == len(toks) || j == i+1 {
				return nil, fmt.Errorf("empty or unterminated range at %d in %s", tk.pos, expr)
			}
			i = j
		case '{':
			return nil, fmt.Errorf("a selector without a metric name at %d in %s", tk.pos, expr)
		case 'i':
			word := strings.ToLower(tk.text)
			if list, ok := promKeywords[word]; ok {
				if list && next() == '(' {
					j := i + 2
					for ; j < len(toks) && toks[j].kind != ')'; j++ {
						if k := toks[j].kind; k != 'i' && k != ',' {
							return nil, fmt.Errorf("%q in the label list of %s at %d in %s", toks[j].text, tk.text, tk.pos, expr)
						}
					}
					if j == len(toks) {
						return nil, fmt.Errorf("unterminated label list of %s at %d in %s", tk.text, tk.pos, expr)
					}
					i = j
				} else if list && word != "group_left" && word != "group_right" {
					return nil, fmt.Errorf("%s without a label list at %d in %s", tk.text, tk.pos, expr)
				}
				continue
			}
			aggregation := next() == 'i' && (strings.EqualFold(toks[i+1].text, "by") || strings.EqualFold(toks[i+1].text, "without"))
			if next() == '(' || aggregation {
				if !promFunctions[tk.text] {
					return nil, fmt.Errorf("unknown function %s at %d in %s", tk.text, tk.pos, expr)
				}
				continue
			}
			s := promSelector{name: tk.text}
			if next() == '{' {
				j := i + 2
				for ; j < len(toks) && toks[j].kind != '}'; j++ {
					if k := toks[j].kind; k != 'i' && k != 's' && k != ',' && k != 'v' && k != 'o' {
						return nil, fmt.Errorf("%q among the matchers of %s at %d in %s", toks[j].text, tk.text, toks[j].pos, expr)
					}
				}
				if j == len(toks) {
					return nil, fmt.Errorf("unterminated matchers of %s at %d in %s", tk.text, tk.pos, expr)
				}
				s.matchers = expr[toks[i+1].pos+1 : toks[j].pos]
				i = j
			}
			sels = append(sels, s)
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("unclosed %q in %s", stack[len(stack)-1], expr)
	}
	return sels, nil
}

// The PromQL checker finds the metrics and refuses malformed expressions.
func TestPromSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr  string
		names []string
		err   string
	}{
		{`rate(a_total[5m])`, []string{"a_total"}, ""},
		{`sum by (class) (increase(b_total{x="}{"}[10m])) > 0 or (c unless c offset 10m)`, []string{"b_total", "c", "c"}, ""},
		{`histogram_quantile(0.95, sum by (le, op) (rate(d_bucket{job=~"$job"}[$__rate_interval])))`, []string{"d_bucket"}, ""},
		{`x / on (a, b) group_left (c) y * 1e-3 == bool 2`, []string{"x", "y"}, ""},
		{`max_over_time(e[1h:5m]) and on () vector(0)`, []string{"e"}, ""},
		{"f{a=\"1\"} # a comment naming g\n+ h", []string{"f", "h"}, ""},
		{`sum(rate(a[5m])`, nil, "unclosed"},
		{`sum(rate(a[5m])))`, nil, "unbalanced"},
		{`rat(a[5m])`, nil, "unknown function rat"},
		{`a{b="c}`, nil, "unterminated string"},
		{`sum by (a + b) (x)`, nil, "label list"},
		{`{__name__="x"}`, nil, "without a metric name"},
		{`rate(a[b])`, nil, "inside a range"},
		{`sum without (a) (rate(a[$__interval:1m]))`, []string{"a"}, ""},
		{`sum(x) by (a) / ignoring (b) count(y{c!~"d"})`, []string{"x", "y"}, ""},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			sels, err := promSelectors(tc.expr)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range sels {
				got = append(got, s.name)
			}
			if !slices.Equal(got, tc.names) {
				t.Errorf("got %v, want %v", got, tc.names)
			}
		})
	}
}

// --- The metrics, for real -------------------------------------------------

// usedMetrics returns every metric name the dashboard (panels and
// variables) and the alerts select, each with where it is used.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(where, expr string) {
		sels, err := promSelectors(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		for _, s := range sels {
			if !slices.Contains(used[s.name], where) {
				used[s.name] = append(used[s.name], where)
			}
		}
	}
	d := loadDashboard(t)
	for _, p := range dashboardPanels(d) {
		for _, tg := range p.Targets {
			add("panel "+p.Title, tg.Expr)
		}
	}
	for name, q := range variableQueries(t, d) {
		add("variable "+name, q)
	}
	for _, r := range loadAlerts(t) {
		add("alert "+r.Alert, r.Expr)
	}
	return used
}

// sourceMetrics returns the metrics the Go code of internal/ and cmd/
// defines, by name, with their kind: Counter, Gauge, Histogram or Summary
// for prometheus.XxxOpts{Name: "…"}, and Desc for prometheus.NewDesc.
func sourceMetrics(t *testing.T) map[string]string {
	t.Helper()
	optsRe := regexp.MustCompile(`prometheus\.(Counter|Gauge|Histogram|Summary)Opts\{\s*Name:\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"`)
	descRe := regexp.MustCompile(`prometheus\.NewDesc\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"`)
	out := map[string]string{}
	for _, dir := range []string{"../internal", "../cmd"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range optsRe.FindAllStringSubmatch(string(b), -1) {
				out[m[2]] = m[1]
			}
			for _, m := range descRe.FindAllStringSubmatch(string(b), -1) {
				out[m[1]] = "Desc"
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 30 {
		t.Fatalf("found %d metrics in the source; the pattern no longer matches how metrics are defined", len(out))
	}
	return out
}

// family returns the metric family a PromQL name selects: the name itself,
// or without _bucket, _sum or _count when the rest is a histogram or
// summary of kinds (family name → kind).
func family(name string, kinds map[string]string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch strings.ToLower(kinds[base]) {
		case "histogram", "summary":
			return base
		}
	}
	return name
}

// scrapeFamilies fetches a /metrics page in the text format and returns its
// families by name with their type (# TYPE lines: only families with at
// least one series are listed).
func scrapeFamilies(url string) (map[string]string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("GET %s: no metric families", url)
	}
	return out, nil
}

// Every metric the code defines is on the dashboard, so a new metric gets
// a panel (or a reason here not to).
func TestDashboardShowsEveryMetric(t *testing.T) {
	d := loadDashboard(t)
	src := sourceMetrics(t)
	shown := map[string]bool{}
	for _, p := range dashboardPanels(d) {
		for _, tg := range p.Targets {
			sels, _ := promSelectors(tg.Expr)
			for _, s := range sels {
				shown[family(s.name, src)] = true
			}
		}
	}
	var missing []string
	for name := range src {
		if !shown[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics defined in the code but on no panel of %s: %v", dashboardFile, missing)
	}
}

// The whole pipeline runs in-process and is driven through the events the
// dashboard and the alerts watch; every metric they use must then be on
// ingest's /metrics or the worker's, or be allow-listed in
// notDrivenMetrics (and defined in the code), or be Prometheus's own.
func TestObservabilityMetricsAreExported(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline")
	}
	used := usedMetrics(t)
	src := sourceMetrics(t)
	for name, why := range notDrivenMetrics {
		if _, ok := src[name]; !ok {
			t.Errorf("allow-listed %s (%s) is not defined in the code", name, why)
		}
	}

	// Retrying fast, so that the run takes seconds.
	st := devtest.Start(t, devstack.DevConfig{
		WebhookDelay: 100 * time.Millisecond,
		Worker: worker.Config{
			RetryBase:       50 * time.Millisecond,
			RetryMax:        500 * time.Millisecond,
			PendingInterval: 200 * time.Millisecond,
		},
	})
	sb := st.Sandbox

	// A success, a rejection and a read.
	ok := devtest.Post(t, st, `{"type":"client.create","location_id":1,"client_ref":"obs-1","payload":{"name":"Ada","phone":"+13155550141"}}`)
	devtest.WaitStatus(t, st, ok, "succeeded")
	if code := obsRequest(t, st, http.MethodPost, "/v1/commands", `{"type":"client.create","location_id":1}`); code < 400 || code >= 500 {
		t.Errorf("an invalid command was answered %d, want a 4xx", code)
	}
	if code := obsRequest(t, st, http.MethodGet, "/v1/locations/1/clients-by-ref/obs-1", ""); code != http.StatusOK {
		t.Errorf("read by ref: %d", code)
	}
	// A transient failure (a retry), a 429 (a deferral and a penalty) and
	// two 401s in a row (a login, then the account paused), one command
	// each; all end as succeeded.
	for _, r := range []sandbox.Rule{
		{Op: sandbox.OpCommentAdd, Status: http.StatusServiceUnavailable, Times: 1},
		{Op: sandbox.OpCommentAdd, Status: http.StatusTooManyRequests, Times: 1},
		{Op: sandbox.OpCommentAdd, Status: http.StatusUnauthorized, Times: 2},
	} {
		remove := sb.Inject(r)
		id := devtest.Post(t, st, fmt.Sprintf(`{"type":"client.comment.add","location_id":1,"client_ref":"obs-1","payload":{"text":"after a %d"}}`, r.Status))
		devtest.WaitStatus(t, st, id, "succeeded")
		remove()
	}
	// A dead letter: the sandbox has no client 999.
	dead := devtest.Post(t, st, `{"type":"client.comment.add","location_id":1,"client_id":999,"payload":{"text":"hello"}}`)
	devtest.WaitStatus(t, st, dead, "dead_lettered")

	// Scrape until every used metric is there (the pending gauge is
	// polled, the sandbox's webhook comes later) or the deadline passes,
	// then report what is not, with where it is used.
	var exported map[string]string
	var missing []string
	errMissing := errors.New("used metrics are not exported yet")
	err := poll.Wait(20*time.Second, func() error {
		exported = map[string]string{}
		for _, url := range []string{st.IngestURL + "/metrics", st.OpsURL + "/metrics"} {
			fams, err := scrapeFamilies(url)
			if err != nil {
				return err
			}
			maps.Copy(exported, fams)
		}
		missing = missing[:0]
		for name := range used {
			f := family(name, exported)
			if _, ok := exported[f]; ok || promOwnSeries[name] != "" {
				continue
			}
			if _, ok := notDrivenMetrics[family(name, src)]; ok {
				continue
			}
			missing = append(missing, name)
		}
		if len(missing) > 0 {
			return errMissing
		}
		return nil
	})
	if err != nil && !errors.Is(err, errMissing) {
		t.Fatalf("scrape: %v", err)
	}
	sort.Strings(missing)
	for _, name := range missing {
		t.Errorf("%s (used by %s) is exported by neither ingest nor the worker after the run", name, strings.Join(used[name], ", "))
	}

	// The allow-listed ones that did show up need no allow-listing this
	// time; the ones that did not must at least be defined in the code.
	for name := range used {
		f := family(name, src)
		if _, ok := notDrivenMetrics[f]; !ok {
			continue
		}
		if _, ok := exported[family(name, exported)]; ok {
			t.Logf("%s appeared in this run although allow-listed", name)
		} else if _, ok := src[f]; !ok {
			t.Errorf("%s (used by %s) is allow-listed but not defined in the code", name, strings.Join(used[name], ", "))
		}
	}
	// And the events were counted, not only the families created.
	for _, want := range []string{
		`worker_retries_total{class="transient"}`, `worker_retries_total{class="rate_limited"}`,
		`worker_dlq_writes_total{class="permanent"}`,
		// Any account: a token refused right after a refresh is counted
		// as "unknown", the error naming no account.
		`worker_account_paused_total{`,
		`altegio_api_requests_total{code="429",op="client.comment.add"}`,
		`ingest_commands_total{reason="invalid",result="rejected"}`,
	} {
		if !obsScrapeHas(t, st, want) {
			t.Errorf("no series %s after the run", want)
		}
	}
}

// obsRequest sends a request to ingest with the dev producer key and
// returns the status.
func obsRequest(t *testing.T, st devstack.DevStack, method, path, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, st.IngestURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+devstack.DevProducerKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// obsScrapeHas reports whether ingest's or the worker's /metrics has a
// series whose name and labels (sorted, as the text format writes them)
// are want, with a value above zero; a want ending in "{" matches every
// series of the family.
func obsScrapeHas(t *testing.T, st devstack.DevStack, want string) bool {
	t.Helper()
	for _, url := range []string{st.IngestURL + "/metrics", st.OpsURL + "/metrics"} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			var v string
			if strings.HasSuffix(want, "{") && strings.HasPrefix(line, want) {
				_, v, _ = strings.Cut(line, "} ")
			} else if rest, ok := strings.CutPrefix(line, want+" "); ok {
				v = rest
			}
			if v != "" && v != "0" {
				return true
			}
		}
	}
	return false
}
