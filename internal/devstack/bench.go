package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// BenchConfig configures RunBench.
type BenchConfig struct {
	// Commands is how many client.create commands to send. Default 1000.
	Commands int
	// Producers is how many HTTP producers post at once. Default 8.
	Producers int
	// Batch is how many commands one POST carries. Default 1.
	Batch int
	// RateLimit is the API budget for the run; the sandbox enforces the
	// same. Default 1000/s and no per-minute limit, to measure the
	// pipeline rather than the API's documented 5/s.
	RateLimit ratelimit.Config
	// Timeout bounds the whole run. Default 10m.
	Timeout time.Duration
	// Progress, when set, receives a line every few seconds.
	Progress io.Writer
}

// BenchReport is what RunBench measured.
type BenchReport struct {
	Commands         int
	Accepted         int
	Succeeded        int
	DeadLettered     int
	IngestSeconds    float64 // from the first POST to the last 202
	TotalSeconds     float64 // from the first POST to the last terminal event
	AcceptedPerSec   float64
	CompletedPerSec  float64
	PostP50, PostP99 time.Duration // POST round trip
	E2EP50, E2EP99   time.Duration // acceptance into the stream to terminal event (Result.TotalMS)
	APIRequests      int
	RateLimited      int // 429s the sandbox served
	DuplicateCreates int
}

// String renders the report as a Markdown table row set.
func (r BenchReport) String() string {
	return fmt.Sprintf(`| commands | %d (accepted %d, succeeded %d, dead-lettered %d) |
| ingest: accepted/s | %.0f |
| end to end: completed/s | %.0f |
| POST round trip p50 / p99 | %v / %v |
| stream to result event p50 / p99 | %v / %v |
| API requests (429 answers) | %d (%d) |
| duplicate creates | %d |`,
		r.Commands, r.Accepted, r.Succeeded, r.DeadLettered,
		r.AcceptedPerSec, r.CompletedPerSec,
		r.PostP50.Round(time.Microsecond*10), r.PostP99.Round(time.Microsecond*10),
		r.E2EP50.Round(time.Millisecond), r.E2EP99.Round(time.Millisecond),
		r.APIRequests, r.RateLimited, r.DuplicateCreates)
}

// RunBench starts the development stack on free ports with fresh data,
// sends cfg.Commands creates through ingest and waits for every terminal
// result event.
func RunBench(ctx context.Context, cfg BenchConfig) (BenchReport, error) {
	if cfg.Commands == 0 {
		cfg.Commands = 1000
	}
	if cfg.Producers == 0 {
		cfg.Producers = 8
	}
	if cfg.Batch == 0 {
		cfg.Batch = 1
	}
	if cfg.RateLimit.PerSecond == 0 {
		cfg.RateLimit.PerSecond, cfg.RateLimit.PerMinute = 1000, -1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "altegio-bench-")
	if err != nil {
		return BenchReport{}, err
	}
	defer os.RemoveAll(dir)

	ready := make(chan DevStack, 1)
	done := make(chan error, 1)
	stackCtx, stopStack := context.WithCancel(ctx)
	go func() {
		done <- RunDev(stackCtx, DevConfig{
			DataDir: dir, NATSListen: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0",
			IngestAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0",
			RateLimit: cfg.RateLimit, Progress: time.Hour, Out: io.Discard,
			Logger: slog.New(slog.DiscardHandler),
			Ready:  func(s DevStack) { ready <- s },
		})
	}()
	defer func() { stopStack(); <-done }()
	var st DevStack
	select {
	case st = <-ready:
	case err := <-done:
		return BenchReport{}, fmt.Errorf("start stack: %w", err)
	}

	nc, js, err := stack.ConnectNATS(stack.NATSConfig{URL: st.NATSURL, Name: "bench"}, slog.New(slog.DiscardHandler))
	if err != nil {
		return BenchReport{}, err
	}
	defer nc.Close()
	results := make(chan commands.Result, 1024)
	cons, err := js.OrderedConsumer(ctx, topology.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return BenchReport{}, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r commands.Result
		if json.Unmarshal(m.Data(), &r) == nil && r.Outcome.Terminal() {
			results <- r
		}
	})
	if err != nil {
		return BenchReport{}, err
	}
	defer cc.Stop()

	// Producers.
	start := time.Now()
	var (
		mu        sync.Mutex
		postTimes []time.Duration
		accepted  atomic.Int64
		lastAck   atomic.Int64
		next      atomic.Int64
		postErr   error
		wg        sync.WaitGroup
	)
	client := &http.Client{Timeout: 30 * time.Second}
	for range cfg.Producers {
		wg.Go(func() {
			for {
				first := int(next.Add(int64(cfg.Batch))) - cfg.Batch
				if first >= cfg.Commands || ctx.Err() != nil {
					return
				}
				n := min(cfg.Batch, cfg.Commands-first)
				body := benchBody(first, n)
				t0 := time.Now()
				got, err := postBatch(ctx, client, st.IngestURL, body)
				d := time.Since(t0)
				mu.Lock()
				postTimes = append(postTimes, d)
				if err != nil && postErr == nil {
					postErr = err
				}
				mu.Unlock()
				accepted.Add(int64(got))
				lastAck.Store(int64(time.Since(start)))
			}
		})
	}

	// Results.
	seen := map[string]bool{}
	var rep BenchReport
	var e2e []time.Duration
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	producersDone := make(chan struct{})
	go func() { wg.Wait(); close(producersDone) }()
	for len(seen) < cfg.Commands {
		select {
		case r := <-results:
			if seen[r.CommandID] {
				continue
			}
			seen[r.CommandID] = true
			e2e = append(e2e, time.Duration(r.TotalMS)*time.Millisecond)
			switch r.Outcome {
			case commands.OutcomeSucceeded:
				rep.Succeeded++
			case commands.OutcomeDeadLettered:
				rep.DeadLettered++
			}
		case <-tick.C:
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "bench  accepted %d  completed %d/%d  %.0fs\n", accepted.Load(), len(seen), cfg.Commands, time.Since(start).Seconds())
			}
		case <-producersDone:
			producersDone = nil
			if postErr != nil {
				return rep, fmt.Errorf("post: %w", postErr)
			}
		case <-ctx.Done():
			return rep, fmt.Errorf("bench: %d of %d commands completed: %w", len(seen), cfg.Commands, ctx.Err())
		}
	}
	total := time.Since(start)
	wg.Wait()

	rep.Commands = cfg.Commands
	rep.Accepted = int(accepted.Load())
	rep.IngestSeconds = time.Duration(lastAck.Load()).Seconds()
	rep.TotalSeconds = total.Seconds()
	rep.AcceptedPerSec = float64(rep.Accepted) / rep.IngestSeconds
	rep.CompletedPerSec = float64(len(seen)) / rep.TotalSeconds
	rep.PostP50, rep.PostP99 = percentile(postTimes, 50), percentile(postTimes, 99)
	rep.E2EP50, rep.E2EP99 = percentile(e2e, 50), percentile(e2e, 99)
	stats := st.Sandbox.Stats()
	rep.APIRequests = stats.Requests
	rep.RateLimited = stats.RateLimited
	for _, n := range stats.CreatesByPhone {
		if n > 1 {
			rep.DuplicateCreates += n - 1
		}
	}
	return rep, nil
}

// benchBody is a JSON array of n creates numbered from first.
func benchBody(first, n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		k := first + i
		fmt.Fprintf(&b, `{"type":"client.create","location_id":%d,"client_ref":"bench-%d","payload":{"name":"Client %d","phone":"+1555%07d"}}`, DevLocationID, k, k, k)
	}
	b.WriteByte(']')
	return b.Bytes()
}

func postBatch(ctx context.Context, c *http.Client, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/commands", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+DevProducerKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Commands []struct{ Status string } `json:"commands"`
	}
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	return len(out.Commands), nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
