package ingest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/altegio-integrator/integrator/internal/console"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Defaults applied by New to the zero fields of Config.
const (
	// DefaultMaxBodyBytes is the largest request body POST /v1/commands
	// reads: 1 MiB. A larger body is refused with 413.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxBatch is the most commands one POST /v1/commands may carry
	// in a JSON array. More is refused with 413.
	DefaultMaxBatch = 100
	// DefaultPublishTimeout bounds the wait for one PubAck before the
	// command is spooled to the outbox instead.
	DefaultPublishTimeout = 3 * time.Second
	// DefaultSpoolTimeout bounds one outbox append (group commit, fsync).
	DefaultSpoolTimeout = 5 * time.Second
	// DefaultRetryAfter is the Retry-After of a 503 answer.
	DefaultRetryAfter = 5 * time.Second
	// DefaultWebhookTolerance is how far a webhook-timestamp may be from
	// the server's clock, in either direction (Standard Webhooks: 5 min).
	DefaultWebhookTolerance = 5 * time.Minute
	// DefaultReadyTimeout bounds the checks of GET /readyz and the lookups
	// of GET /v1/commands/{id}.
	DefaultReadyTimeout = 2 * time.Second
	// DefaultShutdownTimeout bounds the wait for in-flight requests at
	// shutdown.
	DefaultShutdownTimeout = 20 * time.Second
	// DefaultFlushTimeout bounds the wait for the outbox relay at shutdown.
	DefaultFlushTimeout = 10 * time.Second
	// DefaultRecentSize is how many accepted command ids a process
	// remembers for GET /v1/commands/{id} until the worker records them.
	DefaultRecentSize = 100_000
	// DefaultReadHeaderTimeout is http.Server.ReadHeaderTimeout.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout is http.Server.ReadTimeout.
	DefaultReadTimeout = 30 * time.Second
	// DefaultWriteTimeout is http.Server.WriteTimeout.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout is http.Server.IdleTimeout.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultAltegioWebhookOwn is what becomes of an Altegio webhook that
	// reports a change the integrator made: it is published, marked.
	DefaultAltegioWebhookOwn = OwnChangeMark
	// DefaultAltegioWebhookOwnWindow is how long before a webhook's receipt
	// an own change of its client counts: 2 minutes (Altegio sends about 5
	// seconds after the change, and retries within seconds).
	DefaultAltegioWebhookOwnWindow = 2 * time.Minute
)

// Config configures a Server. The zero value is valid except that it has no
// producers: set Producers, or AuthDisabled for development. New fills every
// zero field with its documented default.
type Config struct {
	// Producers are the callers allowed to post commands, with their
	// credentials and permissions (see Producer and ParseProducers).
	// Required unless AuthDisabled.
	Producers []Producer

	// AuthDisabled turns producer authentication off: every request acts as
	// the producer "anonymous" with every permission. For development only.
	// Default false.
	AuthDisabled bool

	// MaxBodyBytes is the largest request body read. Default
	// DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64

	// MaxBatch is the most commands in one request. Default
	// DefaultMaxBatch (100).
	MaxBatch int

	// PublishTimeout bounds the wait for a PubAck. Default
	// DefaultPublishTimeout (3s).
	PublishTimeout time.Duration

	// SpoolTimeout bounds one outbox append. Default DefaultSpoolTimeout
	// (5s).
	SpoolTimeout time.Duration

	// RetryAfter is sent with every 503. Default DefaultRetryAfter (5s);
	// rounded up to whole seconds.
	RetryAfter time.Duration

	// WebhookTolerance is the accepted clock skew of webhook-timestamp.
	// Default DefaultWebhookTolerance (5m).
	WebhookTolerance time.Duration

	// ReadyTimeout bounds readiness checks and status lookups. Default
	// DefaultReadyTimeout (2s).
	ReadyTimeout time.Duration

	// ShutdownTimeout bounds the wait for in-flight requests in Serve.
	// Default DefaultShutdownTimeout (20s).
	ShutdownTimeout time.Duration

	// FlushTimeout bounds the wait for the relay to drain the outbox in
	// Serve, once intake stopped. Default DefaultFlushTimeout (10s).
	FlushTimeout time.Duration

	// RecentSize is how many accepted ids are remembered in memory for
	// GET /v1/commands/{id}. Default DefaultRecentSize (100,000).
	RecentSize int

	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server timeouts used by Serve. Defaults
	// DefaultReadHeaderTimeout (10s), DefaultReadTimeout (30s),
	// DefaultWriteTimeout (30s) and DefaultIdleTimeout (2m).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration

	// Logger receives structured logs. Default: discarded.
	Logger *slog.Logger

	// Registerer registers the ingest metrics. Default: a new registry (the
	// one exception to "nil registers none": ingest serves /metrics itself).
	Registerer prometheus.Registerer

	// Gatherer is what GET /metrics serves. Default: Registerer when it is
	// a prometheus.Gatherer (a *prometheus.Registry), else a new registry's.
	Gatherer prometheus.Gatherer

	// AltegioWebhookSecret turns on POST /v1/altegio/webhooks/{secret},
	// the receiver of Altegio's client webhooks, and is the {secret} the
	// URL configured in Altegio must carry (compared in constant time;
	// Altegio signs nothing). At least 16 characters of A-Z, a-z, 0-9, '-',
	// '_', '.' and '~'. Default empty: the route answers like an unknown
	// path. Producer authentication does not apply to the route.
	AltegioWebhookSecret string

	// AltegioWebhookAllow, when not empty, limits the webhook route to
	// these source networks (the connection's address, or the client
	// address a trusted proxy reports; see AltegioWebhookTrustedProxies).
	// Other sources get the answer of an unknown path. Default: any source.
	AltegioWebhookAllow []netip.Prefix

	// AltegioWebhookTrustedProxies are the proxies whose X-Forwarded-For
	// the allow-list believes: when the connection comes from one, the
	// source is the right-most X-Forwarded-For address that is not a
	// trusted proxy. Default none: X-Forwarded-For is ignored.
	AltegioWebhookTrustedProxies []netip.Prefix

	// AltegioWebhookOwn decides what becomes of a client webhook reporting
	// a change a command of the integrator made (an OwnChange of the same
	// client, within AltegioWebhookOwnWindow, with a matching type):
	// OwnChangeMark publishes it with origin.integrator true, OwnChangeSkip
	// acknowledges it without publishing. Default DefaultAltegioWebhookOwn
	// (mark).
	AltegioWebhookOwn OwnChangeMode

	// AltegioWebhookOwnWindow is how long before a webhook's receipt an own
	// change may have been made to count. Keep it below the own-changes
	// bucket's TTL (10m). Default DefaultAltegioWebhookOwnWindow (2m).
	AltegioWebhookOwnWindow time.Duration

	// DLQ, when set, is served under /v1/dlq (dlq.go) to callers with one
	// of OperatorKeys (SHA-256 digests of the keys; producer keys do not
	// open it). Default: none, and /v1/dlq answers 404.
	DLQ          *dlq.Service
	OperatorKeys [][sha256.Size]byte

	// Console, when set, is the operators' web console, served under
	// console.PathPrefix (/ui/: HTML pages, not part of the JSON API
	// that openapi.json describes) and run by Serve. Build it with the
	// same OperatorKeys and DLQ (console.New refuses to exist without
	// operator keys). Default: none, and /ui/ answers 404 like any unknown
	// path.
	Console *console.Console

	// TracerProvider traces POST /v1/commands: the span ingest.accept (the
	// request, continuing a W3C traceparent/tracestate the caller sent, else
	// a new trace) and below it one ingest.publish per command, whose trace
	// context every command message carries in its traceparent header,
	// through the outbox too. The 202 and error answers carry the trace's
	// traceparent. Default: otel's no-op provider, which still passes a
	// caller's traceparent on to the commands.
	TracerProvider trace.TracerProvider

	// now is the clock for webhook timestamps. Default time.Now.
	now func() time.Time
}

func (c *Config) setDefaults() {
	setDefault(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&c.MaxBatch, DefaultMaxBatch)
	setDefault(&c.PublishTimeout, DefaultPublishTimeout)
	setDefault(&c.SpoolTimeout, DefaultSpoolTimeout)
	setDefault(&c.RetryAfter, DefaultRetryAfter)
	setDefault(&c.WebhookTolerance, DefaultWebhookTolerance)
	setDefault(&c.ReadyTimeout, DefaultReadyTimeout)
	setDefault(&c.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&c.FlushTimeout, DefaultFlushTimeout)
	setDefault(&c.RecentSize, DefaultRecentSize)
	setDefault(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&c.ReadTimeout, DefaultReadTimeout)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.AltegioWebhookOwn, DefaultAltegioWebhookOwn)
	setDefault(&c.AltegioWebhookOwnWindow, DefaultAltegioWebhookOwnWindow)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		reg := prometheus.NewRegistry()
		c.Registerer = reg
		if c.Gatherer == nil {
			c.Gatherer = reg
		}
	}
	if c.Gatherer == nil {
		if g, ok := c.Registerer.(prometheus.Gatherer); ok {
			c.Gatherer = g
		} else {
			c.Gatherer = prometheus.NewRegistry()
		}
	}
	if c.now == nil {
		c.now = time.Now
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate reports every invalid setting at once. Zero values are valid
// (they mean the default), except that producers are required unless
// AuthDisabled. New calls it after applying the defaults.
func (c Config) Validate() error {
	var errs []error
	if !c.AuthDisabled && len(c.Producers) == 0 {
		errs = append(errs, errors.New("no producers configured; configure producers or disable auth for development"))
	}
	names := make(map[string]bool, len(c.Producers))
	for i, p := range c.Producers {
		if err := p.validate(); err != nil {
			errs = append(errs, fmt.Errorf("producer %d: %w", i, err))
		}
		if names[p.Name] {
			errs = append(errs, fmt.Errorf("producer %d: duplicate name %q", i, p.Name))
		}
		names[p.Name] = true
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d is negative", c.MaxBodyBytes))
	}
	if c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("max batch %d is negative", c.MaxBatch))
	}
	for name, d := range map[string]time.Duration{
		"publish timeout": c.PublishTimeout, "spool timeout": c.SpoolTimeout,
		"retry after": c.RetryAfter, "webhook tolerance": c.WebhookTolerance,
		"ready timeout": c.ReadyTimeout, "shutdown timeout": c.ShutdownTimeout,
		"flush timeout": c.FlushTimeout, "read header timeout": c.ReadHeaderTimeout,
		"read timeout": c.ReadTimeout, "write timeout": c.WriteTimeout, "idle timeout": c.IdleTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name, d))
		}
	}
	if c.RecentSize < 0 {
		errs = append(errs, fmt.Errorf("recent size %d is negative", c.RecentSize))
	}
	errs = append(errs, c.validateAltegioWebhook()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid ingest config: %w", err)
	}
	return nil
}
