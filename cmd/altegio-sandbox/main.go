// Command altegio-sandbox runs the stateful Altegio API sandbox
// (internal/sandbox) as a process, for the one-command dev mode and for
// manual testing. The API is served under /api/v1; /healthz answers 200;
// GET /stats answers the sandbox's counters as JSON (requests, answers per
// status and per operation, 429s, logins, duplicate creates), for benchmarks
// that run the sandbox as a separate process. With -control, the fault
// suite steers it from outside:
//
//	PUT  /control/faults        {"latency":"2s","error_rate":0.2,"reset_rate":0,
//	                             "after_apply_rate":0.5,"storm":"10s","seed":1}
//	POST /control/rotate-token  a new user token; the old one answers 401
//	GET  /control/clients?location=1  every client with its comments
//	GET  /control/webhooks      recent webhook deliveries, oldest first: url,
//	                            status, attempts, http_status, payload, …
//
// Client webhooks (ref §7) are sent to the URLs set with POST
// /api/v1/hooks_settings/{location_id}, -webhook-delay after each change.
//
// The state lives in memory unless --state-file names a JSON file, which
// is loaded at start and rewritten after every change, so that clients and
// their IDs survive a restart (see sandbox.Config.StateFile).
//
// Every setting is a flag and an environment variable; run with --help to
// list them with their defaults. Flags override the environment. --version
// prints the version and exits.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/altegio-integrator/integrator/internal/envflag"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/stack"
)

const (
	envPrefix       = "ALTEGIO_SANDBOX_"
	shutdownTimeout = 10 * time.Second
	// defaultAddr is where the dev stack serves the sandbox too, so that
	// the same API URL works with either.
	defaultAddr = "127.0.0.1:8081"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "altegio-sandbox:", err)
		os.Exit(1)
	}
}

// config is everything the binary can be told.
type config struct {
	addr                  string
	logLevel              slog.Level
	partnerToken          string
	login, password       string
	userToken             string
	userEmail, userPhone  string
	twoFactor             bool
	locations             string
	ratePerSecond         int
	ratePerMinute         int
	retryAfter            bool
	publishedCommentPaths bool
	control               bool
	faults                sandbox.Faults
	webhookDelay          time.Duration
	webhookRetryDelay     time.Duration
	webhookBearer         string
	stateFile             string
	version               bool
}

// parseConfig reads flags over environment variables (internal/envflag,
// like every other binary). It returns flag.ErrHelp after printing the
// usage for -h/--help.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var (
		c     config
		level string
	)
	fs := envflag.New("altegio-sandbox", getenv, out)
	str := func(p *string, name, def, u string) { fs.String(p, name, envName(name), def, u) }
	boolean := func(p *bool, name string, u string) { fs.Bool(p, name, envName(name), false, u) }
	integer := func(p *int, name string, def int, u string) { fs.Int(p, name, envName(name), def, u) }
	share := func(p *float64, name, u string) { fs.Float64(p, name, envName(name), 0, u) }
	duration := func(p *time.Duration, name string, def time.Duration, u string) {
		fs.Duration(p, name, envName(name), def, u)
	}
	str(&c.addr, "addr", defaultAddr, "listen address")
	str(&level, "log-level", "info", "log level: debug, info, warn, error")
	str(&c.partnerToken, "partner-token", "sandbox-partner-token", "partner token every request must carry")
	str(&c.login, "user-login", "owner@example.com", "login of the business user for POST /auth")
	str(&c.password, "user-password", "sandbox-password", "password of the business user")
	str(&c.userToken, "user-token", "", "initial user token (random when empty)")
	str(&c.userEmail, "user-email", "", "email of the business user (also accepted as login)")
	str(&c.userPhone, "user-phone", "", "phone of the business user (also accepted as login)")
	boolean(&c.twoFactor, "user-2fa", "POST /auth answers a 2FA challenge (200, data.uuid) instead of a token")
	str(&c.locations, "user-locations", "", "comma-separated location IDs the user may access (empty: all)")
	integer(&c.ratePerSecond, "rate-per-second", sandbox.DefaultRatePerSecond, "per-IP requests per second (<0 disables)")
	integer(&c.ratePerMinute, "rate-per-minute", sandbox.DefaultRatePerMinute, "per-IP requests per minute (<0 disables)")
	boolean(&c.retryAfter, "retry-after", "send Retry-After on 429 (the real API documents none)")
	boolean(&c.publishedCommentPaths, "published-comment-paths", "also serve /clients/{loc}/clients/{id}/comments")
	duration(&c.faults.Latency, "latency", 0, "delay added to every answer")
	share(&c.faults.ErrorRate, "error-rate", "share of calls answered with a random 5xx, 0..1")
	share(&c.faults.ResetRate, "reset-rate", "share of calls whose connection is reset, 0..1")
	share(&c.faults.AfterApplyRate, "after-apply-rate", "share of successful writes whose answer is lost (connection reset) after the change, 0..1")
	duration(&c.faults.SlowBody, "slow-body", 0, "spread writing each body over this duration")
	boolean(&c.control, "control", "serve /control/… to change faults, rotate the token and read the state (tests only)")
	fs.Int64(&c.faults.Seed, "seed", envName("seed"), 1, "seed of the random faults")
	duration(&c.webhookDelay, "webhook-delay", sandbox.DefaultWebhookDelay, "how long after a client change its webhooks are sent (negative: at once)")
	duration(&c.webhookRetryDelay, "webhook-retry-delay", sandbox.DefaultWebhookRetryDelay, "pause before each of the two retries of a webhook after a transport error, 429 or 5xx")
	str(&c.webhookBearer, "webhook-bearer", "", "send \"Authorization: Bearer <this>\" with every webhook (empty: no header)")
	str(&c.stateFile, "state-file", "", "JSON file that keeps clients, comments, webhook settings and ID counters across restarts, rewritten after every change (empty: in memory only)")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.SetUsage("", "Run the Altegio API sandbox, a faithful fake of the API for tests and the dev stack; the API is under /api/v1.\n"+
		"Every flag can also be set with the environment variable shown; flags win.")
	if err := fs.ParseNoArgs(args); err != nil {
		return c, err
	}
	if err := c.logLevel.UnmarshalText([]byte(level)); err != nil {
		return c, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return c, nil
}

// envName maps a flag name to its environment variable: user-login →
// ALTEGIO_SANDBOX_USER_LOGIN.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (c config) sandboxConfig(logger *slog.Logger) (sandbox.Config, error) {
	var locs []int64
	for part := range strings.SplitSeq(c.locations, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		id, err := strconv.ParseInt(part, 10, 64)
		if err != nil {
			return sandbox.Config{}, fmt.Errorf("user locations: %w", err)
		}
		locs = append(locs, id)
	}
	return sandbox.Config{
		PartnerToken: c.partnerToken,
		Users: []sandbox.User{{
			Login:     c.login,
			Password:  c.password,
			Token:     c.userToken,
			TwoFactor: c.twoFactor,
			Locations: locs,
			Email:     c.userEmail,
			Phone:     c.userPhone,
		}},
		RatePerSecond:              c.ratePerSecond,
		RatePerMinute:              c.ratePerMinute,
		Logger:                     logger,
		Faults:                     c.faults,
		RetryAfter:                 c.retryAfter,
		ServePublishedCommentPaths: c.publishedCommentPaths,
		WebhookDelay:               c.webhookDelay,
		WebhookRetryDelay:          c.webhookRetryDelay,
		WebhookBearer:              c.webhookBearer,
		StateFile:                  c.stateFile,
	}, nil
}

// run serves the sandbox until ctx is cancelled, then shuts down within
// shutdownTimeout. -h/--help prints the usage on stderr and --version the
// version on stdout, and both return nil.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.version {
		_, err := fmt.Fprintln(stdout, "altegio-sandbox", stack.Version())
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
	cfg, err := c.sandboxConfig(logger)
	if err != nil {
		return err
	}
	// The port first: a busy one fails before the state file is touched.
	ln, err := stack.Listen(c.addr, "addr")
	if err != nil {
		return err
	}
	sb, err := sandbox.New(cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer sb.Close() // after the HTTP server: no change can queue a webhook then

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(newStatsView(sb.Stats()))
	})
	if c.control {
		serveControl(mux, sb, c.login, c.faults)
	}
	mux.Handle("/", sb)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	logger.Info("altegio sandbox listening", "addr", ln.Addr().String(), "base_url",
		"http://"+ln.Addr().String()+sandbox.BasePath, "user_login", c.login, "state_file", c.stateFile)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("altegio sandbox shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// statsView is the body of GET /stats: sandbox.Stats without the per-phone
// maps, which grow with every client, summarised instead.
type statsView struct {
	Requests         int            `json:"requests"`
	ByOp             map[string]int `json:"by_op"`
	ByStatus         map[int]int    `json:"by_status"`
	RateLimited      int            `json:"rate_limited"`
	Logins           int            `json:"logins"`
	Unauthorized     int            `json:"unauthorized"`
	Resets           int            `json:"resets"`
	MaxConcurrent    int            `json:"max_concurrent"`
	ClientsCreated   int            `json:"clients_created"`
	DuplicateCreates int            `json:"duplicate_creates"`
	// Webhook deliveries that ended, those that failed, and the POSTs made.
	WebhookDeliveries int `json:"webhook_deliveries"`
	WebhookFailures   int `json:"webhook_failures"`
	WebhookAttempts   int `json:"webhook_attempts"`
}

func newStatsView(st sandbox.Stats) statsView {
	v := statsView{
		Requests:      st.Requests,
		ByOp:          st.ByOp,
		ByStatus:      st.ByStatus,
		RateLimited:   st.RateLimited,
		Logins:        st.Logins,
		Unauthorized:  st.Unauthorized,
		Resets:        st.Resets,
		MaxConcurrent: st.MaxConcurrent,

		WebhookDeliveries: st.WebhookDeliveries,
		WebhookFailures:   st.WebhookFailures,
		WebhookAttempts:   st.WebhookAttempts,
	}
	for _, n := range st.CreatesByPhone {
		v.ClientsCreated += n
		v.DuplicateCreates += max(n-1, 0)
	}
	return v
}

// serveControl adds the /control/… endpoints (see the package doc).
func serveControl(mux *http.ServeMux, sb *sandbox.Server, login string, initial sandbox.Faults) {
	mux.HandleFunc("PUT /control/faults", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Latency        string  `json:"latency"`
			ErrorRate      float64 `json:"error_rate"`
			ResetRate      float64 `json:"reset_rate"`
			AfterApplyRate float64 `json:"after_apply_rate"`
			Storm          string  `json:"storm"`
			Seed           int64   `json:"seed"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f := sandbox.Faults{ErrorRate: in.ErrorRate, ResetRate: in.ResetRate, AfterApplyRate: in.AfterApplyRate,
			SlowBody: initial.SlowBody, Seed: cmp.Or(in.Seed, initial.Seed)}
		for _, d := range []struct {
			text string
			to   func(time.Duration)
		}{
			{in.Latency, func(v time.Duration) { f.Latency = v }},
			{in.Storm, func(v time.Duration) { f.RateLimitStormUntil = time.Now().Add(v) }},
		} {
			if d.text == "" {
				continue
			}
			v, err := time.ParseDuration(d.text)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			d.to(v)
		}
		sb.SetFaults(f)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /control/rotate-token", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := sb.RotateUserToken(login); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /control/clients", func(w http.ResponseWriter, r *http.Request) {
		loc, err := strconv.ParseInt(r.URL.Query().Get("location"), 10, 64)
		if err != nil {
			http.Error(w, "location: "+err.Error(), http.StatusBadRequest)
			return
		}
		type client struct {
			ID       int64    `json:"id"`
			Name     string   `json:"name"`
			Phone    string   `json:"phone"`
			Email    string   `json:"email"`
			Comments []string `json:"comments"`
		}
		out := []client{}
		for _, c := range sb.Clients(loc) {
			cl := client{ID: c.ID, Name: c.Name, Phone: c.Phone, Email: c.Email, Comments: []string{}}
			for _, cm := range sb.Comments(loc, c.ID) {
				cl.Comments = append(cl.Comments, cm.Text)
			}
			out = append(out, cl)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /control/webhooks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(sb.Webhooks())
	})
}
