package auth

import (
	"context"
	"strings"
	"testing"

	"github.com/altegio-integrator/integrator/internal/testenv"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/sandbox"
)

// TestSecretsNeverLeak runs logins, a rotation, a two-factor account, a
// wrong password and an /auth outage with Debug logging, then scans the
// logs, every error and the metrics for the tokens and passwords.
func TestSecretsNeverLeak(t *testing.T) {
	const (
		wrongPassword = "pw-SECRET-wrong-31f0"
		twoFAPassword = "pw-SECRET-2fa-c7e1"
		twoFAToken    = "utok-SECRET-2fa-55d2"
	)
	f := newFixture(t,
		sandbox.User{Login: login, Password: password, Token: initialToken},
		sandbox.User{Login: "2fa@example.com", Password: twoFAPassword, Token: twoFAToken, TwoFactor: true},
	)
	ctx := testCtx(t)
	clk := testenv.NewClock()
	accounts := []Account{
		{Name: "main", PartnerToken: partnerToken, Login: login, Password: password, Locations: []int64{1}},
		{Name: "twofa", PartnerToken: partnerToken, Login: "2fa@example.com", Password: twoFAPassword, Locations: []int64{2}},
		{Name: "wrong", PartnerToken: partnerToken, Login: login, Password: wrongPassword, Locations: []int64{3}},
	}
	p := f.process(Config{Accounts: accounts, Now: clk.Now})
	var errs []error
	record := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	record(p.search(ctx, 1))
	rotated, err := f.sb.RotateUserToken(login)
	if err != nil {
		t.Fatal(err)
	}
	record(p.search(ctx, 1))
	record(p.search(ctx, 2))
	record(p.search(ctx, 2)) // during back-off
	record(p.search(ctx, 3))
	old, _ := p.m.Credentials(ctx, 1)
	remove := f.sb.Inject(sandbox.Rule{Op: sandbox.OpAuth, Status: 503})
	if _, err := f.sb.RotateUserToken(login); err != nil {
		t.Fatal(err)
	}
	_, err = p.m.Refresh(ctx, 1, old)
	record(err)
	_, err = p.m.Refresh(ctx, 1, old)
	record(err)
	remove()
	_, err = p.m.Refresh(context.Background(), 4, old) // no account
	record(err)
	if len(errs) < 5 {
		t.Fatalf("only %d errors collected: %v", len(errs), errs)
	}

	var out strings.Builder
	out.WriteString(f.logs.String())
	for _, err := range errs {
		out.WriteString(err.Error())
		out.WriteString(fmtAll(err))
	}
	c, _ := p.m.Credentials(ctx, 1)
	out.WriteString(fmtAll(c))
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics strings.Builder
	for _, mf := range mfs {
		metrics.WriteString(mf.String())
	}
	out.WriteString(metrics.String())

	text := out.String()
	if !strings.Contains(text, `"account":"twofa"`) || !strings.Contains(metrics.String(), "altegio_auth_logins_total") {
		t.Fatalf("captured output looks incomplete:\n%s", text)
	}
	for _, secret := range []string{partnerToken, password, initialToken, rotated, wrongPassword, twoFAPassword, twoFAToken, "SECRET"} {
		if strings.Contains(text, secret) {
			t.Errorf("output contains a secret (%.8s…)", secret)
		}
	}
	if t.Failed() {
		t.Logf("captured output:\n%s", text)
	}
	// The classes the worker acts on are intact.
	if got := altegio.ClassOf(errs[0]); got != altegio.ClassAuth {
		t.Errorf("two-factor search class = %v, want auth", got)
	}
}
