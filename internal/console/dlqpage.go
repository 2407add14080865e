package console

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/dlq"
)

// dlqListLimit is how many entries the DLQ page lists (the newest).
const dlqListLimit = 200

// dlqForm is the DLQ filter as typed in the form.
type dlqForm struct {
	Location, Type, Class, HTTPStatus, Since, Until, Client, Text, Status string
}

// formFields are the DLQ form's fields; other query parameters (id, seq,
// all) are passed through to dlq.FilterFromQuery.
var formFields = []string{"location", "type", "class", "http_status", "since", "until", "client", "q", "status"}

// dlqFilter reads a DLQ selection from a query or a posted form: the
// form's fields (empty ones left out; since and until also as durations
// back from now; "client" as client_id when a number, else client_ref)
// and id, seq and all; other names (csrf, expected) are ignored.
func dlqFilter(q url.Values, now time.Time) (dlq.Filter, dlqForm, error) {
	form := dlqForm{Location: q.Get("location"), Type: q.Get("type"), Class: q.Get("class"), HTTPStatus: q.Get("http_status"),
		Since: q.Get("since"), Until: q.Get("until"), Client: q.Get("client"), Text: q.Get("q"), Status: q.Get("status")}
	v := url.Values{}
	var errs []error
	for _, name := range formFields {
		val := strings.TrimSpace(q.Get(name))
		if val == "" {
			continue
		}
		switch name {
		case "since", "until":
			t, err := parseWhen(val, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
			val = t.Format(time.RFC3339)
		case "client":
			if _, err := strconv.ParseInt(val, 10, 64); err == nil {
				v.Set("client_id", val)
			} else {
				v.Set("client_ref", val)
			}
			continue
		}
		v.Set(name, val)
	}
	for _, name := range []string{"id", "seq"} {
		for _, val := range q[name] {
			if val = strings.TrimSpace(val); val != "" {
				v.Add(name, val)
			}
		}
	}
	if q.Get("all") == "true" {
		v.Set("all", "true")
	}
	if err := errors.Join(errs...); err != nil {
		return dlq.Filter{}, form, err
	}
	f, err := dlq.FilterFromQuery(v)
	if err == nil {
		err = f.Validate()
	}
	return f, form, err
}

// filterValues writes f back as the query dlqFilter reads, with absolute
// times, so that a confirmation selects exactly what was counted.
func filterValues(f dlq.Filter) url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	if f.LocationID != 0 {
		set("location", strconv.FormatInt(f.LocationID, 10))
	}
	set("type", string(f.Type))
	set("class", string(f.Class))
	if f.HTTPStatus != 0 {
		set("http_status", strconv.Itoa(f.HTTPStatus))
	}
	if !f.Since.IsZero() {
		set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		set("until", f.Until.UTC().Format(time.RFC3339))
	}
	if f.ClientID != 0 {
		set("client", strconv.FormatInt(f.ClientID, 10))
	}
	set("client", f.ClientRef)
	set("q", f.Text)
	set("status", string(f.Status))
	for _, id := range f.IDs {
		v.Add("id", id)
	}
	for _, s := range f.Seqs {
		v.Add("seq", strconv.FormatUint(s, 10))
	}
	if f.All {
		v.Set("all", "true")
	}
	return v
}

// hiddenField is one hidden input of a confirmation form.
type hiddenField struct{ Name, Value string }

func hiddenFields(v url.Values) []hiddenField {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []hiddenField
	for _, k := range keys {
		for _, val := range v[k] {
			out = append(out, hiddenField{k, val})
		}
	}
	return out
}

// describe says in words what a filter selects.
func describe(f dlq.Filter) string {
	var parts []string
	add := func(format string, a ...any) { parts = append(parts, fmt.Sprintf(format, a...)) }
	switch {
	case len(f.Seqs) == 1 && len(f.IDs) == 0:
		add("entry %d", f.Seqs[0])
	case len(f.Seqs) > 0:
		ss := make([]string, len(f.Seqs))
		for i, s := range f.Seqs {
			ss[i] = strconv.FormatUint(s, 10)
		}
		add("entries %s", strings.Join(ss, ", "))
	}
	if len(f.IDs) > 0 {
		add("command %s", strings.Join(f.IDs, ", "))
	}
	if f.LocationID != 0 {
		add("location %d", f.LocationID)
	}
	if f.Type != "" {
		add("type %s", f.Type)
	}
	if f.Class != "" {
		add("class %s", f.Class)
	}
	if f.HTTPStatus != 0 {
		add("HTTP status %d", f.HTTPStatus)
	}
	if !f.Since.IsZero() {
		add("dead-lettered since %s", f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		add("before %s", f.Until.UTC().Format(time.RFC3339))
	}
	if f.ClientID != 0 {
		add("client id %d", f.ClientID)
	}
	if f.ClientRef != "" {
		add("client ref %s", f.ClientRef)
	}
	if f.Text != "" {
		add("text %q", f.Text)
	}
	if f.Status != "" {
		add("status %s", f.Status)
	}
	if len(parts) == 0 {
		return "every entry"
	}
	return strings.Join(parts, ", ")
}

// reasonGroup is one line of the summary by reason.
type reasonGroup struct {
	dlq.ReasonCount
	Sample string
	Link   string
}

// dlqData is the data of the DLQ page.
type dlqData struct {
	Form      dlqForm
	Entries   []dlq.Entry
	Total     int
	Shown     int
	Summary   dlq.Summary
	Groups    []reasonGroup
	Query     template.URL // the filter as a query, already encoded
	Selective bool
	Describe  string
	Err       string
	Types     []commands.Type
	Classes   []commands.ErrorClass
	Statuses  []dlq.Status
}

func (c *Console) dlqList(w http.ResponseWriter, r *http.Request, s *session) {
	f, form, err := dlqFilter(r.URL.Query(), c.cfg.Now())
	d := dlqData{Form: form, Types: commands.Types(), Classes: commands.ErrorClasses(), Statuses: dlq.Statuses()}
	if err != nil {
		d.Err = err.Error()
		c.render(w, http.StatusBadRequest, "dlq", pageFor(s, "DLQ", "dlq", d))
		return
	}
	ctx, cancel := c.timeout(r.Context())
	defer cancel()
	entries, sum, err := c.cfg.DLQ.List(ctx, f)
	if err != nil {
		d.Err = "The DLQ could not be read: " + err.Error()
		c.render(w, http.StatusServiceUnavailable, "dlq", pageFor(s, "DLQ", "dlq", d))
		return
	}
	d.Summary, d.Total = sum, len(entries)
	d.Query = template.URL(filterValues(f).Encode()) // url.Values.Encode escapes every part
	d.Selective, d.Describe = f.Selective(), describe(f)
	for _, rc := range sum.ByReason {
		g := reasonGroup{ReasonCount: rc}
		for _, e := range entries {
			if e.Record.ErrorClass == rc.Class && e.Record.HTTPStatus == rc.HTTPStatus {
				g.Sample = e.Record.Reason
				break
			}
		}
		gf := f
		gf.Class, gf.HTTPStatus = rc.Class, rc.HTTPStatus
		g.Link = "/ui/dlq?" + filterValues(gf).Encode()
		d.Groups = append(d.Groups, g)
	}
	slices.Reverse(entries)
	if len(entries) > dlqListLimit {
		entries = entries[:dlqListLimit]
	}
	d.Entries, d.Shown = entries, len(entries)
	c.render(w, http.StatusOK, "dlq", pageFor(s, "DLQ", "dlq", d))
}

// entryData is the data of one DLQ entry's page.
type entryData struct {
	Entry   dlq.Entry
	Command []byte
	Headers []hiddenField
	TraceID traceLink
}

func (c *Console) dlqEntry(w http.ResponseWriter, r *http.Request, s *session) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		c.notFound(w, r, s, "A DLQ entry is named by its sequence number.")
		return
	}
	ctx, cancel := c.timeout(r.Context())
	defer cancel()
	entries, err := c.cfg.DLQ.Show(ctx, strconv.FormatUint(seq, 10))
	switch {
	case errors.Is(err, dlq.ErrNotFound):
		c.notFound(w, r, s, fmt.Sprintf("There is no DLQ entry %d (it may have been purged).", seq))
		return
	case err != nil:
		c.unavailable(w, s, "dlq", "The DLQ could not be read: "+err.Error())
		return
	}
	e := entries[0]
	d := entryData{Entry: e, Command: e.Record.CommandBytes()}
	h := url.Values(e.Record.Headers)
	d.Headers = hiddenFields(h)
	if t := e.Record.TraceID; t != "" {
		d.TraceID = c.traceLink(t)
	}
	c.render(w, http.StatusOK, "entry", pageFor(s, fmt.Sprintf("DLQ entry %d", seq), "dlq", d))
}

// planData is the data of a confirmation page (replay or purge) and of
// the page that reports what was done.
type planData struct {
	// Action is "replay" or "purge".
	Action   string
	Describe string
	// Count is what the confirmation acts on: entries to replay, or to
	// delete.
	Count   int
	Matched int
	Planned []dlq.Entry
	Skipped []dlq.Skip
	Hidden  []hiddenField
	Back    string
	// Changed is set when the selection no longer counts what the
	// operator confirmed (Was).
	Changed bool
	Was     int
	// Done is set on the report: Replayed or Deleted, and Remaining.
	Done      bool
	Replayed  []dlq.Replayed
	Deleted   []uint64
	Remaining int
	Err       string
}

// selection reads the filter of a plan (the query) or a confirmation (the
// posted form); empty selections are refused by the DLQ service.
func (c *Console) selection(w http.ResponseWriter, r *http.Request, s *session, v url.Values) (dlq.Filter, bool) {
	f, _, err := dlqFilter(v, c.cfg.Now())
	if err != nil {
		c.badRequest(w, s, "dlq", "The selection is not valid: "+err.Error(), "/ui/dlq")
		return f, false
	}
	if !f.Selective() && !f.All {
		c.badRequest(w, s, "dlq", "Select entries or a filter first (or every entry, explicitly).", "/ui/dlq")
		return f, false
	}
	return f, true
}

// upToNow bounds a plan's selection at the time it is shown (when it has no
// end of its own): the confirmation then acts on what the operator counted,
// not on an entry dead-lettered meanwhile in place of one that went away,
// which the count alone would not notice.
func (c *Console) upToNow(f dlq.Filter) dlq.Filter {
	if f.Until.IsZero() && len(f.IDs) == 0 && len(f.Seqs) == 0 {
		f.Until = c.cfg.Now().Truncate(time.Second).Add(time.Second) // the form keeps whole seconds
	}
	return f
}

// replayPlan counts what a replay would do (a dry run) and asks for
// confirmation. It changes nothing.
func (c *Console) replayPlan(w http.ResponseWriter, r *http.Request, s *session) {
	f, ok := c.selection(w, r, s, r.URL.Query())
	if !ok {
		return
	}
	ctx, cancel := c.timeout(r.Context())
	defer cancel()
	f = c.upToNow(f)
	rep, err := c.cfg.DLQ.Replay(ctx, f, dlq.ReplayOptions{DryRun: true})
	if err != nil {
		c.unavailable(w, s, "dlq", "The replay could not be planned: "+err.Error())
		return
	}
	c.render(w, http.StatusOK, "plan", pageFor(s, "Replay", "dlq", c.replayPlanData(f, rep)))
}

func (c *Console) replayPlanData(f dlq.Filter, rep dlq.ReplayReport) planData {
	d := newPlan("replay", f)
	d.Count, d.Matched, d.Planned, d.Skipped = len(rep.Planned), rep.Matched, rep.Planned, rep.Skipped
	return d
}

// newPlan is the plan page's data for action on the selection f: what it
// says of f, the form fields that carry f to the confirmation, and the way
// back to the list.
func newPlan(action string, f dlq.Filter) planData {
	v := filterValues(f)
	return planData{Action: action, Describe: describe(f), Hidden: hiddenFields(v), Back: "/ui/dlq?" + v.Encode()}
}

// confirmed reads a confirmation: the selection and the count the operator
// confirmed. It answers the request itself when they do not parse.
func (c *Console) confirmed(w http.ResponseWriter, r *http.Request, s *session) (dlq.Filter, int, bool) {
	f, ok := c.selection(w, r, s, r.PostForm)
	if !ok {
		return f, 0, false
	}
	expected, err := strconv.Atoi(r.PostForm.Get("expected"))
	if err != nil {
		c.badRequest(w, s, "dlq", "The confirmation does not say how many entries it confirms.", "/ui/dlq")
		return f, 0, false
	}
	return f, expected, true
}

// outcome records err on d and returns the answer's status: 503 when the
// action failed before doing anything (done entries), else 200.
func outcome(d *planData, err error, done int) int {
	if err == nil {
		return http.StatusOK
	}
	d.Err = err.Error()
	if done == 0 {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// replay republishes what the confirmed plan counted: when the selection
// counts differently now, it shows the new plan instead. One request
// replays at most dlq.DefaultHTTPReplayMax entries (throttled by the DLQ
// service); the answer offers to continue.
func (c *Console) replay(w http.ResponseWriter, r *http.Request, s *session) {
	f, expected, ok := c.confirmed(w, r, s)
	if !ok {
		return
	}
	ctx := r.Context()
	plan, err := c.cfg.DLQ.Replay(ctx, f, dlq.ReplayOptions{DryRun: true})
	if err != nil {
		c.unavailable(w, s, "dlq", "The replay could not be planned: "+err.Error())
		return
	}
	if len(plan.Planned) != expected {
		d := c.replayPlanData(f, plan)
		d.Changed, d.Was = true, expected
		c.render(w, http.StatusConflict, "plan", pageFor(s, "Replay", "dlq", d))
		return
	}
	rep, err := c.cfg.DLQ.Replay(ctx, f, dlq.ReplayOptions{Max: dlq.DefaultHTTPReplayMax, Operator: s.operator})
	d := newPlan("replay", f)
	d.Done, d.Replayed, d.Remaining, d.Skipped, d.Matched, d.Count = true, rep.Replayed, rep.Remaining, rep.Skipped, rep.Matched, rep.Remaining
	status := outcome(&d, err, len(rep.Replayed))
	c.log.Info("console: dlq replay", "operator", s.operator, "replayed", len(rep.Replayed), "remaining", rep.Remaining)
	c.render(w, status, "plan", pageFor(s, "Replay", "dlq", d))
}

// purgePlan counts what a purge would delete and asks for confirmation.
func (c *Console) purgePlan(w http.ResponseWriter, r *http.Request, s *session) {
	f, ok := c.selection(w, r, s, r.URL.Query())
	if !ok {
		return
	}
	ctx, cancel := c.timeout(r.Context())
	defer cancel()
	f = c.upToNow(f)
	entries, _, err := c.cfg.DLQ.List(ctx, f)
	if err != nil {
		c.unavailable(w, s, "dlq", "The DLQ could not be read: "+err.Error())
		return
	}
	c.render(w, http.StatusOK, "plan", pageFor(s, "Purge", "dlq", purgePlanData(f, entries)))
}

func purgePlanData(f dlq.Filter, entries []dlq.Entry) planData {
	d := newPlan("purge", f)
	d.Count, d.Matched, d.Planned = len(entries), len(entries), entries
	return d
}

// purge deletes what the confirmed plan counted, or shows the new count
// when it changed.
func (c *Console) purge(w http.ResponseWriter, r *http.Request, s *session) {
	f, expected, ok := c.confirmed(w, r, s)
	if !ok {
		return
	}
	ctx, cancel := c.timeout(r.Context())
	defer cancel()
	entries, _, err := c.cfg.DLQ.List(ctx, f)
	if err != nil {
		c.unavailable(w, s, "dlq", "The DLQ could not be read: "+err.Error())
		return
	}
	if len(entries) != expected {
		d := purgePlanData(f, entries)
		d.Changed, d.Was = true, expected
		c.render(w, http.StatusConflict, "plan", pageFor(s, "Purge", "dlq", d))
		return
	}
	rep, err := c.cfg.DLQ.Purge(ctx, f)
	d := planData{Action: "purge", Done: true, Describe: describe(f), Deleted: rep.Deleted, Matched: rep.Matched,
		Back: "/ui/dlq"}
	status := outcome(&d, err, len(rep.Deleted))
	c.log.Info("console: dlq purge", "operator", s.operator, "deleted", len(rep.Deleted))
	c.render(w, status, "plan", pageFor(s, "Purge", "dlq", d))
}
