package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

func TestConfigDefaultsAndValidate(t *testing.T) {
	t.Parallel()
	var c Config
	c.setDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.MaxAttempts != 0 || c.RetryFor != DefaultRetryFor || c.RetryBase != time.Second || c.RetryMax != 30*time.Second ||
		c.MaxInFlight != DefaultMaxInFlight || c.WorkerID == "" || c.Logger == nil || c.Registerer != nil || c.Now == nil {
		t.Fatalf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"max in flight", func(c *Config) { c.MaxInFlight = -1 }, "max in flight"},
		{"max attempts", func(c *Config) { c.MaxAttempts = -2 }, "max attempts"},
		{"retry for", func(c *Config) { c.RetryFor = -time.Second }, "retry for"},
		{"retry max below base", func(c *Config) { c.RetryBase, c.RetryMax = time.Second, time.Millisecond }, "retry base"},
		{"handler timeout", func(c *Config) { c.HandlerTimeout = -time.Second }, "handler timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}
			tc.mod(&c)
			c.setDefaults()
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestNewChecksRetryMaxAgainstAckWait(t *testing.T) {
	t.Parallel()
	top := testTopology(t, 0) // AckWait 2s: retries must stay below 1.33s
	api, _ := altegio.New(altegio.Config{BaseURL: "http://127.0.0.1:1/api/v1"}, nil, nil)
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	if _, err := New(Config{RetryMax: 2 * time.Second}, js, api, top); err == nil || !strings.Contains(err.Error(), "retry max") {
		t.Fatalf("New with retry max above the ack wait: %v", err)
	}
	if _, err := New(Config{RetryBase: 10 * time.Millisecond, RetryMax: time.Second}, js, api, top); err == nil ||
		!strings.Contains(err.Error(), "priority timeout") {
		t.Fatalf("New with the default handler timeout above the pin timeout: %v", err)
	}
	if _, err := New(Config{RetryBase: 10 * time.Millisecond, RetryMax: time.Second, HandlerTimeout: time.Second}, js, api, top); err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := New(Config{}, nil, api, top); err == nil {
		t.Fatal("New without jetstream succeeded")
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	apiErr := func(status int) error {
		return &altegio.APIError{Op: "client.create", Method: "POST", Path: "/clients/1", Status: status, Message: "m",
			FieldErrors: []altegio.FieldError{{Field: "phone", Message: "bad"}}}
	}
	transport := &altegio.TransportError{Op: "client.create", Method: "POST", Path: "/clients/1", Err: errors.New("reset")}
	for _, tc := range []struct {
		name    string
		err     error
		class   commands.ErrorClass
		unknown bool
		status  int
	}{
		{"transport", transport, commands.ClassTransient, true, 0},
		{"timeout", fmt.Errorf("x: %w", &altegio.TransportError{Err: context.DeadlineExceeded}), commands.ClassTransient, true, 0},
		{"500", apiErr(500), commands.ClassTransient, true, 500},
		{"503", apiErr(503), commands.ClassTransient, true, 503},
		{"429", apiErr(429), commands.ClassRateLimited, false, 429},
		{"401", apiErr(401), commands.ClassAuth, false, 401},
		{"400", apiErr(400), commands.ClassPermanent, false, 400},
		{"402", apiErr(402), commands.ClassPermanent, false, 402},
		{"403", apiErr(403), commands.ClassPermanent, false, 403},
		{"404", apiErr(404), commands.ClassPermanent, false, 404},
		{"422", apiErr(422), commands.ClassPermanent, false, 422},
		{"unknown ref", &permanentError{ErrUnknownClientRef}, commands.ClassPermanent, false, 0},
		{"ambiguous", &ambiguousError{ErrAmbiguous}, commands.ClassAmbiguous, false, 0},
		{"account 2fa", &auth.AccountError{Account: "main", Err: altegio.ErrTwoFactorRequired}, commands.ClassAuth, false, 0},
		{"account outage", &auth.AccountError{Account: "main", Err: transport}, commands.ClassTransient, false, 0},
		{"limiter wait", errors.New("altegio client.create: wait for rate limiter: context canceled"), commands.ClassTransient, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := classify(tc.err)
			if v.class != tc.class || v.unknown != tc.unknown || v.status != tc.status {
				t.Fatalf("classify = %+v, want class %s unknown %v status %d", v, tc.class, tc.unknown, tc.status)
			}
			if tc.status >= 400 && tc.status != http.StatusTooManyRequests && (len(v.fields) != 1 || v.fields[0].Path != "phone") {
				t.Errorf("field errors: %+v", v.fields)
			}
		})
	}
	if v := classify(&auth.AccountError{Account: "main", Err: altegio.ErrInvalidCredentials}); v.account != "main" {
		t.Errorf("account not reported: %+v", v)
	}
}

// Only a 404 for a client that came from a client_ref's mapping names the
// ref; everything else keeps the API's failure.
func TestExplainStaleRef(t *testing.T) {
	t.Parallel()
	notFound := &altegio.APIError{Op: "client.get", Method: "GET", Path: "/client/1/1000001", Status: http.StatusNotFound}
	byRef := commands.Command{Type: commands.TypeClientUpdate, LocationID: 1, ClientRef: "crm-42"}
	byID := commands.Command{Type: commands.TypeClientUpdate, LocationID: 1, ClientID: 1000001}
	byBoth := commands.Command{Type: commands.TypeClientUpdate, LocationID: 1, ClientID: 1000001, ClientRef: "crm-42"}
	for _, tc := range []struct {
		name string
		cmd  commands.Command
		err  error
		want string // "" keeps err
	}{
		{"ref, 404", byRef, notFound, `client_ref "crm-42" points at client 1000001, which the API does not have (404)`},
		{"ref, wrapped 404", byRef, fmt.Errorf("update: %w", notFound), `client_ref "crm-42" points at client 1000001, which the API does not have (404)`},
		{"ref, 422", byRef, &altegio.APIError{Status: http.StatusUnprocessableEntity}, ""},
		{"ref, transport", byRef, &altegio.TransportError{Err: errors.New("reset")}, ""},
		{"client_id, 404", byID, notFound, ""},
		{"client_id and ref, 404", byBoth, notFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := explainStaleRef(tc.cmd, 1000001, tc.err)
			if tc.want == "" {
				if got != tc.err {
					t.Fatalf("explainStaleRef = %v, want the failure unchanged", got)
				}
				return
			}
			if got.Error() != tc.want {
				t.Errorf("message = %q, want %q", got, tc.want)
			}
			if !errors.Is(got, ErrStaleClientRef) || !errors.Is(got, altegio.ErrNotFound) {
				t.Errorf("%v does not wrap ErrStaleClientRef and altegio.ErrNotFound", got)
			}
			if v := classify(got); v.class != commands.ClassPermanent || v.status != http.StatusNotFound {
				t.Errorf("classify = %+v, want permanent with status 404", v)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	w := &Worker{cfg: Config{RetryBase: 100 * time.Millisecond, RetryMax: time.Second}}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		for range 50 {
			if d := w.backoff(n); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestLaneKey(t *testing.T) {
	t.Parallel()
	for subject, want := range map[string]string{
		"altegio.cmd.3.17.ref_crm-1.update": "17.ref_crm-1",
		"altegio.cmd.0.17.id_42.delete":     "17.id_42",
		"altegio.cmd.odd":                   "altegio.cmd.odd",
	} {
		if got := LaneKey(subject, nil); got != want {
			t.Errorf("LaneKey(%q) = %q, want %q", subject, got, want)
		}
	}
}

func TestEventMsgID(t *testing.T) {
	t.Parallel()
	r := commands.Result{CommandID: "c1", Outcome: commands.OutcomeSucceeded, StreamSeq: 7}
	if got := EventMsgID(r); got != "c1:succeeded:seq:7" {
		t.Errorf("EventMsgID = %q", got)
	}
	r.StreamSeq = 9
	if EventMsgID(r) == "c1:succeeded:seq:7" {
		t.Error("a later message of the same command is deduplicated against the first")
	}
	f := commands.Result{CommandID: "c1", Outcome: commands.OutcomeFailed, Attempts: 2, StreamSeq: 7}
	if got := EventMsgID(f); got != "c1:failed:attempt:2:seq:7" {
		t.Errorf("failed EventMsgID = %q", got)
	}
}

func TestSameName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got, want string
		ok        bool
	}{
		{"Ann", "ann", true}, {"  Ann   Lee ", "ann lee", true}, {"Ann Lee", "Ann", true},
		{"Annabel", "Ann", false}, {"Bob", "Ann", false},
	} {
		if sameName(tc.got, tc.want) != tc.ok {
			t.Errorf("sameName(%q, %q) = %v", tc.got, tc.want, !tc.ok)
		}
	}
}

// NATS going away and coming back: Ready says so, and the commands
// published around the outage still end in exactly one terminal result.
func TestNATSRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	r := e.startWorker(workerOpts{})
	first := createCmd("nr-1", "Oli", phone(1500))
	e.publish(first)
	e.waitTerminal(10*time.Second, first.ID)
	if err := r.w.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	e.nats.Stop()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if err := r.w.Ready(context.Background()); !errors.Is(err, ErrNotConnected) {
			return fmt.Errorf("Ready = %v, want ErrNotConnected", err)
		}
		return nil
	})
	e.nats.Start()
	testenv.WaitFor(t, 10*time.Second, func() error { return r.w.Ready(context.Background()) })

	second := createCmd("nr-2", "Pat", phone(1501))
	e.publish(second)
	got := e.waitTerminal(20*time.Second, second.ID)[second.ID]
	if got.Outcome != commands.OutcomeSucceeded {
		t.Fatalf("after restart: %+v", got)
	}
	e.assertOneTerminal(first.ID, second.ID)
	if n := e.sb.Stats().CreatesByPhone[strings.TrimPrefix(phone(1501), "+")]; n != 1 {
		t.Fatalf("created %d times", n)
	}
}

// The last check of an update compares only the fields it sets, and phones
// as digits: an applied update with a formatted phone, or in replace mode,
// is found; one whose fields differ is not.
func TestHoldsComparesTheFieldsSet(t *testing.T) {
	card := altegio.ClientRecord{ID: 7, Name: "Ivy 2", Phone: "15550000610", Email: "ivy@example.com"}
	for _, tc := range []struct {
		name string
		f    commands.ClientFields
		want bool
	}{
		{"same, phone formatted", commands.ClientFields{Name: new("Ivy 2"), Phone: new("+1 (555) 000-0610")}, true},
		{"fields left out are not compared", commands.ClientFields{Email: new("ivy@example.com")}, true},
		{"another name", commands.ClientFields{Name: new("Ivy"), Phone: new("15550000610")}, false},
		{"another phone", commands.ClientFields{Name: new("Ivy 2"), Phone: new("15550000611")}, false},
		{"another email", commands.ClientFields{Email: new("other@example.com")}, false},
	} {
		if got := holds(card, tc.f); got != tc.want {
			t.Errorf("%s: holds = %v, want %v", tc.name, got, tc.want)
		}
	}
}
