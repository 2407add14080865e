package bench

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	istack "github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// The sandbox credentials every phase uses; the workers log in with
// benchLogin and benchPassword, the bare consumer uses benchUserToken.
const (
	benchPartnerToken = "bench-partner-token"
	benchLogin        = "bench@example.com"
	benchPassword     = "bench-password"
	benchUserToken    = "bench-user-token"
	benchProducerKey  = "bench-producer-key"
	apiMediaType      = "application/vnd.api.v2+json"
	readyTimeout      = 30 * time.Second
	stopGrace         = 3 * time.Second
)

// Budget is an API budget: requests per second and per minute; a negative
// value disables that window.
type Budget struct {
	PerSecond, PerMinute int
}

// The budgets the scenarios use.
var (
	// Documented is the API's documented budget per IP: 5/s and 200/min.
	Documented = Budget{PerSecond: 5, PerMinute: 200}
	// Unlimited disables both windows.
	Unlimited = Budget{PerSecond: -1, PerMinute: -1}
)

// String renders b as "5/s, 200/min" or "none".
func (b Budget) String() string {
	if b.PerSecond < 0 && b.PerMinute < 0 {
		return "none"
	}
	s := "unlimited/s"
	if b.PerSecond >= 0 {
		s = strconv.Itoa(b.PerSecond) + "/s"
	}
	if b.PerMinute >= 0 {
		s += ", " + strconv.Itoa(b.PerMinute) + "/min"
	}
	return s
}

// Allowance is the most requests b allows in a window of length d that
// starts with no earlier requests: PerSecond a second until PerMinute are
// spent (the first 40 s at 5/s and 200/min), then nothing until the oldest
// leave the minute, and so on. It is +Inf without limits.
func (b Budget) Allowance(d time.Duration) float64 {
	sec := d.Seconds()
	switch {
	case b.PerSecond < 0 && b.PerMinute < 0:
		return inf
	case b.PerMinute < 0:
		return float64(b.PerSecond) * sec
	case b.PerSecond < 0:
		return float64(b.PerMinute) * (1 + float64(int(sec/60)))
	}
	perWindow := min(float64(b.PerMinute), 60*float64(b.PerSecond))
	whole := float64(int(sec / 60))
	rest := sec - 60*whole
	return whole*perWindow + min(float64(b.PerSecond)*rest, perWindow)
}

// env is what every phase of a run shares.
type env struct {
	bins     string    // the binaries (see Build)
	work     string    // a folder per phase goes under it
	progress io.Writer // never nil
	// noBudgetRate is the workers' per-second budget when they refuse -1.
	noBudgetRate int
	// unlimitedRefused is set once a worker has refused -rate-per-second -1.
	unlimitedRefused bool
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.progress, "bench  "+format+"\n", args...)
}

// stack is the set of processes of one phase: nats-server, the sandbox,
// ingest and workers, each started on demand. close stops all of them.
type stack struct {
	env  *env
	name string
	dir  string

	procs []*proc

	natsURL  string
	natsPort int
	nats     *proc
	cluster  []*clusterNode     // instead of nats, in a cluster phase
	top      *topology.Topology // as applied
	nc       *nats.Conn
	js       jetstream.JetStream

	sandboxURL  string // server root; the API is under /api/v1
	sandbox     *proc
	sandboxArgs []string // extra flags of the sandbox

	ingestURL    string
	ingest       *proc
	ingestPrefix []string // a command ingest runs under, e.g. prlimit

	workers      []*proc
	workerRuns   int      // workers started so far, for unique names
	workerBudget Budget   // what the workers were started with
	workerArgs   []string // extra flags of worker run
}

// newStack prepares a phase named name, with a fresh folder.
func newStack(e *env, name string) (*stack, error) {
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &stack{env: e, name: name, dir: dir}, nil
}

// ingestOpt says whether openStack starts ingest.
type ingestOpt bool

const (
	withIngest ingestOpt = true
	noIngest   ingestOpt = false
)

// openStack prepares a phase named name and starts its nats-server, a
// sandbox enforcing b and, with withIngest, ingest. On failure it stops
// what it started; otherwise the caller closes the stack.
func openStack(ctx context.Context, e *env, name string, b Budget, ingest ingestOpt) (*stack, error) {
	s, err := newStack(e, name)
	if err != nil {
		return nil, err
	}
	err = s.startNATS(ctx)
	if err == nil {
		err = s.startSandbox(ctx, b)
	}
	if err == nil && ingest {
		err = s.startIngest(ctx)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// close stops every process, newest first, and closes the connection.
func (s *stack) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].stop(stopGrace)
	}
}

func (s *stack) start(spec procSpec) (*proc, error) {
	spec.logDir = s.dir
	p, err := startProc(spec)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	return p, nil
}

func (s *stack) bin(name string) string { return filepath.Join(s.env.bins, name) }

// startNATS starts nats-server with JetStream, connects to it and applies
// the topology.
func (s *stack) startNATS(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.natsPort = port
	p, err := s.runNATS()
	if err != nil {
		return err
	}
	s.nats, s.natsURL = p, fmt.Sprintf("nats://127.0.0.1:%d", port)
	if err := s.connect(ctx, p); err != nil {
		return err
	}
	return s.applyTopology(ctx, 1)
}

// applyTopology applies the topology with replicas, as the worker does,
// and keeps it.
func (s *stack) applyTopology(ctx context.Context, replicas int) error {
	top, err := istack.ApplyTopology(ctx, s.js, replicas, readyTimeout, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	s.top = top
	return nil
}

// connect connects the bench to s.natsURL (reconnecting for ever) and
// waits until JetStream answers or p exits.
func (s *stack) connect(ctx context.Context, p *proc) error {
	var err error
	s.nc, err = nats.Connect(s.natsURL, nats.Name("bench"), nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return fmt.Errorf("connect to nats-server: %w", err)
	}
	s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	return waitJetStream(ctx, p, s.js)
}

// runNATS starts the nats-server process on s.natsPort and s's store.
func (s *stack) runNATS() (*proc, error) {
	return s.start(procSpec{name: "nats-server", path: s.bin(binNATS), env: childEnv(), args: []string{
		"-a", "127.0.0.1", "-p", strconv.Itoa(s.natsPort), "-js", "-sd", filepath.Join(s.dir, "nats"),
		"--server_name", "bench",
	}})
}

// killNATS kills nats-server with SIGKILL and waits until it is gone.
func (s *stack) killNATS() {
	s.nats.kill()
}

// restartNATS starts nats-server again on the same port and store, and
// waits until JetStream answers.
func (s *stack) restartNATS(ctx context.Context) error {
	p, err := s.runNATS()
	if err != nil {
		return err
	}
	s.nats = p
	return waitJetStream(ctx, p, s.js)
}

// waitJetStream polls js until JetStream answers, p exits, or readyTimeout
// passes.
func waitJetStream(ctx context.Context, p *proc, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(actx)
		acancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("nats-server not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startSandbox starts the sandbox enforcing b per IP, with no latency.
func (s *stack) startSandbox(ctx context.Context, b Budget) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p, err := s.start(procSpec{name: "altegio-sandbox", path: s.bin(binSandbox), env: childEnv(), args: append([]string{
		"-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"-partner-token", benchPartnerToken, "-user-login", benchLogin, "-user-password", benchPassword,
		"-user-token", benchUserToken,
		"-rate-per-second", strconv.Itoa(b.PerSecond), "-rate-per-minute", strconv.Itoa(b.PerMinute),
		"-log-level", "warn",
	}, s.sandboxArgs...)})
	if err != nil {
		return err
	}
	s.sandbox, s.sandboxURL = p, fmt.Sprintf("http://127.0.0.1:%d", port)
	return waitHTTP(ctx, p, s.sandboxURL+"/healthz", readyTimeout)
}

// apiURL is the sandbox's API base URL.
func (s *stack) apiURL() string { return s.sandboxURL + "/api/v1" }

// api is a client of the sandbox's API with the bench user's token.
func (s *stack) api() apiClient {
	return apiClient{base: s.apiURL(), http: &http.Client{Timeout: 30 * time.Second}}
}

// startIngest starts one ingest process that accepts benchProducerKey.
func (s *stack) startIngest(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(benchProducerKey))
	producers := fmt.Sprintf(`[{"name":"bench","api_key_sha256":[%q],"read":true}]`, hex.EncodeToString(sum[:]))
	args := []string{
		"--nats-url", s.natsURL, "--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--outbox", filepath.Join(s.dir, "ingest-outbox.db"),
		"--log-level", "warn", "--log-format", "text",
	}
	path := s.bin(binIngest)
	if len(s.ingestPrefix) > 0 {
		args = append(append(s.ingestPrefix[1:], path), args...)
		path = s.ingestPrefix[0]
	}
	p, err := s.start(procSpec{name: "ingest", path: path, env: childEnv("INGEST_PRODUCERS=" + producers), args: args})
	if err != nil {
		return err
	}
	s.ingest, s.ingestURL = p, fmt.Sprintf("http://127.0.0.1:%d", port)
	return waitHTTP(ctx, p, s.ingestURL+"/readyz", readyTimeout)
}

// startWorkers starts n worker processes sharing budget b and waits until
// each is ready. With an unlimited budget a worker is first asked for
// -rate-per-second -1; if it refuses that, it and the rest get
// env.noBudgetRate per second instead.
func (s *stack) startWorkers(ctx context.Context, n int, b Budget) error {
	for range n {
		if err := s.startWorker(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

func (s *stack) startWorker(ctx context.Context, b Budget) error {
	wb := b
	if b.PerSecond < 0 && s.env.unlimitedRefused {
		wb.PerSecond = s.env.noBudgetRate
	}
	err := s.tryWorker(ctx, wb)
	var refused *refusedBudgetError
	if errors.As(err, &refused) && b.PerSecond < 0 && wb.PerSecond < 0 {
		s.env.unlimitedRefused = true
		s.env.logf("the worker refuses -rate-per-second -1 (%s); using %d/s as no budget", refused.msg, s.env.noBudgetRate)
		wb.PerSecond = s.env.noBudgetRate
		err = s.tryWorker(ctx, wb)
	}
	if err == nil {
		s.workerBudget = wb
	}
	return err
}

// refusedBudgetError is a worker that exited at start because of its
// budget flags.
type refusedBudgetError struct{ msg string }

func (e *refusedBudgetError) Error() string { return "worker refused its budget: " + e.msg }

func (s *stack) tryWorker(ctx context.Context, b Budget) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.workerRuns++
	id := fmt.Sprintf("bench-w%d", s.workerRuns)
	p, err := s.start(procSpec{name: id, path: s.bin(binWorker),
		env: childEnv("ALTEGIO_PARTNER_TOKEN="+benchPartnerToken, "ALTEGIO_LOGIN="+benchLogin, "ALTEGIO_PASSWORD="+benchPassword),
		args: append([]string{"run",
			"--nats-url", s.natsURL, "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--api-url", s.apiURL(),
			"--rate-per-second", strconv.Itoa(b.PerSecond), "--rate-per-minute", strconv.Itoa(b.PerMinute),
			"--worker-id", id, "--log-level", "warn", "--log-format", "text",
		}, s.workerArgs...)})
	if err != nil {
		return err
	}
	err = waitHTTP(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), readyTimeout)
	if err != nil && p.exited() {
		if tail := p.logTail(); strings.Contains(tail, "per-second") {
			return &refusedBudgetError{msg: lastLine(tail)}
		}
	}
	if err == nil {
		s.workers = append(s.workers, p)
	}
	return err
}

// killWorker kills worker i with SIGKILL, as a crash would, and forgets it.
func (s *stack) killWorker(i int) {
	s.workers[i].kill()
	s.workers = append(s.workers[:i:i], s.workers[i+1:]...)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// sandboxStats holds the fields of the sandbox's GET /stats that the
// scenarios report; the body has more.
type sandboxStats struct {
	Requests         int            `json:"requests"`
	ByOp             map[string]int `json:"by_op"`
	RateLimited      int            `json:"rate_limited"`
	DuplicateCreates int            `json:"duplicate_creates"`
}

// sub is s minus an earlier snapshot.
func (s sandboxStats) sub(before sandboxStats) sandboxStats {
	d := sandboxStats{
		Requests:         s.Requests - before.Requests,
		RateLimited:      s.RateLimited - before.RateLimited,
		DuplicateCreates: s.DuplicateCreates - before.DuplicateCreates,
		ByOp:             map[string]int{},
	}
	for op, n := range s.ByOp {
		if n -= before.ByOp[op]; n != 0 {
			d.ByOp[op] = n
		}
	}
	return d
}

// ops renders the per-operation counts, largest first: "client.create 40, auth 1".
func (s sandboxStats) ops() string {
	ops := slices.Collect(maps.Keys(s.ByOp))
	slices.SortFunc(ops, func(a, b string) int {
		return cmp.Or(cmp.Compare(s.ByOp[b], s.ByOp[a]), strings.Compare(a, b))
	})
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = fmt.Sprintf("%s %d", op, s.ByOp[op])
	}
	return strings.Join(parts, ", ")
}

// stats reads the sandbox's counters.
func (s *stack) stats(ctx context.Context) (sandboxStats, error) {
	var st sandboxStats
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.sandboxURL+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("sandbox stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("sandbox stats: status %d (a sandbox binary without GET /stats?)", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("sandbox stats: %w", err)
	}
	return st, nil
}

// checkAlive returns an error when a process of the stack has exited.
func (s *stack) checkAlive() error {
	live := append([]*proc{s.nats, s.sandbox, s.ingest}, s.workers...)
	for _, p := range live {
		if p != nil && p.exited() {
			return p.exitError()
		}
	}
	return nil
}
