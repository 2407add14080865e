package console

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/idem"
)

// commandListLimit is how many commands the list shows.
const commandListLimit = 100

// commandQuery is the commands list's filter: the form's values as typed,
// and what they mean.
type commandQuery struct {
	Location, Type, Outcome, Client, ID, Since, Until string

	loc     int64
	typ     commands.Type
	outcome commands.Outcome
	since   time.Time
	until   time.Time
}

// parseWhen reads a time bound: empty (none), a duration back from now
// ("90m", "24h", "7d"), RFC 3339, or the form "2006-01-02T15:04" (UTC).
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration back from now (90m, 24h, 7d) nor a time (2026-11-30T10:00:00Z)", s)
}

// parseCommandQuery reads the list's filter. Since defaults to 1h.
func parseCommandQuery(q url.Values, now time.Time) (commandQuery, error) {
	cq := commandQuery{
		Location: strings.TrimSpace(q.Get("location")), Type: q.Get("type"), Outcome: q.Get("outcome"),
		Client: strings.TrimSpace(q.Get("client")), ID: strings.TrimSpace(q.Get("id")),
		Since: strings.TrimSpace(q.Get("since")), Until: strings.TrimSpace(q.Get("until")),
	}
	if !q.Has("since") {
		cq.Since = "1h"
	}
	var errs []error
	if cq.Location != "" {
		n, err := strconv.ParseInt(cq.Location, 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("location %q is not a location id", cq.Location))
		}
		cq.loc = n
	}
	if cq.Type != "" {
		if cq.typ = commands.Type(cq.Type); !cq.typ.Valid() {
			errs = append(errs, fmt.Errorf("type %q is not a command type", cq.Type))
		}
	}
	if cq.Outcome != "" {
		if cq.outcome = commands.Outcome(cq.Outcome); !cq.outcome.Valid() {
			errs = append(errs, fmt.Errorf("outcome %q is not an outcome", cq.Outcome))
		}
	}
	var err error
	if cq.since, err = parseWhen(cq.Since, now); err != nil {
		errs = append(errs, fmt.Errorf("since: %w", err))
	}
	if cq.until, err = parseWhen(cq.Until, now); err != nil {
		errs = append(errs, fmt.Errorf("until: %w", err))
	}
	if !cq.since.IsZero() && !cq.until.IsZero() && !cq.until.After(cq.since) {
		errs = append(errs, errors.New("until must be after since"))
	}
	return cq, errors.Join(errs...)
}

// filter is the EVENTS subject filter the query narrows to.
func (cq commandQuery) filter() string {
	op := ""
	if cq.typ != "" {
		op = cq.typ.Op()
	}
	return commands.EventFilter(cq.loc, op, cq.outcome)
}

// matches reports whether an event passes the filters the subject does
// not express.
func (cq commandQuery) matches(e storedEvent) bool {
	switch {
	case cq.typ != "" && e.Type != cq.typ,
		cq.outcome != "" && e.Outcome != cq.outcome,
		cq.loc != 0 && e.LocationID != cq.loc:
		return false
	case cq.Client != "" && e.ClientRef != cq.Client && (e.ClientID == 0 || strconv.FormatInt(e.ClientID, 10) != cq.Client):
		return false
	}
	return true
}

// commandsData is the data of the commands list.
type commandsData struct {
	Q         commandQuery
	Rows      []storedEvent
	Read      int
	Truncated bool
	More      bool
	Err       string
	Types     []commands.Type
	Outcomes  []commands.Outcome
}

func (c *Console) commandList(w http.ResponseWriter, r *http.Request, s *session) {
	now := c.cfg.Now()
	cq, err := parseCommandQuery(r.URL.Query(), now)
	d := commandsData{Q: cq, Types: commands.Types(), Outcomes: commands.Outcomes()}
	if err != nil {
		d.Err = err.Error()
		c.render(w, http.StatusBadRequest, "commands", pageFor(s, "Commands", "commands", d))
		return
	}
	if cq.ID != "" {
		if !commands.ValidID(cq.ID) {
			d.Err = fmt.Sprintf("command id %q is not a command id (a lowercase UUID)", cq.ID)
			c.render(w, http.StatusBadRequest, "commands", pageFor(s, "Commands", "commands", d))
			return
		}
		http.Redirect(w, r, "/ui/commands/"+cq.ID, http.StatusSeeOther)
		return
	}
	ctx, cancel := c.timeout(r.Context())
	defer cancel()
	latest := map[string]storedEvent{}
	d.Truncated, err = scan(ctx, c.cfg.JS, cq.filter(), cq.since, scanLimit, func(e storedEvent) bool {
		if !cq.until.IsZero() && !e.At.Before(cq.until) {
			return false
		}
		d.Read++
		if e.CommandID != "" && cq.matches(e) {
			latest[e.CommandID] = e
		}
		return true
	})
	if err != nil {
		d.Err = "The events could not be read: " + err.Error()
		c.render(w, http.StatusServiceUnavailable, "commands", pageFor(s, "Commands", "commands", d))
		return
	}
	for _, e := range latest {
		d.Rows = append(d.Rows, e)
	}
	slices.SortFunc(d.Rows, func(a, b storedEvent) int { return cmp.Compare(b.Seq, a.Seq) })
	if len(d.Rows) > commandListLimit {
		d.Rows, d.More = d.Rows[:commandListLimit], true
	}
	c.render(w, http.StatusOK, "commands", pageFor(s, "Commands", "commands", d))
}

// step is one line of a command's timeline.
type step struct {
	At      time.Time
	Kind    string // accepted, attempt, failed, dead, replayed, succeeded, superseded, duplicate, retrying
	Title   string
	Detail  string
	Class   commands.ErrorClass
	Status  int
	Message string
	Link    string
	LinkTxt string
	TraceID string
	Data    []byte
}

// timelineData is the data of a command's timeline.
type timelineData struct {
	ID        string
	Type      commands.Type
	Location  int64
	Client    string
	State     string
	Record    *idem.Record
	RecordRaw []byte
	Steps     []step
	Entries   []dlq.Entry
	Dead      []uint64 // DLQ entries that can be replayed
	Traces    []traceLink
	// Searched says which events were read, Problems what could not be.
	Searched  string
	Truncated bool
	Problems  []string
}

// traceLink is a trace id and where it opens.
type traceLink struct {
	ID       string
	Internal string // the console's trace page, when Traces is set
	External string // TraceURL's link, when set
}

func (c *Console) traceLink(id string) traceLink {
	l := traceLink{ID: id}
	if c.cfg.Traces != nil {
		l.Internal = "/ui/traces/" + url.PathEscape(id)
	}
	if c.cfg.TraceURL != "" {
		l.External = strings.ReplaceAll(c.cfg.TraceURL, "{trace_id}", url.PathEscape(id))
	}
	return l
}

func (c *Console) timeline(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if !commands.ValidID(id) {
		c.notFound(w, r, s, "A command id is a lowercase UUID.")
		return
	}
	ctx, cancel := c.timeout(r.Context())
	defer cancel()
	d, found := c.buildTimeline(ctx, id, r.URL.Query())
	title := "Command " + id
	if !found {
		c.render(w, http.StatusNotFound, "timeline", pageFor(s, title, "commands", d))
		return
	}
	c.render(w, http.StatusOK, "timeline", pageFor(s, title, "commands", d))
}

// buildTimeline gathers what is known of a command: its idempotency
// record, its DLQ entries and its result events. hints may name its
// location ("location"), type ("type") and a time ("at", RFC 3339) when
// the record and the DLQ do not (the list's links carry them). found is
// false when nothing at all is known.
func (c *Console) buildTimeline(ctx context.Context, id string, hints url.Values) (timelineData, bool) {
	d := timelineData{ID: id}
	now := c.cfg.Now()
	var times []time.Time

	if kv, err := c.idem.Get(ctx, c.cfg.JS); err != nil {
		d.Problems = append(d.Problems, "idempotency record: "+err.Error())
	} else if rec, _, err := idem.Load(ctx, kv, id); err == nil {
		d.Record = &rec
		d.RecordRaw, _ = json.Marshal(rec)
		d.State = string(rec.State)
		if rec.Result != nil {
			d.Type, d.Location = rec.Result.Type, rec.Result.LocationID
			d.Client = clientText(rec.Result.ClientID, rec.Result.ClientRef)
		}
		times = append(times, rec.FirstAttemptAt)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		d.Problems = append(d.Problems, "idempotency record: "+err.Error())
	}

	if entries, err := c.cfg.DLQ.Show(ctx, id); err == nil {
		d.Entries = entries
		for _, e := range entries {
			if d.Type == "" {
				d.Type, d.Location = e.Record.Type, e.Record.LocationID
			}
			if d.Client == "" {
				d.Client = clientText(e.ClientID, e.ClientRef)
			}
			if e.Status == dlq.StatusDead {
				d.Dead = append(d.Dead, e.Seq)
			}
			times = append(times, e.DeadLetteredAt())
		}
	} else if !errors.Is(err, dlq.ErrNotFound) {
		d.Problems = append(d.Problems, "DLQ: "+err.Error())
	}

	if d.Location == 0 {
		if n, err := strconv.ParseInt(hints.Get("location"), 10, 64); err == nil && n > 0 {
			d.Location = n
		}
	}
	if d.Type == "" {
		if t := commands.Type(hints.Get("type")); t.Valid() {
			d.Type = t
		}
	}
	if t, err := time.Parse(time.RFC3339, hints.Get("at")); err == nil {
		times = append(times, t)
	}

	// The events: from a little before the earliest known time (a day
	// back when none is known) to the end of the stream, on the
	// command's location and operation when they are known.
	since := now.Add(-24 * time.Hour)
	if first := earliest(times); !first.IsZero() {
		since = first.Add(-10 * time.Minute)
	}
	op := ""
	if d.Type.Valid() {
		op = d.Type.Op()
	}
	filter := commands.EventFilter(d.Location, op, "")
	d.Searched = fmt.Sprintf("events on %s since %s", filter, since.UTC().Format(time.RFC3339))
	var events []storedEvent
	truncated, err := scan(ctx, c.cfg.JS, filter, since, scanLimit, func(e storedEvent) bool {
		if e.CommandID == id {
			events = append(events, e)
		}
		return true
	})
	d.Truncated = truncated
	if err != nil {
		d.Problems = append(d.Problems, "events: "+err.Error())
	}
	if d.Type == "" && len(events) > 0 {
		d.Type, d.Location = events[0].Type, events[0].LocationID
	}
	if d.Client == "" && len(events) > 0 {
		last := events[len(events)-1]
		d.Client = clientText(last.ClientID, last.ClientRef)
	}
	d.Steps = c.steps(d, events)
	seen := map[string]bool{}
	for _, e := range events {
		if e.TraceID != "" && !seen[e.TraceID] {
			seen[e.TraceID] = true
			d.Traces = append(d.Traces, c.traceLink(e.TraceID))
		}
	}
	for _, e := range d.Entries {
		if t := e.Record.TraceID; t != "" && !seen[t] {
			seen[t] = true
			d.Traces = append(d.Traces, c.traceLink(t))
		}
	}
	return d, d.Record != nil || len(d.Entries) > 0 || len(events) > 0
}

// steps orders what happened to the command.
func (c *Console) steps(d timelineData, events []storedEvent) []step {
	var out []step
	// Accepted: the result's completion minus its total time is when the
	// command was stored in COMMANDS (the original publication; a
	// replay's is the replay's).
	var accepted time.Time
	for _, e := range events {
		if e.TotalMS > 0 && e.Replay == 0 && e.Outcome != commands.OutcomeReplayed {
			at := e.CompletedAt.Add(-time.Duration(e.TotalMS) * time.Millisecond)
			if accepted.IsZero() || at.Before(accepted) {
				accepted = at
			}
		}
	}
	switch {
	case !accepted.IsZero():
		out = append(out, step{At: accepted, Kind: "accepted", Title: "Accepted",
			Detail: "stored in the COMMANDS stream (its result's completion time minus total_ms)"})
	case d.Record != nil && !d.Record.FirstAttemptAt.IsZero():
		out = append(out, step{At: d.Record.FirstAttemptAt, Kind: "accepted", Title: "First attempt started",
			Detail: "when it was accepted is not known yet: no result event gives it"})
	}
	if d.Record != nil && d.Record.Deferrals > 0 {
		out = append(out, step{At: d.Record.FirstAttemptAt, Kind: "deferred",
			Title:  "Deferred " + count(d.Record.Deferrals, "time", "times"),
			Detail: "429 answers or waits behind an older command of the same client; not attempts (times not recorded)"})
	}
	deadGens := map[int]bool{}
	for _, e := range events {
		s := step{At: e.At, Class: e.ErrorClass, Status: e.HTTPStatus, Message: e.APIMessage, TraceID: e.TraceID}
		gen := ""
		if e.Replay > 0 {
			gen = fmt.Sprintf(" (replay %d)", e.Replay)
		}
		switch e.Outcome {
		case commands.OutcomeFailed:
			s.Kind, s.Title = "failed", fmt.Sprintf("Attempt %d failed%s", e.Attempts, gen)
			s.Detail = "retryable; tried again later"
		case commands.OutcomeDeadLettered:
			deadGens[e.Replay] = true
			s.Kind, s.Title = "dead", "Dead-lettered"+gen
			s.Detail = "after " + count(e.Attempts, "attempt", "attempts")
			for _, en := range d.Entries {
				if en.Record.Replay == e.Replay {
					s.Link, s.LinkTxt = fmt.Sprintf("/ui/dlq/%d", en.Seq), fmt.Sprintf("DLQ entry %d", en.Seq)
					s.Message = cmp.Or(en.Record.Reason, s.Message)
				}
			}
		case commands.OutcomeReplayed:
			s.Kind, s.Title = "replayed", fmt.Sprintf("Replayed from the DLQ (generation %d)", e.Replay)
			s.Detail, s.Message = e.Note, ""
			s.Class, s.Status = "", 0
			if e.ReplayOf > 0 {
				s.Link, s.LinkTxt = fmt.Sprintf("/ui/dlq/%d", e.ReplayOf), fmt.Sprintf("DLQ entry %d", e.ReplayOf)
			}
		case commands.OutcomeSucceeded, commands.OutcomePartiallySucceeded:
			s.Kind, s.Title = "succeeded", strings.ToUpper(string(e.Outcome[:1]))+strings.ReplaceAll(string(e.Outcome[1:]), "_", " ")+gen
			s.Detail = fmt.Sprintf("attempt %d; %d ms in API calls, %d ms since stored", e.Attempts, e.APILatencyMS, e.TotalMS)
			if e.Note != "" {
				s.Detail += "; " + e.Note
			}
			s.Data = e.Data
		case commands.OutcomeSuperseded:
			s.Kind, s.Title, s.Detail = "superseded", "Superseded"+gen, e.Note
		case commands.OutcomeDuplicate:
			s.Kind, s.Title, s.Detail = "duplicate", "Delivered again"+gen, "already done: the API was not called"
		default:
			s.Kind, s.Title = "info", string(e.Outcome)+gen
		}
		out = append(out, s)
	}
	// DLQ entries without their event (older events expired, or the
	// event could not be read).
	for _, en := range d.Entries {
		if !deadGens[en.Record.Replay] {
			out = append(out, step{At: en.DeadLetteredAt(), Kind: "dead", Title: "Dead-lettered",
				Detail: "after " + count(en.Record.Attempts, "attempt", "attempts") + " (from the DLQ entry)",
				Class:  en.Record.ErrorClass, Status: en.Record.HTTPStatus, Message: en.Record.Reason,
				Link: fmt.Sprintf("/ui/dlq/%d", en.Seq), LinkTxt: fmt.Sprintf("DLQ entry %d", en.Seq)})
		}
	}
	if rec := d.Record; rec != nil && rec.State == idem.StateInFlight && rec.LastError != "" {
		out = append(out, step{At: rec.LastFailureAt, Kind: "retrying", Title: "Being retried",
			Detail: count(rec.Attempts, "attempt", "attempts") + " so far; the last failed with:",
			Class:  rec.LastClass, Status: rec.LastStatus, Message: rec.LastError})
	}
	slices.SortStableFunc(out, func(a, b step) int { return a.At.Compare(b.At) })
	return out
}

// earliest returns the earliest non-zero time.
func earliest(ts []time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if !t.IsZero() && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	return out
}

// clientText names a client for people.
func clientText(id int64, ref string) string {
	switch {
	case ref != "" && id > 0:
		return fmt.Sprintf("ref %s (id %d)", ref, id)
	case ref != "":
		return "ref " + ref
	case id > 0:
		return "id " + strconv.FormatInt(id, 10)
	}
	return ""
}
