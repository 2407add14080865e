package prom

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// All or none: a second instance on one registry fails, names its owner,
// and leaves nothing of itself registered.
func TestRegisterAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	if err := Register(reg, "thing", a); err != nil {
		t.Fatal(err)
	}
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total", Help: "b"})
	again := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	err := Register(reg, "thing", b, again)
	if err == nil || !strings.Contains(err.Error(), "one thing per registerer") {
		t.Fatalf("second registration = %v, want the already-registered error", err)
	}
	if reg.Unregister(b) {
		t.Error("b stayed registered after the registration failed")
	}
	if err := Register(nil, "thing", a); err != nil {
		t.Errorf("nil registerer: %v", err)
	}
}
