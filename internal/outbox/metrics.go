package outbox

import (
	"github.com/altegio-integrator/integrator/internal/prom"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the outbox's Prometheus collectors; see the package doc.
type metrics struct {
	appended      prometheus.Counter
	rejected      *prometheus.CounterVec
	relayed       prometheus.Counter
	relayErrors   *prometheus.CounterVec
	dead          prometheus.Counter
	batchSize     prometheus.Histogram
	commitSeconds prometheus.Histogram

	all        []prometheus.Collector
	registerer prometheus.Registerer
}

func newMetrics(o *Outbox) *metrics {
	m := &metrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_appended_total",
			Help: "Entries committed to the outbox by Append.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_append_rejected_total",
			Help: "Entries refused by Append, by reason.",
		}, []string{"reason"}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_relayed_total",
			Help: "Entries published and acknowledged by JetStream.",
		}),
		relayErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_relay_errors_total",
			Help: "Failed publish attempts by the relay, by class (retryable, no_stream, permanent).",
		}, []string{"class"}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_dead_lettered_total",
			Help: "Entries moved to the dead table after a permanent publish error.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outbox_commit_batch_size",
			Help:    "Entries per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 .. 512
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outbox_commit_duration_seconds",
			Help:    "Duration of one group commit, fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14), // 100µs .. 0.8s
		}),
	}
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "outbox_entries",
		Help: "Entries waiting in the outbox.",
	}, func() float64 { return float64(o.count.Load()) })
	bytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "outbox_bytes",
		Help: "Payload bytes waiting in the outbox (subject, id, header and data).",
	}, func() float64 { return float64(o.bytes.Load()) })
	oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "outbox_oldest_entry_age_seconds",
		Help: "Age of the oldest entry waiting in the outbox; 0 when empty.",
	}, func() float64 {
		age, err := o.OldestAge()
		if err != nil {
			return 0
		}
		return age.Seconds()
	})
	m.rejected.WithLabelValues("full")
	for _, class := range []string{classRetryable, classNoStream, classPermanent} {
		m.relayErrors.WithLabelValues(class)
	}
	m.all = []prometheus.Collector{
		m.appended, m.rejected, m.relayed, m.relayErrors, m.dead,
		m.batchSize, m.commitSeconds, entries, bytes, oldest,
	}
	return m
}

// register registers every collector with r, or none of them. A nil r
// registers nothing.
func (m *metrics) register(r prometheus.Registerer) error {
	return prom.Register(r, "outbox", m.all...)
}

func (m *metrics) unregister() {
	if m.registerer == nil {
		return
	}
	for _, c := range m.all {
		m.registerer.Unregister(c)
	}
}
