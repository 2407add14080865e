package altegio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/altegio-integrator/integrator/internal/testenv"

	"github.com/prometheus/client_golang/prometheus"
)

// TestSecretsNeverLeak drives every error path with distinctive secrets and
// an API that echoes them back, then scans error strings, formatted values
// and the captured Debug log for them.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	const (
		partner  = "PARTNER-SECRET-9c1e"
		user     = "USER-SECRET-44b7"
		fresh    = "FRESH-SECRET-0a2d"
		password = "PASSWORD-SECRET-e5f3"
	)
	secrets := []string{partner, user, fresh, password}

	// echo puts the request's Authorization header and body into the error.
	echo := func(status int) reply {
		return reply{handle: func(w http.ResponseWriter, r *http.Request) {
			var body bytes.Buffer
			_, _ = body.ReadFrom(r.Body)
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"success":false,"data":null,"meta":{"message":%q,"errors":{"auth":[%q],"body":%q}}}`,
				"bad "+r.Header.Get("Authorization"), r.Header.Get("Authorization"), body.String())
		}}
	}

	var logs testenv.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var texts []string
	collect := func(err error) {
		if err != nil {
			texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			logger.Error("call failed", "error", err)
		}
	}

	statuses := []int{400, 401, 402, 403, 404, 422, 429, 500}
	for _, st := range statuses {
		srv := newAPIServer(t, echo(st))
		auth := &refreshingAuth{fresh: Credentials{PartnerToken: partner, UserToken: fresh, Version: 2}}
		c, err := New(Config{BaseURL: srv.URL + "/api/v1", Logger: logger, Registerer: prometheus.NewRegistry()},
			secretAuth{refreshingAuth: auth, partner: partner, user: user}, &fakeLimiter{})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		_, err = c.CreateClient(ctx, 1, ClientInput{Name: "A", Phone: "1"})
		collect(err)
		_, err = c.Login(ctx, partner, "someone@example.com", password)
		collect(err)
		collect(c.DeleteClient(ctx, 1, 2))
	}

	// Transport failure and a static authorizer.
	srv := newAPIServer(t)
	srv.Close()
	c, _ := New(Config{BaseURL: srv.URL + "/api/v1", Logger: logger}, StaticAuthorizer{PartnerToken: partner, UserToken: user}, nil)
	_, err := c.GetClient(t.Context(), 1, 2)
	collect(err)
	_, err = c.Login(t.Context(), partner, "someone@example.com", password)
	collect(err)

	// Formatting the secret-bearing values.
	creds := Credentials{PartnerToken: partner, UserToken: user, Version: 3}
	static := StaticAuthorizer{PartnerToken: partner, UserToken: user}
	login := LoginResult{UserToken: user, UserID: 1}
	for _, v := range []any{creds, &creds, static, &static, login, &login} {
		texts = append(texts, fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v), fmt.Sprint(v))
		logger.Info("value", "v", v)
	}
	logger.Info("group", slog.Any("creds", creds), slog.Any("static", static), slog.Any("login", login))

	all := strings.Join(texts, "\n") + "\n" + logs.String()
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("secret %q leaked:\n%s", s, all)
		}
	}
	if !strings.Contains(all, redacted) {
		t.Error("nothing was redacted; the test did not exercise echoing")
	}
	if !strings.Contains(logs.String(), `"op":"client.create"`) {
		t.Error("debug request log missing; the test did not capture logs")
	}
}

// secretAuth serves fixed secret tokens and delegates Refresh.
type secretAuth struct {
	*refreshingAuth
	partner, user string
}

func (a secretAuth) Credentials(context.Context, int64) (Credentials, error) {
	return Credentials{PartnerToken: a.partner, UserToken: a.user, Version: 1}, nil
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	srv := newAPIServer(t,
		reply{status: 401},
		reply{status: 200, body: clientCardJSON},
		reply{status: 404, body: `{"success":false,"data":null,"meta":{}}`},
	)
	reg := prometheus.NewRegistry()
	auth := &refreshingAuth{fresh: Credentials{PartnerToken: testPartner, UserToken: "fresh-tok", Version: 2}}
	c := newTestClient(t, srv, auth, nil, func(cfg *Config) { cfg.Registerer = reg })
	// A second client on the same registry shares the collectors.
	if _, err := New(Config{BaseURL: srv.URL + "/api/v1", Registerer: reg}, auth, nil); err != nil {
		t.Fatalf("second client on one registry: %v", err)
	}
	if _, err := c.GetClient(t.Context(), 1, 2); err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if err := c.DeleteClient(t.Context(), 1, 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteClient: %v", err)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				counts[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				counts[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"altegio_api_requests_total,code=401,op=client.get":              1,
		"altegio_api_requests_total,code=200,op=client.get":              1,
		"altegio_api_requests_total,code=404,op=client.delete":           1,
		"altegio_api_request_duration_seconds,code=200,op=client.get":    1,
		"altegio_api_request_duration_seconds,code=401,op=client.get":    1,
		"altegio_api_request_duration_seconds,code=404,op=client.delete": 1,
		"altegio_api_unauthorized_total":                                 1,
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, counts[k], v, counts)
		}
	}
	for k := range counts {
		if strings.Contains(k, "/") {
			t.Errorf("metric label carries a path: %s", k)
		}
	}
}
