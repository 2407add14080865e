package tracing

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// DefaultRecorderSize is how many finished spans NewRecorder keeps when
// given no size: about 500 commands' worth, a few MB.
const DefaultRecorderSize = 4096

// SpanData is one finished span as the Recorder keeps it: plain strings
// and times, ready for JSON.
type SpanData struct {
	// Name is the span name, e.g. "worker.handle".
	Name string `json:"name"`
	// SpanID, ParentID and TraceID are lower-case hex; ParentID is empty for
	// a root span. A parent may be in another process (a remote parent).
	SpanID   string `json:"span_id"`
	ParentID string `json:"parent_id,omitempty"`
	TraceID  string `json:"trace_id"`
	// Start and End are when the span started and ended.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Status is "unset", "ok", or "error" followed by ": " and the
	// description when there is one.
	Status string `json:"status"`
	// Attributes are the span's attributes, values as strings (slices in
	// their JSON-like form).
	Attributes map[string]string `json:"attributes,omitempty"`
	// Links name the spans this one is linked to (a bulk request shared by
	// several commands), as "<trace id>/<span id>".
	Links []string `json:"links,omitempty"`
}

// Recorder keeps the last finished spans in memory, a bounded ring: the
// view of a command's trace for the dev stack and the browser console,
// without a collector. Use it as a span processor (WithRecorder, or
// sdktrace.WithSpanProcessor: spans are visible as soon as they end) or as
// a span exporter (sdktrace.WithBatcher). All methods are safe for
// concurrent use.
type Recorder struct {
	mu      sync.Mutex
	ring    []SpanData
	next    int  // where the next span goes
	full    bool // the ring has wrapped
	stopped bool // shut down: spans are ignored
}

var (
	_ sdktrace.SpanProcessor = (*Recorder)(nil)
	_ sdktrace.SpanExporter  = (*Recorder)(nil)
)

// NewRecorder returns a Recorder keeping the last size finished spans;
// size <= 0 means DefaultRecorderSize.
func NewRecorder(size int) *Recorder {
	if size <= 0 {
		size = DefaultRecorderSize
	}
	return &Recorder{ring: make([]SpanData, size)}
}

// OnStart does nothing: only finished spans are kept.
func (r *Recorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd keeps s, dropping the oldest span when the ring is full.
func (r *Recorder) OnEnd(s sdktrace.ReadOnlySpan) {
	d := spanData(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.put(d)
}

// ExportSpans keeps spans, as OnEnd does for each; it never fails.
func (r *Recorder) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	data := make([]SpanData, len(spans))
	for i, s := range spans {
		data[i] = spanData(s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range data {
		r.put(d)
	}
	return nil
}

// put stores d; r.mu is held.
func (r *Recorder) put(d SpanData) {
	if r.stopped {
		return
	}
	r.ring[r.next] = d
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
}

// Shutdown makes the Recorder ignore later spans; what it holds stays
// readable. It never fails.
func (r *Recorder) Shutdown(context.Context) error {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	return nil
}

// ForceFlush does nothing: spans are kept as they end. It never fails.
func (r *Recorder) ForceFlush(context.Context) error { return nil }

// Trace returns the kept spans of the trace with hex id traceID, ordered by
// start time (a parent before its children when they start together is
// not guaranteed); nil when none is kept. Spans of a long trace may have
// been dropped already.
func (r *Recorder) Trace(traceID string) []SpanData {
	var out []SpanData
	r.each(func(d SpanData) bool {
		if d.TraceID == traceID {
			out = append(out, d)
		}
		return true
	})
	slices.SortStableFunc(out, func(a, b SpanData) int { return a.Start.Compare(b.Start) })
	return out
}

// Recent returns the last n finished spans, newest first (fewer when fewer
// are kept; n <= 0 gives nil).
func (r *Recorder) Recent(n int) []SpanData {
	if n <= 0 {
		return nil
	}
	var out []SpanData
	r.each(func(d SpanData) bool {
		out = append(out, d)
		return len(out) < n
	})
	return out
}

// Len returns how many spans are kept.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return len(r.ring)
	}
	return r.next
}

// each calls f with the kept spans, newest first, until f returns false.
// The maps of the copies are shared with the ring; they are never changed
// after a span is kept.
func (r *Recorder) each(f func(SpanData) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.ring)
	}
	for i := range n {
		j := (r.next - 1 - i + len(r.ring)) % len(r.ring)
		if !f(r.ring[j]) {
			return
		}
	}
}

// spanData converts a finished span.
func spanData(s sdktrace.ReadOnlySpan) SpanData {
	sc := s.SpanContext()
	d := SpanData{
		Name:    s.Name(),
		SpanID:  sc.SpanID().String(),
		TraceID: sc.TraceID().String(),
		Start:   s.StartTime(),
		End:     s.EndTime(),
	}
	if p := s.Parent(); p.IsValid() {
		d.ParentID = p.SpanID().String()
	}
	switch st := s.Status(); st.Code {
	case codes.Ok:
		d.Status = "ok"
	case codes.Error:
		d.Status = "error"
		if st.Description != "" {
			d.Status += ": " + st.Description
		}
	default:
		d.Status = "unset"
	}
	if attrs := s.Attributes(); len(attrs) > 0 {
		d.Attributes = make(map[string]string, len(attrs))
		for _, kv := range attrs {
			d.Attributes[string(kv.Key)] = kv.Value.String()
		}
	}
	for _, l := range s.Links() {
		d.Links = append(d.Links, l.SpanContext.TraceID().String()+"/"+l.SpanContext.SpanID().String())
	}
	return d
}
