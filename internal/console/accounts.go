package console

import (
	"cmp"
	"net/http"
	"slices"
	"time"
)

// accountRow is one account as the workers and the events report it.
type accountRow struct {
	Name string
	// Session is "yes" (a user token is held and the account's commands
	// are not waiting for it), "no" or "unknown" (no worker reports the
	// account).
	Session string
	// State says what an operator should know, in a few words.
	State      string
	StateClass string
	HasToken   bool
	ObtainedAt time.Time // now − the youngest token age the workers report
	TokenAge   time.Duration
	// Totals since each worker started, and increases over the last hour
	// and 5 minutes (since this ingest started).
	LoginsOK, LoginsFailed, LoginsFailedHour float64
	Unauthorized, UnauthorizedHour           float64
	Paused, PausedHour, Paused5m             float64
	// Backoff is the longest login back-off a worker reports: how long
	// until it tries to log the account in again after failed logins.
	Backoff   time.Duration
	Workers   int
	Attention *attention
}

// accountsData is the data of the accounts page.
type accountsData struct {
	Rows    []accountRow
	Workers []workerState
	// Configured is false when no worker metrics URL is set.
	Configured bool
}

func (c *Console) accountsPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.timeout(r.Context())
	defer cancel()
	targets := c.sample(ctx)
	d := accountsData{Rows: c.accountRows(targets), Configured: len(c.cfg.WorkerMetrics) > 0}
	for _, t := range targets {
		ws := workerState{URL: t.URL, Up: t.Err == nil, At: t.At}
		if t.Err != nil {
			ws.Err = t.Err.Error()
		}
		d.Workers = append(d.Workers, ws)
	}
	c.render(w, http.StatusOK, "accounts", pageFor(s, "Accounts", "accounts", d))
}

// accountRows combines the workers' altegio_auth_* and
// worker_account_paused_total with the latest account.needs_attention
// event of each account. The user token itself (the altegio_tokens
// bucket) is never read: it is a secret, and its obtain time is what
// altegio_auth_token_age_seconds reports.
func (c *Console) accountRows(targets []target) []accountRow {
	now := c.cfg.Now()
	rows := map[string]*accountRow{}
	get := func(name string) *accountRow {
		r, ok := rows[name]
		if !ok {
			r = &accountRow{Name: name}
			rows[name] = r
		}
		return r
	}
	for _, t := range targets {
		if t.Err != nil {
			continue
		}
		seen := map[string]bool{}
		note := func(a string) *accountRow {
			r := get(a)
			if !seen[a] {
				seen[a] = true
				r.Workers++
			}
			return r
		}
		for a, age := range t.fams.byLabel(metricTokenAge, "account", nil) {
			r := note(a)
			d := time.Duration(age * float64(time.Second))
			if !r.HasToken || d < r.TokenAge {
				r.TokenAge, r.HasToken = d, true
			}
		}
		for a, v := range t.fams.byLabel(metricLogins, "account", labelIs("result", "success")) {
			note(a).LoginsOK += v
		}
		for a, v := range t.fams.byLabel(metricLogins, "account", labelIsNot("result", "success")) {
			note(a).LoginsFailed += v
		}
		for a, v := range t.fams.byLabel(metricUnauthorized, "account", nil) {
			note(a).Unauthorized += v
		}
		for a, v := range t.fams.byLabel(metricPaused, "account", nil) {
			note(a).Paused += v
		}
		for a, v := range t.fams.byLabel(metricLoginBackoff, "account", nil) {
			r := note(a)
			r.Backoff = max(r.Backoff, time.Duration(v*float64(time.Second)))
		}
	}
	for _, r := range rows {
		if r.HasToken {
			r.ObtainedAt = now.Add(-r.TokenAge)
		}
	}
	for name, a := range c.events.accounts() {
		r := get(name)
		r.Attention = &a
	}
	out := make([]accountRow, 0, len(rows))
	for _, r := range rows {
		r.LoginsFailedHour = c.series.sum(prefixLoginFailed+r.Name, windowMinutes)
		r.UnauthorizedHour = c.series.sum(prefixUnauth+r.Name, windowMinutes)
		r.PausedHour = c.series.sum(prefixPaused+r.Name, windowMinutes)
		r.Paused5m = c.series.sum(prefixPaused+r.Name, 5)
		r.Session, r.State, r.StateClass = accountState(*r, now)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b accountRow) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// accountState says whether the account has a session and what needs
// doing.
func accountState(r accountRow, now time.Time) (session, state, class string) {
	recentAttention := r.Attention != nil && now.Sub(r.Attention.At) < 15*time.Minute
	switch {
	case r.Workers == 0:
		session, state, class = "unknown", "no worker reports this account", "s-unknown"
		if r.Attention != nil {
			state = "needs attention: " + r.Attention.Reason
			class = "s-bad"
		}
		return session, state, class
	case r.Paused5m > 0:
		return "no", "paused: its commands wait for the account to work again", "s-bad"
	case recentAttention:
		return yesNo(r.HasToken), "needs attention: " + r.Attention.Reason, "s-bad"
	case !r.HasToken && r.LoginsFailedHour > 0:
		return "no", "cannot log in", "s-bad"
	case !r.HasToken:
		return "no", "no session yet (logs in with the first command)", "s-unknown"
	case r.UnauthorizedHour > 0:
		return "yes", "working; the API refused its token in the last hour and it logged in again", "s-warn"
	}
	return "yes", "working", "s-ok"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
