package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

const (
	whPartner   = "partner-secret"
	whLogin     = "ops@example.com"
	whPassword  = "pw-secret"
	crmToken    = "crm-token"
	crmURL      = "https://crm.example/altegio/hook"
	integrator  = "https://integrator.example/hooks/altegio"
	whLocation  = int64(7)
	whLocString = "7"
)

// webhooksEnv is JetStream with the topology, a sandbox with the
// integrator's user (logging in with a password, like a worker) and
// another system's user, and the environment of the worker binary.
type webhooksEnv struct {
	t   *testing.T
	sb  *sandbox.Server
	url string // API base URL
	env map[string]string
}

func newWebhooksEnv(t *testing.T) *webhooksEnv {
	t.Helper()
	n, _ := jetStreamWithTopology(t)
	sb, apiURL := testenv.Sandbox(t, sandbox.Config{
		PartnerToken: whPartner,
		Users: []sandbox.User{
			{Login: whLogin, Password: whPassword},
			{Login: "crm@example.com", Password: "crm-pw", Token: crmToken},
		},
		RatePerSecond: -1, RatePerMinute: -1,
		WebhookDelay: -1, WebhookRetryDelay: -1,
	})
	return &webhooksEnv{t: t, sb: sb, url: apiURL, env: map[string]string{
		"NATS_URL":                n.URL(),
		"ALTEGIO_API_URL":         apiURL,
		"ALTEGIO_PARTNER_TOKEN":   whPartner,
		"ALTEGIO_LOGIN":           whLogin,
		"ALTEGIO_PASSWORD":        whPassword,
		"ALTEGIO_RATE_PER_SECOND": "50",
		"ALTEGIO_RATE_PER_MINUTE": "3000",
	}}
}

// run runs the worker binary's run in-process.
func (e *webhooksEnv) run(args ...string) (stdout, stderr string, exit int, err error) {
	e.t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = runIO(ctx, args, func(k string) string { return e.env[k] }, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code(err), err
}

// mustRun runs args and fails the test unless they exit 0.
func (e *webhooksEnv) mustRun(args ...string) (stdout, stderr string) {
	e.t.Helper()
	stdout, stderr, exit, err := e.run(args...)
	if exit != 0 {
		e.t.Fatalf("worker %s: exit %d: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), exit, err, stdout, stderr)
	}
	return stdout, stderr
}

// crm is another system's API client, with its own user.
func (e *webhooksEnv) crm() *altegio.Client {
	e.t.Helper()
	c, err := altegio.New(altegio.Config{BaseURL: e.url}, altegio.StaticAuthorizer{PartnerToken: whPartner, UserToken: crmToken}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// settings reads the location's settings from the sandbox.
func (e *webhooksEnv) settings(loc int64) sandbox.HookSettings {
	e.t.Helper()
	s, _ := e.sb.HookSettingsOf(loc)
	return s
}

func (e *webhooksEnv) writes() int { return e.sb.Stats().ByOp[sandbox.OpHooksSet] }

// The POST replaces everything, so register and unregister must read,
// merge and write: another system's URL and flags survive both, and
// repeating either writes nothing.
func TestWebhooksRegisterAndUnregisterKeepOtherSystems(t *testing.T) {
	e := newWebhooksEnv(t)
	if _, err := e.crm().SetHookSettings(context.Background(), whLocation,
		altegio.HookSettings{URLs: []string{crmURL}, Active: true, Record: true}); err != nil {
		t.Fatalf("the other system's subscription: %v", err)
	}

	out, stderr := e.mustRun("webhooks", "register", "--location", whLocString, "--url", integrator)
	if !strings.Contains(out, "registered "+integrator+" for location 7") {
		t.Errorf("register said:\n%s", out)
	}
	if !strings.Contains(stderr, "client events now also go to the 1 other URL") {
		t.Errorf("register did not warn that the flags are location-wide; stderr:\n%s", stderr)
	}
	want := sandbox.HookSettings{URLs: []string{crmURL, integrator}, WrittenBy: whLogin,
		Flags: flags("active", "client", "record")} // self_sending kept (0)
	if got := e.settings(whLocation); !reflect.DeepEqual(got, want) {
		t.Fatalf("after register:\n got %+v\nwant %+v", got, want)
	}
	if got := e.writes(); got != 2 {
		t.Errorf("%d writes, want 2 (the other system's and register's)", got)
	}

	// Again: nothing changes, nothing is written.
	out, _ = e.mustRun("webhooks", "register", "--location", whLocString, "--url", integrator)
	if !strings.Contains(out, "nothing to change") {
		t.Errorf("second register said:\n%s", out)
	}
	if got := e.writes(); got != 2 {
		t.Errorf("%d writes after a second register, want still 2", got)
	}
	if got := e.settings(whLocation); !reflect.DeepEqual(got, want) {
		t.Errorf("a second register changed the settings: %+v", got)
	}

	out, _ = e.mustRun("webhooks", "list", "--location", whLocString)
	golden(t, "webhooks_list", out)
	out, _ = e.mustRun("webhooks", "list", "--location", whLocString, "--json")
	var view struct {
		LocationID int64          `json:"location_id"`
		Settings   map[string]any `json:"settings"`
	}
	if err := json.Unmarshal([]byte(out), &view); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if view.LocationID != whLocation || view.Settings["client"] != float64(1) || view.Settings["record"] != float64(1) ||
		!reflect.DeepEqual(view.Settings["urls"], []any{crmURL, integrator}) {
		t.Errorf("list --json = %s", out)
	}

	// --self-sending on changes that flag only.
	e.mustRun("webhooks", "register", "--location", whLocString, "--url", integrator, "--self-sending", "on")
	want.Flags["self_sending"] = 1
	if got := e.settings(whLocation); !reflect.DeepEqual(got, want) {
		t.Fatalf("after --self-sending on:\n got %+v\nwant %+v", got, want)
	}

	// Unregister removes this URL only; the flags stay.
	out, _ = e.mustRun("webhooks", "unregister", "--location", whLocString, "--url", integrator)
	if !strings.Contains(out, "unregistered "+integrator) {
		t.Errorf("unregister said:\n%s", out)
	}
	want.URLs = []string{crmURL}
	if got := e.settings(whLocation); !reflect.DeepEqual(got, want) {
		t.Fatalf("after unregister:\n got %+v\nwant %+v", got, want)
	}
	writes := e.writes()
	out, _ = e.mustRun("webhooks", "unregister", "--location", whLocString, "--url", integrator)
	if !strings.Contains(out, "nothing to change") || e.writes() != writes {
		t.Errorf("second unregister wrote (%d writes, was %d) or said:\n%s", e.writes(), writes, out)
	}

	// Every run used the session in the KV bucket: one login in all.
	if got := e.sb.Stats().Logins; got != 1 {
		t.Errorf("%d logins, want 1 (the token is shared through NATS)", got)
	}
}

// flags returns settings flags with the named ones 1 and every other 0.
func flags(on ...string) map[string]int {
	m := map[string]int{"active": 0}
	for _, f := range sandbox.HookFlags {
		m[f] = 0
	}
	for _, f := range on {
		m[f] = 1
	}
	return m
}

// Altegio keeps at most 10 URLs: register refuses an eleventh before
// writing, and still works for a URL that is already there.
func TestWebhooksRegisterRefusesEleventhURL(t *testing.T) {
	e := newWebhooksEnv(t)
	ten := make([]string, 10)
	for i := range ten {
		ten[i] = fmt.Sprintf("https://app%d.example/hook", i)
	}
	if _, err := e.crm().SetHookSettings(context.Background(), whLocation,
		altegio.HookSettings{URLs: ten, Active: true, Client: true}); err != nil {
		t.Fatal(err)
	}
	before := e.settings(whLocation)

	out, _, exit, err := e.run("webhooks", "register", "--location", whLocString, "--url", integrator)
	if exit != exitFailure || err == nil || !strings.Contains(err.Error(), "10 webhook URLs are registered, the most Altegio allows") {
		t.Fatalf("eleventh URL: exit %d, err %v, stdout %q; want exit 1 with a clear error", exit, err, out)
	}
	if got := e.settings(whLocation); !reflect.DeepEqual(got, before) || e.writes() != 1 {
		t.Errorf("a refused register wrote: %+v (%d writes)", got, e.writes())
	}

	out, _ = e.mustRun("webhooks", "register", "--location", whLocString, "--url", ten[4])
	if !strings.Contains(out, "nothing to change") {
		t.Errorf("register of a present URL said:\n%s", out)
	}
}

// On a location without settings, register subscribes with self_sending
// on and events arrive; unregistering the last URL turns delivery off.
func TestWebhooksFreshLocation(t *testing.T) {
	e := newWebhooksEnv(t)
	var (
		mu  sync.Mutex
		got []map[string]any
	)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &ev)
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}))
	t.Cleanup(rc.Close)

	e.mustRun("webhooks", "register", "--location", "9", "--url", rc.URL)
	want := sandbox.HookSettings{URLs: []string{rc.URL}, WrittenBy: whLogin, Flags: flags("active", "client", "self_sending")}
	if s := e.settings(9); !reflect.DeepEqual(s, want) {
		t.Fatalf("after register:\n got %+v\nwant %+v", s, want)
	}
	created, err := e.crm().CreateClient(context.Background(), 9, altegio.ClientInput{Name: "Ann", Phone: "+13155550100"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 {
			return fmt.Errorf("%d events, want 1", len(got))
		}
		if got[0]["status"] != "create" || got[0]["resource_id"] != float64(created.ID) {
			return fmt.Errorf("event %v", got[0])
		}
		return nil
	})

	e.mustRun("webhooks", "unregister", "--location", "9", "--url", rc.URL)
	want = sandbox.HookSettings{URLs: nil, WrittenBy: whLogin, Flags: flags("client", "self_sending")}
	if s := e.settings(9); !reflect.DeepEqual(s, want) {
		t.Fatalf("after the last unregister:\n got %+v\nwant %+v", s, want)
	}
}

func TestWebhooksUsage(t *testing.T) {
	e := &webhooksEnv{t: t, env: map[string]string{}}
	out, _, exit, _ := e.run("webhooks", "--help")
	if exit != 0 {
		t.Errorf("--help: exit %d", exit)
	}
	golden(t, "webhooks_help", out)
	for _, tc := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"webhooks"}, "missing command"},
		{[]string{"webhooks", "subscribe"}, "unknown command"},
		{[]string{"webhooks", "list"}, "--location is required"},
		{[]string{"webhooks", "list", "--location", "7", "extra"}, "unexpected argument"},
		{[]string{"webhooks", "register", "--location", "7"}, "--url is required"},
		{[]string{"webhooks", "register", "--location", "7", "--url", "/hook"}, "not an absolute http or https URL"},
		{[]string{"webhooks", "unregister", "--location", "7", "--url", "ftp://x.example/"}, "not an absolute http or https URL"},
		{[]string{"webhooks", "register", "--location", "7", "--url", integrator, "--self-sending", "yes"}, "want keep, on or off"},
		{[]string{"webhooks", "unregister", "--location", "7", "--url", integrator, "--self-sending", "on"}, "flag provided but not defined"},
		{[]string{"webhooks", "register", "--location", "7", "--url", integrator, "--location-weights", "7=-1"}, "weight"},
	} {
		_, stderr, exit, err := e.run(tc.args...)
		msg := stderr
		if err != nil {
			msg += err.Error()
		}
		if exit != exitUsage || !strings.Contains(msg, tc.want) {
			t.Errorf("worker %s: exit %d, %q; want exit %d mentioning %q", strings.Join(tc.args, " "), exit, msg, exitUsage, tc.want)
		}
	}
	// Without an account the CLI says which variables to set.
	_, _, exit, err := e.run("webhooks", "list", "--location", "7")
	if exit != exitFailure || err == nil || !strings.Contains(err.Error(), "ALTEGIO_") {
		t.Errorf("no account: exit %d, %v", exit, err)
	}
}

func TestRegisterAndUnregisterMerge(t *testing.T) {
	other := "https://other.example/"
	base := altegio.HookSettings{URLs: []string{other}, Active: false, Record: true, SelfSending: false}
	tests := []struct {
		name string
		in   altegio.HookSettings
		do   func(altegio.HookSettings) altegio.HookSettings
		want altegio.HookSettings
	}{
		{"register keeps others", base, func(s altegio.HookSettings) altegio.HookSettings {
			out, _ := s.WithURL(integrator, nil)
			return out
		}, altegio.HookSettings{URLs: []string{other, integrator}, Active: true, Client: true, Record: true}},
		{"register on a fresh location", altegio.HookSettings{}, func(s altegio.HookSettings) altegio.HookSettings {
			out, _ := s.WithURL(integrator, nil)
			return out
		}, altegio.HookSettings{URLs: []string{integrator}, Active: true, Client: true, SelfSending: true}},
		{"register off on a fresh location", altegio.HookSettings{}, func(s altegio.HookSettings) altegio.HookSettings {
			out, _ := s.WithURL(integrator, new(false))
			return out
		}, altegio.HookSettings{URLs: []string{integrator}, Active: true, Client: true}},
		{"unregister keeps flags", altegio.HookSettings{URLs: []string{other, integrator}, Active: true, Client: true, Record: true},
			func(s altegio.HookSettings) altegio.HookSettings { return s.WithoutURL(integrator) },
			altegio.HookSettings{URLs: []string{other}, Active: true, Client: true, Record: true}},
		{"unregister the last", altegio.HookSettings{URLs: []string{integrator}, Active: true, Client: true, SelfSending: true},
			func(s altegio.HookSettings) altegio.HookSettings { return s.WithoutURL(integrator) },
			altegio.HookSettings{Client: true, SelfSending: true}},
		{"unregister an absent URL", base,
			func(s altegio.HookSettings) altegio.HookSettings { return s.WithoutURL(integrator) }, base},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.URLs = append([]string(nil), tc.in.URLs...)
			got := tc.do(in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if !reflect.DeepEqual(in.URLs, append([]string(nil), tc.in.URLs...)) {
				t.Errorf("the input's URLs were modified: %v", in.URLs)
			}
		})
	}
}
