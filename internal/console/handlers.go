package console

import (
	"crypto/sha256"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// maxFormBody bounds a POSTed form.
const maxFormBody = 64 << 10

// routes is the console's router; every answer carries the security
// headers (secure).
func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/static/{file}", c.static)
	mux.HandleFunc("GET /ui/login", c.loginForm)
	mux.HandleFunc("POST /ui/login", c.login)
	mux.HandleFunc("POST /ui/logout", c.authed(c.logout))
	mux.HandleFunc("GET /ui/{$}", c.authed(c.overview))
	mux.HandleFunc("GET /ui/commands", c.authed(c.commandList))
	mux.HandleFunc("GET /ui/commands/{id}", c.authed(c.timeline))
	mux.HandleFunc("GET /ui/dlq", c.authed(c.dlqList))
	mux.HandleFunc("GET /ui/dlq/{seq}", c.authed(c.dlqEntry))
	mux.HandleFunc("GET /ui/dlq/replay", c.authed(c.replayPlan))
	mux.HandleFunc("POST /ui/dlq/replay", c.authed(c.replay))
	mux.HandleFunc("GET /ui/dlq/purge", c.authed(c.purgePlan))
	mux.HandleFunc("POST /ui/dlq/purge", c.authed(c.purge))
	mux.HandleFunc("GET /ui/accounts", c.authed(c.accountsPage))
	mux.HandleFunc("GET /ui/traces/{id}", c.authed(c.tracePage))
	mux.HandleFunc("/ui/", c.authed(func(w http.ResponseWriter, r *http.Request, s *session) {
		c.notFound(w, r, s, "There is no such page in the console.")
	}))
	return secure(mux)
}

// handler is a page handler that runs with a session.
type handler func(http.ResponseWriter, *http.Request, *session)

// authed runs h with the request's session. Without one, it redirects to
// the login form (which comes back to a GET's page after login). A POST
// must also come from this host (sameOrigin) and carry the session's CSRF
// token in the form field "csrf"; else it answers 403 and does nothing.
func (c *Console) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := c.session(r)
		if !ok {
			target := "/ui/login"
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				target += "?next=" + url.QueryEscape(r.URL.RequestURI())
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				c.forbidden(w, r, sess, "The request did not come from a page of this console (its Origin or Referer names another site). Nothing was changed.")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
			if err := r.ParseForm(); err != nil {
				c.forbidden(w, r, sess, "The form could not be read. Nothing was changed.")
				return
			}
			if !validCSRF(sess, r.PostForm.Get("csrf")) {
				c.forbidden(w, r, sess, "The form's security token is missing or out of date (after a new login, reload the page). Nothing was changed.")
				return
			}
		}
		h(w, r, sess)
	}
}

// session returns the request's live session.
func (c *Console) session(r *http.Request) (*session, bool) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil, false
	}
	return c.sessions.get(ck.Value)
}

// pageFor starts the page data of a logged-in page.
func pageFor(s *session, title, nav string, data any) page {
	return page{Title: title, Nav: nav, Operator: s.operator, CSRF: s.csrf, Data: data}
}

// message is the data of the message page.
type message struct {
	Heading string
	Text    string
	Back    string
}

func (c *Console) forbidden(w http.ResponseWriter, r *http.Request, s *session, text string) {
	c.render(w, http.StatusForbidden, "message", pageFor(s, "Refused", "", message{Heading: "Refused", Text: text, Back: "/ui/"}))
}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request, s *session, text string) {
	c.render(w, http.StatusNotFound, "message", pageFor(s, "Not found", "", message{Heading: "Not found", Text: text, Back: "/ui/"}))
}

func (c *Console) badRequest(w http.ResponseWriter, s *session, nav, text, back string) {
	c.render(w, http.StatusBadRequest, "message", pageFor(s, "Not understood", nav, message{Heading: "Not understood", Text: text, Back: back}))
}

func (c *Console) unavailable(w http.ResponseWriter, s *session, nav, text string) {
	c.render(w, http.StatusServiceUnavailable, "message", pageFor(s, "Unavailable", nav, message{Heading: "Unavailable", Text: text, Back: "/ui/"}))
}

// loginData is the data of the login form.
type loginData struct {
	Next  string
	Error string
}

// safeNext returns next when it is a path of the console, else /ui/: the
// login form never sends anyone elsewhere.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(next, "//") ||
		strings.Contains(next, "\\") || !strings.HasPrefix(u.Path, PathPrefix) || strings.Contains(u.Path, "..") {
		return PathPrefix
	}
	return u.RequestURI()
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if _, ok := c.session(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	c.render(w, http.StatusOK, "login", page{Title: "Log in", Data: loginData{Next: next}})
}

// login checks the operator key and starts a session. Failed attempts are
// rate-limited per client address and in total; the form must come from
// this host.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, text string) {
		c.render(w, status, "login", page{Title: "Log in", Data: loginData{Next: safeNext(r.PostForm.Get("next")), Error: text}})
	}
	if !sameOrigin(r) {
		fail(http.StatusForbidden, "The form did not come from this console's login page.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "The form could not be read.")
		return
	}
	addr := clientAddr(r)
	done, wait, ok := c.logins.admit(addr)
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())))
		fail(http.StatusTooManyRequests, "Too many failed logins. Try again in "+roundDuration(wait)+".")
		return
	}
	key := strings.TrimSpace(r.PostForm.Get("key"))
	sum := sha256.Sum256([]byte(key))
	if key == "" || !keyMatches(sum, c.cfg.OperatorKeys) {
		done(false)
		c.log.Info("console: failed login", "client", addr)
		fail(http.StatusUnauthorized, "That is not an operator key.")
		return
	}
	done(true)
	id, _ := c.sessions.create(operatorName(sum))
	setSessionCookie(w, r, id, c.cfg.SessionTTL)
	c.log.Info("console: login", "operator", operatorName(sum), "client", addr)
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if ck, err := r.Cookie(CookieName); err == nil {
		c.sessions.delete(ck.Value)
	}
	clearSessionCookie(w, r)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// static serves the embedded CSS and JavaScript.
func (c *Console) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	var ctype string
	switch path.Ext(name) {
	case ".css":
		ctype = "text/css; charset=utf-8"
	case ".js":
		ctype = "text/javascript; charset=utf-8"
	default:
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(staticFiles, "static/"+name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}
