package console

import (
	"sync"
	"time"
)

// window is how far back the per-minute series reach.
const window = time.Hour

// windowMinutes is the number of minutes a chart shows, the current one
// included.
const windowMinutes = 60

// minutes holds named series of counts per wall-clock minute over the last
// hour (older minutes are dropped). Safe for concurrent use.
type minutes struct {
	mu     sync.Mutex
	series map[string]map[int64]float64 // name → unix minute → count
	now    func() time.Time
}

func newMinutes(now func() time.Time) *minutes {
	return &minutes{series: map[string]map[int64]float64{}, now: now}
}

func minuteOf(t time.Time) int64 { return t.Unix() / 60 }

// add counts n at time at in series name; anything older than the window
// is ignored.
func (m *minutes) add(name string, at time.Time, n float64) {
	if n == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := minuteOf(m.now())
	at0 := minuteOf(at)
	if at0 <= cur-windowMinutes {
		return
	}
	s, ok := m.series[name]
	if !ok {
		s = map[int64]float64{}
		m.series[name] = s
	}
	s[at0] += n
	for k := range s {
		if k <= cur-windowMinutes {
			delete(s, k)
		}
	}
}

// last returns the series' counts of the last windowMinutes minutes, the
// oldest first and the current minute last, with the time of the first.
func (m *minutes) last(name string) ([]float64, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := minuteOf(m.now())
	out := make([]float64, windowMinutes)
	s := m.series[name]
	for i := range out {
		out[i] = s[cur-windowMinutes+1+int64(i)]
	}
	return out, time.Unix((cur-windowMinutes+1)*60, 0).UTC()
}

// sum returns the series' total over its last n minutes (the current one
// included).
func (m *minutes) sum(name string, n int) float64 {
	vals, _ := m.last(name)
	total := 0.0
	for _, v := range vals[len(vals)-min(n, len(vals)):] {
		total += v
	}
	return total
}

// reset empties the named series.
func (m *minutes) reset(names ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		delete(m.series, n)
	}
}
