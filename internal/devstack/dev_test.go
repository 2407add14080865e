package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/worker"
	"github.com/nats-io/nats.go/jetstream"
)

// syncBuffer is the log and output capture the stack tests share.
type syncBuffer = testenv.Buffer

// startDev runs the dev stack on free ports with its data in dir and returns
// where it listens and a function that stops it and returns RunDev's error.
func startDev(t *testing.T, dir string, out io.Writer) (DevStack, func() error) {
	return startDevWith(t, DevConfig{DataDir: dir, Out: out})
}

// startDevWith is startDev with more settings; addresses, logger and the
// ready hook are set here.
func startDevWith(t *testing.T, cfg DevConfig) (DevStack, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan DevStack, 1)
	done := make(chan error, 1)
	go func() {
		cfg.NATSListen, cfg.SandboxAddr, cfg.IngestAddr, cfg.OpsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.Progress = 50 * time.Millisecond
		cfg.Logger = testLogger()
		cfg.Ready = func(s DevStack) { ready <- s }
		done <- RunDev(ctx, cfg)
	}()
	select {
	case st := <-ready:
		stopped := false
		stop := func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			return <-done
		}
		t.Cleanup(func() { stop() })
		return st, stop
	case err := <-done:
		cancel()
		t.Fatalf("dev stack did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("dev stack did not start within 30s")
	}
	return DevStack{}, nil
}

// post sends one command to ingest with the dev producer key and returns its
// id.
func post(t *testing.T, st DevStack, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, st.IngestURL+"/v1/commands", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+DevProducerKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Commands []struct{ ID, Status string } `json:"commands"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted || len(out.Commands) != 1 {
		t.Fatalf("post: status %d, body %+v, err %v", resp.StatusCode, out, err)
	}
	return out.Commands[0].ID
}

// status returns the command's status as ingest reports it.
func status(st DevStack, id string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, st.IngestURL+"/v1/commands/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+DevProducerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	return out.Status, nil
}

func waitStatus(t *testing.T, st DevStack, id, want string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, func() error {
		got, err := status(st, id)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("command %s is %q, want %q", id, got, want)
		}
		return nil
	})
}

func TestDevStackRunsTheREADMETour(t *testing.T) {
	out := &syncBuffer{}
	st, stop := startDevWith(t, DevConfig{DataDir: t.TempDir(), Out: out, WebhookDelay: 100 * time.Millisecond})
	if st.Sandbox == nil {
		t.Fatal("no sandbox started")
	}
	// The banner's command, sent as printed.
	var accepted struct {
		Commands []struct{ ID string } `json:"commands"`
	}
	if err := json.Unmarshal([]byte(doCurl(t, bannerCurl(t, out.String(), "Send a command"))), &accepted); err != nil || len(accepted.Commands) != 1 {
		t.Fatalf("the banner's command curl: %+v, %v", accepted, err)
	}
	create := accepted.Commands[0].ID
	update := post(t, st, `{"type":"client.update","location_id":1,"client_ref":"crm-42","payload":{"name":"James","phone":"+13155550175","email":"j@example.com"}}`)
	waitStatus(t, st, update, "succeeded")
	waitStatus(t, st, create, "succeeded")

	clients := st.Sandbox.Clients(DevLocationID)
	if len(clients) != 1 || clients[0].Email != "j@example.com" {
		t.Fatalf("sandbox clients = %+v, want one with the updated email", clients)
	}
	// The client read back over NATS by its client_ref, through the
	// worker's session and budget.
	nc, _ := testenv.Connect(t, st.NATSURL)
	m, err := nc.Request(commands.ReadSubject(DevLocationID, commands.ReadClient), []byte(`{"client_ref":"crm-42"}`), 10*time.Second)
	if err != nil {
		t.Fatalf("read client: %v", err)
	}
	var card altegio.ClientRecord
	if err := json.Unmarshal(m.Data, &card); err != nil || card.Email != "j@example.com" || card.ID != clients[0].ID {
		t.Errorf("read client crm-42: %s (%v)", m.Data, err)
	}
	// And over HTTP on ingest, with the dev producer's key.
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/locations/%d/clients-by-ref/crm-42", st.IngestURL, DevLocationID), nil)
	req.Header.Set("Authorization", "Bearer "+DevProducerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&card)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || card.Email != "j@example.com" {
		t.Errorf("GET clients-by-ref/crm-42: %d %+v (%v)", resp.StatusCode, card, err)
	}
	// The export of the location, as JSON lines.
	req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/locations/%d/export/clients", st.IngestURL, DevLocationID), nil)
	req.Header.Set("Authorization", "Bearer "+DevProducerKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Count(string(body), "\n") != 1 || !strings.Contains(string(body), `"j@example.com"`) {
		t.Errorf("export: %d %s", resp.StatusCode, body)
	}
	// The sandbox's webhooks about both changes come back through ingest
	// as events, marked as the integrator's own.
	testenv.WaitFor(t, 10*time.Second, func() error {
		s := out.String()
		for _, want := range []string{"event  succeeded     client.create", "event  succeeded     client.update", "progress  accepted 2",
			"webhook client.create   location=1 client_id=" + fmt.Sprint(clients[0].ID) + " origin=integrator command=" + create,
			"webhook client.update   location=1 client_id=" + fmt.Sprint(clients[0].ID) + " origin=integrator command=" + update} {
			if !strings.Contains(s, want) {
				return fmt.Errorf("output lacks %q", want)
			}
		}
		return nil
	})

	// The banner's curl lists the sandbox's clients as printed, with the
	// credentials it shows. It shares the sandbox's per-IP budget with
	// the worker, whose reads above would not wait for a 429.
	for _, want := range []string{"partner token " + DevPartnerToken, "login " + DevLogin + " / " + DevPassword} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q", want)
		}
	}
	listed := doCurl(t, bannerCurl(t, out.String(), "List the sandbox's clients"))
	if !strings.Contains(listed, fmt.Sprintf(`"id":%d`, clients[0].ID)) || !strings.Contains(listed, `"name":"James"`) {
		t.Errorf("the banner's sandbox curl answered %s, want client %d, James", listed, clients[0].ID)
	}

	// A change made elsewhere (here: straight through the API as the dev
	// user) comes back as a webhook event that is not the integrator's.
	elsewhere(t, st, clients[0].ID)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if want := fmt.Sprintf("webhook client.update   location=1 client_id=%d origin=elsewhere", clients[0].ID); !strings.Contains(out.String(), want) {
			return fmt.Errorf("output lacks %q", want)
		}
		return nil
	})

	// A comment for a client the API does not know is dead-lettered at once
	// and shows in the operators' HTTP view of the DLQ.
	bad := post(t, st, `{"type":"client.comment.add","location_id":1,"client_id":999,"payload":{"text":"hello"}}`)
	waitStatus(t, st, bad, "dead_lettered")
	// The status record says dead a moment before the DLQ record is
	// published: poll.
	testenv.WaitFor(t, 10*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodGet, st.IngestURL+"/v1/dlq?type=client.comment.add", nil)
		req.Header.Set("Authorization", "Bearer "+DevOperatorKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var list struct {
			Entries []struct {
				Record struct {
					CommandID string `json:"command_id"`
				} `json:"record"`
			} `json:"entries"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v1/dlq: status %d, err %v", resp.StatusCode, err)
		}
		if len(list.Entries) != 1 || list.Entries[0].Record.CommandID != bad {
			return fmt.Errorf("DLQ entries = %+v, want the one comment %s", list.Entries, bad)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestDevStackResumesUnfinishedCommands(t *testing.T) {
	dir := t.TempDir()
	// The retry delay outlasts the first run, so the command is parked on
	// the server when the stack stops.
	st, stop := startDevWith(t, DevConfig{DataDir: dir, Out: io.Discard, Worker: worker.Config{RetryBase: 10 * time.Second}})
	st.Sandbox.Inject(sandbox.Rule{Op: sandbox.OpClientCreate, Status: http.StatusServiceUnavailable})
	id := post(t, st, `{"type":"client.create","location_id":1,"client_ref":"crm-7","payload":{"name":"Ada","phone":"+13155550111"}}`)
	testenv.WaitFor(t, 30*time.Second, func() error {
		if n := st.Sandbox.Stats().ByOp[sandbox.OpClientCreate]; n < 1 {
			return fmt.Errorf("no create attempt yet")
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// The next start, on the same data, finishes the command against a
	// healthy API.
	st, _ = startDev(t, dir, io.Discard)
	waitStatus(t, st, id, "succeeded")
	if got := st.Sandbox.Stats().CreatesByPhone["13155550111"]; got != 1 {
		t.Errorf("creates for the phone = %d, want 1", got)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("DEV_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// elsewhere changes client id's email straight through the sandbox's API,
// as another system would: logs in as the dev user, then PUTs. It shares
// the sandbox's per-IP budget with the integrator without sharing its
// schedule, so a 429 is possible: it retries, as such a system must.
func elsewhere(t *testing.T, st DevStack, id int64) {
	t.Helper()
	call := func(method, path, auth, body string) []byte {
		var out []byte
		testenv.WaitFor(t, 10*time.Second, func() error {
			req, _ := http.NewRequest(method, st.APIURL+path, strings.NewReader(body))
			req.Header.Set("Authorization", auth)
			req.Header.Set("Accept", "application/vnd.api.v2+json")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			switch resp.StatusCode {
			case http.StatusOK, http.StatusCreated:
				out = b
				return nil
			case http.StatusTooManyRequests:
				return fmt.Errorf("%s %s: 429", method, path)
			}
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
			return nil
		})
		return out
	}
	var login struct {
		Data struct {
			UserToken string `json:"user_token"`
		} `json:"data"`
	}
	if err := json.Unmarshal(call(http.MethodPost, "/auth", "Bearer "+DevPartnerToken,
		fmt.Sprintf(`{"login":%q,"password":%q}`, DevLogin, DevPassword)), &login); err != nil || login.Data.UserToken == "" {
		t.Fatalf("login: %v", err)
	}
	if login.Data.UserToken != DevUserToken { // as the banner says
		t.Errorf("login answered user token %q, want %q", login.Data.UserToken, DevUserToken)
	}
	call(http.MethodPut, fmt.Sprintf("/client/%d/%d", DevLocationID, id), "Bearer "+DevPartnerToken+", User "+login.Data.UserToken,
		`{"name":"James","phone":"13155550175","email":"james@elsewhere.example"}`)
}

func TestDevStackSaysWhatItStarts(t *testing.T) {
	dir := t.TempDir()
	out := &syncBuffer{}
	startDev(t, dir, out)
	s := out.String()
	at := 0
	for _, want := range []string{
		"starting NATS (JetStream data in " + dir + ")…\n",
		"applying the topology…\n",
		"starting the sandbox…\n",
		"starting the worker…\n",
		"starting ingest…\n",
		"Altegio integrator, development stack\n",
	} {
		i := strings.Index(s[at:], want)
		if i < 0 {
			t.Fatalf("output lacks %q after the lines before it:\n%s", want, s)
		}
		at += i + len(want)
	}
}

func TestTakenPortFailsAtOnceNamingItsFlag(t *testing.T) {
	tests := []struct {
		flag string
		set  func(*DevConfig, string)
	}{
		{FlagNATSListen, func(c *DevConfig, a string) { c.NATSListen = a }},
		{FlagSandboxAddr, func(c *DevConfig, a string) { c.SandboxAddr = a }},
		{FlagIngestAddr, func(c *DevConfig, a string) { c.IngestAddr = a }},
		{FlagOpsAddr, func(c *DevConfig, a string) { c.OpsAddr = a }},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			out := &syncBuffer{}
			cfg := DevConfig{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0",
				IngestAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0", Out: out, Logger: testLogger()}
			tt.set(&cfg, taken.Addr().String())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err = RunDev(ctx, cfg)
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "--"+tt.flag) {
				t.Fatalf("RunDev = %v, want address already in use naming --%s", err, tt.flag)
			}
			if took > 2*time.Second {
				t.Errorf("RunDev took %v to fail, want at once", took)
			}
			if strings.Contains(out.String(), "development stack") {
				t.Errorf("banner printed although the stack did not start:\n%s", out)
			}
		})
	}
}

// TestEmbeddedNATSReportsItsListenError covers a port taken between the
// check and nats-server's own listen: nats-server's error is returned at
// once instead of a timeout.
func TestEmbeddedNATSReportsItsListenError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	start := time.Now()
	ns, err := startEmbeddedNATS(taken.Addr().String(), t.TempDir(), testLogger())
	if err == nil {
		ns.Shutdown()
		t.Fatal("embedded NATS started on a taken port")
	}
	if !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "--"+FlagNATSListen) {
		t.Errorf("err = %v, want address already in use naming --%s", err, FlagNATSListen)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v to fail, want well under the %v start timeout", took, natsStartTimeout)
	}
}

func TestSecondDevOnTheSameDataFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	st, stop := startDev(t, dir, io.Discard)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := RunDev(ctx, DevConfig{DataDir: dir, NATSListen: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0",
		IngestAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0", Out: io.Discard, Logger: testLogger()})
	took := time.Since(start)
	var locked *DataDirLockedError
	if !errors.As(err, &locked) {
		t.Fatalf("second RunDev = %v, want a *DataDirLockedError", err)
	}
	for _, want := range []string{"another dev stack is using " + dir, filepath.Join(dir, LockFile), fmt.Sprintf("pid %d", os.Getpid()), "--" + FlagDataDir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to contain %q", err, want)
		}
	}
	if took > 2*time.Second {
		t.Errorf("second RunDev took %v to fail, want at once", took)
	}

	// The first one goes on working.
	id := post(t, st, `{"type":"client.create","location_id":1,"client_ref":"crm-1","payload":{"name":"Ada","phone":"+13155550101"}}`)
	waitStatus(t, st, id, "succeeded")
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// Its stop releases the folder.
	startDev(t, dir, io.Discard)
}

// TestStopPrintsTheEventsOfTheCommandsFinishedWhileStopping stops the stack
// while the worker waits for a slow answer about a batch of creates: the
// worker finishes them after the stop began, and each of their events
// must still be printed. It fails if the follower stops with the stop.
func TestStopPrintsTheEventsOfTheCommandsFinishedWhileStopping(t *testing.T) {
	dir := t.TempDir()
	out := &syncBuffer{}
	st, stop := startDevWith(t, DevConfig{DataDir: dir, Out: out, WebhookDelay: time.Hour})
	st.Sandbox.SetFaults(sandbox.Faults{Latency: time.Second})
	const n = 20
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got, err := postBatch(ctx, http.DefaultClient, st.IngestURL, benchBody(0, n)); err != nil || got != n {
		t.Fatalf("post: %d accepted, %v", got, err)
	}
	// Stop while the creates' request is in the sandbox, sleeping.
	testenv.WaitFor(t, 30*time.Second, func() error {
		s := st.Sandbox.Stats()
		if s.ByOp[sandbox.OpClientCreate]+s.ByOp[sandbox.OpClientBulk] == 0 {
			return errors.New("no create request yet")
		}
		return nil
	})
	stopAt := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	printed := map[string]int{}
	for line := range strings.Lines(out.String()) {
		printed[strings.TrimSuffix(line, "\n")]++
	}
	late, results := 0, 0
	for _, m := range storedEvents(t, dir) {
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md.Timestamp.After(stopAt) {
			late++
		}
		line := eventText(m.Subject(), m.Data())
		if strings.Contains(line, " id=") {
			results++
		}
		if printed[line] == 0 {
			t.Errorf("event %d (%s) is in the stream but not in the output: %q", md.Sequence.Stream, m.Subject(), line)
			continue
		}
		printed[line]--
	}
	// The proof that the test exercised the stop: results published after
	// it began. (Commands still waiting for the budget are handed back
	// without one and resume on the next start.)
	if results == 0 || late == 0 {
		t.Fatalf("%d result events, %d of the events published after the stop began; want some of both", results, late)
	}
	if !strings.HasSuffix(out.String(), "stopped; unfinished commands resume on the next start\n") {
		t.Errorf("output does not end with the stop line:\n%s", out)
	}
}

// storedEvents returns every message of the EVENTS stream kept in the dev
// stack's data folder dir, read through an embedded NATS of its own.
func storedEvents(t *testing.T, dir string) []jetstream.Msg {
	t.Helper()
	ns, err := startEmbeddedNATS("127.0.0.1:0", filepath.Join(dir, "nats"), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	nc, js := testenv.Connect(t, ns.ClientURL())
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, topology.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for range info.State.Msgs {
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("read event %d of %d: %v", len(msgs)+1, info.State.Msgs, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// bannerCurl parses the curl command printed under the line starting with
// heading in out (quoted words, continuation lines) into the request it
// sends.
func bannerCurl(t *testing.T, out, heading string) *http.Request {
	t.Helper()
	_, rest, ok := strings.Cut(out, "\n"+heading)
	if !ok {
		t.Fatalf("output lacks %q:\n%s", heading, out)
	}
	_, rest, _ = strings.Cut(rest, "\n")
	var cmd strings.Builder
	for line := range strings.Lines(rest) {
		line = strings.TrimRight(line, "\n")
		cont := strings.HasSuffix(line, "\\")
		cmd.WriteString(strings.TrimSuffix(line, "\\"))
		if !cont {
			break
		}
	}
	words := shellWords(t, cmd.String())
	if len(words) == 0 || words[0] != "curl" {
		t.Fatalf("no curl command under %q: %q", heading, cmd.String())
	}
	method, url, body := http.MethodGet, "", ""
	header := http.Header{}
	for i := 1; i < len(words); i++ {
		switch w := words[i]; {
		case w == "-sS":
		case w == "-X" || w == "-H" || w == "-d":
			if i+1 == len(words) {
				t.Fatalf("curl %s without a value", w)
			}
			i++
			switch w {
			case "-X":
				method = words[i]
			case "-H":
				k, v, _ := strings.Cut(words[i], ":")
				header.Add(k, strings.TrimSpace(v))
			case "-d":
				body = words[i]
			}
		case strings.HasPrefix(w, "http://"):
			url = w
		default:
			t.Fatalf("curl argument %q not understood", w)
		}
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	return req
}

// shellWords splits s into words as a POSIX shell does for plain and
// single-quoted words.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			w.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// doCurl sends req and returns the body of its 2xx answer. It sends it
// again after a 429: the sandbox's budget is shared with the worker.
func doCurl(t *testing.T, req *http.Request) string {
	t.Helper()
	var out string
	testenv.WaitFor(t, 10*time.Second, func() error {
		body, err := req.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		r := req.Clone(req.Context())
		r.Body = body
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("%s %s: 429", req.Method, req.URL)
		case resp.StatusCode/100 != 2:
			t.Fatalf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, b)
		}
		out = string(b)
		return nil
	})
	return out
}
