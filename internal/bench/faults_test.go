package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestFaultSuite runs the fault suite over separate processes and asserts
// its end check: nothing lost, doubled, out of order or wrongly ended, the
// outbox phase really refused commands with 503, and a killed worker's
// partitions resumed within the target. CI runs the short version (one run
// of each phase); FAULTS_LONG=1 runs the full one (docs/reliability.md has
// its figures), and FAULTS_RUNS overrides its number of runs.
func TestFaultSuite(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the suite stops process groups and runs ingest under prlimit: Linux only")
	}
	long := os.Getenv("FAULTS_LONG") != ""
	timeout := 8 * time.Minute
	if long {
		timeout = 80 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bins := t.TempDir()
	if err := Build(ctx, bins); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Quick: !long, BinDir: bins, WorkDir: t.TempDir(), Progress: testWriter{t}, Timeout: timeout}
	if long {
		cfg.Faults.Runs = envInt(t, "FAULTS_RUNS", 0)
	}
	rep, err := Run(ctx, "faults", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Markdown())
	for _, k := range []string{"lost", "doubled", "out_of_order", "wrong_outcome"} {
		if v, ok := rep.Figures[k]; !ok || v != 0 {
			t.Errorf("%s = %v (reported %v), want 0", k, v, ok)
		}
	}
	for _, phase := range FaultPhases {
		positive(t, rep, phase+"/accepted", phase+"/faults")
	}
	positive(t, rep, "outbox/refused", "kill/resume_max_seconds")
	if d := rep.Figures["kill/resume_max_seconds"]; d > resumeTarget.Seconds() {
		t.Errorf("a killed worker's partitions resumed after %.1f s, target %v", d, resumeTarget)
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}
