package worker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/altegio-integrator/integrator/internal/altegio"
)

// Defaults of Config.
const (
	// DefaultMaxInFlight is the number of commands one partition consumer
	// hands to handlers at once (different clients; one client is always
	// one at a time). A command waits for the shared budget before
	// anything is recorded, kept alive meanwhile, so commands in flight
	// cost memory, not attempts. With eight partitions a process runs up
	// to 512 commands at once: enough to fill bulk requests of 100
	// creates. Besides these, each partition holds back the commands of
	// busy clients up to the consumer's max_ack_pending (1024 in
	// deploy/nats): that window is how far the worker sees past one
	// location's backlog to another location's command, since the budget
	// is shared fairly only among the commands at hand.
	DefaultMaxInFlight = 64
	// DefaultCreateBatch is the largest number of client.create commands
	// of one location sent as one POST /clients/{location_id}/bulk.
	DefaultCreateBatch = 100
	// DefaultRetryFor is how long a command whose attempts fail for a
	// retryable reason keeps being retried, from its first failure, before
	// it is dead-lettered as exhausted. Bounded by time, not by a count:
	// under a flaky API the number of failed attempts says little, and an
	// uncertain command is checked against the API once more before it is
	// given up (see verify.go). With retry delays capped at 30 s it is
	// about 20 attempts, well within the consumers' max_deliver of 50.
	DefaultRetryFor = 10 * time.Minute
	// DefaultRetryBase is the first retry delay; it doubles per attempt.
	DefaultRetryBase = time.Second
	// DefaultRetryMax caps a retry delay, Retry-After included. It must stay
	// below the consumers' AckWait minus the subscriber's keep-alive
	// interval (New checks it), so that after a crash a parked command is
	// redelivered before the commands held behind it.
	DefaultRetryMax = 30 * time.Second
	// DefaultHandlerTimeout bounds each exchange with the API (the request
	// and its answer; not the wait for the budget). It must stay below the
	// pinned consumers' priority_timeout (2 min in deploy/nats).
	DefaultHandlerTimeout = 25 * time.Second
	// DefaultCloseTimeout bounds how long shutdown waits for in-flight
	// commands to finish before they are given back to the server.
	DefaultCloseTimeout = 20 * time.Second
	// DefaultPendingInterval is how often consumer lag is polled for the
	// worker_consumer_pending metric.
	DefaultPendingInterval = 15 * time.Second
	// DefaultBookkeepingTimeout bounds each KV write and publish made after
	// the API call; they run even when the handler's own deadline passed.
	DefaultBookkeepingTimeout = 10 * time.Second
)

// Config configures a Worker. The zero value is valid: every field has the
// documented default.
type Config struct {
	// WorkerID names this process in results, DLQ records and logs.
	// Default: "<hostname>-<pid>-<random>".
	WorkerID string
	// MaxInFlight is the number of commands of one partition that run at
	// once; the worker subscribes to every partition, so the process runs
	// up to partitions × MaxInFlight commands. Default DefaultMaxInFlight;
	// read its note before raising it.
	MaxInFlight int
	// CreateBatch is the largest number of client.create commands of one
	// location that are coalesced into one bulk request; 1 sends every
	// create alone. Creates that wait for the budget at the same moment go
	// together; a create with custom_fields (which bulk does not document)
	// or one being reconciled goes alone. Default DefaultCreateBatch, at
	// most 100.
	CreateBatch int
	// Flow names the budget flow of a location as the API client's
	// altegio.Config.Flow does (they must agree). Default
	// altegio.LocationFlow.
	Flow func(location int64) string
	// AccountOf names the account serving a location, for a command whose
	// credentials were refused when the failure itself names none (a 401
	// after the re-login): its pause metric, account event and dead letter
	// then name that account. Default: such failures name none ("unknown").
	AccountOf func(location int64) string
	// Budget is the shared API budget. When set, a command waits for its
	// first request's slot before its attempt is recorded, so a command
	// that waits is neither in flight nor an attempt, and creates are
	// coalesced while they wait. The API client must use the same Limiter.
	// Default nil: the client waits on its own, inside the attempt.
	Budget Budget
	// RetryFor is how long after its first failure a command is retried
	// for retryable failures before it becomes a dead letter of class
	// exhausted (after one more check of an uncertain outcome). Rate-limit
	// deferrals (429) and waits for the account are not failures; they are
	// bounded by the consumer's MaxDeliver. Default DefaultRetryFor.
	RetryFor time.Duration
	// MaxAttempts, when above 0, also caps the number of real attempts.
	// Default 0: only RetryFor (and the consumer's MaxDeliver) bound them.
	MaxAttempts int
	// RetryBase and RetryMax shape the retry delay: RetryBase·2^(n−1) for
	// attempt n, capped at RetryMax, with "equal jitter" (a random value in
	// [d/2, d]). A 429's Retry-After is honoured up to RetryMax. Defaults
	// DefaultRetryBase and DefaultRetryMax.
	RetryBase time.Duration
	RetryMax  time.Duration
	// HandlerTimeout bounds each exchange with the API (workerstack.NewWorker
	// gives it to the API client); a call cut off by it counts as a
	// transport error whose outcome is unknown. Waiting for the budget is
	// not bounded: it ends only when the slot comes or the worker stops.
	// New requires it below the pinned consumers' priority_timeout.
	// Default DefaultHandlerTimeout.
	HandlerTimeout time.Duration
	// CloseTimeout bounds the wait for in-flight commands at shutdown; what
	// is still running after it is given back to the server (and reconciled
	// on redelivery). Default DefaultCloseTimeout.
	CloseTimeout time.Duration
	// BookkeepingTimeout bounds each KV write and publish. Default
	// DefaultBookkeepingTimeout.
	BookkeepingTimeout time.Duration
	// PendingInterval is how often the consumers' pending counts are polled
	// for metrics; negative disables polling. Default DefaultPendingInterval.
	PendingInterval time.Duration
	// ShareInterval is how often the worker announces itself to the other
	// worker processes to share the partitions with them (share.go); a
	// crashed worker's partitions resume elsewhere after about five
	// intervals. Negative: no sharing, the worker pulls every partition
	// and the pins alone decide. Default DefaultShareInterval.
	ShareInterval time.Duration
	// DisableSweeper turns off the max-deliveries sweeper in this process.
	// Default false: every worker runs it; they share one durable consumer.
	DisableSweeper bool
	// Logger receives Debug lines per message (keys command_id, type,
	// location_id, stream_seq, attempt) and Warn lines for dead letters and
	// infrastructure trouble; never payloads or secrets. Default: discard.
	Logger *slog.Logger
	// Registerer receives the worker's metrics; nil registers none (they
	// are kept, not exported), as everywhere in this project.
	Registerer prometheus.Registerer
	// Now tells the time. Default time.Now.
	Now func() time.Time
	// TracerProvider traces each delivery: worker.handle continues the
	// trace in the command message's traceparent, with children for the
	// budget wait (ratelimit.wait) and the publications
	// (worker.publish_result, worker.publish_dlq); the API client's spans
	// nest below when it shares the provider. Result events and DLQ
	// records carry the trace id, and so do the per-command log lines.
	// Default nil: otel's no-op provider, which still passes a message's
	// trace context on to the result event.
	TracerProvider trace.TracerProvider
}

func (c *Config) setDefaults() {
	if c.WorkerID == "" {
		c.WorkerID = defaultWorkerID()
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.ShareInterval == 0 {
		c.ShareInterval = DefaultShareInterval
	}
	if c.RetryFor == 0 {
		c.RetryFor = DefaultRetryFor
	}
	if c.CreateBatch == 0 {
		c.CreateBatch = DefaultCreateBatch
	}
	if c.Flow == nil {
		c.Flow = altegio.LocationFlow
	}
	if c.RetryBase == 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.BookkeepingTimeout == 0 {
		c.BookkeepingTimeout = DefaultBookkeepingTimeout
	}
	if c.PendingInterval == 0 {
		c.PendingInterval = DefaultPendingInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work. It is called by New
// after defaults are applied; the checks that involve the consumers' AckWait
// are made by New, which knows the topology.
func (c Config) Validate() error {
	var errs []error
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("max in flight %d, want at least 1", c.MaxInFlight))
	}
	if c.CreateBatch < 1 || c.CreateBatch > 100 {
		errs = append(errs, fmt.Errorf("create batch %d, want 1 to 100", c.CreateBatch))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("max attempts %d, want 0 (no cap) or more", c.MaxAttempts))
	}
	if c.RetryFor < 0 {
		errs = append(errs, fmt.Errorf("retry for %v, want more than 0", c.RetryFor))
	}
	if c.RetryBase <= 0 || c.RetryMax < c.RetryBase {
		errs = append(errs, fmt.Errorf("retry base %v and max %v: want 0 < base <= max", c.RetryBase, c.RetryMax))
	}
	for name, d := range map[string]time.Duration{
		"handler timeout": c.HandlerTimeout, "close timeout": c.CloseTimeout,
		"bookkeeping timeout": c.BookkeepingTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %v, want more than 0", name, d))
		}
	}
	if c.WorkerID == "" {
		errs = append(errs, errors.New("worker id is empty"))
	}
	return errors.Join(errs...)
}

// defaultWorkerID returns "<hostname>-<pid>-<4 random bytes in hex>".
func defaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
}
