package outbox

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/testenv"
)

// benchEntry is a command-sized entry (about 300 bytes of JSON).
func benchEntry(i int64) Entry {
	return Entry{
		Subject: "altegio.cmd.123.crm-42.client.create",
		MsgID:   fmt.Sprintf("0193f3c2-0000-7000-8000-%012d", i),
		Data: fmt.Appendf(nil, `{"id":"0193f3c2-0000-7000-8000-%012d","type":"client.create","location_id":123,`+
			`"client_ref":"crm-42","payload":{"name":"Jane Doe","phone":"+79990000000","email":"jane@example.com"},`+
			`"correlation_id":"req-1","occurred_at":"2026-11-30T10:00:00Z"}`, i),
	}
}

// BenchmarkAppend measures durable appends (each committed and fsynced
// before Append returns), one caller at a time and from many goroutines,
// where group commit shares an fsync between callers.
func BenchmarkAppend(b *testing.B) {
	cases := []struct {
		name        string
		parallelism int // goroutines per GOMAXPROCS; 0 is serial
		window      time.Duration
	}{
		{name: "serial"},
		{name: "parallel-64", parallelism: 32},
		{name: "parallel-64-window-1ms", parallelism: 32, window: time.Millisecond},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			o := openTest(b, tempPath(b), Config{MaxEntries: 1 << 30, MaxBytes: 1 << 40, BatchWindow: bc.window})
			ctx := context.Background()
			var seq atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			if bc.parallelism == 0 {
				for i := 0; i < b.N; i++ {
					if err := o.Append(ctx, benchEntry(seq.Add(1))); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(bc.parallelism)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := o.Append(ctx, benchEntry(seq.Add(1))); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.StopTimer()
			reportAppends(b, o)
		})
	}
}

func reportAppends(b *testing.B, o *Outbox) {
	b.Helper()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	commits, entries := histogramCount(b, o.metrics.batchSize)
	if commits > 0 {
		b.ReportMetric(entries/float64(commits), "entries/commit")
	}
}

// BenchmarkRelay measures how fast the relay drains the outbox into an
// in-process JetStream server: one publish and PubAck at a time, in order.
func BenchmarkRelay(b *testing.B) {
	n := testenv.RunJetStream(b)
	_, js := testenv.Connect(b, n.URL())
	createStream(b, js, jetstream.StreamConfig{Name: "CMD", Subjects: []string{"altegio.cmd.>"}})
	o := openTest(b, tempPath(b), Config{MaxEntries: 1 << 30, MaxBytes: 1 << 40})

	ctx := context.Background()
	batch := make([]Entry, 0, 500)
	for i := 0; i < b.N; i++ {
		batch = append(batch, benchEntry(int64(i)))
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := o.Append(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	startRelay(b, o, js)
	flush(b, o, 10*time.Minute)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "relayed/s")
}
