// Package backoff is the one exponential back-off of the project: the
// worker's retries, the re-logins, the outbox relay and the subscriber's
// fetches wait this long after their n-th failure in a row.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Delay returns the wait after the n-th failure in a row (n >= 1):
// base·2^(n−1), at most max, with "equal jitter": a random point in
// [d/2, d], so that processes that failed together do not retry together
// and the wait still grows. A base above max gives max.
func Delay(base, max time.Duration, n int) time.Duration {
	d := min(base, max)
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
