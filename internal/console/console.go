package console

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// PathPrefix is where the console is mounted: every path it answers
// starts with it.
const PathPrefix = "/ui/"

// Defaults of Config.
const (
	// DefaultSessionTTL is how long a session lasts after login.
	DefaultSessionTTL = 8 * time.Hour
	// DefaultSampleInterval is how often Run samples this process's
	// counters and scrapes the workers' metrics.
	DefaultSampleInterval = 10 * time.Second
	// DefaultScrapeTimeout bounds one scrape of a worker's /metrics.
	DefaultScrapeTimeout = 2 * time.Second
	// DefaultBudgetPerMinute is the API budget per egress the budget-use
	// figure is measured against: the API's 200 requests per minute.
	DefaultBudgetPerMinute = 200
	// DefaultPartitions is the number of worker consumers, worker-p0…7.
	DefaultPartitions = 8
	// DefaultTimeout bounds the NATS reads of one page when the request's
	// context has no earlier deadline.
	DefaultTimeout = 10 * time.Second
)

// ErrNoOperatorKeys is New's error when Config.OperatorKeys is empty: the
// console is not served without them.
var ErrNoOperatorKeys = errors.New("console: no operator keys: the console needs the operator keys of /v1/dlq")

// Config configures a Console. OperatorKeys, DLQ and JS are required; every
// other zero field takes its documented default.
type Config struct {
	// OperatorKeys are the SHA-256 digests of the keys that open the
	// console: ingest's OperatorKeys, the same keys as /v1/dlq.
	OperatorKeys [][sha256.Size]byte
	// DLQ lists, replays and purges dead letters: the one implementation
	// behind `worker dlq` and /v1/dlq.
	DLQ *dlq.Service
	// JS reads the EVENTS stream, the worker consumers' state and the
	// idempotency records (with deploy/nats: the operator connection).
	JS jetstream.JetStream
	// NATS is the connection whose health the overview shows (ingest's
	// own). Default none: its status is shown as unknown.
	NATS *nats.Conn
	// Local gathers this ingest process's own metrics: commands accepted
	// (ingest_commands_total) and the outbox (outbox_entries,
	// outbox_oldest_entry_age_seconds). Default none: shown as unknown.
	Local prometheus.Gatherer
	// WorkerMetrics are the URLs of the workers' Prometheus /metrics, for
	// the API's health, the budget and the accounts. Default none: those
	// figures are shown as unknown.
	WorkerMetrics []string
	// Traces, when set, shows a trace's spans as a waterfall.
	Traces Traces
	// TraceURL, used when Traces is nil, links a trace id to an external
	// viewer: "{trace_id}" is replaced by the id, e.g.
	// "http://jaeger:16686/trace/{trace_id}". Default none: the id alone.
	TraceURL string
	// SessionTTL is how long a session lasts after login. Default
	// DefaultSessionTTL (8h).
	SessionTTL time.Duration
	// SampleInterval is how often Run samples counters and scrapes the
	// workers. Default DefaultSampleInterval (10s).
	SampleInterval time.Duration
	// ScrapeTimeout bounds one scrape. Default DefaultScrapeTimeout (2s).
	ScrapeTimeout time.Duration
	// BudgetPerMinute is the API budget the budget use is measured
	// against (the workers' rate limit per minute). Default
	// DefaultBudgetPerMinute (200).
	BudgetPerMinute int
	// Partitions is the number of worker consumers. Default
	// DefaultPartitions (8).
	Partitions int
	// Timeout bounds the NATS reads of one page. Default DefaultTimeout.
	Timeout time.Duration
	// Logger receives warnings (a failed scrape, an unreadable event);
	// never keys or session ids. Default: discarded.
	Logger *slog.Logger
	// HTTPClient scrapes the workers. Default: a client with
	// ScrapeTimeout.
	HTTPClient *http.Client
	// Now tells the time. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.ScrapeTimeout == 0 {
		c.ScrapeTimeout = DefaultScrapeTimeout
	}
	if c.BudgetPerMinute == 0 {
		c.BudgetPerMinute = DefaultBudgetPerMinute
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.ScrapeTimeout}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every setting that cannot work and every required
// dependency that is missing (ErrNoOperatorKeys among them).
func (c Config) Validate() error {
	var errs []error
	if len(c.OperatorKeys) == 0 {
		errs = append(errs, ErrNoOperatorKeys)
	}
	if c.DLQ == nil {
		errs = append(errs, errors.New("console: the DLQ service is required"))
	}
	if c.JS == nil {
		errs = append(errs, errors.New("console: jetstream is required"))
	}
	return errors.Join(append(errs, c.ValidateSettings())...)
}

// ValidateSettings reports the settings that cannot work, leaving out the
// dependencies (OperatorKeys, DLQ, JS): a binary checks its flags with it
// before it connects to anything.
func (c Config) ValidateSettings() error {
	var errs []error
	for _, u := range c.WorkerMetrics {
		if err := checkHTTPURL(u); err != nil {
			errs = append(errs, fmt.Errorf("console: worker metrics URL: %w", err))
		}
	}
	if c.TraceURL != "" {
		if !strings.Contains(c.TraceURL, "{trace_id}") {
			errs = append(errs, fmt.Errorf("console: trace URL %q lacks {trace_id}", c.TraceURL))
		} else if err := checkHTTPURL(strings.ReplaceAll(c.TraceURL, "{trace_id}", "x")); err != nil {
			errs = append(errs, fmt.Errorf("console: trace URL: %w", err))
		}
	}
	for name, d := range map[string]time.Duration{"session TTL": c.SessionTTL, "sample interval": c.SampleInterval,
		"scrape timeout": c.ScrapeTimeout, "timeout": c.Timeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("console: %s %v is negative", name, d))
		}
	}
	if c.BudgetPerMinute < 0 || c.Partitions < 0 {
		errs = append(errs, errors.New("console: budget per minute and partitions must not be negative"))
	}
	return errors.Join(errs...)
}

// checkHTTPURL accepts an absolute http or https URL.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// Console is the operators' web console: an http.Handler for the paths
// under PathPrefix, and Run, which keeps the overview's counts. Build it
// with New. It is safe for concurrent use.
type Console struct {
	cfg      Config
	log      *slog.Logger
	handler  http.Handler
	pages    pages
	sessions *sessions
	logins   *loginLimiter
	series   *minutes
	events   *eventCounter
	workers  *scraper
	local    *localSampler

	idem topology.LazyBucket // the idempotency bucket
}

// New returns a console for cfg. It returns ErrNoOperatorKeys (joined with
// any other problem) when cfg has no operator keys, and an error for any
// other invalid setting.
func New(cfg Config) (*Console, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	series := newMinutes(cfg.Now)
	c := &Console{
		cfg:      cfg,
		log:      cfg.Logger,
		pages:    p,
		sessions: newSessions(cfg.SessionTTL, cfg.Now),
		logins:   newLoginLimiter(cfg.Now),
		idem:     topology.LazyBucket{Name: topology.BucketIdempotency},
		series:   series,
		events:   newEventCounter(cfg.JS, series, cfg.Now, cfg.Logger),
		workers:  newScraper(cfg.HTTPClient, cfg.WorkerMetrics, series, cfg.Now, cfg.Logger),
		local:    newLocalSampler(cfg.Local, series, cfg.Now),
	}
	c.handler = c.routes()
	return c, nil
}

// ServeHTTP answers the paths under PathPrefix.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.handler.ServeHTTP(w, r)
}

// Run keeps the overview's figures until ctx ends: it counts the result
// events of the last hour (an ordered consumer on EVENTS from now − 1 h,
// retried while NATS refuses it) and every SampleInterval samples this
// process's counters and scrapes the workers. It returns nil once ctx has
// ended and everything it started has stopped.
func (c *Console) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { c.events.run(ctx) })
	wg.Go(func() {
		t := time.NewTicker(c.cfg.SampleInterval)
		defer t.Stop()
		for {
			c.sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	wg.Wait()
	return nil
}

// sample takes this process's counters and scrapes the workers.
func (c *Console) sample(ctx context.Context) []target {
	c.local.sample()
	return c.workers.scrape(ctx)
}

// timeout applies Config.Timeout when ctx has no deadline.
func (c *Console) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}
