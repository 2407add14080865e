package testenv

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// server the test starts next (or for an address where nothing listens).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
}

// BusyAddr returns a loopback host:port that a listener holds until the
// test ends: a port that is taken.
func BusyAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("hold a port: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// ErrorSays marks the test failed (t.Errorf, so the test goes on) unless
// err is not nil and its text contains each of wants, naming each one it
// lacks.
func ErrorSays(t testing.TB, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("error nil, want one saying %q", wants)
		return
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
