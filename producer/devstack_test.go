package producer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/devstack"
	"github.com/altegio-integrator/integrator/internal/devstack/devtest"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// dev is the development stack (embedded NATS, the sandbox, ingest and a
// worker, as `go run ./cmd/dev` runs them) that the tests of this file
// share, started by the first that needs it on free ports and a temporary
// data folder, and stopped by TestMain.
var dev struct {
	once sync.Once
	st   devstack.DevStack
	err  error
	stop func() error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dev.stop != nil {
		if err := dev.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "dev stack:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// devStack returns the running dev stack, starting it on first use.
func devStack(t *testing.T) devstack.DevStack {
	t.Helper()
	dev.once.Do(func() {
		dev.st, dev.stop, dev.err = devtest.Run(devstack.DevConfig{})
	})
	if dev.err != nil {
		t.Fatalf("dev stack: %v", dev.err)
	}
	return dev.st
}

// waitSucceeded waits until ingest reports the command succeeded and
// returns its state.
func waitSucceeded(t *testing.T, h *HTTP, id string) CommandState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := h.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait for %s: %v", id, err)
	}
	if st.State != StateSucceeded || st.Result == nil || st.Result.CommandID != id {
		t.Fatalf("command %s: %+v (%+v), want succeeded with its result", id, st, st.Result)
	}
	return st
}

// checkClient checks that the sandbox holds exactly one client created
// with phone (digits), named name, with the comments texts, and returns
// its id.
func checkClient(t *testing.T, st devstack.DevStack, phone, name string, texts ...string) int64 {
	t.Helper()
	if n := st.Sandbox.Stats().CreatesByPhone[phone]; n != 1 {
		t.Errorf("clients created with phone %s: %d, want 1", phone, n)
	}
	var id int64
	for _, c := range st.Sandbox.Clients(devstack.DevLocationID) {
		if c.Phone == phone {
			if id != 0 {
				t.Errorf("two clients with phone %s", phone)
			}
			id = c.ID
			if c.Name != name {
				t.Errorf("client %d is named %q, want %q", c.ID, c.Name, name)
			}
		}
	}
	if id == 0 {
		t.Fatalf("no client with phone %s in the sandbox", phone)
	}
	var got []string
	for _, c := range st.Sandbox.Comments(devstack.DevLocationID, id) {
		got = append(got, c.Text)
	}
	if fmt.Sprint(got) != fmt.Sprint(texts) {
		t.Errorf("comments of client %d: %q, want %q", id, got, texts)
	}
	return id
}

// runs numbers the tests' runs, so that refs and phones stay unique when
// tests run again on the shared stack (go test -count=n).
var runs atomic.Int64

// fresh returns a client ref and a phone (with its digits) no other test
// run used: ref-<n>, +1315555<4 digits>.
func fresh(ref string) (string, string, string) {
	n := runs.Add(1)
	digits := fmt.Sprintf("1315555%04d", n)
	return fmt.Sprintf("%s-%d", ref, n), "+" + digits, digits
}

func devHTTP(t *testing.T, baseURL string) *HTTP {
	t.Helper()
	h, err := NewHTTP(baseURL, devstack.DevProducerKey)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSendOverHTTPThroughTheDevStack(t *testing.T) {
	st := devStack(t)
	h := devHTTP(t, st.IngestURL)
	ref, phone, digits := fresh("http")
	create := CreateClient(devstack.DevLocationID, ref, Client{Name: "James", Phone: phone, Email: new("j@example.com")})
	create.CorrelationID = "order-201"
	note := AddComment(devstack.DevLocationID, ByRef(ref), "Called about the order")
	got, err := h.Send(context.Background(), create, note)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(got) != 2 || got[0].ID != create.ID || got[1].ID != note.ID || got[0].Status != StatusAccepted ||
		got[0].StreamSeq == 0 || got[1].StreamSeq <= got[0].StreamSeq {
		t.Fatalf("receipts %+v", got)
	}
	res := waitSucceeded(t, h, create.ID).Result
	waitSucceeded(t, h, note.ID)
	id := checkClient(t, st, digits, "James", "Called about the order")
	if res.ClientID != id || res.ClientRef != ref || res.CorrelationID != "order-201" || res.Type != TypeClientCreate {
		t.Errorf("result %+v, want client %d", res, id)
	}
}

func TestResendingOverHTTPCreatesOneClient(t *testing.T) {
	st := devStack(t)
	h := devHTTP(t, st.IngestURL)
	ref, phone, digits := fresh("http")
	create := CreateClient(devstack.DevLocationID, ref, Client{Name: "Ada", Phone: phone})
	first, err := h.Send(context.Background(), create)
	if err != nil || len(first) != 1 || first[0].Status != StatusAccepted {
		t.Fatalf("first Send: %+v, %v", first, err)
	}
	// A retry of the same command (say its answer was lost) is recognised
	// by its id, before and after the worker carried it out.
	again, err := h.Send(context.Background(), create)
	if err != nil || len(again) != 1 || !again[0].Duplicate() || again[0].StreamSeq != first[0].StreamSeq {
		t.Fatalf("second Send: %+v, %v; want a duplicate of %+v", again, err, first)
	}
	waitSucceeded(t, h, create.ID)
	late, err := h.Send(context.Background(), create)
	if err != nil || len(late) != 1 || !late[0].Duplicate() {
		t.Fatalf("third Send: %+v, %v; want a duplicate", late, err)
	}
	checkClient(t, st, digits, "Ada")
}

// unavailableOnce is a real HTTP proxy in front of ingest that answers the
// first POST /v1/commands itself, with 503 and Retry-After: 1, as ingest
// does when its command stream is full, and passes everything else on.
type unavailableOnce struct {
	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	posts []time.Time
}

func (u *unavailableOnce) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/v1/commands" {
		u.mu.Lock()
		u.posts = append(u.posts, time.Now())
		first := len(u.posts) == 1
		u.mu.Unlock()
		if first {
			problem(w, http.StatusServiceUnavailable, "1",
				`{"type":"urn:altegio-integrator:problem:stream-full","title":"Command stream full","status":503,"detail":"retry later"}`)
			return
		}
	}
	u.proxy.ServeHTTP(w, r)
}

func TestHTTPRetriesAfterA503WithRetryAfter(t *testing.T) {
	st := devStack(t)
	target, _ := url.Parse(st.IngestURL)
	front := &unavailableOnce{proxy: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(front)
	defer srv.Close()
	h := devHTTP(t, srv.URL)
	ref, phone, digits := fresh("http")
	create := CreateClient(devstack.DevLocationID, ref, Client{Name: "Grace", Phone: phone})
	got, err := h.Send(context.Background(), create)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(got) != 1 || got[0].ID != create.ID || got[0].Status != StatusAccepted {
		t.Errorf("receipts %+v, want one accepted", got)
	}
	front.mu.Lock()
	posts := append([]time.Time(nil), front.posts...)
	front.mu.Unlock()
	if len(posts) != 2 {
		t.Fatalf("%d POSTs, want 2", len(posts))
	}
	if gap := posts[1].Sub(posts[0]); gap < time.Second {
		t.Errorf("retried after %v, before the Retry-After of 1s", gap)
	}
	waitSucceeded(t, h, create.ID)
	checkClient(t, st, digits, "Grace")
}

func TestHTTPWithAWrongKey(t *testing.T) {
	st := devStack(t)
	h, err := NewHTTP(st.IngestURL, "not-the-key")
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Send(context.Background(), CreateClient(devstack.DevLocationID, "", Client{Name: "X", Phone: "+13155550999"}))
	var pe *ProblemError
	if !errors.As(err, &pe) || !errors.Is(err, ErrUnauthenticated) || pe.Type != "urn:altegio-integrator:problem:unauthenticated" || pe.Instance == "" {
		t.Errorf("Send = %v, want ingest's 401 problem", err)
	}
}

func TestSendOverNATSThroughTheDevStack(t *testing.T) {
	st := devStack(t)
	_, js := testenv.Connect(t, st.NATSURL)
	n, err := NewNATS(js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, commands.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}

	// An invalid command is refused before anything is published.
	before := stored()
	ref, phone, digits := fresh("nats")
	_, err = n.Send(ctx, AddComment(devstack.DevLocationID, ByRef(ref), "ok"), AddComment(devstack.DevLocationID, Target{}, ""))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 || ve.Problems[0].Path != "[1].client_id" || ve.Problems[1].Path != "[1].payload.text" {
		t.Fatalf("Send = %v, want the problems of [1]", err)
	}
	if after := stored(); after != before {
		t.Fatalf("the stream went from %d to %d messages", before, after)
	}

	create := CreateClient(devstack.DevLocationID, ref, Client{Name: "Linus", Phone: phone})
	note := AddComment(devstack.DevLocationID, ByRef(ref), "Published over NATS")
	got, err := n.Send(ctx, create, note)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(got) != 2 || got[0].ID != create.ID || got[0].Status != StatusAccepted || got[0].StreamSeq <= before ||
		got[1].ID != note.ID || got[1].StreamSeq <= got[0].StreamSeq {
		t.Fatalf("receipts %+v", got)
	}
	again, err := n.Send(ctx, create)
	if err != nil || len(again) != 1 || !again[0].Duplicate() || again[0].StreamSeq != got[0].StreamSeq {
		t.Fatalf("resend: %+v, %v; want a duplicate of %+v", again, err, got[0])
	}
	// The stored message is the command as the worker reads it.
	msg, err := stream.GetMsg(ctx, got[0].StreamSeq)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get(jetstream.MsgIDHeader) != create.ID || msg.Header.Get(commands.HeaderClientKey) != "ref_"+ref {
		t.Errorf("stored headers %v", msg.Header)
	}
	if c, err := commands.Decode(msg.Data); err != nil || c.ID != create.ID {
		t.Errorf("stored command %s: %v", msg.Data, err)
	}
	if sub, ok := commands.ParseStoredSubject(msg.Subject); !ok || sub.Location != "1" || sub.ClientKey != "ref_"+ref || sub.Op != "create" {
		t.Errorf("stored on %q, want altegio.cmd.<partition>.1.ref_%s.create", msg.Subject, ref)
	}

	// Ingest reports commands published over NATS too, once a worker
	// recorded them.
	h := devHTTP(t, st.IngestURL)
	waitSucceeded(t, h, create.ID)
	waitSucceeded(t, h, note.ID)
	checkClient(t, st, digits, "Linus", "Published over NATS")
}
