package console

import (
	"cmp"
	"slices"
	"strings"
)

// flowRow is the API budget of one flow (account/location, issue 8's unit
// of fairness): requests waiting now in the workers, and slots given in
// the last full minute and the last hour.
type flowRow struct {
	Account, Location string
	Waiting           float64
	LastMinute, Hour  float64
}

// flowRows sums the workers' per-flow budget metrics, busiest first.
func (c *Console) flowRows(targets []target) []flowRow {
	waiting := map[string]float64{}
	for _, t := range targets {
		if t.Err != nil {
			continue
		}
		for flow, v := range t.fams.byLabel(metricFlowWaiting, "flow", nil) {
			waiting[flow] += v
		}
		for flow := range t.fams.byLabel(metricFlowGranted, "flow", nil) {
			waiting[flow] += 0 // a row for every flow that ever got a slot
		}
	}
	var rows []flowRow
	for flow, w := range waiting {
		vals, _ := c.series.last(prefixGranted + flow)
		r := flowRow{Waiting: w, Hour: c.series.sum(prefixGranted+flow, windowMinutes)}
		if len(vals) >= 2 {
			r.LastMinute = vals[len(vals)-2] // the last complete minute
		}
		r.Account, r.Location, _ = strings.Cut(flow, "/")
		if r.Location == "" {
			r.Account, r.Location = "", flow
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b flowRow) int {
		return cmp.Or(cmp.Compare(b.Waiting, a.Waiting), cmp.Compare(b.Hour, a.Hour),
			cmp.Compare(a.Account, b.Account), cmp.Compare(a.Location, b.Location))
	})
	return rows
}
