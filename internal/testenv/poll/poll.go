// Package poll waits for a condition in tests by polling with a deadline.
// It imports nothing of the project, so that every package's tests can use
// it (testenv.WaitFor is this; the sandbox's own tests, which testenv
// cannot serve since it imports the sandbox, call it directly).
package poll

import (
	"testing"
	"time"
)

// Interval is how often Until checks its condition.
const Interval = 10 * time.Millisecond

// Until calls check until it returns nil or timeout passes, in which case
// the test fails with the last error check returned. Use it instead of
// time.Sleep to wait for something that happens asynchronously.
func Until(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(Interval)
	}
}
