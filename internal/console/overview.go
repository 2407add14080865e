package console

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/altegio-integrator/integrator/internal/topology"
)

// overviewData is the data of the overview.
type overviewData struct {
	Charts   []chart
	Events   counterState
	Lag      []lagRow
	LagTotal uint64
	LagErr   string
	Outbox   outboxState
	NATS     natsState
	Workers  []workerState
	API      apiState
	Accounts []accountRow
	Flows    []flowRow
}

// lagRow is one worker consumer's backlog.
type lagRow struct {
	Name       string
	Pending    uint64 // stored, not yet delivered
	AckPending uint64 // delivered, not yet settled
	Total      uint64
	Err        string
	// BarW is the bar's width out of 100.
	BarW float64
}

// outboxState is this process's outbox.
type outboxState struct {
	Known   bool
	Enabled bool
	Entries float64
	Oldest  float64 // seconds
}

// natsState is the health of ingest's NATS connection and the streams.
type natsState struct {
	Known   bool
	Status  string
	OK      bool
	Server  string
	RTT     time.Duration
	Streams []streamRow
	Err     string
}

// streamRow is one stream's size.
type streamRow struct {
	Name      string
	Msgs      uint64
	Bytes     uint64
	Consumers int
	Err       string
}

// workerState is one scrape target.
type workerState struct {
	URL string
	Up  bool
	Err string
	At  time.Time
}

// apiState is the API as the workers see it.
type apiState struct {
	// Known is set when at least one worker's metrics were read.
	Known bool
	// Health is "healthy", "degraded", "failing" or "idle".
	Health          string
	Requests5m      float64
	Errors5m        float64
	TooMany5m       float64
	TooManyHour     float64
	RequestsLastMin float64
	Budget          int
	BudgetUse       float64 // of the budget, 0..1+
	BudgetBarW      float64
	WaitingCommands float64
	WaitingReads    float64
	InFlight        float64
	Margin          float64 // seconds, the largest of the workers'
	Penalties5m     float64
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.timeout(r.Context())
	defer cancel()
	targets := c.sample(ctx)
	d := overviewData{Events: c.events.state()}
	d.Charts = c.overviewCharts(d.Events)
	d.Lag, d.LagTotal, d.LagErr = c.consumerLag(ctx)
	d.Outbox = c.outbox()
	d.NATS = c.natsHealth(ctx)
	for _, t := range targets {
		ws := workerState{URL: t.URL, Up: t.Err == nil, At: t.At}
		if t.Err != nil {
			ws.Err = t.Err.Error()
		}
		d.Workers = append(d.Workers, ws)
	}
	d.API = c.apiHealth(targets)
	d.Flows = c.flowRows(targets)
	d.Accounts = c.accountRows(targets)
	c.render(w, http.StatusOK, "overview", pageFor(s, "Overview", "overview", d))
}

// overviewCharts draws the per-minute series of the last hour.
func (c *Console) overviewCharts(ev counterState) []chart {
	draw := func(id, title, class, note, series string) chart {
		vals, start := c.series.last(series)
		return newChart(id, title, class, note, vals, start)
	}
	accepted := draw("accepted", "Accepted", "c-accepted",
		"commands this ingest process accepted (into JetStream or its outbox), counted since it started; other ingest processes count their own", seriesAccepted)
	if c.cfg.Local == nil {
		accepted.Unknown = "unknown: this ingest's metrics are not available to the console"
	}
	const evNote = "result events in the EVENTS stream, by the time they were stored"
	charts := []chart{
		accepted,
		draw("succeeded", "Succeeded", "c-succeeded", evNote+" (succeeded and partially_succeeded)", seriesSucceeded),
		draw("retried", "Retried", "c-retried", evNote+" (failed: a retryable failure, tried again)", seriesRetried),
		draw("dead", "Dead-lettered", "c-dead", evNote+" (dead_lettered)", seriesDeadLettered),
	}
	if !ev.Running {
		why := "not counted yet: the console is starting"
		if ev.Err != nil {
			why = "unknown: " + ev.Err.Error()
		}
		for i := 1; i < len(charts); i++ {
			charts[i].Unknown = why
		}
	}
	apiNote := "the workers' altegio_api_requests_total, scraped every " + roundDuration(c.cfg.SampleInterval) + " since this ingest started"
	reqs := draw("api", "API requests", "c-api", apiNote, seriesAPIRequests)
	tooMany := draw("api429", "API 429 answers", "c-dead", apiNote+" (code 429)", seriesAPI429)
	if len(c.cfg.WorkerMetrics) == 0 {
		reqs.Unknown = "unknown: no worker metrics configured (--console-worker-metrics)"
		tooMany.Unknown = reqs.Unknown
	}
	return append(charts, reqs, tooMany)
}

// consumerLag reads the worker consumers' pending and ack-pending counts.
func (c *Console) consumerLag(ctx context.Context) ([]lagRow, uint64, string) {
	rows := make([]lagRow, c.cfg.Partitions)
	var wg sync.WaitGroup
	for p := range rows {
		wg.Go(func() {
			name := topology.WorkerConsumer(p)
			rows[p].Name = name
			cons, err := c.cfg.JS.Consumer(ctx, topology.StreamCommands, name)
			if err != nil {
				rows[p].Err = err.Error()
				return
			}
			info := cons.CachedInfo()
			rows[p].Pending, rows[p].AckPending = info.NumPending, uint64(info.NumAckPending)
			rows[p].Total = rows[p].Pending + rows[p].AckPending
		})
	}
	wg.Wait()
	var total, peak uint64
	failed := 0
	var lastErr string
	for _, r := range rows {
		total += r.Total
		peak = max(peak, r.Total)
		if r.Err != "" {
			failed++
			lastErr = r.Err
		}
	}
	for i := range rows {
		if peak > 0 {
			rows[i].BarW = 100 * float64(rows[i].Total) / float64(peak)
		}
	}
	if failed == len(rows) {
		return nil, 0, "unknown: " + lastErr
	}
	return rows, total, ""
}

// outbox reads this process's outbox gauges.
func (c *Console) outbox() outboxState {
	fams := c.local.last()
	if fams == nil {
		return outboxState{}
	}
	st := outboxState{Known: true}
	st.Entries, st.Enabled = fams.sum(metricOutboxEntries, nil)
	st.Oldest, _ = fams.sum(metricOutboxOldest, nil)
	return st
}

// natsHealth reports the connection and the streams.
func (c *Console) natsHealth(ctx context.Context) natsState {
	st := natsState{}
	if nc := c.cfg.NATS; nc != nil {
		st.Known = true
		st.Status = nc.Status().String()
		st.OK = nc.Status() == nats.CONNECTED
		st.Server = nc.ConnectedServerName()
		if st.OK {
			start := time.Now()
			if err := nc.FlushWithContext(ctx); err != nil {
				st.Err = err.Error()
				st.OK = false
			} else {
				st.RTT = time.Since(start)
			}
		}
	}
	for _, name := range []string{topology.StreamCommands, topology.StreamEvents, topology.StreamDLQ} {
		row := streamRow{Name: name}
		s, err := c.cfg.JS.Stream(ctx, name)
		if err != nil {
			row.Err = err.Error()
		} else {
			info := s.CachedInfo()
			row.Msgs, row.Bytes, row.Consumers = info.State.Msgs, info.State.Bytes, info.State.Consumers
		}
		st.Streams = append(st.Streams, row)
	}
	return st
}

// apiHealth sums the workers' API figures.
func (c *Console) apiHealth(targets []target) apiState {
	st := apiState{Budget: c.cfg.BudgetPerMinute}
	for _, t := range targets {
		if t.Err != nil {
			continue
		}
		st.Known = true
		v, _ := t.fams.sum(metricWaiting, labelIs("class", "commands"))
		st.WaitingCommands += v
		v, _ = t.fams.sum(metricWaiting, labelIs("class", "reads"))
		st.WaitingReads += v
		v, _ = t.fams.sum(metricInFlight, nil)
		st.InFlight += v
		v, _ = t.fams.sum(metricMargin, nil)
		st.Margin = max(st.Margin, v)
	}
	st.Requests5m = c.series.sum(seriesAPIRequests, 5)
	st.Errors5m = c.series.sum(seriesAPIErrors, 5)
	st.TooMany5m = c.series.sum(seriesAPI429, 5)
	st.TooManyHour = c.series.sum(seriesAPI429, windowMinutes)
	st.Penalties5m = c.series.sum(seriesPenalties, 5)
	vals, _ := c.series.last(seriesAPIRequests)
	st.RequestsLastMin = vals[len(vals)-2] // the last complete minute
	if st.Budget > 0 {
		st.BudgetUse = st.RequestsLastMin / float64(st.Budget)
		st.BudgetBarW = min(100*st.BudgetUse, 100)
	}
	switch share := st.Errors5m / max(st.Requests5m, 1); {
	case st.Requests5m == 0:
		st.Health = "idle"
	case share >= 0.5:
		st.Health = "failing"
	case share >= 0.05 || st.TooMany5m > 0:
		st.Health = "degraded"
	default:
		st.Health = "healthy"
	}
	return st
}

// bytesText shows a byte count for people.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
