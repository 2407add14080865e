package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/altegio-integrator/integrator/internal/devstack"
	"github.com/altegio-integrator/integrator/internal/devstack/devtest"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

// chromium returns the path of a Chromium binary. Without one the test is
// skipped on a workstation and fails in CI (CI set), where .ci/run
// installs Debian's chromium package.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium or chromium-browser in PATH; CI must install it (.ci/run: apt-get install chromium)")
	}
	t.Skip("skipped: the browser test needs Chromium (Debian: apt-get install chromium); CI installs it and runs this test")
	return ""
}

// dlqSeq waits until the DLQ over HTTP lists the command and returns its
// entry's sequence.
func dlqSeq(t *testing.T, st devstack.DevStack, id string) uint64 {
	t.Helper()
	var seq uint64
	testenv.WaitFor(t, 20*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodGet, st.IngestURL+"/v1/dlq?id="+id, nil)
		req.Header.Set("Authorization", "Bearer "+devstack.DevOperatorKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var list struct {
			Entries []struct {
				Seq uint64 `json:"seq"`
			} `json:"entries"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Entries) != 1 {
			return fmt.Errorf("DLQ lists %+v (%v), want the command %s", list.Entries, err, id)
		}
		seq = list.Entries[0].Seq
		return nil
	})
	return seq
}

// TestConsoleInTheBrowser walks an operator through the console in real
// headless Chromium against the dev stack: log in, find a dead-lettered
// command on the DLQ page, open its timeline, fix the cause, replay it
// (count first, then confirm) and see it succeed. Screenshots of each step
// go to a temporary folder, and with UPDATE_SCREENSHOTS=1 the DLQ page,
// the timeline and the overview to docs/console-*.png.
func TestConsoleInTheBrowser(t *testing.T) {
	out := &testenv.Buffer{}
	st := devtest.Start(t, devstack.DevConfig{Out: out})
	if st.Sandbox == nil || st.ConsoleURL != st.IngestURL+"/ui/" {
		t.Fatalf("dev stack: sandbox %v, console %q", st.Sandbox != nil, st.ConsoleURL)
	}
	if banner := "\n  console            " + st.ConsoleURL + "   (operator key " + devstack.DevOperatorKey + ")\n"; !strings.Contains(out.String(), banner) {
		t.Errorf("the banner lacks %q:\n%s", banner, out.String())
	}
	exe := chromium(t)
	// A comment for a client the API does not know: 404, dead-lettered.
	id := devtest.Post(t, st, `{"type":"client.comment.add","location_id":1,"client_id":999,"payload":{"text":"Call back after 5 pm"}}`)
	seq := dlqSeq(t, st, id)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("lang", "en-US"))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	shots := t.TempDir()
	update := os.Getenv("UPDATE_SCREENSHOTS") == "1"
	shot := func(name string, docs bool) {
		t.Helper()
		png, err := chromedp.Run(browser, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		if docs && update {
			if err := os.WriteFile(filepath.Join("..", "..", "docs", "console-"+name+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(browser, actions...); err != nil {
			shot("failed-"+strings.ReplaceAll(step, " ", "-"), false)
			t.Fatalf("%s: %v (screenshots in %s)", step, err, shots)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	// textOf loads a page and reads an element's text, for polling.
	textOf := func(url, sel string) (string, error) {
		if err := chromedp.Do(browser, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
			return "", err
		}
		return chromedp.Run(browser, chromedp.Text(chromedp.CSS(sel)))
	}
	defer func() {
		if t.Failed() {
			t.Logf("screenshots in %s", shots)
		}
	}()

	// 1. The console asks for the operator key first.
	do("open the console", chromedp.Navigate(st.ConsoleURL), chromedp.WaitVisible(chromedp.ID("key")))
	if at, err := chromedp.Run(browser, chromedp.Location()); err != nil || !strings.HasPrefix(at, st.ConsoleURL+"login") {
		t.Errorf("without a session the console is at %s (%v), want its login form", at, err)
	}
	shot("login", false)
	do("log in", chromedp.SendKeys(chromedp.ID("key"), devstack.DevOperatorKey), chromedp.Submit(chromedp.ID("key")),
		chromedp.WaitVisible(chromedp.CSS(`nav a[aria-current="page"]`)))
	if h := text("main h1"); h != "Overview" {
		t.Fatalf("after login the page is %q, want the overview", h)
	}

	// 2. The dead-lettered command on the DLQ page.
	timelineLink := `a.id[href="/ui/commands/` + id + `"]`
	do("open the DLQ", chromedp.Navigate(st.ConsoleURL+"dlq"), chromedp.WaitVisible(chromedp.CSS(timelineLink)))
	if s := text("table.entries tbody"); !strings.Contains(s, "client.comment.add") || !strings.Contains(s, "404") || !strings.Contains(s, "dead") {
		t.Errorf("the DLQ page's entry: %q", s)
	}
	if s := text("table.reasons"); !strings.Contains(s, "permanent") {
		t.Errorf("the DLQ page's reasons: %q", s)
	}
	shot("dlq", true)

	// 3. Its timeline says why.
	do("open the timeline", chromedp.Click(chromedp.CSS(timelineLink)), chromedp.WaitVisible(chromedp.CSS("ol.timeline")))
	if s := text("ol.timeline"); !strings.Contains(s, "Accepted") || !strings.Contains(s, "Dead-lettered") || !strings.Contains(s, "HTTP 404") {
		t.Errorf("the timeline before the replay: %q", s)
	}
	shot("timeline-dead-lettered", false)

	// 4. Fix the cause: the client now exists.
	st.Sandbox.SeedClient(devstack.DevLocationID, sandbox.ClientRecord{ID: 999, Name: "Ada", Phone: "+13155550999"})

	// 5. Replay: the count first, then the confirmation.
	replayLink := fmt.Sprintf(`a.button[href="/ui/dlq/replay?seq=%d"]`, seq)
	do("plan the replay", chromedp.Click(chromedp.CSS(replayLink)), chromedp.WaitVisible(chromedp.ID("confirm")))
	if n := text("p.count strong"); n != "1" {
		t.Errorf("the replay counts %q entries, want 1", n)
	}
	shot("replay-count", false)
	do("confirm the replay", chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.CSS("p.done")))
	if s := text("p.done"); !strings.Contains(s, "1 entry was replayed") {
		t.Errorf("after the confirmation: %q", s)
	}
	shot("replayed", false)

	// 6. The timeline shows the replay and its success.
	testenv.WaitFor(t, 20*time.Second, func() error {
		s, err := textOf(st.ConsoleURL+"commands/"+id, "ol.timeline")
		if err != nil {
			return err
		}
		for _, want := range []string{"Replayed from the DLQ (generation 1)", "Succeeded (replay 1)"} {
			if !strings.Contains(s, want) {
				return fmt.Errorf("the timeline lacks %q: %q", want, s)
			}
		}
		return nil
	})
	if s := text("dl.facts"); !strings.Contains(s, "done") {
		t.Errorf("the command's state after the replay: %q", s)
	}
	shot("timeline", true)

	// 7. Its trace, from ingest through the worker to the API call, kept
	// in the dev stack's memory: no collector.
	do("open the trace", chromedp.Click(chromedp.CSS(`span.trace a[href^="/ui/traces/"]`)), chromedp.WaitVisible(chromedp.CSS("ol.waterfall")))
	if s := text("ol.waterfall"); !strings.Contains(s, "ingest.accept") || !strings.Contains(s, "worker.handle") || !strings.Contains(s, "altegio POST") {
		t.Errorf("the trace lacks ingest.accept, worker.handle or an altegio POST span: %q", s)
	}
	shot("trace", true)

	// 8. The overview counts it all.
	testenv.WaitFor(t, 15*time.Second, func() error {
		s, err := textOf(st.ConsoleURL, ".charts")
		if err != nil {
			return err
		}
		for _, want := range []string{"Accepted 1 in the last hour", "Succeeded 1 in the last hour", "Dead-lettered 1 in the last hour"} {
			if !strings.Contains(strings.Join(strings.Fields(s), " "), want) {
				return fmt.Errorf("the overview lacks %q", want)
			}
		}
		return nil
	})
	if s := text("main"); !strings.Contains(s, "worker-p0") || !strings.Contains(s, "CONNECTED") || !strings.Contains(s, "dev") {
		t.Errorf("the overview's health: %q", s)
	}
	shot("overview", true)

	// 9. Log out: the console asks for the key again.
	do("log out", chromedp.Click(chromedp.CSS("form.logout button")), chromedp.WaitVisible(chromedp.ID("key")))
}
