package console

import (
	"fmt"
	"math"
	"time"
)

// chart is a bar chart of one value per minute, drawn as inline SVG by
// the template "chart" (no script: the server computes every coordinate).
type chart struct {
	ID, Title, Class string
	// Note says where the numbers come from, under the title.
	Note string
	// Unknown replaces the bars with a message.
	Unknown string
	Total   float64
	Width   float64
	Height  float64
	Left    float64 // plot area
	Top     float64
	Right   float64
	Bottom  float64
	YMax    float64
	Bars    []bar
	XLabels []axisLabel
	// Summary is the chart's text alternative.
	Summary string
}

// bar is one minute.
type bar struct {
	X, Y, W, H float64
	Label      string
}

// axisLabel is a label under the x axis.
type axisLabel struct {
	X      float64
	Text   string
	Anchor string
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 600
	chartHeight = 120
	chartLeft   = 34
	chartTop    = 6
	chartBottom = 102
)

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// newChart draws vals, one per minute from start, oldest first.
func newChart(id, title, class, note string, vals []float64, start time.Time) chart {
	c := chart{ID: id, Title: title, Class: class, Note: note, Width: chartWidth, Height: chartHeight,
		Left: chartLeft, Top: chartTop, Right: chartWidth - 2, Bottom: chartBottom}
	peak := 0.0
	for _, v := range vals {
		c.Total += v
		peak = max(peak, v)
	}
	c.YMax = niceCeil(peak)
	n := float64(len(vals))
	if n == 0 {
		return c
	}
	slot := (c.Right - c.Left) / n
	for i, v := range vals {
		if v <= 0 {
			continue
		}
		h := (c.Bottom - c.Top) * v / c.YMax
		at := start.Add(time.Duration(i) * time.Minute)
		c.Bars = append(c.Bars, bar{
			X: c.Left + float64(i)*slot + 0.5, W: max(slot-1, 1), Y: c.Bottom - h, H: h,
			Label: fmt.Sprintf("%s UTC: %s", at.Format("15:04"), num(v)),
		})
	}
	last := start.Add(time.Duration(len(vals)-1) * time.Minute)
	mid := start.Add(time.Duration(len(vals)/2) * time.Minute)
	c.XLabels = []axisLabel{
		{X: c.Left, Text: start.Format("15:04"), Anchor: "start"},
		{X: c.Left + slot*float64(len(vals)/2), Text: mid.Format("15:04"), Anchor: "middle"},
		{X: c.Right, Text: last.Format("15:04") + " UTC", Anchor: "end"},
	}
	c.Summary = fmt.Sprintf("%s per minute from %s to %s UTC: %s in total, at most %s in a minute.",
		title, start.Format("15:04"), last.Format("15:04"), num(c.Total), num(peak))
	return c
}

// num formats a count: whole numbers without decimals.
func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
