package testenv

import (
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/testenv/poll"
)

// WaitFor calls check until it returns nil or timeout passes, in which case
// the test fails with the last error check returned (poll.Until). Use it
// instead of time.Sleep to wait for something that happens asynchronously.
func WaitFor(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	poll.Until(t, timeout, check)
}
