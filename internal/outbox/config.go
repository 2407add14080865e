package outbox

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by Open to the zero fields of Config.
const (
	DefaultMaxEntries        = 1_000_000
	DefaultMaxBytes          = 1 << 30 // 1 GiB
	DefaultMaxBatch          = 256
	DefaultRelayBatch        = 128
	DefaultPublishTimeout    = 5 * time.Second
	DefaultRetryMin          = 100 * time.Millisecond
	DefaultRetryMax          = 10 * time.Second
	DefaultNoStreamDeadAfter = 5 * time.Minute
	DefaultBusyTimeout       = 5 * time.Second
)

// Config tunes an Outbox. The zero value is valid: Open fills every zero
// field with its documented default.
type Config struct {
	// MaxEntries is the most entries the outbox holds; an Append that would
	// go past it fails with ErrFull. Default DefaultMaxEntries (1,000,000).
	MaxEntries int

	// MaxBytes is the most payload bytes the outbox holds, counted as the
	// sum of Entry.Size over stored entries (not the file size); an Append
	// that would go past it fails with ErrFull. Default DefaultMaxBytes
	// (1 GiB).
	MaxBytes int64

	// MaxBatch is the most entries the writer gathers from concurrent Append
	// calls into one transaction (one fsync). A single Append with more
	// entries is still committed whole. Default DefaultMaxBatch (256).
	MaxBatch int

	// BatchWindow is how long the writer waits for more Append calls after
	// the first one of a batch arrives. Zero (the default) adds no delay: a
	// batch is whatever arrived while the previous commit was running, which
	// already groups commits under load without slowing a lone caller.
	BatchWindow time.Duration

	// RelayBatch is how many entries the relay reads per query; acknowledged
	// entries are deleted once per batch. Default DefaultRelayBatch (128).
	RelayBatch int

	// PublishTimeout bounds one publish attempt (waiting for its PubAck).
	// Default DefaultPublishTimeout (5s).
	PublishTimeout time.Duration

	// RetryMin and RetryMax bound the relay's exponential backoff after a
	// failed publish: it starts at RetryMin, doubles per failure up to
	// RetryMax, with equal jitter (backoff.Delay). Defaults DefaultRetryMin (100ms) and
	// DefaultRetryMax (10s).
	RetryMin time.Duration
	RetryMax time.Duration

	// NoStreamDeadAfter is how long the relay keeps retrying an entry whose
	// publish has no responders (jetstream.ErrNoStreamResponse: no stream
	// captures its subject, or JetStream is still starting) before it moves
	// the entry to the dead table. Negative means never. Default
	// DefaultNoStreamDeadAfter (5m).
	NoStreamDeadAfter time.Duration

	// BusyTimeout is SQLite's busy timeout. Default DefaultBusyTimeout (5s).
	BusyTimeout time.Duration

	// Permanent reports whether a publish error can never succeed for that
	// entry, so it is moved to the dead table instead of retried. Default
	// IsPermanent.
	Permanent func(error) bool

	// Logger receives relay errors and dead-lettered entries. Default: logs
	// are discarded.
	Logger *slog.Logger

	// Registerer registers the outbox metrics (see package doc). Default:
	// metrics are kept but not registered. Wrap it with
	// prometheus.WrapRegistererWith to run two outboxes in one process.
	Registerer prometheus.Registerer

	// now is the clock for entry timestamps, ages and NoStreamDeadAfter.
	// Default time.Now.
	now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.RelayBatch == 0 {
		c.RelayBatch = DefaultRelayBatch
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.NoStreamDeadAfter == 0 {
		c.NoStreamDeadAfter = DefaultNoStreamDeadAfter
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
	if c.Permanent == nil {
		c.Permanent = IsPermanent
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
}

// Validate reports every invalid setting at once. Zero values are valid
// (they mean the default); it is called by Open after the defaults are set.
func (c Config) Validate() error {
	var errs []error
	if c.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("max entries %d is negative", c.MaxEntries))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max bytes %d is negative", c.MaxBytes))
	}
	if c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("max batch %d is negative", c.MaxBatch))
	}
	if c.BatchWindow < 0 {
		errs = append(errs, fmt.Errorf("batch window %v is negative", c.BatchWindow))
	}
	if c.RelayBatch < 0 {
		errs = append(errs, fmt.Errorf("relay batch %d is negative", c.RelayBatch))
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("publish timeout %v is negative", c.PublishTimeout))
	}
	if c.RetryMin < 0 || c.RetryMax < 0 {
		errs = append(errs, fmt.Errorf("retry bounds %v..%v are negative", c.RetryMin, c.RetryMax))
	} else if c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("retry min %v is above retry max %v", c.RetryMin, c.RetryMax))
	}
	if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("busy timeout %v is negative", c.BusyTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid outbox config: %w", err)
	}
	return nil
}
