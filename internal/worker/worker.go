package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/tracing"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// Errors returned by Worker.
var (
	// ErrAlreadyRun is returned by a second call of Run.
	ErrAlreadyRun = errors.New("worker: Run called twice")
	// ErrNotRunning is returned by Ready before Run has bound the
	// streams and buckets, and after Run returned.
	ErrNotRunning = errors.New("worker: not running")
	// ErrNotConnected is returned by Ready while the NATS connection is down.
	ErrNotConnected = errors.New("worker: nats not connected")
)

// Worker consumes commands from the COMMANDS stream (one subscriber per
// partition consumer, ordered lanes per client), carries them out against
// the Altegio API exactly once in effect, publishes one terminal result
// event per command, and dead-letters what cannot succeed. It also runs the
// max-deliveries sweeper. Build it with New and start it with Run; Ready
// may be called concurrently with Run.
type Worker struct {
	cfg        Config
	js         jetstream.JetStream
	api        API
	log        *slog.Logger
	metrics    *metrics
	partitions int
	// maxDeliver and pinned are per partition consumer, from the topology.
	maxDeliver map[int]int
	maxHeld    map[int]int // the consumer's max_ack_pending beyond MaxInFlight
	dlqMaxMsg  int64       // the DLQ stream's max message size, 0 when unbounded
	pinned     map[int]bool

	// Bound by Run.
	idem     recordStore
	refs     refStore
	history  jetstream.KeyValue // the client history (history.go)
	pub      *wmjetstream.Publisher
	commands jetstream.Stream

	started atomic.Bool
	running atomic.Bool
	// stopping is closed when Run's context ends: commands still waiting
	// for the budget give up at once and are handed back.
	stopping chan struct{}
	creates  *coalescer
	swept    reportedOnce // stuck commands the sweeper reported
	// pausedPublished maps an account to the accountPausedEvery period in
	// which this process last published its paused event.
	pausedPublished sync.Map

	hooks  hooks
	tracer trace.Tracer
}

// hooks let tests stop the worker at chosen points.
type hooks struct {
	// beforeAPI runs after the attempt's intent is recorded.
	beforeAPI func(cmd commands.Command, attempt int)
	// afterAPI runs after the API work, before anything is recorded.
	afterAPI func(cmd commands.Command, err error)
	// afterRecord runs after the record is saved as done or dead, before
	// anything is published.
	afterRecord func(cmd commands.Command, state idem.State)
}

// New returns a Worker for the streams, consumers and buckets described by
// top (apply them with topology.Apply first; New does no I/O). api is the
// Altegio client, built with the shared rate limiter and the auth manager.
// The worker does not own the NATS connection: the caller drains it after
// Run returns. New fails when a dependency is nil, the configuration is
// invalid (RetryMax must stay below two thirds of every worker consumer's
// AckWait, HandlerTimeout below every pinned consumer's priority timeout),
// or the metrics cannot be registered.
func New(cfg Config, js jetstream.JetStream, api API, top *topology.Topology) (*Worker, error) {
	if js == nil || api == nil || top == nil {
		return nil, errors.New("worker: jetstream, api and topology are required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	if err := top.Validate(); err != nil {
		return nil, fmt.Errorf("worker topology: %w", err)
	}
	w := &Worker{
		cfg: cfg, js: js, api: api,
		log:        cfg.Logger.With(slog.String("worker_id", cfg.WorkerID)),
		partitions: top.Partitions(),
		maxDeliver: make(map[int]int),
		maxHeld:    make(map[int]int),
		pinned:     make(map[int]bool),
		stopping:   make(chan struct{}),
		tracer:     tracing.Provider(cfg.TracerProvider).Tracer(tracerName),
	}
	w.creates = newCoalescer(w)
	for p := range w.partitions {
		c, ok := top.Consumer(topology.StreamCommands, topology.WorkerConsumer(p))
		if !ok {
			return nil, fmt.Errorf("worker topology: no consumer %s", topology.WorkerConsumer(p))
		}
		cc := c.Config
		deadline := cc.AckWait
		if deadline <= 0 {
			deadline = 30 * time.Second
		}
		for _, b := range cc.BackOff {
			deadline = min(deadline, b)
		}
		if limit := deadline * 2 / 3; cfg.RetryMax >= limit {
			return nil, fmt.Errorf("worker config: retry max %v must be below %v (two thirds of consumer %s's ack wait %v), "+
				"or a parked command could be overtaken after a crash", cfg.RetryMax, limit, cc.Durable, deadline)
		}
		if cc.PriorityPolicy == jetstream.PriorityPolicyPinned && cc.PinnedTTL > 0 && cfg.HandlerTimeout >= cc.PinnedTTL {
			return nil, fmt.Errorf("worker config: handler timeout %v must be below consumer %s's priority timeout %v, "+
				"or a busy worker loses its pin and another overtakes its clients", cfg.HandlerTimeout, cc.Durable, cc.PinnedTTL)
		}
		w.maxDeliver[p] = cc.MaxDeliver
		if cc.MaxAckPending > 0 { // else the subscriber's default
			w.maxHeld[p] = max(cc.MaxAckPending-cfg.MaxInFlight, 1)
		}
		w.pinned[p] = cc.PriorityPolicy == jetstream.PriorityPolicyPinned
	}
	for _, s := range top.Streams {
		if s.Name == topology.StreamDLQ && s.MaxMsgSize > 0 {
			w.dlqMaxMsg = int64(s.MaxMsgSize)
		}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	w.metrics = m
	return w, nil
}

// Run consumes commands until ctx ends, then shuts down: it stops fetching,
// lets in-flight commands finish within CloseTimeout (each is then acked,
// retried or terminated by its handler), gives every other message back to
// the server (nak, in lane order), and returns. It returns nil after a
// shutdown caused by ctx, and an error when the streams or buckets are
// missing or the subscriptions cannot start. Run may be called once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	if err := w.bind(ctx); err != nil {
		return err
	}
	pub, err := wmjetstream.NewPublisher(w.js, wmjetstream.PublisherConfig{
		PublishTimeout: w.cfg.BookkeepingTimeout, Logger: w.log,
	})
	if err != nil {
		return fmt.Errorf("worker publisher: %w", err)
	}
	w.pub = pub
	defer pub.Close()

	router, subs, sh, err := w.router()
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range subs {
			_ = s.Close()
		}
	}()

	var wg sync.WaitGroup
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer func() {
		stopPoll()
		wg.Wait()
	}()
	stop := context.AfterFunc(ctx, func() { close(w.stopping) })
	defer stop()
	if w.cfg.PendingInterval > 0 {
		wg.Go(func() { w.pollPending(pollCtx) })
	}
	wg.Go(func() { sh.run(ctx) })
	wg.Go(func() { w.watchRefused(pollCtx) })

	w.running.Store(true)
	defer w.running.Store(false)
	w.log.Info("worker running", slog.Int("partitions", w.partitions), slog.Int("max_in_flight", w.cfg.MaxInFlight))
	err = router.Run(ctx)
	close(sh.stopped) // every subscription has handed back: stop announcing
	if err != nil {
		return fmt.Errorf("worker router: %w", err)
	}
	w.log.Info("worker stopped")
	return nil
}

// bind opens the buckets and streams Run needs.
func (w *Worker) bind(ctx context.Context) error {
	bctx, cancel := context.WithTimeout(ctx, w.cfg.BookkeepingTimeout)
	defer cancel()
	idem, err := w.js.KeyValue(bctx, topology.BucketIdempotency)
	if err != nil {
		return fmt.Errorf("bind bucket %s: %w", topology.BucketIdempotency, err)
	}
	refs, err := w.js.KeyValue(bctx, topology.BucketClientRefs)
	if err != nil {
		return fmt.Errorf("bind bucket %s: %w", topology.BucketClientRefs, err)
	}
	s, err := w.js.Stream(bctx, topology.StreamCommands)
	if err != nil {
		return fmt.Errorf("bind stream %s: %w", topology.StreamCommands, err)
	}
	if info := s.CachedInfo(); info != nil && info.Config.AllowDirect && info.Config.Replicas > 1 {
		// nats.go would read by direct get, which any replica answers: the
		// order check (order.go) must see what the stream leader sees.
		return fmt.Errorf("bind stream %s: it has replicas and allows direct gets; the worker reads it through "+
			"the stream leader (apply the topology: allow_direct false)", topology.StreamCommands)
	}
	history, err := w.js.KeyValue(bctx, topology.BucketCommandHistory)
	if err != nil {
		return fmt.Errorf("bind bucket %s: %w", topology.BucketCommandHistory, err)
	}
	// The own changes are written by subject (history.go): only check
	// that the bucket is there.
	if _, err := w.js.KeyValue(bctx, topology.BucketOwnChanges); err != nil {
		return fmt.Errorf("bind bucket %s: %w", topology.BucketOwnChanges, err)
	}
	w.idem, w.refs, w.commands = recordStore{kv: idem}, refStore{kv: refs}, s
	w.history = history
	return nil
}

// router builds the Watermill router: one handler per partition consumer
// (pulling while the partition is this worker's, see share.go), and the
// sweeper.
func (w *Worker) router() (*message.Router, []*wmjetstream.Subscriber, *share, error) {
	wlog := watermill.NewSlogLoggerWithLevelMapping(w.log, map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug,
	})
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: w.cfg.CloseTimeout + w.cfg.BookkeepingTimeout}, wlog)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("worker router: %w", err)
	}
	// No Timeout middleware: a command may wait for the budget as long as
	// it takes (kept alive meanwhile); each API exchange is bounded by the
	// client's timeout instead.
	r.AddMiddleware(w.metrics.middleware, middleware.Recoverer, correlationID)

	var subs []*wmjetstream.Subscriber
	bind := func(topic string) jetstream.ConsumerConfig { return jetstream.ConsumerConfig{Durable: topic} }
	for p := range w.partitions {
		group := ""
		if w.pinned[p] {
			group = topology.PriorityGroup
		}
		sub, err := wmjetstream.NewSubscriber(w.js, wmjetstream.SubscriberConfig{
			Stream:         topology.StreamCommands,
			Bind:           true,
			ConsumerConfig: bind,
			MaxInFlight:    w.cfg.MaxInFlight,
			MaxHeld:        w.maxHeld[p],
			CloseTimeout:   w.cfg.CloseTimeout,
			NackDelay:      w.cfg.RetryBase,
			KeyFunc:        LaneKey,
			PriorityGroup:  group,
			Logger:         w.log.With(slog.Int("partition", p)),
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("worker subscriber %d: %w", p, err)
		}
		subs = append(subs, sub)
	}
	sh := newShare(w, subs)
	for p, sub := range subs {
		name := topology.WorkerConsumer(p)
		r.AddConsumerHandler(name, name, &partitionSubscriber{sh: sh, p: p, inner: sub}, w.handler(p))
	}
	if !w.cfg.DisableSweeper {
		sub, err := wmjetstream.NewSubscriber(w.js, wmjetstream.SubscriberConfig{
			Stream:         topology.StreamAdvisories,
			Bind:           true,
			ConsumerConfig: bind,
			MaxInFlight:    1,
			CloseTimeout:   w.cfg.CloseTimeout,
			NackDelay:      w.cfg.RetryBase,
			Logger:         w.log.With(slog.String("consumer", topology.ConsumerSweeper)),
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("worker sweeper subscriber: %w", err)
		}
		subs = append(subs, sub)
		r.AddConsumerHandler(topology.ConsumerSweeper, topology.ConsumerSweeper, sub, w.sweep)
	}
	return r, subs, sh, nil
}

// LaneKey returns the ordering key of a command message from its stored
// subject altegio.cmd.<partition>.<location>.<client-key>.<op>:
// "<location>.<client-key>". Commands of one client share a lane and are
// carried out one at a time in stream order. A subject of another shape is
// its own key.
func LaneKey(subject string, _ nats.Header) string {
	if s, ok := commands.ParseStoredSubject(subject); ok {
		return s.Lane()
	}
	return subject
}

// pollPending updates worker_consumer_pending every PendingInterval.
func (w *Worker) pollPending(ctx context.Context) {
	t := time.NewTicker(w.cfg.PendingInterval)
	defer t.Stop()
	for {
		for p := range w.partitions {
			cctx, cancel := context.WithTimeout(ctx, w.cfg.BookkeepingTimeout)
			c, err := w.js.Consumer(cctx, topology.StreamCommands, topology.WorkerConsumer(p))
			if err == nil {
				// Looking the consumer up fetched its info already.
				w.metrics.pending.WithLabelValues(strconv.Itoa(p)).Set(float64(c.CachedInfo().NumPending))
			}
			cancel()
			if err != nil && ctx.Err() == nil {
				w.log.Debug("poll consumer pending", slog.Int("partition", p), slog.Any("error", err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready reports whether the worker can do its job, for /readyz: Run is
// running, the NATS connection is up, and the COMMANDS, EVENTS and DLQ
// streams exist. It returns ErrNotRunning, ErrNotConnected or the stream
// lookup error; the lookups end with ctx, within 2 s at most. Safe for
// concurrent use; each call asks the server.
func (w *Worker) Ready(ctx context.Context) error {
	if !w.running.Load() {
		return ErrNotRunning
	}
	if nc := w.js.Conn(); nc == nil || !nc.IsConnected() {
		return ErrNotConnected
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, name := range []string{topology.StreamCommands, topology.StreamEvents, topology.StreamDLQ} {
		if _, err := w.js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return nil
}
