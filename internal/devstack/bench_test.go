package devstack

import (
	"context"
	"testing"
)

// TestBenchRuns keeps the bench command working: it asserts what the bench
// reports, not how fast it was.
func TestBenchRuns(t *testing.T) {
	rep, err := RunBench(context.Background(), BenchConfig{Commands: 40, Producers: 4, Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 40 || rep.Succeeded != 40 || rep.DuplicateCreates != 0 {
		t.Errorf("report = %+v, want 40 accepted and succeeded, no duplicates", rep)
	}
	if rep.RateLimited != 0 {
		t.Errorf("sandbox served %d 429s, want none within the budget", rep.RateLimited)
	}
	// Creates are coalesced into bulk requests: at most one request per
	// command plus the login, and at least one.
	if rep.APIRequests < 1 || rep.APIRequests > 41 {
		t.Errorf("API requests = %d, want 1 to 41 for 40 creates", rep.APIRequests)
	}
}
