package sandbox

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// rateLimiter enforces "200 requests per minute or 5 requests per second
// per IP address" (ref §4) with exact sliding windows: a request is allowed
// when fewer than perSecond requests were allowed in the last second and
// fewer than perMinute in the last minute. Rejected requests do not count
// against the windows, so a client that backs off recovers on schedule. [I]
// A limit below zero disables its window. Safe for concurrent use.
type rateLimiter struct {
	perSecond, perMinute int

	mu  sync.Mutex
	ips map[string][]time.Time // allowed request times, oldest first
}

func newRateLimiter(perSecond, perMinute int) *rateLimiter {
	return &rateLimiter{perSecond: perSecond, perMinute: perMinute, ips: make(map[string][]time.Time)}
}

// allow records a request from ip at now and reports whether it is within
// the limits; when it is not, wait is how long until a slot frees up.
func (l *rateLimiter) allow(ip string, now time.Time) (ok bool, wait time.Duration) {
	if l.perSecond < 0 && l.perMinute < 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	log := l.ips[ip]
	// Drop entries older than the longest window.
	i := 0
	for i < len(log) && !log[i].After(now.Add(-time.Minute)) {
		i++
	}
	log = log[i:]
	l.ips[ip] = log
	if l.perMinute >= 0 && len(log) >= l.perMinute {
		return false, log[len(log)-l.perMinute].Add(time.Minute).Sub(now)
	}
	if l.perSecond >= 0 {
		inLastSecond := 0
		for j := len(log) - 1; j >= 0 && log[j].After(now.Add(-time.Second)); j-- {
			inLastSecond++
		}
		if inLastSecond >= l.perSecond {
			return false, log[len(log)-l.perSecond].Add(time.Second).Sub(now)
		}
	}
	l.ips[ip] = append(log, now)
	return true, 0
}

// clientIP is the host part of r.RemoteAddr: the API limits per IP address
// (ref §4), and proxy headers are not trusted.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
