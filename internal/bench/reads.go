package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// ReadsConfig configures the reads scenario.
type ReadsConfig struct {
	// Commands is the backlog of comments preloaded in each phase with
	// commands. Default 300; 40 with Quick.
	Commands int
	// Readers is the number of concurrent readers, each sending one
	// GET client after the other. Default 50; 10 with Quick.
	Readers int
	// Reference is how long reads run alone, for their reference latency.
	// Default 20s; 3s with Quick.
	Reference time.Duration
	// Clients is how many clients are seeded and read. Default 50; 10 with
	// Quick.
	Clients int
	// Budget is what the sandbox enforces and the worker shares. Default
	// Documented; 20/s without a minute window with Quick.
	Budget Budget
}

func (c *ReadsConfig) setDefaults(quick bool) {
	setDefaultQuick(&c.Commands, 300, 40, quick)
	setDefaultQuick(&c.Readers, 50, 10, quick)
	setDefaultQuick(&c.Reference, 20*time.Second, 3*time.Second, quick)
	setDefaultQuick(&c.Clients, 50, 10, quick)
	setDefaultQuick(&c.Budget, Documented, Budget{PerSecond: 20, PerMinute: -1}, quick)
}

// runReads measures the split of the budget between commands and reads,
// through separate processes (nats-server, sandbox, ingest, one worker
// with --reads): reads alone (their reference latency), a backlog of
// comments alone (the commands' reference rate), then the same backlog
// while Readers concurrent readers read clients through ingest for as long
// as the commands run. Figures: "reference_read_p50_seconds",
// "reference_command_rate", "command_rate", "command_share" (the mixed
// rate over the reference), "read_rate", "read_p50_seconds",
// "read_p99_seconds", "reads_refused" (503), "read_errors", "rate_limited".
func runReads(ctx context.Context, e *env, cfg Config) (Report, error) {
	c := cfg.Reads
	rep := Report{Title: fmt.Sprintf("%d comments, alone and with %d concurrent readers through ingest, 1 worker, budget %v",
		c.Commands, c.Readers, c.Budget)}
	s, err := openStack(ctx, e, "reads", c.Budget, withIngest)
	if err != nil {
		return rep, err
	}
	defer s.close()
	s.workerArgs = []string{"--reads"}
	if err := s.startWorkers(ctx, 1, c.Budget); err != nil {
		return rep, err
	}
	ev, err := followEvents(ctx, s.js)
	if err != nil {
		return rep, err
	}
	defer ev.stop()
	// The clients are created and listed through the integrator, so that
	// every request of the run is in the shared schedule (one sent beside
	// it would make the sandbox's window hold one more than the schedule's).
	ids, err := seedThroughIntegrator(ctx, s, ev, c.Clients)
	if err != nil {
		return rep, err
	}
	before, err := s.stats(ctx)
	if err != nil {
		return rep, err
	}

	e.logf("reads: %d readers alone for %v", c.Readers, c.Reference)
	rctx, cancel := context.WithTimeout(ctx, c.Reference)
	alone := readLoad(rctx, s.ingestURL, ids, c.Readers)
	cancel()

	backlog := func() ([]commands.Command, []string) {
		cmds := make([]commands.Command, c.Commands)
		names := make([]string, len(cmds))
		for k := range cmds {
			cmds[k] = newCommand(commands.TypeCommentAdd, locationA, "", ids[k%len(ids)], commands.CommentAddPayload{Text: fmt.Sprintf("backlog %d", k)})
			names[k] = cmds[k].ID
		}
		return cmds, names
	}
	runCommands := func(label string) (time.Duration, error) {
		cmds, names := backlog()
		start := time.Now()
		if err := publishAll(ctx, s.js, cmds); err != nil {
			return 0, err
		}
		if err := ev.waitAll(ctx, s, names, label); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	e.logf("reads: %d comments alone", c.Commands)
	refWall, err := runCommands("reads: commands alone")
	if err != nil {
		return rep, err
	}
	e.logf("reads: %d comments with %d readers", c.Commands, c.Readers)
	mctx, stopReads := context.WithCancel(ctx)
	var mixed readStats
	var wg sync.WaitGroup
	wg.Go(func() { mixed = readLoad(mctx, s.ingestURL, ids, c.Readers) })
	wall, err := runCommands("reads: commands with readers")
	stopReads()
	wg.Wait()
	if err != nil {
		return rep, err
	}
	after, err := s.stats(ctx)
	if err != nil {
		return rep, err
	}
	d := after.sub(before)

	refRate, mixedRate := rate(c.Commands, refWall), rate(c.Commands, wall)
	t := Table{Header: []string{"phase", "commands/s", "reads/s", "read p50", "read p99", "reads refused (503)", "read errors"}}
	t.add("reads alone (reference)", "—", num(rate(alone.ok(), c.Reference)), alone.p(50), alone.p(99), strconv.Itoa(alone.refused), strconv.Itoa(alone.errors))
	t.add(fmt.Sprintf("%d comments alone (reference)", c.Commands), num(refRate), "—", "—", "—", "—", "—")
	t.add(fmt.Sprintf("%d comments with %d readers", c.Commands, c.Readers), num(mixedRate), num(rate(mixed.ok(), wall)),
		mixed.p(50), mixed.p(99), strconv.Itoa(mixed.refused), strconv.Itoa(mixed.errors))
	rep.Tables = append(rep.Tables, t)
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("Commands keep %s of their rate alone while the readers run (their guaranteed share is 60 %%); the reads take the rest. "+
			"A read that would wait past its deadline answers 503 at once with Retry-After, and its reader retries after it.", pct(mixedRate/refRate)),
		fmt.Sprintf("In all: %d API requests, %d answered 429 (%s).", d.Requests, d.RateLimited, d.ops()),
	)
	rep.set("reference_read_p50_seconds", alone.percentile(50).Seconds())
	rep.set("reference_command_rate", refRate)
	rep.set("command_rate", mixedRate)
	rep.set("command_share", mixedRate/refRate)
	rep.set("read_rate", rate(mixed.ok(), wall))
	rep.set("read_p50_seconds", mixed.percentile(50).Seconds())
	rep.set("read_p99_seconds", mixed.percentile(99).Seconds())
	rep.set("reads_refused", float64(mixed.refused))
	rep.set("read_errors", float64(mixed.errors+alone.errors))
	rep.set("rate_limited", float64(d.RateLimited))
	return rep, nil
}

// seedThroughIntegrator creates n clients (at most 100) at location A with
// one client.bulk_create command and returns their ids, listed through
// ingest's read of the deprecated list.
func seedThroughIntegrator(ctx context.Context, s *stack, ev *events, n int) ([]int64, error) {
	seeds := make([]commands.ClientFields, n)
	for k := range seeds {
		seeds[k] = commands.ClientFields{Name: new(fmt.Sprintf("Reader %d", k)), Phone: new(phone(seriesSeed, k))}
	}
	cmd := newCommand(commands.TypeClientBulkCreate, locationA, "", 0, commands.BulkCreatePayload{Clients: seeds})
	if err := publishAll(ctx, s.js, []commands.Command{cmd}); err != nil {
		return nil, err
	}
	if err := ev.waitAll(ctx, s, []string{cmd.ID}, "reads: seeding"); err != nil {
		return nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/locations/%d/clients?count=300", s.ingestURL, locationA), nil)
	req.Header.Set("Authorization", "Bearer "+benchProducerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("list the seeded clients: %w", err)
	}
	defer resp.Body.Close()
	var list struct {
		Clients []struct {
			ID int64 `json:"id"`
		} `json:"clients"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != http.StatusOK || len(list.Clients) != n {
		return nil, fmt.Errorf("list the seeded clients: status %d, %d clients, %v", resp.StatusCode, len(list.Clients), err)
	}
	ids := make([]int64, n)
	for i, c := range list.Clients {
		ids[i] = c.ID
	}
	return ids, nil
}

// readStats are the answers of a read load.
type readStats struct {
	latencies []latency // of the 200s
	refused   int       // 503s
	errors    int       // anything else
}

func (r readStats) ok() int { return len(r.latencies) }

func (r readStats) percentile(p float64) time.Duration { return percentile(r.latencies, p).d }

func (r readStats) p(p float64) string {
	if len(r.latencies) == 0 {
		return "—"
	}
	return dur(r.percentile(p))
}

// readLoad runs readers concurrent loops of GET client through ingest
// until ctx ends; a reader answered 503 waits for Retry-After (at most 2 s)
// before its next read.
func readLoad(ctx context.Context, ingestURL string, ids []int64, readers int) readStats {
	client := &http.Client{Timeout: 30 * time.Second}
	var (
		mu  sync.Mutex
		out readStats
		wg  sync.WaitGroup
	)
	for r := range readers {
		wg.Go(func() {
			for k := r; ctx.Err() == nil; k += readers {
				url := fmt.Sprintf("%s/v1/locations/%d/clients/%d", ingestURL, locationA, ids[k%len(ids)])
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+benchProducerKey)
				start := time.Now()
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return // cut off by the end of the phase: not counted
				}
				var wait time.Duration
				mu.Lock()
				switch {
				case err != nil:
					out.errors++
				case resp.StatusCode == http.StatusOK:
					out.latencies = append(out.latencies, latency{d: time.Since(start), finished: true})
				case resp.StatusCode == http.StatusServiceUnavailable:
					out.refused++
					secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
					wait = min(time.Duration(secs)*time.Second, 2*time.Second)
				default:
					out.errors++
				}
				mu.Unlock()
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if wait > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(wait):
					}
				}
			}
		})
	}
	wg.Wait()
	return out
}
