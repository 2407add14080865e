// Package devstack runs the whole pipeline in one process for development
// (cmd/dev: embedded NATS, the sandbox, ingest and the worker) and for the
// one-process pipeline bench (cmd/bench pipeline). Only those two binaries
// import it (and tests, e.g. the producer package's and the examples'), so
// the production binaries link neither nats-server nor the sandbox; the parts themselves are built by internal/stack and
// internal/workerstack, as in production.
package devstack

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/console"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/ingest"
	"github.com/altegio-integrator/integrator/internal/outbox"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/tracing"
	"github.com/altegio-integrator/integrator/internal/worker"
	"github.com/altegio-integrator/integrator/internal/workerstack"
)

// The development sandbox's fixed credentials, printed at start. The
// sandbox's user logs in with DevLogin and DevPassword (POST /auth) and
// always gets DevUserToken, so the banner's curl works as printed.
const (
	DevPartnerToken = "dev-partner-token"
	DevLogin        = "dev@example.com"
	DevPassword     = "dev-password"
	DevUserToken    = "dev-user-token"
	DevProducerKey  = "dev-producer-key"
	DevOperatorKey  = "dev-operator-key"
	DevLocationID   = 1
	// DevWebhookSecret is the secret path segment of ingest's Altegio
	// webhook route, which the dev stack registers with the sandbox.
	DevWebhookSecret = "dev-altegio-webhook-secret"
)

// The names of cmd/dev's flags for the settings RunDev's errors tell the
// user to change.
const (
	FlagDataDir     = "data"
	FlagNATSListen  = "nats-listen"
	FlagSandboxAddr = "sandbox-addr"
	FlagIngestAddr  = "ingest-addr"
	FlagOpsAddr     = "ops-addr"
)

// LockFile is the file in the data folder that a running dev stack holds
// an exclusive lock on (on Linux, macOS and the other Unix systems).
const LockFile = "dev.lock"

// DataDirLockedError is RunDev's error when another dev stack, in this
// process or another, uses the same data folder.
type DataDirLockedError struct {
	Dir  string // the data folder as configured
	Lock string // the lock file's path
	PID  int    // the holder's process id; 0 when unknown
}

func (e *DataDirLockedError) Error() string {
	holder := ""
	if e.PID != 0 {
		holder = fmt.Sprintf(", held by pid %d", e.PID)
	}
	return fmt.Sprintf("another dev stack is using %s (lock %s%s); stop it or choose another --%s",
		displayDir(e.Dir), displayDir(e.Lock), holder, FlagDataDir)
}

// DevConfig configures the one-process development stack. Every address
// accepts port 0 for a free port; what was bound is printed and returned
// through DevStack.
type DevConfig struct {
	// DataDir holds the embedded NATS store and the ingest outbox, reused
	// across runs so that unfinished commands resume. Default "data". One
	// dev stack at a time may use it: RunDev locks DataDir/dev.lock.
	DataDir string
	// NATSURL selects an external NATS; empty starts an embedded one on
	// NATSListen (default 127.0.0.1:4222).
	NATSURL    string
	NATSListen string
	// APIURL selects a real Altegio API (with Accounts from the
	// environment); empty starts the sandbox on SandboxAddr (default
	// 127.0.0.1:8081) and logs in to it as DevLogin.
	APIURL      string
	SandboxAddr string
	Accounts    []auth.Account
	// SandboxFaults are the sandbox's initial faults (a share of 5xx,
	// resets, latency), to watch retries and dead letters.
	SandboxFaults sandbox.Faults
	// WebhookDelay is how long after a change the sandbox sends its client
	// webhook (default 5s, as Altegio).
	WebhookDelay time.Duration
	// IngestAddr (default 127.0.0.1:8080) and OpsAddr, the worker's
	// health and metrics (default 127.0.0.1:9090).
	IngestAddr string
	OpsAddr    string
	// RateLimit is the shared API budget (default 5/s, 200/min; the
	// sandbox enforces the same).
	RateLimit ratelimit.Config
	// Worker configures the worker; its WorkerID defaults to "dev".
	Worker worker.Config
	// Progress is how often a summary line is printed while there is
	// activity. Default 10s.
	Progress time.Duration
	// Out receives the start-up lines, the banner, one line per event and
	// the progress lines. Logger receives the components' logs (default:
	// warnings and errors as text on stderr).
	Out    io.Writer
	Logger *slog.Logger
	// Ready, when set, is called once everything listens.
	Ready func(DevStack)
	// ConsoleTraces, when set, lets the console at /ui/ show a command's
	// spans (e.g. an in-memory recorder of the stack's traces). Default
	// none: the console shows trace ids only.
	ConsoleTraces console.Traces
}

// DevStack says where the running parts listen.
type DevStack struct {
	NATSURL, APIURL, IngestURL, OpsURL string
	// ConsoleURL is the operators' console (IngestURL + "/ui/"); its
	// operator key is DevOperatorKey.
	ConsoleURL string
	Sandbox    *sandbox.Server // nil with a real API
}

func (c *DevConfig) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.DataDir, "data")
	def(&c.NATSListen, "127.0.0.1:4222")
	def(&c.SandboxAddr, "127.0.0.1:8081")
	def(&c.IngestAddr, "127.0.0.1:8080")
	def(&c.OpsAddr, "127.0.0.1:9090")
	def(&c.Worker.WorkerID, "dev")
	if c.Progress == 0 {
		c.Progress = 10 * time.Second
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// RunDev runs embedded NATS (unless NATSURL is set), the sandbox (unless
// APIURL is set), ingest and the worker in this process until ctx ends, then
// shuts them down in order: intake, worker, outbox, NATS. The events the
// worker publishes while it finishes the commands in flight are printed
// before RunDev returns.
//
// It fails at once with a *DataDirLockedError when another dev stack uses
// DataDir, and with an error naming the flag to change when one of its
// addresses is taken.
func RunDev(ctx context.Context, cfg DevConfig) error {
	cfg.setDefaults()
	log := cfg.Logger
	say := func(line string) { fmt.Fprintln(cfg.Out, line) }
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir (set --%s): %w", FlagDataDir, err)
	}
	unlock, err := lockDataDir(cfg.DataDir, filepath.Join(cfg.DataDir, LockFile))
	if err != nil {
		return err
	}
	defer unlock()
	lns, err := listenAll(cfg)
	if err != nil {
		return err
	}
	defer lns.close()
	var st DevStack
	reg := prometheus.NewRegistry()

	// NATS.
	st.NATSURL = cfg.NATSURL
	if st.NATSURL == "" {
		say(fmt.Sprintf("starting NATS (JetStream data in %s)…", displayDir(cfg.DataDir)))
		ns, err := startEmbeddedNATS(cfg.NATSListen, filepath.Join(cfg.DataDir, "nats"), log)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		st.NATSURL = ns.ClientURL()
	} else {
		say(fmt.Sprintf("connecting to NATS at %s…", st.NATSURL))
	}
	nc, js, err := stack.ConnectNATS(stack.NATSConfig{URL: st.NATSURL, Name: "dev"}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	say("applying the topology…")
	top, err := stack.ApplyTopology(ctx, js, 1, 30*time.Second, log)
	if err != nil {
		return err
	}

	// The API: a sandbox unless a real one is configured.
	st.APIURL = cfg.APIURL
	accounts := cfg.Accounts
	var servers []*http.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	if st.APIURL == "" {
		say("starting the sandbox…")
		statePath, stateExists, err := sandboxStatePath(cfg.DataDir)
		if err != nil {
			return err
		}
		sb, err := sandbox.New(sandbox.Config{
			StateFile:     statePath,
			PartnerToken:  DevPartnerToken,
			Users:         []sandbox.User{{Login: DevLogin, Password: DevPassword, Token: DevUserToken, Name: "Dev User"}},
			RatePerSecond: cfg.RateLimit.PerSecond,
			RatePerMinute: cfg.RateLimit.PerMinute,
			Faults:        cfg.SandboxFaults,
			WebhookDelay:  cfg.WebhookDelay,
		})
		if err != nil {
			return err
		}
		defer sb.Close() // cancels the webhook deliveries still retrying when the stack stops
		if !stateExists {
			largest, err := skipMappedClientIDs(ctx, js, sb)
			if err != nil {
				return err
			}
			if largest > 0 {
				say(fmt.Sprintf("the sandbox starts empty (no %s), but NATS maps client refs to ids up to %d: new clients get ids above them, and commands by those refs dead-letter as pointing at a missing client. Delete %s to start afresh.",
					statePath, largest, displayDir(cfg.DataDir)))
			}
		}
		ln := lns.take(&lns.sandbox)
		srv := &http.Server{Handler: sb, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go srv.Serve(ln)
		st.Sandbox = sb
		st.APIURL = "http://" + ln.Addr().String() + sandbox.BasePath
		accounts = []auth.Account{{Name: "dev", PartnerToken: DevPartnerToken, Login: DevLogin, Password: DevPassword}}
	}

	// Traces, kept in memory for the console (and exported too when
	// OTEL_EXPORTER_OTLP_ENDPOINT is set).
	spans := tracing.NewRecorder(tracing.DefaultRecorderSize)
	tp, stopTracing, err := tracing.Setup(ctx, "altegio-dev", os.Getenv, tracing.WithRecorder(spans))
	if err != nil {
		return err
	}
	defer stopTracing(context.WithoutCancel(ctx))
	if cfg.ConsoleTraces == nil {
		cfg.ConsoleTraces = console.RecordedTraces(spans)
	}

	// The worker.
	say("starting the worker…")
	w, closeWorker, err := workerstack.NewWorker(ctx, js, top, workerstack.WorkerConfig{
		APIBaseURL:     st.APIURL,
		Accounts:       accounts,
		RateLimit:      withKey(cfg.RateLimit, "egress.dev"),
		Worker:         cfg.Worker,
		Reads:          true,
		Logger:         log,
		Registerer:     reg,
		TracerProvider: tp,
	})
	if err != nil {
		return err
	}
	defer closeWorker()
	opsLn := lns.take(&lns.ops)
	ops := &http.Server{Handler: stack.OpsHandler(w.Ready, reg), ReadHeaderTimeout: 5 * time.Second}
	servers = append(servers, ops)
	go ops.Serve(opsLn)
	st.OpsURL = "http://" + opsLn.Addr().String()

	// Ingest, with its outbox in the data folder.
	say("starting ingest…")
	ob, err := outbox.Open(filepath.Join(cfg.DataDir, "ingest-outbox.db"), outbox.Config{Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("open outbox: %w", err)
	}
	defer ob.Close()
	dlqSvc, err := dlq.New(ctx, js, dlq.Config{Operator: "dev", Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("dlq: %w", err)
	}
	operatorKeys := [][sha256.Size]byte{sha256.Sum256([]byte(DevOperatorKey))}
	// The operators' console, on ingest's port: the worker's metrics are
	// on the ops server (one registry holds ingest's and the worker's).
	con, err := console.New(console.Config{OperatorKeys: operatorKeys, DLQ: dlqSvc, JS: js, NATS: nc, Local: reg,
		WorkerMetrics: []string{st.OpsURL + "/metrics"}, Traces: cfg.ConsoleTraces, Logger: log})
	if err != nil {
		return err
	}
	in, err := ingest.New(ingest.Config{
		Producers:            []ingest.Producer{{Name: "dev", KeyHashes: [][sha256.Size]byte{sha256.Sum256([]byte(DevProducerKey))}, Read: true}},
		DLQ:                  dlqSvc,
		OperatorKeys:         operatorKeys,
		Console:              con,
		AltegioWebhookSecret: DevWebhookSecret,
		Logger:               log,
		Registerer:           reg,
		TracerProvider:       tp,
		Gatherer:             reg,
	}, nc, js, ob)
	if err != nil {
		return err
	}
	inLn := lns.take(&lns.ingest)
	st.IngestURL = "http://" + inLn.Addr().String()
	st.ConsoleURL = st.IngestURL + console.PathPrefix
	if st.Sandbox != nil {
		// The sandbox sends its client webhooks to ingest, registered as
		// `worker webhooks register` does.
		if err := registerDevWebhook(ctx, js, st, accounts, cfg, log); err != nil {
			inLn.Close()
			return err
		}
	}
	// Created before ingest and the worker run, so that it misses none of
	// their events.
	follower, err := newEventFollower(ctx, js, cfg.Out, log)
	if err != nil {
		inLn.Close()
		return err
	}

	printBanner(cfg.Out, st, cfg.DataDir)
	if cfg.Ready != nil {
		cfg.Ready(st)
	}

	// Ingest and the worker run until runCtx ends; the event follower
	// until both have returned and it has printed their last events.
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	partsCtx, partsStopped := context.WithCancel(context.Background())
	defer partsStopped()
	var parts, followers sync.WaitGroup
	errs := make(chan error, 2)
	parts.Go(func() { errs <- in.Serve(runCtx, inLn) })
	parts.Go(func() { errs <- w.Run(runCtx) })
	followers.Go(func() { follower.run(partsCtx, drainEventsFor) })
	followers.Go(func() { printProgress(runCtx, cfg.Out, reg, cfg.Progress) })

	var first error
	select {
	case <-ctx.Done():
	case first = <-errs: // a part stopped on its own: stop the rest
	}
	say("stopping: the worker finishes the commands in flight…")
	stopAll()
	parts.Wait()
	partsStopped()
	followers.Wait()
	close(errs)
	for err := range errs {
		first = firstError(first, err)
	}
	say("stopped; unfinished commands resume on the next start")
	return first
}

// devListeners are the dev stack's HTTP listeners, bound before anything
// starts so that a taken port fails at once.
type devListeners struct {
	sandbox, ops, ingest net.Listener
}

// listenAll binds the sandbox's (unless a real API is configured), the
// worker ops' and ingest's addresses, and checks that the embedded NATS's
// is free. It reports every taken address, each with its flag.
func listenAll(cfg DevConfig) (*devListeners, error) {
	lns := &devListeners{}
	var errs []error
	if cfg.NATSURL == "" {
		if _, port, err := net.SplitHostPort(cfg.NATSListen); err == nil && port != "0" {
			// nats-server binds it itself just after; startEmbeddedNATS
			// reports the rare loss of that race.
			ln, err := stack.Listen(cfg.NATSListen, FlagNATSListen)
			if err != nil {
				errs = append(errs, err)
			} else {
				ln.Close()
			}
		}
	}
	listen := func(p *net.Listener, addr, flag string) {
		ln, err := stack.Listen(addr, flag)
		if err != nil {
			errs = append(errs, err)
			return
		}
		*p = ln
	}
	if cfg.APIURL == "" {
		listen(&lns.sandbox, cfg.SandboxAddr, FlagSandboxAddr)
	}
	listen(&lns.ops, cfg.OpsAddr, FlagOpsAddr)
	listen(&lns.ingest, cfg.IngestAddr, FlagIngestAddr)
	if err := errors.Join(errs...); err != nil {
		lns.close()
		return nil, err
	}
	return lns, nil
}

// take hands a listener over to its server: close no longer closes it.
func (l *devListeners) take(p *net.Listener) net.Listener {
	ln := *p
	*p = nil
	return ln
}

// close closes the listeners not taken.
func (l *devListeners) close() {
	for _, ln := range []net.Listener{l.sandbox, l.ops, l.ingest} {
		if ln != nil {
			ln.Close()
		}
	}
}

// displayDir shows a relative folder as ./dir, as a shell user types it.
func displayDir(dir string) string {
	if filepath.IsAbs(dir) || strings.HasPrefix(dir, ".") {
		return dir
	}
	return "./" + dir
}

// registerDevWebhook registers ingest's webhook route for DevLocationID
// with the sandbox, through the workers' API client.
func registerDevWebhook(ctx context.Context, js jetstream.JetStream, st DevStack, accounts []auth.Account, cfg DevConfig, log *slog.Logger) error {
	api, closeAPI, err := workerstack.NewAPI(ctx, js, workerstack.WorkerConfig{APIBaseURL: st.APIURL, Accounts: accounts,
		RateLimit: withKey(cfg.RateLimit, "egress.dev"), Logger: log})
	if err != nil {
		return err
	}
	defer closeAPI()
	url := st.IngestURL + "/v1/altegio/webhooks/" + DevWebhookSecret
	if _, _, err := api.ChangeHookSettings(ctx, DevLocationID, func(s altegio.HookSettings) (altegio.HookSettings, error) {
		return s.WithURL(url, nil)
	}); err != nil {
		return fmt.Errorf("register the sandbox's webhooks: %w", err)
	}
	return nil
}

// firstError returns the first of a and b that is an error other than a
// cancellation.
func firstError(a, b error) error {
	if a != nil && !errors.Is(a, context.Canceled) {
		return a
	}
	if b != nil && !errors.Is(b, context.Canceled) {
		return b
	}
	return nil
}

func withKey(c ratelimit.Config, key string) ratelimit.Config {
	if c.Key == "" {
		c.Key = key
	}
	return c
}

// printBanner says where everything listens and how to try it.
func printBanner(out io.Writer, st DevStack, dataDir string) {
	api := fmt.Sprintf("  Altegio API        %s\n", st.APIURL)
	if st.Sandbox != nil {
		api = fmt.Sprintf("  Altegio sandbox    %s   (partner token %s, login %s / %s)\n",
			st.APIURL, DevPartnerToken, DevLogin, DevPassword)
	}
	fmt.Fprintf(out, `
Altegio integrator, development stack
  NATS (JetStream)   %s   (data in %s)
%s  ingest             %s   (producer key %s, operator key for /v1/dlq %s)
  console            %s   (operator key %s)
  worker ops         %s/healthz  /readyz  /metrics

Send a command:
  curl -sS -X POST %s/v1/commands \
    -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
    -d '{"type":"client.create","location_id":%d,"client_ref":"crm-42","payload":{"name":"James","phone":"+13155550175"}}'
`, st.NATSURL, displayDir(dataDir), api, st.IngestURL, DevProducerKey, DevOperatorKey, st.ConsoleURL, DevOperatorKey,
		st.OpsURL, st.IngestURL, DevProducerKey, DevLocationID)
	if st.Sandbox != nil {
		fmt.Fprintf(out, `
List the sandbox's clients (POST /auth with the login answers user token %s):
  curl -sS -X POST %s/company/%d/clients/search \
    -H 'Authorization: Bearer %s, User %s' -H 'Accept: application/vnd.api.v2+json' \
    -H 'Content-Type: application/json' -d '{"fields":["id","name","phone","email"]}'
`, DevUserToken, st.APIURL, DevLocationID, DevPartnerToken, DevUserToken)
	}
	fmt.Fprint(out, "\nEvents appear below; Ctrl-C stops everything.\n")
}

// EventLine renders a result event on one line for people.
func EventLine(r commands.Result) string {
	s := fmt.Sprintf("event  %-13s %-21s id=%s location=%d", r.Outcome, r.Type, r.CommandID, r.LocationID)
	if r.ClientID != 0 {
		s += fmt.Sprintf(" client_id=%d", r.ClientID)
	}
	if r.ClientRef != "" {
		s += " client_ref=" + r.ClientRef
	}
	if r.ErrorClass != "" {
		s += fmt.Sprintf(" class=%s status=%d %q", r.ErrorClass, r.HTTPStatus, r.APIMessage)
	}
	if r.Attempts > 1 {
		s += fmt.Sprintf(" attempts=%d", r.Attempts)
	}
	return s
}

// WebhookLine renders an Altegio webhook event on one line for people.
func WebhookLine(e commands.WebhookEvent) string {
	s := fmt.Sprintf("webhook client.%-8s location=%d client_id=%d", e.Status, e.LocationID, e.ResourceID)
	if e.Origin.Integrator {
		s += " origin=integrator command=" + e.Origin.CommandID
	} else {
		s += " origin=elsewhere"
	}
	return s
}

// printProgress prints a summary line every interval while numbers change.
func printProgress(ctx context.Context, out io.Writer, g prometheus.Gatherer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := ProgressLine(g)
		if s != last {
			fmt.Fprintln(out, s)
			last = s
		}
	}
}

// ProgressLine summarises the stack's counters from g.
func ProgressLine(g prometheus.Gatherer) string {
	sum := func(name string, label, value string) float64 {
		fams, _ := g.Gather()
		total := 0.0
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				if label == "" || hasLabel(m, label, value) {
					total += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		return total
	}
	return fmt.Sprintf("progress  accepted %.0f  spooled %.0f  succeeded %.0f  dead-lettered %.0f  retried %.0f  rate-limit waits %.0f",
		sum("ingest_commands_total", "result", "accepted"),
		sum("ingest_commands_total", "result", "spooled"),
		sum("worker_commands_total", "outcome", string(commands.OutcomeSucceeded)),
		sum("worker_commands_total", "outcome", string(commands.OutcomeDeadLettered)),
		sum("worker_retries_total", "", ""),
		sum("altegio_ratelimit_wait_seconds", "", "")-sumBucket(g, "altegio_ratelimit_wait_seconds", 0),
	)
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// sumBucket returns the cumulative count of histogram name at upper bound le.
func sumBucket(g prometheus.Gatherer, name string, le float64) float64 {
	fams, _ := g.Gather()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		total := 0.0
		for _, m := range f.GetMetric() {
			for _, b := range m.GetHistogram().GetBucket() {
				if b.GetUpperBound() == le {
					total += float64(b.GetCumulativeCount())
				}
			}
		}
		return total
	}
	return 0
}
