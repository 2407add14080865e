// Package devstack runs the whole pipeline in one process for development
// (cmd/dev: embedded NATS, the sandbox, ingest and the worker) and for the
// one-process pipeline bench (cmd/bench pipeline). Only those two binaries
// import it, so the production binaries link neither nats-server nor the
// sandbox; the parts themselves are built by internal/stack and
// internal/workerstack, as in production.
package devstack

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/ingest"
	"github.com/altegio-integrator/integrator/internal/outbox"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/worker"
	"github.com/altegio-integrator/integrator/internal/workerstack"
)

// The development sandbox's fixed credentials, printed at start.
const (
	DevPartnerToken = "dev-partner-token"
	DevLogin        = "dev@example.com"
	DevPassword     = "dev-password"
	DevProducerKey  = "dev-producer-key"
	DevOperatorKey  = "dev-operator-key"
	DevLocationID   = 1
	// DevWebhookSecret is the secret path segment of ingest's Altegio
	// webhook route, which the dev stack registers with the sandbox.
	DevWebhookSecret = "dev-altegio-webhook-secret"
)

// DevConfig configures the one-process development stack. Every address
// accepts port 0 for a free port; what was bound is printed and returned
// through DevStack.
type DevConfig struct {
	// DataDir holds the embedded NATS store and the ingest outbox, reused
	// across runs so that unfinished commands resume. Default "data".
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
	// Out receives the banner, one line per result event and the progress
	// lines. Logger receives the components' logs (default: warnings and
	// errors as text on stderr).
	Out    io.Writer
	Logger *slog.Logger
	// Ready, when set, is called once everything listens.
	Ready func(DevStack)
}

// DevStack says where the running parts listen.
type DevStack struct {
	NATSURL, APIURL, IngestURL, OpsURL string
	Sandbox                            *sandbox.Server // nil with a real API
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
// shuts them down in order: intake, worker, outbox, NATS.
func RunDev(ctx context.Context, cfg DevConfig) error {
	cfg.setDefaults()
	log := cfg.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	var st DevStack
	reg := prometheus.NewRegistry()

	// NATS.
	st.NATSURL = cfg.NATSURL
	if st.NATSURL == "" {
		ns, err := startEmbeddedNATS(cfg.NATSListen, filepath.Join(cfg.DataDir, "nats"))
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		st.NATSURL = ns.ClientURL()
	}
	nc, js, err := stack.ConnectNATS(stack.NATSConfig{URL: st.NATSURL, Name: "dev"}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
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
		sb, err := sandbox.New(sandbox.Config{
			PartnerToken:  DevPartnerToken,
			Users:         []sandbox.User{{Login: DevLogin, Password: DevPassword, Name: "Dev User"}},
			RatePerSecond: cfg.RateLimit.PerSecond,
			RatePerMinute: cfg.RateLimit.PerMinute,
			Faults:        cfg.SandboxFaults,
			WebhookDelay:  cfg.WebhookDelay,
		})
		if err != nil {
			return err
		}
		defer sb.Close() // cancels the webhook deliveries still retrying when the stack stops
		ln, err := net.Listen("tcp", cfg.SandboxAddr)
		if err != nil {
			return fmt.Errorf("sandbox listen: %w", err)
		}
		srv := &http.Server{Handler: sb, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go srv.Serve(ln)
		st.Sandbox = sb
		st.APIURL = "http://" + ln.Addr().String() + sandbox.BasePath
		accounts = []auth.Account{{Name: "dev", PartnerToken: DevPartnerToken, Login: DevLogin, Password: DevPassword}}
	}

	// The worker.
	w, closeWorker, err := workerstack.NewWorker(ctx, js, top, workerstack.WorkerConfig{
		APIBaseURL: st.APIURL,
		Accounts:   accounts,
		RateLimit:  withKey(cfg.RateLimit, "egress.dev"),
		Worker:     cfg.Worker,
		Reads:      true,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	defer closeWorker()
	opsLn, err := net.Listen("tcp", cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("ops listen: %w", err)
	}
	ops := &http.Server{Handler: stack.OpsHandler(w.Ready, reg), ReadHeaderTimeout: 5 * time.Second}
	servers = append(servers, ops)
	go ops.Serve(opsLn)
	st.OpsURL = "http://" + opsLn.Addr().String()

	// Ingest, with its outbox in the data folder.
	ob, err := outbox.Open(filepath.Join(cfg.DataDir, "ingest-outbox.db"), outbox.Config{Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("open outbox: %w", err)
	}
	defer ob.Close()
	dlqSvc, err := dlq.New(ctx, js, dlq.Config{Operator: "dev", Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("dlq: %w", err)
	}
	in, err := ingest.New(ingest.Config{
		Producers:            []ingest.Producer{{Name: "dev", KeyHashes: [][sha256.Size]byte{sha256.Sum256([]byte(DevProducerKey))}, Read: true}},
		DLQ:                  dlqSvc,
		OperatorKeys:         [][sha256.Size]byte{sha256.Sum256([]byte(DevOperatorKey))},
		AltegioWebhookSecret: DevWebhookSecret,
		Logger:               log,
		Registerer:           reg,
		Gatherer:             reg,
	}, nc, js, ob)
	if err != nil {
		return err
	}
	inLn, err := net.Listen("tcp", cfg.IngestAddr)
	if err != nil {
		return fmt.Errorf("ingest listen: %w", err)
	}
	st.IngestURL = "http://" + inLn.Addr().String()
	if st.Sandbox != nil {
		// The sandbox sends its client webhooks to ingest, registered as
		// `worker webhooks register` does.
		if err := registerDevWebhook(ctx, js, st, accounts, cfg, log); err != nil {
			inLn.Close()
			return err
		}
	}

	printBanner(cfg.Out, st)
	if cfg.Ready != nil {
		cfg.Ready(st)
	}

	var wg sync.WaitGroup
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	errs := make(chan error, 2)
	wg.Go(func() { errs <- in.Serve(runCtx, inLn) })
	wg.Go(func() { errs <- w.Run(runCtx) })
	wg.Go(func() { followEvents(runCtx, js, cfg.Out, log) })
	wg.Go(func() { printProgress(runCtx, cfg.Out, reg, cfg.Progress) })

	var first error
	select {
	case <-ctx.Done():
	case first = <-errs: // a part stopped on its own: stop the rest
	}
	stopAll()
	wg.Wait()
	close(errs)
	for err := range errs {
		first = firstError(first, err)
	}
	fmt.Fprintln(cfg.Out, "stopped; unfinished commands resume on the next start")
	return first
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

// startEmbeddedNATS starts a JetStream server on listen (host:port, port 0
// for a free one) storing under dir.
func startEmbeddedNATS(listen, dir string) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s did not start", listen)
	}
	return ns, nil
}

func printBanner(out io.Writer, st DevStack) {
	fmt.Fprintf(out, `Altegio integrator, development stack
  NATS (JetStream)   %s
  Altegio API        %s
  ingest             %s   (producer key: %s, operator key for /v1/dlq: %s)
  worker ops         %s/healthz  /readyz  /metrics

Send a command:
  curl -sS -X POST %s/v1/commands \
    -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
    -d '{"type":"client.create","location_id":%d,"client_ref":"crm-42","payload":{"name":"James","phone":"+13155550175"}}'

Result events appear below; Ctrl-C stops everything.
`, st.NATSURL, st.APIURL, st.IngestURL, DevProducerKey, DevOperatorKey, st.OpsURL, st.IngestURL, DevProducerKey, DevLocationID)
}

// followEvents prints one line per new result event until ctx ends.
func followEvents(ctx context.Context, js jetstream.JetStream, out io.Writer, log *slog.Logger) {
	c, err := js.OrderedConsumer(ctx, topology.StreamEvents, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		log.Warn("follow events", "error", err)
		return
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		var wh commands.WebhookEvent
		if strings.Contains(m.Subject(), ".webhook.") && json.Unmarshal(m.Data(), &wh) == nil {
			fmt.Fprintln(out, WebhookLine(wh))
			return
		}
		var r commands.Result
		if err := json.Unmarshal(m.Data(), &r); err != nil || r.CommandID == "" {
			fmt.Fprintf(out, "event  %s\n", m.Subject())
			return
		}
		fmt.Fprintln(out, EventLine(r))
	})
	if err != nil {
		log.Warn("follow events", "error", err)
		return
	}
	<-ctx.Done()
	cc.Stop()
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
