package ingest

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// BenchmarkPostCommand measures the accepted path end to end: HTTP, bearer
// auth, decoding, publish to a real (in-process, file-backed) JetStream and
// the wait for its PubAck. It reports requests/s and the p50/p99 latency.
//
//	go test -run '^$' -bench BenchmarkPostCommand -benchtime 5000x ./internal/ingest/
func BenchmarkPostCommand(b *testing.B) {
	e := newEnv(b)
	in := e.start(b, ingestOpts{})
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = createCommand(commands.NewID(), int64(1+i%10), "bench")
	}
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		next      int
	)
	b.SetParallelism(8) // 8 clients per CPU
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			body := bodies[next]
			next++
			mu.Unlock()
			t0 := time.Now()
			r, err := in.send(request{path: "/v1/commands", key: crmKey, body: body})
			d := time.Since(t0)
			if err != nil || r.status != http.StatusAccepted {
				b.Errorf("post: %v %d %s", err, r.status, r.body)
				return
			}
			mu.Lock()
			latencies = append(latencies, d)
			mu.Unlock()
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
}
