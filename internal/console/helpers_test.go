package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/console"
	"github.com/altegio-integrator/integrator/internal/dlq"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/topology/topotest"
)

const operatorKey = "console-operator-key"

// clock is real time plus an offset the test moves forward: the console
// compares its clock with the stream's timestamps, so it cannot be fixed.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// worker is a real HTTP server serving a real registry with the metrics
// the workers export, which the test sets.
type worker struct {
	srv          *httptest.Server
	requests     *prometheus.CounterVec
	logins       *prometheus.CounterVec
	unauthorized *prometheus.CounterVec
	tokenAge     *prometheus.GaugeVec
	paused       *prometheus.CounterVec
	waiting      *prometheus.GaugeVec
	flowWaiting  *prometheus.GaugeVec
	flowGranted  *prometheus.CounterVec
	backoff      *prometheus.GaugeVec
}

func newWorker(t *testing.T) *worker {
	t.Helper()
	reg := prometheus.NewRegistry()
	w := &worker{
		requests:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "altegio_api_requests_total", Help: "h"}, []string{"op", "code"}),
		logins:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "altegio_auth_logins_total", Help: "h"}, []string{"account", "result"}),
		unauthorized: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "altegio_auth_unauthorized_total", Help: "h"}, []string{"account"}),
		tokenAge:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "altegio_auth_token_age_seconds", Help: "h"}, []string{"account"}),
		paused:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "worker_account_paused_total", Help: "h"}, []string{"account"}),
		waiting:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "altegio_ratelimit_waiting", Help: "h"}, []string{"class"}),
		flowWaiting:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "altegio_ratelimit_flow_waiting", Help: "h"}, []string{"flow"}),
		flowGranted:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "altegio_ratelimit_flow_granted_total", Help: "h"}, []string{"flow"}),
		backoff:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "altegio_auth_login_backoff_seconds", Help: "h"}, []string{"account"}),
	}
	reg.MustRegister(w.requests, w.logins, w.unauthorized, w.tokenAge, w.paused, w.waiting, w.flowWaiting, w.flowGranted, w.backoff)
	w.srv = httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *worker) url() string { return w.srv.URL + "/metrics" }

// env is a JetStream server with the topology, a DLQ service and a
// console served by a real HTTP server.
type env struct {
	t      *testing.T
	nats   *testenv.NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	svc    *dlq.Service
	con    *console.Console
	srv    *httptest.Server
	clock  *clock
	local  *prometheus.Registry
	ingest *prometheus.CounterVec
	outbox prometheus.Gauge
	client *http.Client
}

type envOpts struct {
	workers []string
	tls     bool
	traces  console.Traces
	trace   string
	noRun   bool
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	n := testenv.RunJetStream(t)
	nc, js := testenv.Connect(t, n.URL())
	topotest.Apply(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	svc, err := dlq.New(ctx, js, dlq.Config{Rate: 200, Operator: "tester", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("dlq service: %v", err)
	}
	e := &env{t: t, nats: n, nc: nc, js: js, svc: svc, clock: &clock{}, local: prometheus.NewRegistry()}
	e.ingest = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ingest_commands_total", Help: "h"}, []string{"result", "reason"})
	e.outbox = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_entries", Help: "h"})
	e.local.MustRegister(e.ingest, e.outbox)
	e.con, err = console.New(console.Config{
		OperatorKeys:   [][sha256.Size]byte{sha256.Sum256([]byte("another key")), sha256.Sum256([]byte(operatorKey))},
		DLQ:            svc,
		JS:             js,
		NATS:           nc,
		Local:          e.local,
		WorkerMetrics:  o.workers,
		Traces:         o.traces,
		TraceURL:       o.trace,
		SampleInterval: 100 * time.Millisecond,
		Now:            e.clock.Now,
	})
	if err != nil {
		t.Fatalf("console: %v", err)
	}
	if !o.noRun {
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.con.Run(runCtx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("console run: %v", err)
			}
		})
	}
	if o.tls {
		e.srv = httptest.NewTLSServer(e.con)
		e.client = e.srv.Client()
	} else {
		e.srv = httptest.NewServer(e.con)
		e.client = &http.Client{}
	}
	t.Cleanup(e.srv.Close)
	e.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	e.client.Timeout = 30 * time.Second
	return e
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   string
	resp   *http.Response
}

// do sends a request with the session cookie (if any) and, for posts, the
// form and an Origin header (if origin is not "").
func (e *env) do(method, path string, sess *http.Cookie, form url.Values, origin string) response {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if sess != nil {
		req.AddCookie(sess)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), resp: resp}
}

func (e *env) get(path string, sess *http.Cookie) response {
	e.t.Helper()
	return e.do(http.MethodGet, path, sess, nil, "")
}

// post sends a form from this console's own origin.
func (e *env) post(path string, sess *http.Cookie, form url.Values) response {
	e.t.Helper()
	return e.do(http.MethodPost, path, sess, form, e.srv.URL)
}

// session is a logged-in operator: the cookie and the CSRF token.
type session struct {
	cookie *http.Cookie
	csrf   string
}

// login logs in with the operator key and returns the session.
func (e *env) login() session {
	e.t.Helper()
	r := e.post("/ui/login", nil, url.Values{"key": {operatorKey}, "next": {"/ui/"}})
	if r.status != http.StatusSeeOther {
		e.t.Fatalf("login: %d %s", r.status, r.body)
	}
	var ck *http.Cookie
	for _, c := range r.resp.Cookies() {
		if c.Name == console.CookieName {
			ck = c
		}
	}
	if ck == nil {
		e.t.Fatal("login set no session cookie")
	}
	page := e.get("/ui/", ck)
	return session{cookie: ck, csrf: csrfOf(e.t, page.body)}
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, html string) string {
	t.Helper()
	m := csrfPattern.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no csrf field in the page:\n%s", html)
	}
	return m[1]
}

// mustContain fails unless the body has every string.
func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

// publishEvent stores a result event as a worker does.
func (e *env) publishEvent(r map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(r)
	var res commands.Result
	if err := json.Unmarshal(b, &res); err != nil {
		e.t.Fatal(err)
	}
	if res.CompletedAt.IsZero() {
		r["completed_at"] = time.Now().UTC()
		b, _ = json.Marshal(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: commands.EventSubject(res), Data: b,
		Header: nats.Header(commands.ResultHeaders(res))}); err != nil {
		e.t.Fatal(err)
	}
}

// publishAttention stores an account.needs_attention event as a worker
// does.
func (e *env) publishAttention(location int64, body map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.Publish(ctx, commands.AccountAttentionSubject(location), b); err != nil {
		e.t.Fatal(err)
	}
}

// publishDLQ stores a DLQ record of a command as a worker does and returns
// its DLQ sequence.
func (e *env) publishDLQ(cmd commands.Command, class commands.ErrorClass, status int, reason string, replay int) uint64 {
	e.t.Helper()
	data, _ := json.Marshal(cmd)
	now := time.Now().UTC()
	r := commands.DLQRecord{SchemaVersion: commands.SchemaVersion, Subject: commands.CommandSubject(cmd), StreamSeq: 7,
		CommandID: cmd.ID, Type: cmd.Type, LocationID: cmd.LocationID, ClientKey: cmd.ClientKey(), ErrorClass: class,
		Reason: reason, HTTPStatus: status, APIMessage: reason, Attempts: 1, Replay: replay,
		FirstFailureAt: now, LastFailureAt: now, DeadLetteredAt: now, WorkerID: "w1"}
	r.SetCommand(data)
	body, _ := json.Marshal(r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: commands.DLQSubject(cmd), Data: body,
		Header: nats.Header{commands.HeaderMsgID: {r.MsgID() + ":" + strconv.Itoa(replay)}}})
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// putRecord stores an idempotency record as the worker does.
func (e *env) putRecord(id string, rec idem.Record) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, topology.BucketIdempotency)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := json.Marshal(rec)
	if _, err := kv.Put(ctx, idem.Key(id), b); err != nil {
		e.t.Fatal(err)
	}
}

// comment is a client.comment.add command for a client id.
func comment(location, clientID int64) commands.Command {
	c := commands.Command{ID: commands.NewID(), Type: commands.TypeCommentAdd, LocationID: location, ClientID: clientID}
	if err := c.SetPayload(map[string]string{"text": "hello"}); err != nil {
		panic(err)
	}
	return c
}

// entryStatus returns the status of a DLQ entry.
func (e *env) entryStatus(seq uint64) (dlq.Status, error) {
	entries, err := e.svc.Show(context.Background(), strconv.FormatUint(seq, 10))
	if err != nil {
		return "", err
	}
	return entries[0].Status, nil
}

// waitPage polls a page until it contains every string.
func (e *env) waitPage(path string, sess *http.Cookie, wants ...string) response {
	e.t.Helper()
	var r response
	testenv.WaitFor(e.t, 15*time.Second, func() error {
		r = e.get(path, sess)
		for _, w := range wants {
			if !strings.Contains(r.body, w) {
				return fmt.Errorf("%s (status %d) lacks %q", path, r.status, w)
			}
		}
		return nil
	})
	return r
}
