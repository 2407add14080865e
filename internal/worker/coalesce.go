package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/tracing"
)

// Budget is the shared API budget as the worker waits on it itself
// (*ratelimit.Limiter); see altegio.Limiter for the meaning of Wait.
type Budget interface {
	Wait(ctx context.Context, flow string, urgent bool) (func() bool, error)
}

// waitBudget waits for a slot in location's flow of the budget, until ctx
// ends or the worker stops. Without a Budget it returns a nil check at once
// (the API client then waits on its own).
func (w *Worker) waitBudget(ctx context.Context, location int64) (func() bool, error) {
	if w.cfg.Budget == nil {
		return nil, nil
	}
	ctx, cancel := w.untilStopping(ctx)
	defer cancel()
	return w.cfg.Budget.Wait(ctx, w.cfg.Flow(location), false)
}

// untilStopping returns a context that also ends when the worker stops.
func (w *Worker) untilStopping(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-w.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// coalescable returns the fields of a create that may share a bulk
// request: not being reconciled (that looks the client up first), and
// without custom_fields, which bulk does not document.
func (j *job) coalescable(reconcile bool) (commands.ClientFields, bool) {
	if j.cmd.Type != commands.TypeClientCreate || reconcile || j.w.cfg.CreateBatch < 2 {
		return commands.ClientFields{}, false
	}
	f, err := j.cmd.ClientFields()
	return f, err == nil && len(f.CustomFields) == 0
}

// attemptCoalesced makes one attempt of the create of fields f through the
// coalescer: wait to be picked for a request whose budget slot has come,
// record the intent, and act on this create's own outcome. Each create
// keeps its own idempotency record and result event; an unknown outcome of
// the shared request makes each create reconcile by phone on its retry.
func (j *job) attemptCoalesced(ctx context.Context, f commands.ClientFields) error {
	w := j.w
	it := &createItem{
		in:     inputFromFields(f),
		picked: make(chan bool, 1),
		intent: make(chan bool, 1),
		done:   make(chan createResult, 1),
		sc:     j.span.SpanContext(),
	}
	it.phone = commands.NormalizePhone(it.in.Phone)
	loc := j.cmd.LocationID
	// The wait to be picked is this create's wait for the budget (the
	// location's sender takes the slot).
	_, wait := w.tracer.Start(ctx, "ratelimit.wait")
	if wait.IsRecording() {
		wait.SetAttributes(tracing.AttrFlow.String(w.cfg.Flow(loc)), attribute.Bool("worker.coalesced", true))
	}
	w.creates.add(loc, it)
	wctx, cancel := w.untilStopping(ctx)
	var sending bool
	select {
	case sending = <-it.picked:
	case <-wctx.Done():
		if w.creates.remove(loc, it) {
			cancel()
			tracing.SetError(wait, wctx.Err())
			wait.End()
			return j.notSent(wctx.Err())
		}
		sending = <-it.picked
	}
	cancel()
	wait.End()
	if !sending {
		return j.notSent(altegio.ErrNotSent)
	}
	// The sender waits for every picked item's answer: give it one on every
	// path, a panic included.
	ready := false
	defer func() {
		if !ready {
			it.intent <- false
		}
	}()
	if err := j.recordIntent(ctx, 0); err != nil {
		return j.intentFailed(err)
	}
	j.log.Debug("attempt (coalesced create)")
	if h := w.hooks.beforeAPI; h != nil {
		h(j.cmd, j.rec.Attempts)
	}
	ready = true
	it.intent <- true
	res := <-it.done
	j.apiLatency = res.latency
	if res.shared.IsValid() && res.shared.TraceID() != it.sc.TraceID() {
		// The bulk request lives in another command's trace.
		j.span.AddLink(trace.Link{SpanContext: res.shared})
	}
	if h := w.hooks.afterAPI; h != nil {
		h(j.cmd, res.err)
	}
	if res.err != nil {
		return j.fail(ctx, res.err, false)
	}
	out := outcome{data: marshal(res.rec), clientID: res.rec.ID}
	if res.batch > 1 {
		out.note = fmt.Sprintf("created in one bulk request with %d other client(s)", res.batch-1)
	}
	return j.succeed(ctx, out)
}

// createItem is one create waiting in the coalescer.
type createItem struct {
	in    altegio.ClientInput
	phone string // normalized; two items with one phone never share a request
	// picked receives true when the item is in a request about to be sent
	// (the job then records its intent), false when it will not be sent.
	picked chan bool
	// intent receives the job's answer: true when the intent is recorded.
	intent chan bool
	done   chan createResult
	// sc is the span context of the job's worker.handle span: the parent
	// of the request's spans, or a link of a shared bulk request.
	sc trace.SpanContext
}

// createResult is one create's share of a request's outcome.
type createResult struct {
	rec     altegio.ClientRecord
	err     error
	batch   int // creates in the request
	latency time.Duration
	// shared is the worker.bulk_create span of a request shared by
	// several creates (invalid for a create sent alone).
	shared trace.SpanContext
}

// coalescer gathers the creates of each location that wait for the budget
// at the same moment into one request: one goroutine per location with
// creates waiting takes a slot, then up to CreateBatch of them.
type coalescer struct {
	w      *Worker
	mu     sync.Mutex
	queues map[int64][]*createItem
}

func newCoalescer(w *Worker) *coalescer {
	return &coalescer{w: w, queues: make(map[int64][]*createItem)}
}

// add queues it, starting the location's sender when it has none.
func (c *coalescer) add(loc int64, it *createItem) {
	c.mu.Lock()
	q, running := c.queues[loc]
	c.queues[loc] = append(q, it)
	c.mu.Unlock()
	if !running {
		go c.run(loc)
	}
}

// remove takes a waiting item out of the queue; false when it was picked.
func (c *coalescer) remove(loc int64, it *createItem) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queues[loc]
	i := slices.Index(q, it)
	if i < 0 {
		return false
	}
	c.queues[loc] = slices.Delete(q, i, i+1)
	return true
}

// take picks up to CreateBatch waiting items with distinct phones (the API
// reports bulk errors by phone), oldest first. With none left it removes
// the queue, which ends the sender (done is true).
func (c *coalescer) take(loc int64) (batch []*createItem, done bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queues[loc]
	if len(q) == 0 {
		delete(c.queues, loc)
		return nil, true
	}
	phones := make(map[string]bool)
	rest := q[:0:0]
	for _, it := range q {
		if len(batch) < c.w.cfg.CreateBatch && (it.phone == "" || !phones[it.phone]) {
			phones[it.phone] = true
			batch = append(batch, it)
			continue
		}
		rest = append(rest, it)
	}
	c.queues[loc] = rest
	return batch, false
}

// idle removes loc's queue when nobody waits in it (which ends its sender)
// and reports whether it did.
func (c *coalescer) idle(loc int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queues[loc]) > 0 {
		return false
	}
	delete(c.queues, loc)
	return true
}

// abandon tells every waiting item of loc that it will not be sent.
func (c *coalescer) abandon(loc int64) {
	c.mu.Lock()
	q := c.queues[loc]
	delete(c.queues, loc)
	c.mu.Unlock()
	for _, it := range q {
		it.picked <- false
	}
}

// run sends the creates of loc while any wait: take a budget slot, pick a
// batch, let each job record its intent, send one request, hand each job
// its outcome.
func (c *coalescer) run(loc int64) {
	for {
		if c.idle(loc) {
			return // nobody waits: take no slot
		}
		check, err := c.w.waitBudget(context.Background(), loc)
		if err != nil {
			c.abandon(loc) // the worker is stopping
			return
		}
		batch, done := c.take(loc)
		if done {
			return // everybody left while we waited: the slot goes unused
		}
		for _, it := range batch {
			it.picked <- true
		}
		var ready []*createItem
		for _, it := range batch {
			if <-it.intent {
				ready = append(ready, it)
			}
		}
		if len(ready) > 0 {
			c.send(loc, ready, check)
		}
	}
}

// send makes the request for ready (one create alone, several in one bulk
// request) and gives each item its outcome.
func (c *coalescer) send(loc int64, ready []*createItem, check func() bool) {
	w := c.w
	w.metrics.createBatch.Observe(float64(len(ready)))
	// Each exchange is bounded by the client; a wait for a later slot (the
	// taken one came too late) ends when the worker stops.
	ctx, cancel := w.untilStopping(context.Background())
	defer cancel()
	if check != nil {
		ctx = altegio.WithSlot(ctx, check)
	}
	// The request's spans belong to the first create's trace; a shared
	// bulk request is a worker.bulk_create span there, linked to every
	// other create's handle span (which links back).
	ctx = trace.ContextWithSpanContext(ctx, ready[0].sc)
	var shared trace.SpanContext
	var bulkSpan trace.Span
	if len(ready) > 1 {
		links := make([]trace.Link, 0, len(ready)-1)
		for _, it := range ready[1:] {
			if it.sc.IsValid() {
				links = append(links, trace.Link{SpanContext: it.sc})
			}
		}
		ctx, bulkSpan = w.tracer.Start(ctx, "worker.bulk_create", trace.WithLinks(links...))
		defer bulkSpan.End()
		if bulkSpan.IsRecording() {
			bulkSpan.SetAttributes(tracing.AttrBatchSize.Int(len(ready)), tracing.AttrLocationID.Int64(loc))
		}
		shared = bulkSpan.SpanContext()
	}
	start := time.Now()
	deliver := func(it *createItem, rec altegio.ClientRecord, err error) {
		it.done <- createResult{rec: rec, err: err, batch: len(ready), latency: time.Since(start), shared: shared}
	}
	if len(ready) == 1 {
		rec, err := w.api.CreateClient(ctx, loc, ready[0].in)
		deliver(ready[0], rec, err)
		return
	}
	inputs := make([]altegio.ClientInput, len(ready))
	for i, it := range ready {
		inputs[i] = it.in
	}
	res, err := w.api.BulkCreateClients(ctx, loc, inputs)
	tracing.SetError(bulkSpan, err)
	if err != nil {
		for _, it := range ready {
			deliver(it, altegio.ClientRecord{}, err)
		}
		return
	}
	for i, it := range ready {
		item := res.Items[i]
		switch item.Outcome {
		case altegio.BulkCreated:
			deliver(it, *item.Client, nil)
		case altegio.BulkFailed:
			// The API refused this client alone: the same error a create
			// of its own would have met.
			deliver(it, altegio.ClientRecord{}, &altegio.APIError{
				Op: altegio.OpBulkCreate, Method: "POST", Path: fmt.Sprintf("/clients/%d/bulk", loc),
				Status: 422, Message: item.Error.Message,
			})
		default:
			// No outcome reported: it may or may not exist; the retry
			// reconciles by phone.
			deliver(it, altegio.ClientRecord{}, &altegio.TransportError{
				Op: altegio.OpBulkCreate, Method: "POST", Path: fmt.Sprintf("/clients/%d/bulk", loc),
				Err: errors.New("the bulk answer reported no outcome for this client"),
			})
		}
	}
}
