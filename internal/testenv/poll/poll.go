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
	if err := Wait(timeout, check); err != nil {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
}

// Wait calls check until it returns nil or timeout passes, and returns the
// last error check returned then. It is Until for a goroutine other than
// the test's, which must not call t.Fatal.
func Wait(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(Interval)
	}
}
