package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScenariosQuick runs every scenario with Quick against binaries built
// once, and checks that each reported its figures and its reference. It
// asserts what was reported, not how fast: the scenarios run side by side
// on whatever cores the machine has.
func TestScenariosQuick(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the scenarios stop process groups and read /proc: Linux only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 110*time.Second)
	t.Cleanup(cancel) // after the parallel subtests
	bins := t.TempDir()
	start := time.Now()
	if err := Build(ctx, bins); err != nil {
		t.Fatal(err)
	}
	t.Logf("binaries built in %v", time.Since(start).Round(time.Millisecond))

	checks := map[string]func(t *testing.T, r Report){
		"budget": func(t *testing.T, r Report) {
			for _, w := range []int{1, 3} {
				k := fmt.Sprintf("workers=%d/", w)
				positive(t, r, k+"api_requests", k+"allowance", k+"share", k+"sent")
				present(t, r, k+"rate_limited", k+"waiting_failures", k+"dead_lettered", k+"finished")
			}
		},
		"bulk": func(t *testing.T, r Report) {
			positive(t, r, "wall_seconds", "api_requests", "reference_seconds")
			present(t, r, "rate_limited", "dead_lettered", "duplicates")
			if got := r.Figures["succeeded"] + r.Figures["dead_lettered"]; got != 25 {
				t.Errorf("succeeded + dead-lettered = %v, want the 25 commands of --quick", got)
			}
			if got := r.Figures["reference_requests"]; got != 1 {
				t.Errorf("reference requests = %v, want one bulk call for 25 clients", got)
			}
		},
		"fairness": func(t *testing.T, r Report) {
			positive(t, r, "reference_p50_seconds", "reference_p99_seconds", "p50_seconds", "p99_seconds", "b_sent", "api_requests")
			present(t, r, "b_unfinished", "a_finished", "rate_limited")
		},
		"drain": func(t *testing.T, r Report) {
			positive(t, r, "bare_rate", "worker_rate", "ratio")
			if got := r.Figures["bare_requests"]; got != 500 {
				t.Errorf("bare consumer's API requests = %v, want one per command (500)", got)
			}
			positive(t, r, "worker_requests") // fewer than commands when creates are coalesced
		},
		"ingest": func(t *testing.T, r Report) {
			positive(t, r, "raw_rate", "single_rate", "batched_rate", "single_ratio", "batched_ratio")
		},
		"reads": func(t *testing.T, r Report) {
			positive(t, r, "reference_read_p50_seconds", "reference_command_rate", "command_rate", "command_share", "read_rate")
			present(t, r, "read_p99_seconds", "reads_refused", "read_errors", "rate_limited")
		},
		"growth": func(t *testing.T, r Report) {
			for _, n := range []int{200, 1000} {
				k := fmt.Sprintf("size=%d/", n)
				positive(t, r, k+"rate", k+"ingest_rate", k+"worker_rss_mib", k+"ingest_rss_mib", k+"nats_rss_mib")
			}
			present(t, r, "spread")
		},
	}
	for _, sc := range Scenarios() {
		if sc.Name == "faults" {
			continue // TestFaultSuite
		}
		check := checks[sc.Name]
		if check == nil {
			t.Errorf("scenario %s has no check", sc.Name)
			continue
		}
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			rep, err := Run(ctx, sc.Name, Config{Quick: true, BinDir: bins, WorkDir: t.TempDir(), Progress: testWriter{t}})
			if err != nil {
				t.Fatal(err)
			}
			md := rep.Markdown()
			t.Logf("%v\n%s", time.Since(start).Round(time.Millisecond), md)
			if !strings.HasPrefix(md, "### "+sc.Name+": ") || !strings.Contains(md, "|---|") {
				t.Errorf("report is not a titled Markdown table:\n%s", md)
			}
			if !strings.Contains(md, "reference") {
				t.Errorf("report names no reference:\n%s", md)
			}
			check(t, rep)
		})
	}
}

// positive checks that each figure was reported and is above zero.
func positive(t *testing.T, r Report, names ...string) {
	t.Helper()
	for _, n := range names {
		v, ok := r.Figures[n]
		if !ok || !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("figure %s = %v (reported: %v), want a positive number; figures: %v", n, v, ok, r.Figures)
		}
	}
}

// present checks that each figure was reported.
func present(t *testing.T, r Report, names ...string) {
	t.Helper()
	for _, n := range names {
		if v, ok := r.Figures[n]; !ok || math.IsNaN(v) || v < 0 {
			t.Errorf("figure %s = %v (reported: %v), want a number ≥ 0", n, v, ok)
		}
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

var logMu sync.Mutex

func (w testWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestRunUnknownScenario(t *testing.T) {
	_, err := Run(context.Background(), "nope", Config{})
	if err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Run(nope) = %v, want ErrUnknownScenario naming it", err)
	}
}

func TestAllowance(t *testing.T) {
	tests := []struct {
		b    Budget
		d    time.Duration
		want float64
	}{
		{Documented, 5 * time.Second, 25},
		{Documented, 40 * time.Second, 200},
		{Documented, 60 * time.Second, 200},
		{Documented, 70 * time.Second, 250},
		{Documented, 120 * time.Second, 400},
		{Budget{PerSecond: 1, PerMinute: 200}, 120 * time.Second, 120},
		{Budget{PerSecond: 10, PerMinute: -1}, 3 * time.Second, 30},
		{Unlimited, time.Second, math.Inf(1)},
	}
	for _, tt := range tests {
		if got := tt.b.Allowance(tt.d); math.Abs(got-tt.want) > 1e-9 && got != tt.want {
			t.Errorf("%v over %v = %v, want %v", tt.b, tt.d, got, tt.want)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS([]byte("Name:\tworker\nVmPeak:\t  9000 kB\nVmRSS:\t   2048 kB\nThreads:\t7\n"))
	if err != nil || got != 2<<20 {
		t.Errorf("parseVmRSS = %d, %v; want 2 MiB", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tzombie\n")); err == nil {
		t.Error("parseVmRSS without a VmRSS line: want an error")
	}
}

func TestPercentileCountsUnfinishedLast(t *testing.T) {
	ls := []latency{{d: 3 * time.Second, finished: true}, {d: time.Second, finished: true}, {d: 2 * time.Second}, {d: 500 * time.Millisecond, finished: true}}
	for _, tt := range []struct {
		p    float64
		want latency
	}{
		{50, latency{d: time.Second, finished: true}},
		{75, latency{d: 3 * time.Second, finished: true}},
		{99, latency{d: 2 * time.Second}},
	} {
		if got := percentile(ls, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(ls, 99); got.String() != "> 2s (unfinished)" {
		t.Errorf("unfinished renders as %q", got.String())
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "4242 (my worker) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 123 456 789"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3 {
		t.Errorf("parseStatCPU = %v, %v; want 3 s (250 + 50 ticks)", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("a short stat line parsed")
	}
}
