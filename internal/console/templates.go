package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/altegio-integrator/integrator/internal/commands"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// pages are the parsed templates, one set per page file, each with the
// layout.
type pages map[string]*template.Template

// page is what every template gets.
type page struct {
	Title string
	// Nav is the section the page belongs to, marked in the menu.
	Nav string
	// Operator and CSRF are empty on the login page.
	Operator string
	CSRF     string
	Now      time.Time
	Data     any
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"hm": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("15:04:05")
	},
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"ago":   ago,
	"since": func(d time.Duration) string { return roundDuration(d) },
	"short": func(s string) string {
		if len(s) > 8 {
			return s[:8]
		}
		return s
	},
	"trunc": trunc,
	"num":   num,
	"pct": func(v float64) string {
		return fmt.Sprintf("%.0f %%", v*100)
	},
	"f1":   func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"json": prettyJSON,
	"outcomeClass": func(o commands.Outcome) string {
		return "o-" + strings.ReplaceAll(string(o), "_", "-")
	},
	"statusClass": func(s string) string { return "s-" + strings.ReplaceAll(s, "_", "-") },
	"add":         func(a, b int) int { return a + b },
	"count":       count,
	"bytes":       bytesText,
	"fail": func(class commands.ErrorClass, status int, msg string) step {
		return step{Class: class, Status: status, Message: msg}
	},
}

// parsePages parses every page with the layout and the shared parts.
func parsePages() (pages, error) {
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := pages{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || base == "parts" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/parts.html", n)
		if err != nil {
			return nil, fmt.Errorf("console templates: %w", err)
		}
		p[base] = t
	}
	return p, nil
}

// render writes a page with status. The page is rendered to a buffer
// first, so that a template error answers 500 instead of half a page.
func (c *Console) render(w http.ResponseWriter, status int, name string, p page) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	if p.Now.IsZero() {
		p.Now = c.cfg.Now()
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		c.log.Warn("console: render", "page", name, "error", err)
		http.Error(w, "the page could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// count says "1 entry" or "2 entries".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// ago says how long before now t was, roughly.
func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return roundDuration(time.Since(t)) + " ago"
}

// roundDuration shows a duration to a sensible precision.
func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// trunc shortens s to n characters with an ellipsis.
func trunc(n int, s string) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// prettyJSON indents JSON for reading; anything else is shown as is.
func prettyJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}
