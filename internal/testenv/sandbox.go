package testenv

import (
	"net/http/httptest"
	"testing"

	"github.com/altegio-integrator/integrator/internal/sandbox"
)

// Sandbox serves a fresh Altegio sandbox with cfg on a real loopback HTTP
// server and returns it with the API base URL (ending in /api/v1). The server
// is closed in t.Cleanup.
func Sandbox(t testing.TB, cfg sandbox.Config) (*sandbox.Server, string) {
	t.Helper()
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	ts := httptest.NewServer(sb)
	t.Cleanup(func() {
		ts.Close()
		_ = sb.Close()
	})
	return sb, ts.URL + sandbox.BasePath
}
