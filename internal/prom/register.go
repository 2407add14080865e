// Package prom holds what every package's Prometheus metrics share:
// registering them.
package prom

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers every collector with reg, or none of them: on a
// failure the ones already registered are unregistered again. A nil reg
// registers nothing. component names the owner in the error; a collector
// already registered (two instances on one registerer) says so.
func Register(reg prometheus.Registerer, component string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		err := reg.Register(c)
		if err == nil {
			continue
		}
		for _, done := range cs[:i] {
			reg.Unregister(done)
		}
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return fmt.Errorf("register %s metrics (one %s per registerer; wrap the registerer to run two): %w", component, component, err)
		}
		return fmt.Errorf("register %s metrics: %w", component, err)
	}
	return nil
}
