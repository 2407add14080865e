package worker

import (
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/prom"
)

// metrics are the worker's Prometheus collectors.
type metrics struct {
	// commands counts handled deliveries by type and outcome: succeeded,
	// dead_lettered, duplicate, failed (retry scheduled) and deferred (429,
	// or waiting for an older command of the client).
	commands *prometheus.CounterVec
	// retries counts scheduled redeliveries by class: transient,
	// rate_limited, infrastructure, order (an older command of the client is
	// still pending).
	retries *prometheus.CounterVec
	// dlq counts DLQ records written by class.
	dlq *prometheus.CounterVec
	// inFlight is the number of deliveries in handlers.
	inFlight prometheus.Gauge
	// pending is each partition consumer's count of undelivered messages.
	pending *prometheus.GaugeVec
	// duration is the time a delivery spends in the handler, by type.
	duration *prometheus.HistogramVec
	// createBatch is the number of creates per create request (1: sent
	// alone; more: coalesced into one bulk request).
	createBatch prometheus.Histogram
	// accountPaused counts commands deferred because their account's
	// credentials do not work, by account.
	accountPaused *prometheus.CounterVec
	// members, owned and takeovers describe the partition sharing
	// (share.go).
	members   prometheus.Gauge
	owned     prometheus.Gauge
	takeovers prometheus.Counter
	// refused counts publishes on altegio.cmd subjects of a form COMMANDS
	// does not store (refused.go).
	refused prometheus.Counter
	// indexErrors counts failed writes of the client history and the own
	// changes (history.go), by index.
	indexErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_commands_total",
			Help: "Command deliveries handled, by command type and outcome (succeeded, dead_lettered, duplicate, failed, deferred: 429 or an older command of the client pending).",
		}, []string{"type", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_retries_total",
			Help: "Redeliveries asked for with NakWithDelay, by class (transient, rate_limited, infrastructure, order, auth: waiting for the account, budget: handed back while waiting for the budget at shutdown).",
		}, []string{"class"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_dlq_writes_total",
			Help: "DLQ records written, by error class.",
		}, []string{"class"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "worker_in_flight",
			Help: "Command deliveries being handled.",
		}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_consumer_pending",
			Help: "Messages not yet delivered by each partition consumer (polled).",
		}, []string{"partition"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "worker_handle_duration_seconds",
			Help:    "Time a command delivery spends in the handler, by command type.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"type"}),
		createBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "worker_create_batch_size",
			Help:    "client.create commands carried by one API request (more than 1: coalesced into a bulk request).",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 75, 100},
		}),
		accountPaused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_account_paused_total",
			Help: "Command deliveries deferred because their account's credentials do not work (they wait for the account, not as attempts), by account.",
		}, []string{"account"}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "worker_members",
			Help: "Worker processes this worker hears (itself included) and shares the partitions with.",
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "worker_partitions_owned",
			Help: "Partitions assigned to this worker.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "worker_refused_subjects_total",
			Help: "Commands published on an altegio.cmd subject of a form COMMANDS does not store (refused by JetStream), seen by one worker each.",
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "worker_partition_takeovers_total",
			Help: "Pins of gone workers released by this worker to take their partitions over.",
		}),
		indexErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_index_errors_total",
			Help: "Failed writes of the client history or the own changes (the command's result is stored regardless), by index.",
		}, []string{"index"}),
	}
	if err := prom.Register(reg, "worker", m.commands, m.retries, m.dlq, m.inFlight, m.pending, m.duration, m.createBatch,
		m.accountPaused, m.members, m.owned, m.takeovers, m.refused, m.indexErrors); err != nil {
		return nil, err
	}
	return m, nil
}

// middleware observes in-flight deliveries and handler duration.
func (m *metrics) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		start := time.Now()
		m.inFlight.Inc()
		defer func() {
			m.inFlight.Dec()
			m.duration.WithLabelValues(typeLabel(commands.Type(msg.Metadata.Get(commands.HeaderCommandType)))).
				Observe(time.Since(start).Seconds())
		}()
		return h(msg)
	}
}

// correlationID copies the command's correlation id (or, without one, its
// command id) into Watermill's correlation metadata, so that router logs
// and anything published downstream carry it.
func correlationID(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		id := msg.Metadata.Get(commands.HeaderCorrelationID)
		if id == "" {
			id = msg.Metadata.Get(commands.HeaderCommandID)
		}
		if id != "" {
			middleware.SetCorrelationID(id, msg)
		}
		return middleware.CorrelationID(h)(msg)
	}
}
