package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/topology"
)

// Defaults of Config.
const (
	// DefaultRate is how many entries Replay republishes per second: well
	// below the API budget (5 requests/s), so that a replay leaves room for
	// live traffic; one replayed command may take several API calls.
	DefaultRate = 2.0
	// DefaultTimeout bounds each call to NATS when the caller's context
	// has no deadline.
	DefaultTimeout = 10 * time.Second
)

// Errors returned by Service.
var (
	// ErrNotFound: Show found no entry for the sequence or command id.
	ErrNotFound = errors.New("dlq: no such entry")
	// ErrEmptySelection: Replay or Purge was called with a filter that
	// selects everything without Filter.All set.
	ErrEmptySelection = errors.New("dlq: empty selection: give ids, sequences or filters, or select all explicitly")
)

// Config configures a Service. The zero value is valid.
type Config struct {
	// Rate is the number of entries Replay republishes per second, unless
	// ReplayOptions.Rate overrides it. Default DefaultRate.
	Rate float64
	// Operator names who replays, in marks and replayed events.
	// Default "<user>@<host>".
	Operator string
	// Timeout bounds each NATS call when the context has no deadline.
	// Default DefaultTimeout.
	Timeout time.Duration
	// Logger receives one Info line per replay run and Warn lines for
	// problems; never payloads. Default: discard.
	Logger *slog.Logger
	// Registerer receives the metrics dlq_depth (a collector reading the
	// DLQ stream's state when scraped), dlq_replays_total{result} and
	// dlq_purged_total. DLQ inflow by reason is the worker's
	// worker_dlq_writes_total{class}. Nil registers none, as everywhere in
	// this project.
	Registerer prometheus.Registerer
	// Now tells the time. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Operator == "" {
		c.Operator = defaultOperator()
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	if c.Rate < 0 {
		return fmt.Errorf("rate %v, want more than 0", c.Rate)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout %v, want more than 0", c.Timeout)
	}
	return nil
}

func defaultOperator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}

// Service lists, replays and purges dead letters. It is safe for
// concurrent use; two replays of overlapping selections (two operators)
// still publish each entry once (marks are created with compare-and-set,
// and the republication's message id is deterministic).
type Service struct {
	cfg     Config
	js      jetstream.JetStream
	dlq     jetstream.Stream
	idem    jetstream.KeyValue
	marks   jetstream.KeyValue
	metrics *metrics
}

// New binds the DLQ stream and the buckets altegio_idempotency and
// altegio_dlq_state (creating the latter from the topology definition when
// it is missing, so that tooling newer than the running workers works).
// It returns an error when the stream or the idempotency bucket does not
// exist, the configuration is invalid, or the metrics cannot be
// registered.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Service, error) {
	if js == nil {
		return nil, errors.New("dlq: jetstream is required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dlq config: %w", err)
	}
	s := &Service{cfg: cfg, js: js}
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	var err error
	if s.dlq, err = js.Stream(ctx, topology.StreamDLQ); err != nil {
		return nil, fmt.Errorf("bind stream %s: %w", topology.StreamDLQ, err)
	}
	if s.idem, err = js.KeyValue(ctx, topology.BucketIdempotency); err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", topology.BucketIdempotency, err)
	}
	if s.marks, err = topology.BindBucket(ctx, js, topology.BucketDLQState); err != nil {
		return nil, err
	}
	if s.metrics, err = newMetrics(cfg.Registerer, s); err != nil {
		return nil, err
	}
	return s, nil
}

// timeout applies Config.Timeout when ctx has no deadline.
func (s *Service) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.Timeout)
}
