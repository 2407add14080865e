package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/outbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/topology/topotest"
)

// Test producers.
const (
	crmKey     = "crm-test-key-0123456789"
	limitedKey = "limited-test-key-0123456789"
)

var (
	crmSecret1 = []byte("first-webhook-secret-32-bytes!!!")
	crmSecret2 = []byte("second-webhook-secret-32-bytes!!")
)

func testProducers() []Producer {
	return []Producer{
		{Name: "crm", KeyHashes: [][32]byte{HashAPIKey(crmKey)}, WebhookSecrets: [][]byte{crmSecret1, crmSecret2}},
		{Name: "limited", KeyHashes: [][32]byte{HashAPIKey(limitedKey)},
			Types: []commands.Type{commands.TypeClientCreate}, Locations: []int64{1}},
	}
}

// env is a running JetStream with the topology applied.
type env struct {
	nats *testenv.NATS
	dir  string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	n := testenv.RunJetStream(t)
	_, js := connect(t, n.URL())
	topotest.Apply(t, js)
	return &env{nats: n, dir: t.TempDir()}
}

// connect opens a connection like cmd/ingest does: reconnecting forever,
// no reconnect buffer.
func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// ingest is one running ingest process: connection, outbox, server.
type ingest struct {
	t      testing.TB
	URL    string
	srv    *Server
	nc     *nats.Conn
	js     jetstream.JetStream
	outbox *outbox.Outbox
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

type ingestOpts struct {
	outboxPath string // default: a file in env.dir
	noOutbox   bool
	outboxCfg  outbox.Config
	tweak      func(*Config)
}

// start runs an ingest process against e, serving on a real listener.
func (e *env) start(t testing.TB, o ingestOpts) *ingest {
	t.Helper()
	nc, js := connect(t, e.nats.URL())
	reg := prometheus.NewRegistry()
	var ob *outbox.Outbox
	if !o.noOutbox {
		path := o.outboxPath
		if path == "" {
			path = filepath.Join(e.dir, "outbox.db")
		}
		cfg := o.outboxCfg
		cfg.Registerer = reg
		if cfg.RetryMin == 0 {
			cfg.RetryMin, cfg.RetryMax = 10*time.Millisecond, 200*time.Millisecond
		}
		if cfg.PublishTimeout == 0 {
			cfg.PublishTimeout = time.Second
		}
		var err error
		if ob, err = outbox.Open(path, cfg); err != nil {
			t.Fatalf("open outbox: %v", err)
		}
	}
	cfg := Config{
		Producers:       testProducers(),
		Registerer:      reg,
		PublishTimeout:  time.Second,
		FlushTimeout:    2 * time.Second,
		ShutdownTimeout: 5 * time.Second,
	}
	if testing.Verbose() && os.Getenv("INGEST_TEST_LOG") != "" {
		cfg.Logger = testLogger(t)
	}
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	srv, err := New(cfg, nc, js, ob)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &ingest{t: t, URL: "http://" + ln.Addr().String(), srv: srv, nc: nc, js: js, outbox: ob, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(in.stop)
	return in
}

// stop shuts the process down: Serve, then the outbox, then NATS.
func (in *ingest) stop() {
	in.once.Do(func() {
		in.cancel()
		if err := <-in.done; err != nil {
			in.t.Errorf("serve: %v", err)
		}
		if in.outbox != nil {
			if err := in.outbox.Close(); err != nil {
				in.t.Errorf("close outbox: %v", err)
			}
		}
		in.nc.Close()
	})
}

// client is shared by the tests; keep-alive connections, bounded.
var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// request describes one HTTP call.
type request struct {
	method  string
	path    string
	body    []byte
	key     string // bearer key; "" for none
	headers map[string]string
	ctype   string // default application/json for bodies
}

// response is an answer, checked against the OpenAPI document.
type response struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) problem(t testing.TB) Problem {
	t.Helper()
	var p Problem
	r.decode(t, &p)
	if got := r.header.Get("Content-Type"); got != ProblemContentType {
		t.Errorf("content type %q, want %q", got, ProblemContentType)
	}
	return p
}

// do sends req to in and checks the answer against the OpenAPI document.
func (in *ingest) do(t testing.TB, req request) response {
	t.Helper()
	if req.method == "" {
		req.method = http.MethodPost
	}
	resp, err := in.send(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	if err := checkAgainstOpenAPI(req.method, req.path, resp); err != nil {
		t.Errorf("%s %s: answer disagrees with openapi.json: %v", req.method, req.path, err)
	}
	return resp
}

// send is do without checks, safe from any goroutine.
func (in *ingest) send(req request) (response, error) {
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	if req.method == "" {
		req.method = http.MethodPost
	}
	hr, err := http.NewRequest(req.method, in.URL+req.path, body)
	if err != nil {
		return response{}, err
	}
	if req.body != nil {
		ct := req.ctype
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	}
	if req.key != "" {
		hr.Header.Set("Authorization", "Bearer "+req.key)
	}
	for k, v := range req.headers {
		hr.Header.Set(k, v)
	}
	resp, err := client.Do(hr)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: b}, nil
}

// post posts body with the crm key.
func (in *ingest) post(t testing.TB, body []byte) response {
	t.Helper()
	return in.do(t, request{path: "/v1/commands", body: body, key: crmKey})
}

// createCommand returns a valid client.create command as JSON.
func createCommand(id string, location int64, ref string) []byte {
	c := map[string]any{
		"type": "client.create", "location_id": location, "client_ref": ref,
		"payload": map[string]any{"name": "Ann", "phone": "+79001234567"},
	}
	if id != "" {
		c["id"] = id
	}
	b, _ := json.Marshal(c)
	return b
}

// streamIDs returns how many times each command id (Nats-Msg-Id) is
// stored in COMMANDS, reading every message by sequence.
func streamIDs(ctx context.Context, js jetstream.JetStream) (map[string]int, error) {
	s, err := js.Stream(ctx, topology.StreamCommands)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	ids := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get %d: %w", seq, err)
		}
		ids[m.Header.Get(commands.HeaderMsgID)]++
	}
	return ids, nil
}

// --- OpenAPI checks -------------------------------------------------------

var (
	openAPIOnce sync.Once
	openAPIDoc  map[string]any
	openAPIComp *jsonschema.Compiler
	openAPIErr  error
	schemaMu    sync.Mutex
	schemaCache = map[string]*jsonschema.Schema{}
)

const openAPIURL = "https://ingest.test/openapi.json"

func loadOpenAPI() (map[string]any, error) {
	openAPIOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDocument))
		if err != nil {
			openAPIErr = err
			return
		}
		openAPIDoc = doc.(map[string]any)
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		for url, raw := range map[string][]byte{
			openAPIURL: openAPIDocument,
			"https://github.com/altegio-integrator/integrator/schema/v1/command.schema.json": commands.CommandSchema(),
			"https://github.com/altegio-integrator/integrator/schema/v1/result.schema.json":  commands.ResultSchema(),
		} {
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
			if err != nil {
				openAPIErr = err
				return
			}
			if err := c.AddResource(url, v); err != nil {
				openAPIErr = err
				return
			}
		}
		openAPIComp = c
	})
	return openAPIDoc, openAPIErr
}

// compileAt compiles the schema at a JSON pointer of the OpenAPI document.
func compileAt(pointer string) (*jsonschema.Schema, error) {
	schemaMu.Lock()
	defer schemaMu.Unlock()
	if s, ok := schemaCache[pointer]; ok {
		return s, nil
	}
	s, err := openAPIComp.Compile(openAPIURL + "#" + pointer)
	if err != nil {
		return nil, err
	}
	schemaCache[pointer] = s
	return s, nil
}

// pathPattern turns "/v1/commands/{id}" into a regexp.
func pathPattern(p string) *regexp.Regexp {
	return regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(p), `[^/]+`) + "$")
}

// escapePointer escapes a JSON pointer token.
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// resolveRef follows a local $ref of the document.
func resolveRef(doc map[string]any, v map[string]any) (map[string]any, string) {
	ref, ok := v["$ref"].(string)
	if !ok {
		return v, ""
	}
	ptr := strings.TrimPrefix(ref, "#")
	cur := any(doc)
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		cur = cur.(map[string]any)[tok]
	}
	return cur.(map[string]any), ptr
}

// checkAgainstOpenAPI checks that the document declares the answer's
// status and content type for the request, and that the body validates
// against the declared schema.
func checkAgainstOpenAPI(method, path string, resp response) error {
	doc, err := loadOpenAPI()
	if err != nil {
		return err
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	paths := doc["paths"].(map[string]any)
	// The most literal documented path that matches: .../clients/search
	// before .../clients/{client_id}.
	var docPath string
	for p := range paths {
		if pathPattern(p).MatchString(path) && (docPath == "" || strings.Count(p, "{") < strings.Count(docPath, "{")) {
			docPath = p
		}
	}
	if docPath == "" || paths[docPath].(map[string]any)[strings.ToLower(method)] == nil {
		// Not an operation of the API: only 404/405 problems are allowed.
		if resp.status != http.StatusNotFound && resp.status != http.StatusMethodNotAllowed {
			return fmt.Errorf("undocumented operation answered %d", resp.status)
		}
		return validateAt("/components/schemas/Problem", resp.body)
	}
	op := paths[docPath].(map[string]any)[strings.ToLower(method)].(map[string]any)
	r, ok := op["responses"].(map[string]any)[strconv.Itoa(resp.status)].(map[string]any)
	if !ok {
		return fmt.Errorf("status %d not documented for %s %s", resp.status, method, docPath)
	}
	r, base := resolveRef(doc, r)
	if base == "" {
		base = "/paths/" + escapePointer(docPath) + "/" + strings.ToLower(method) + "/responses/" + strconv.Itoa(resp.status)
	}
	ct := resp.header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	content, _ := r["content"].(map[string]any)
	media, ok := content[ct].(map[string]any)
	if !ok {
		return fmt.Errorf("content type %q not documented for %d", ct, resp.status)
	}
	if headers, ok := r["headers"].(map[string]any); ok {
		for name := range headers {
			if name == "Location" {
				continue // only for single commands
			}
			if resp.header.Get(name) == "" {
				return fmt.Errorf("documented header %s missing", name)
			}
		}
	}
	if _, ok := media["schema"]; !ok || ct == "text/plain" {
		return nil
	}
	pointer := base + "/content/" + escapePointer(ct) + "/schema"
	if ct == "application/x-ndjson" { // the schema is each line's
		for line := range bytes.Lines(resp.body) {
			if err := validateAt(pointer, line); err != nil {
				return err
			}
		}
		return nil
	}
	return validateAt(pointer, resp.body)
}

func validateAt(pointer string, body []byte) error {
	s, err := compileAt(pointer)
	if err != nil {
		return fmt.Errorf("compile %s: %w", pointer, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("body %q: %w", body, err)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("body %s: %w", body, err)
	}
	return nil
}
