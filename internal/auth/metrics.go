package auth

import (
	"github.com/altegio-integrator/integrator/internal/prom"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Manager's Prometheus metrics. Labels carry account names
// and results, never secrets.
type metrics struct {
	logins       *prometheus.CounterVec
	unauthorized *prometheus.CounterVec
	tokenAge     *prometheus.Desc
	backoff      *prometheus.Desc
	m            *Manager
}

func newMetrics(reg prometheus.Registerer, m *Manager) (*metrics, error) {
	met := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "altegio_auth_logins_total",
			Help: "POST /auth calls by account and result (success, two_factor, invalid_credentials, unavailable).",
		}, []string{"account", "result"}),
		unauthorized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "altegio_auth_unauthorized_total",
			Help: "401 answers seen (credential refreshes asked for) by account.",
		}, []string{"account"}),
		tokenAge: prometheus.NewDesc("altegio_auth_token_age_seconds",
			"Seconds since the account's current user token was obtained.", []string{"account"}, nil),
		backoff: prometheus.NewDesc("altegio_auth_login_backoff_seconds",
			"Seconds until this process tries to log the account in again after failed logins (0: no back-off).", []string{"account"}, nil),
		m: m,
	}
	for _, a := range m.accounts {
		met.unauthorized.WithLabelValues(a.cfg.Name)
		if !a.cfg.fixed() {
			met.logins.WithLabelValues(a.cfg.Name, "success")
		}
	}
	if err := prom.Register(reg, "auth", met.logins, met.unauthorized, met); err != nil {
		return nil, err
	}
	return met, nil
}

// Describe implements prometheus.Collector for the token age and the
// login back-off.
func (met *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- met.tokenAge
	ch <- met.backoff
}

// Collect implements prometheus.Collector: the age of each account's token
// in memory (accounts without one are left out), and the login back-off of
// each account that logs in.
func (met *metrics) Collect(ch chan<- prometheus.Metric) {
	now := met.m.now()
	for _, a := range met.m.accounts {
		if !a.cfg.fixed() {
			a.mu.Lock()
			wait := 0.0
			if a.lastErr != nil && now.Before(a.backoffUntil) {
				wait = a.backoffUntil.Sub(now).Seconds()
			}
			a.mu.Unlock()
			ch <- prometheus.MustNewConstMetric(met.backoff, prometheus.GaugeValue, wait, a.cfg.Name)
		}
		s := a.cur.Load()
		if s == nil {
			continue
		}
		age := max(now.Sub(s.obtainedAt).Seconds(), 0)
		ch <- prometheus.MustNewConstMetric(met.tokenAge, prometheus.GaugeValue, age, a.cfg.Name)
	}
}
