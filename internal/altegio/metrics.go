package altegio

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// codeTransport is the code label of a request that got no HTTP response.
const codeTransport = "transport"

// metrics are the client's Prometheus collectors. A nil *metrics records
// nothing.
type metrics struct {
	duration     *prometheus.HistogramVec
	requests     *prometheus.CounterVec
	unauthorized prometheus.Counter
}

// newMetrics registers the collectors on reg, reusing collectors that another
// Client already registered there.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "altegio_api_request_duration_seconds",
		Help:    "Duration of Altegio API requests by operation and HTTP status code (\"transport\" when no response).",
		Buckets: []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"op", "code"})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "altegio_api_requests_total",
		Help: "Altegio API requests by operation and HTTP status code (\"transport\" when no response).",
	}, []string{"op", "code"})
	unauthorized := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "altegio_api_unauthorized_total",
		Help: "Altegio API responses with status 401.",
	})
	var err error
	if duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	if requests, err = register(reg, requests); err != nil {
		return nil, err
	}
	if unauthorized, err = register(reg, unauthorized); err != nil {
		return nil, err
	}
	return &metrics{duration: duration, requests: requests, unauthorized: unauthorized}, nil
}

// register registers c, or returns the collector already registered under
// the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	var zero C
	return zero, fmt.Errorf("register metrics: %w", err)
}

// observe records one HTTP exchange; status 0 means no response.
func (m *metrics) observe(op string, status int, d time.Duration) {
	if m == nil {
		return
	}
	code := codeTransport
	if status != 0 {
		code = strconv.Itoa(status)
	}
	m.duration.WithLabelValues(op, code).Observe(d.Seconds())
	m.requests.WithLabelValues(op, code).Inc()
	if status == 401 {
		m.unauthorized.Inc()
	}
}
