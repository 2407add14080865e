// Command ingest is the HTTP front door for producers: it authenticates
// them, validates their commands and publishes them to JetStream, spooling to
// a local outbox while JetStream is unreachable. See internal/ingest.
//
// Every flag can also be set by the environment variable named in --help.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/envflag"
	"github.com/altegio-integrator/integrator/internal/ingest"
	"github.com/altegio-integrator/integrator/internal/outbox"
	"github.com/altegio-integrator/integrator/internal/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

// options are the settings of the binary.
type options struct {
	addr          string
	natsURL       string
	natsCreds     string
	natsInbox     string
	natsTimeout   time.Duration
	applyTopology bool
	replicas      int

	outboxPath       string
	outboxMaxEntries int
	outboxMaxBytes   int64
	noOutbox         bool

	producers     string
	producersFile string
	noAuth        bool

	operatorKeys     string
	operatorKeysFile string
	operatorNATS     stack.NATSConfig

	webhookSecretFile string
	webhookAllow      string
	webhookProxies    string
	webhookOwn        string

	console consoleOptions

	cfg ingest.Config

	logLevel   string
	logFormat  string
	cpuProfile string
	version    bool
}

// parse reads flags, with defaults taken from the environment.
func parse(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := envflag.New("ingest", getenv, stderr)
	fs.SetUsage("[flags]", "Accept producers' commands over HTTP, validate them and publish them to JetStream\n(spooling to a local outbox while it is unreachable); serve Altegio's webhooks.",
		"Exit codes: 0 stopped by Ctrl-C or SIGTERM (or --help, --version), 1 error.")
	str, boolean, integer, int64v, duration := fs.String, fs.Bool, fs.Int, fs.Int64, fs.Duration

	str(&o.addr, "addr", "INGEST_ADDR", ":8080", "HTTP listen address")
	str(&o.natsURL, "nats-url", "NATS_URL", nats.DefaultURL, "NATS server URLs, comma-separated")
	str(&o.natsCreds, "nats-creds", "NATS_CREDS", "", "NATS credentials file (optional)")
	str(&o.natsInbox, "nats-inbox-prefix", "NATS_INBOX_PREFIX", "", "prefix of this connection's reply subjects: _INBOX_ingest with the deploy/nats users (empty: _INBOX)")
	duration(&o.natsTimeout, "nats-connect-timeout", "INGEST_NATS_CONNECT_TIMEOUT", 30*time.Second, "how long to wait for NATS and the topology at start")
	boolean(&o.applyTopology, "apply-topology", "INGEST_APPLY_TOPOLOGY", true, "create or update streams, consumers and buckets at start")
	integer(&o.replicas, "replicas", "INGEST_REPLICAS", 1, "replicas of streams and buckets when applying the topology (3 on a cluster)")

	str(&o.outboxPath, "outbox", "INGEST_OUTBOX", "ingest-outbox.db", "outbox SQLite file (one per ingest process)")
	integer(&o.outboxMaxEntries, "outbox-max-entries", "INGEST_OUTBOX_MAX_ENTRIES", outbox.DefaultMaxEntries, "most commands the outbox holds")
	int64v(&o.outboxMaxBytes, "outbox-max-bytes", "INGEST_OUTBOX_MAX_BYTES", outbox.DefaultMaxBytes, "most bytes the outbox holds")
	boolean(&o.noOutbox, "no-outbox", "INGEST_NO_OUTBOX", false, "do not spool: answer 503 while JetStream is unreachable")

	str(&o.producers, "producers", "INGEST_PRODUCERS", "", "producers as JSON (see internal/ingest.ProducerSpec)")
	str(&o.producersFile, "producers-file", "INGEST_PRODUCERS_FILE", "", "file holding the producers JSON")
	str(&o.operatorKeys, "operator-keys-sha256", "INGEST_OPERATOR_KEYS_SHA256", "", "hex SHA-256 digests of operator keys, comma-separated: serves /v1/dlq")
	str(&o.operatorKeysFile, "operator-keys-file", "INGEST_OPERATOR_KEYS_FILE", "", "file of raw operator keys, one per line: serves /v1/dlq")
	str(&o.operatorNATS.URL, "operator-nats-url", "INGEST_OPERATOR_NATS_URL", "", "NATS URLs with the operator user's credentials for /v1/dlq (empty: ingest's own connection, which deploy/nats does not let read the DLQ)")
	str(&o.operatorNATS.Creds, "operator-nats-creds", "INGEST_OPERATOR_NATS_CREDS", "", "NATS credentials file of the operator connection (optional)")
	str(&o.operatorNATS.InboxPrefix, "operator-nats-inbox-prefix", "INGEST_OPERATOR_NATS_INBOX_PREFIX", "", "reply subject prefix of the operator connection: _INBOX_operator with the deploy/nats users")
	boolean(&o.noAuth, "insecure-no-auth", "INGEST_INSECURE_NO_AUTH", false, "disable producer authentication (development only)")

	c := &o.cfg
	int64v(&c.MaxBodyBytes, "max-body-bytes", "INGEST_MAX_BODY_BYTES", ingest.DefaultMaxBodyBytes, "largest request body")
	integer(&c.MaxBatch, "max-batch", "INGEST_MAX_BATCH", ingest.DefaultMaxBatch, "most commands per request")
	duration(&c.PublishTimeout, "publish-timeout", "INGEST_PUBLISH_TIMEOUT", ingest.DefaultPublishTimeout, "wait for a PubAck before spooling")
	duration(&c.SpoolTimeout, "spool-timeout", "INGEST_SPOOL_TIMEOUT", ingest.DefaultSpoolTimeout, "wait for an outbox commit")
	duration(&c.RetryAfter, "retry-after", "INGEST_RETRY_AFTER", ingest.DefaultRetryAfter, "Retry-After of 503 answers")
	duration(&c.WebhookTolerance, "webhook-tolerance", "INGEST_WEBHOOK_TOLERANCE", ingest.DefaultWebhookTolerance, "accepted webhook-timestamp skew")
	duration(&c.ReadyTimeout, "ready-timeout", "INGEST_READY_TIMEOUT", ingest.DefaultReadyTimeout, "bound of readiness checks and status lookups")
	duration(&c.ShutdownTimeout, "shutdown-timeout", "INGEST_SHUTDOWN_TIMEOUT", ingest.DefaultShutdownTimeout, "wait for in-flight requests at shutdown")
	duration(&c.FlushTimeout, "flush-timeout", "INGEST_FLUSH_TIMEOUT", ingest.DefaultFlushTimeout, "wait for the outbox relay at shutdown")
	integer(&c.RecentSize, "recent-size", "INGEST_RECENT_SIZE", ingest.DefaultRecentSize, "accepted ids remembered for status lookups")
	duration(&c.ReadHeaderTimeout, "read-header-timeout", "INGEST_READ_HEADER_TIMEOUT", ingest.DefaultReadHeaderTimeout, "HTTP read header timeout")
	duration(&c.ReadTimeout, "read-timeout", "INGEST_READ_TIMEOUT", ingest.DefaultReadTimeout, "HTTP read timeout")
	duration(&c.WriteTimeout, "write-timeout", "INGEST_WRITE_TIMEOUT", ingest.DefaultWriteTimeout, "HTTP write timeout")
	duration(&c.IdleTimeout, "idle-timeout", "INGEST_IDLE_TIMEOUT", ingest.DefaultIdleTimeout, "HTTP idle timeout")

	// The secret's value never appears in --help, only that one is set.
	c.AltegioWebhookSecret = getenv("INGEST_ALTEGIO_WEBHOOK_SECRET")
	fs.Var(secretValue{&c.AltegioWebhookSecret}, "altegio-webhook-secret",
		"the `secret` path segment of POST /v1/altegio/webhooks/{secret}, the URL to give Altegio; empty: the route is off ($INGEST_ALTEGIO_WEBHOOK_SECRET)")
	str(&o.webhookSecretFile, "altegio-webhook-secret-file", "INGEST_ALTEGIO_WEBHOOK_SECRET_FILE", "", "file holding the Altegio webhook secret, instead of --altegio-webhook-secret")
	str(&o.webhookAllow, "altegio-webhook-allow", "INGEST_ALTEGIO_WEBHOOK_ALLOW", "", "source CIDRs or IPs allowed to call the Altegio webhook route, comma-separated (empty: any source)")
	str(&o.webhookProxies, "altegio-webhook-trusted-proxies", "INGEST_ALTEGIO_WEBHOOK_TRUSTED_PROXIES", "", "proxy CIDRs whose X-Forwarded-For the webhook allow-list believes, comma-separated (empty: X-Forwarded-For is ignored)")
	str(&o.webhookOwn, "altegio-webhook-own", "INGEST_ALTEGIO_WEBHOOK_OWN", string(ingest.DefaultAltegioWebhookOwn), "webhooks of the integrator's own changes: mark (published with origin.integrator true) or skip (acknowledged, not published)")
	duration(&c.AltegioWebhookOwnWindow, "altegio-webhook-own-window", "INGEST_ALTEGIO_WEBHOOK_OWN_WINDOW", ingest.DefaultAltegioWebhookOwnWindow, "how long before a webhook an own change of its client counts")

	str(&o.logLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	str(&o.logFormat, "log-format", "LOG_FORMAT", "json", "json or text")
	str(&o.cpuProfile, "cpu-profile", "INGEST_CPU_PROFILE", "", "write a CPU profile of the whole run to this file (diagnosing the hot path)")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	o.console.register(fs)

	if err := fs.ParseNoArgs(args); err != nil {
		return nil, err
	}
	if err := o.console.check(); err != nil {
		return nil, err
	}
	return o, nil
}

// run is the whole program: parse settings, connect, apply the topology,
// open the outbox, serve until ctx ends, shut down in order.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	if o.version {
		fmt.Fprintln(stdout, "ingest", stack.Version())
		return nil
	}
	if o.cpuProfile != "" {
		stopProfile, err := stack.StartCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	log, err := stack.NewLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		return err
	}
	tp, stopTracing, err := startTracing(ctx, getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	cfg := o.cfg
	cfg.Logger = log
	cfg.AuthDisabled = o.noAuth
	if cfg.Producers, err = loadProducers(o.producers, o.producersFile); err != nil {
		return err
	}
	if len(cfg.Producers) == 0 && !cfg.AuthDisabled {
		return errors.New("no producers: set --producers or $INGEST_PRODUCERS, or --producers-file or $INGEST_PRODUCERS_FILE (--insecure-no-auth for development only)")
	}
	operatorKeys, err := loadOperatorKeys(o.operatorKeys, o.operatorKeysFile)
	if err != nil {
		return err
	}
	if err := loadWebhookSettings(o, &cfg); err != nil {
		return err
	}
	// Settings are checked before any network or disk work, so that a bad
	// one is reported as itself, not as a NATS or topology timeout.
	if err := cfg.Validate(); err != nil {
		return err
	}
	// So is a taken port, before the NATS and topology wait.
	ln, err := stack.Listen(o.addr, "addr")
	if err != nil {
		return err
	}
	defer ln.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer, cfg.Gatherer = reg, reg

	// Publishes fail at once while disconnected, so they are spooled
	// instead of waiting in the client's buffer.
	nc, js, err := connectNATS(stack.NATSConfig{URL: o.natsURL, Creds: o.natsCreds, InboxPrefix: o.natsInbox, Name: "ingest", FailFastWhenDisconnected: true}, stack.MainNATSFlags, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	if o.applyTopology {
		// Without the topology to apply, ingest starts while NATS is down
		// and spools; with it, NATS has to answer first.
		if err := stack.WaitConnected(ctx, nc, o.natsTimeout, o.natsURL, stack.MainNATSFlags); err != nil {
			return err
		}
		if _, err := stack.ApplyTopology(ctx, js, o.replicas, o.natsTimeout, log); err != nil {
			return err
		}
	}

	var ob *outbox.Outbox
	if !o.noOutbox {
		ob, err = outbox.Open(o.outboxPath, outbox.Config{
			MaxEntries: o.outboxMaxEntries,
			MaxBytes:   o.outboxMaxBytes,
			Logger:     log.With("component", "outbox"),
			Registerer: reg,
		})
		if err != nil {
			return fmt.Errorf("open outbox: %w", err)
		}
		defer ob.Close()
		if n, _ := ob.Depth(); n > 0 {
			log.Info("outbox holds commands from an earlier run; relaying", "entries", n)
		}
	}

	if len(operatorKeys) > 0 {
		// The DLQ belongs to the operator identity: with deploy/nats the
		// ingest user may not read it, so /v1/dlq gets a connection of its
		// own as the operator user.
		opJS := js
		if o.operatorNATS.URL != "" {
			o.operatorNATS.Name = "ingest-operator"
			onc, ojs, err := connectNATS(o.operatorNATS, operatorNATS, log)
			if err != nil {
				return fmt.Errorf("operator connection: %w", err)
			}
			defer onc.Close()
			opJS = ojs
		}
		svc, err := dlq.New(ctx, opJS, dlq.Config{Logger: log.With("component", "dlq"), Registerer: reg})
		if err != nil {
			return fmt.Errorf("dlq: %w", err)
		}
		cfg.DLQ, cfg.OperatorKeys = svc, operatorKeys
		if cfg.Console, err = newConsole(o.console, operatorKeys, svc, opJS, nc, reg, log); err != nil {
			return err
		}
	}
	cfg.TracerProvider = tp
	srv, err := ingest.New(cfg, nc, js, ob)
	if err != nil {
		return err
	}
	if cfg.AltegioWebhookSecret != "" {
		log.Info("altegio webhooks enabled", "route", "POST /v1/altegio/webhooks/{secret}",
			"allowed_networks", len(cfg.AltegioWebhookAllow), "own", cfg.AltegioWebhookOwn)
	}
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	// Serve has stopped intake and flushed the outbox as far as NATS
	// allowed; drain the connection last.
	if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		log.Warn("nats drain", "error", err)
	}
	return nil
}

// loadOperatorKeys reads operator key digests from a comma-separated hex list
// and raw keys from a file (one per line); both may be given.
func loadOperatorKeys(hexList, file string) ([][sha256.Size]byte, error) {
	var keys [][sha256.Size]byte
	for _, h := range strings.Split(hexList, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			return nil, errors.New("operator key digests: want 64 hex digits each (set --operator-keys-sha256 or $INGEST_OPERATOR_KEYS_SHA256)")
		}
		keys = append(keys, [sha256.Size]byte(b))
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read operator keys: %w (set --operator-keys-file or $INGEST_OPERATOR_KEYS_FILE)", err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				keys = append(keys, ingest.HashAPIKey(line))
			}
		}
	}
	return keys, nil
}

// secretValue is a string flag that --help shows only as set or not.
type secretValue struct{ p *string }

func (v secretValue) String() string {
	if v.p == nil || *v.p == "" {
		return ""
	}
	return "(set)"
}

func (v secretValue) Set(s string) error { *v.p = s; return nil }

// loadWebhookSettings completes cfg's Altegio webhook settings from o: the
// secret from its file, the allow-list, the trusted proxies and the
// own-change mode.
func loadWebhookSettings(o *options, cfg *ingest.Config) error {
	if o.webhookSecretFile != "" {
		if cfg.AltegioWebhookSecret != "" {
			return errors.New("set --altegio-webhook-secret ($INGEST_ALTEGIO_WEBHOOK_SECRET) or --altegio-webhook-secret-file ($INGEST_ALTEGIO_WEBHOOK_SECRET_FILE), not both")
		}
		data, err := os.ReadFile(o.webhookSecretFile)
		if err != nil {
			return fmt.Errorf("read altegio webhook secret: %w (set --altegio-webhook-secret-file or $INGEST_ALTEGIO_WEBHOOK_SECRET_FILE)", err)
		}
		if cfg.AltegioWebhookSecret = strings.TrimSpace(string(data)); cfg.AltegioWebhookSecret == "" {
			return errors.New("altegio webhook secret file is empty (set --altegio-webhook-secret-file or $INGEST_ALTEGIO_WEBHOOK_SECRET_FILE)")
		}
	}
	var err error
	if cfg.AltegioWebhookAllow, err = ingest.ParseCIDRs(o.webhookAllow); err != nil {
		return fmt.Errorf("altegio webhook allow-list: %w (set --altegio-webhook-allow or $INGEST_ALTEGIO_WEBHOOK_ALLOW)", err)
	}
	if cfg.AltegioWebhookTrustedProxies, err = ingest.ParseCIDRs(o.webhookProxies); err != nil {
		return fmt.Errorf("altegio webhook trusted proxies: %w (set --altegio-webhook-trusted-proxies or $INGEST_ALTEGIO_WEBHOOK_TRUSTED_PROXIES)", err)
	}
	cfg.AltegioWebhookOwn = ingest.OwnChangeMode(o.webhookOwn)
	return nil
}

// loadProducers reads producers from inline JSON or a file (not both).
func loadProducers(inline, file string) ([]ingest.Producer, error) {
	switch {
	case inline != "" && file != "":
		return nil, errors.New("set --producers ($INGEST_PRODUCERS) or --producers-file ($INGEST_PRODUCERS_FILE), not both")
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read producers: %w (set --producers-file or $INGEST_PRODUCERS_FILE)", err)
		}
		p, err := ingest.ParseProducers(data, os.ReadFile)
		if err != nil {
			return nil, fmt.Errorf("--producers-file %s: %w", file, err)
		}
		return p, nil
	case inline != "":
		p, err := ingest.ParseProducers([]byte(inline), os.ReadFile)
		if err != nil {
			return nil, fmt.Errorf("--producers ($INGEST_PRODUCERS): %w", err)
		}
		return p, nil
	default:
		return nil, nil
	}
}
