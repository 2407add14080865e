package ingest

import (
	"net/http"
	"strconv"
	"time"

	"github.com/altegio-integrator/integrator/internal/prom"
	"github.com/prometheus/client_golang/prometheus"
)

// Results of ingest_commands_total.
const (
	resultAccepted  = "accepted"
	resultDuplicate = "duplicate"
	resultSpooled   = "spooled"
	resultRejected  = "rejected"
)

// metrics are the ingest collectors; see the package doc.
type metrics struct {
	requests *prometheus.CounterVec
	commands *prometheus.CounterVec
	publish  prometheus.Histogram
	inFlight prometheus.Gauge

	// Altegio webhooks (altegio_webhook.go).
	webhooks   *prometheus.CounterVec
	ownLookups *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_commands_total",
			Help: "Commands by result (accepted, duplicate, spooled, rejected) and, for rejected, reason. A request rejected before its body was parsed counts once.",
		}, []string{"result", "reason"}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ingest_publish_duration_seconds",
			Help:    "Time from publishing a command to its PubAck (or failure).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100µs .. 3.3s
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ingest_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_altegio_webhooks_total",
			Help: "Altegio webhook deliveries by result and reason: published or duplicate (reason external or own), skipped (own_change), ignored (the resource), rejected (malformed_json, invalid, too_large), refused with 404 (disabled, source, secret), failed (unavailable, too_large).",
		}, []string{"result", "reason"}),
		ownLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_altegio_webhook_own_lookups_total",
			Help: "Own-change lookups of client webhooks by result: own, none, stale (outside the window), other_type (a command type that does not match the status), error (bucket unreadable; published unmarked).",
		}, []string{"result"}),
	}
	for _, r := range []string{resultAccepted, resultDuplicate, resultSpooled} {
		m.commands.WithLabelValues(r, "")
	}
	for _, reason := range rejectionReasons {
		m.commands.WithLabelValues(resultRejected, reason)
	}
	for _, l := range webhookMetricLabels {
		m.webhooks.WithLabelValues(l[0], l[1])
	}
	for _, r := range ownLookupResults {
		m.ownLookups.WithLabelValues(r)
	}
	if err := prom.Register(reg, "ingest", m.requests, m.commands, m.publish, m.inFlight, m.webhooks, m.ownLookups); err != nil {
		return nil, err
	}
	return m, nil
}

// statusRecorder remembers the status written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument counts requests by the pattern the mux matched and logs them
// at Debug.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		r = withRequestID(r)
		w.Header().Set("X-Request-Id", requestID(r))
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern // set by the mux (Go 1.23+) on this request
		if route == "" {
			route = "unmatched"
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		s.log.Debug("http request", "method", r.Method, "route", route, "status", rec.status,
			"duration", time.Since(start), "request_id", requestID(r))
	})
}
