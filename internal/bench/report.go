package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

var inf = math.Inf(1)

// Report is what a scenario measured.
type Report struct {
	// Scenario is the scenario's name.
	Scenario string
	// Title describes the run: its size and settings.
	Title string
	// Tables are the figures, each rendered as a Markdown table.
	Tables []Table
	// Notes follow the tables: how a figure was obtained, targets.
	Notes []string
	// Figures are the main numbers by name, for tests and tools: for
	// example "workers=1/api_rps" or "ratio". Names are listed with each
	// scenario.
	Figures map[string]float64
}

// Table is a Markdown table.
type Table struct {
	Header []string
	Rows   [][]string
}

func (t *Table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

// Markdown renders the report: a heading, the tables and the notes.
func (r Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s: %s\n", r.Scenario, r.Title)
	for _, t := range r.Tables {
		b.WriteString("\n| " + strings.Join(t.Header, " | ") + " |\n|")
		for range t.Header {
			b.WriteString("---|")
		}
		b.WriteByte('\n')
		for _, row := range t.Rows {
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
	}
	if len(r.Notes) > 0 {
		b.WriteByte('\n')
		for _, n := range r.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

func (r *Report) set(name string, v float64) {
	if r.Figures == nil {
		r.Figures = make(map[string]float64)
	}
	r.Figures[name] = v
}

// rate is n per d, per second; 0 for an empty span.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// num renders a number with the precision its size deserves.
func num(v float64) string {
	switch {
	case math.IsInf(v, 0) || math.IsNaN(v):
		return "—"
	case v >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// pct renders a share as a percentage.
func pct(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.0f %%", 100*v)
}

// dur renders a duration rounded to its scale.
func dur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// mib renders bytes in MiB.
func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// latency is one command's time from acceptance to its terminal event, or
// a lower bound when it had none by the end of the run.
type latency struct {
	d        time.Duration
	finished bool
}

// percentile returns the p-th percentile (nearest rank) of ls, unfinished
// commands counting as their lower bound but sorted after every finished
// one; the zero latency when ls is empty.
func percentile(ls []latency, p float64) latency {
	if len(ls) == 0 {
		return latency{}
	}
	s := slices.Clone(ls)
	slices.SortFunc(s, func(a, b latency) int {
		if a.finished != b.finished {
			if a.finished {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.d, b.d)
	})
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// String renders l; an unfinished one as "> 12s (unfinished)".
func (l latency) String() string {
	if !l.finished {
		return "> " + dur(l.d) + " (unfinished)"
	}
	return dur(l.d)
}
