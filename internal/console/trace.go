package console

import (
	"cmp"
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/tracing"
)

// Traces looks up the spans of a trace. Implementations must be safe for
// concurrent use; Trace returns an empty slice (no error) for a trace it
// does not know.
type Traces interface {
	Trace(ctx context.Context, traceID string) ([]Span, error)
}

// Span is one span of a trace, as the console shows it.
type Span struct {
	Name     string
	SpanID   string
	ParentID string // empty for a root span
	Start    time.Time
	End      time.Time
	// Status is the span's status: "ok", "error" or "unset" (or the
	// recorder's own words).
	Status     string
	Attributes map[string]string
}

// traceIDPattern is a W3C trace id: 32 lowercase hex digits.
var traceIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// waterfallRow is one span on the waterfall.
type waterfallRow struct {
	Span
	Depth    int
	Indent   int // the name's indent level (a CSS class d0…d12)
	Offset   float64
	Width    float64
	Duration time.Duration
	Attrs    []hiddenField
	Error    bool
}

// traceData is the data of the trace page.
type traceData struct {
	Link  traceLink
	Rows  []waterfallRow
	Total time.Duration
	Err   string
	// Enabled is set when the console has a Traces to ask.
	Enabled bool
}

func (c *Console) tracePage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if !traceIDPattern.MatchString(id) {
		c.notFound(w, r, s, "A trace id is 32 lowercase hexadecimal digits.")
		return
	}
	d := traceData{Link: c.traceLink(id), Enabled: c.cfg.Traces != nil}
	if c.cfg.Traces != nil {
		ctx, cancel := c.timeout(r.Context())
		defer cancel()
		spans, err := c.cfg.Traces.Trace(ctx, id)
		if err != nil {
			d.Err = err.Error()
		} else {
			d.Rows, d.Total = waterfall(spans)
		}
	}
	c.render(w, http.StatusOK, "trace", pageFor(s, "Trace "+id, "commands", d))
}

// maxDepth bounds the indent of the waterfall.
const maxDepth = 12

// waterfall orders spans depth-first under their parents (children by
// start time; spans whose parent is not in the trace are roots) and places
// each on the trace's time line, in percent.
func waterfall(spans []Span) ([]waterfallRow, time.Duration) {
	if len(spans) == 0 {
		return nil, 0
	}
	start, end := spans[0].Start, spans[0].End
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
		if s.Start.Before(start) {
			start = s.Start
		}
		if s.End.After(end) {
			end = s.End
		}
	}
	total := end.Sub(start)
	children := map[string][]Span{}
	var roots []Span
	for _, s := range spans {
		if s.ParentID == "" || !ids[s.ParentID] || s.ParentID == s.SpanID {
			roots = append(roots, s)
			continue
		}
		children[s.ParentID] = append(children[s.ParentID], s)
	}
	byStart := func(a, b Span) int { return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.SpanID, b.SpanID)) }
	slices.SortFunc(roots, byStart)
	var out []waterfallRow
	visited := map[string]bool{}
	var walk func(s Span, depth int)
	walk = func(s Span, depth int) {
		if visited[s.SpanID] {
			return // a cycle in bad data
		}
		visited[s.SpanID] = true
		row := waterfallRow{Span: s, Depth: depth, Indent: min(depth, maxDepth), Duration: s.End.Sub(s.Start),
			Error: strings.HasPrefix(s.Status, "error")}
		if total > 0 {
			row.Offset = 100 * float64(s.Start.Sub(start)) / float64(total)
			row.Width = max(100*float64(s.End.Sub(s.Start))/float64(total), 0.3)
		} else {
			row.Width = 100
		}
		keys := make([]string, 0, len(s.Attributes))
		for k := range s.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			row.Attrs = append(row.Attrs, hiddenField{k, s.Attributes[k]})
		}
		out = append(out, row)
		kids := children[s.SpanID]
		slices.SortFunc(kids, byStart)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return out, total
}

// RecordedTraces serves traces from rec, the spans a process keeps in
// memory (tracing.Recorder): the dev stack, whose ingest and worker share
// one, shows a command's whole trace without any collector.
func RecordedTraces(rec *tracing.Recorder) Traces { return recordedTraces{rec} }

type recordedTraces struct{ rec *tracing.Recorder }

func (r recordedTraces) Trace(_ context.Context, traceID string) ([]Span, error) {
	var out []Span
	for _, s := range r.rec.Trace(traceID) {
		out = append(out, Span{Name: s.Name, SpanID: s.SpanID, ParentID: s.ParentID, Start: s.Start, End: s.End,
			Status: s.Status, Attributes: s.Attributes})
	}
	return out, nil
}
