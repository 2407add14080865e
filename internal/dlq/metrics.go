package dlq

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/prom"
)

// metrics are the package's collectors.
type metrics struct {
	replays *prometheus.CounterVec
	purged  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	m := &metrics{
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dlq_replays_total",
			Help: "DLQ entries handled by replays, by result: replayed, skipped (already replayed or resolved), error.",
		}, []string{"result"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dlq_purged_total",
			Help: "DLQ entries deleted by purges.",
		}),
	}
	for _, r := range []string{"replayed", "skipped", "error"} {
		m.replays.WithLabelValues(r)
	}
	if err := prom.Register(reg, "dlq", m.replays, m.purged, depthCollector{s}); err != nil {
		return nil, err
	}
	return m, nil
}

// depthDesc describes dlq_depth.
var depthDesc = prometheus.NewDesc("dlq_depth", "Entries in the DLQ stream (read from the stream's state when scraped; commands stored apart from their records are not entries).", nil, nil)

// depthCollector reports dlq_depth from the DLQ stream's info at scrape
// time, so that every process that registers it reports the same number;
// nothing is reported when NATS cannot answer within 2 s.
type depthCollector struct{ s *Service }

// Describe implements prometheus.Collector.
func (c depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- depthDesc }

// Collect implements prometheus.Collector.
func (c depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.s.dlq.Info(ctx, jetstream.WithSubjectFilter(commands.DLQRecordFilter))
	if err != nil {
		return
	}
	var n uint64
	for _, count := range info.State.Subjects {
		n += count
	}
	ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(n))
}
