package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BareConfig configures RunBare.
type BareConfig struct {
	// NATSURL is the server. Required.
	NATSURL string
	// Stream holds the commands; RunBare reads it with a durable pull
	// consumer named "bare". Required.
	Stream string
	// APIURL is the API base URL, …/api/v1. Required.
	APIURL string
	// PartnerToken and UserToken authenticate the calls. Required.
	PartnerToken, UserToken string
	// Count is how many messages to handle before returning. Required.
	Count int
	// Concurrency is how many messages are handled at once. Default 32,
	// the worker's default: 8 partitions × 4 in flight.
	Concurrency int
}

// BareReport is what RunBare did. Times are Unix nanoseconds.
type BareReport struct {
	Acked     int   `json:"acked"`
	APIErrors int   `json:"api_errors"`
	FirstAck  int64 `json:"first_ack_unix_nano"`
	LastAck   int64 `json:"last_ack_unix_nano"`
}

// RunBare is the drain scenario's reference: the least a consumer must do
// per command. It fetches cfg.Count commands from a plain JetStream pull
// consumer, sends each one's payload to POST /clients/{location_id} with
// the headers the API client sends, and acknowledges the message (waiting
// for the server's confirmation, as the worker does), nothing else. An
// answer other than 201 is counted, and the message acknowledged all the
// same. It returns when Count messages are acknowledged or ctx ends.
func RunBare(ctx context.Context, cfg BareConfig) (BareReport, error) {
	var rep BareReport
	if cfg.NATSURL == "" || cfg.Stream == "" || cfg.APIURL == "" || cfg.Count <= 0 {
		return rep, errors.New("bare: NATS URL, stream, API URL and a positive count are required")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("bench-bare"))
	if err != nil {
		return rep, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return rep, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       "bare",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 4 * cfg.Concurrency,
	})
	if err != nil {
		return rep, fmt.Errorf("bare: consumer: %w", err)
	}
	msgs := make(chan jetstream.Msg, cfg.Concurrency)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(2*cfg.Concurrency))
	if err != nil {
		return rep, fmt.Errorf("bare: consume: %w", err)
	}
	defer cc.Stop()

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.Concurrency
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	auth := "Bearer " + cfg.PartnerToken + ", User " + cfg.UserToken
	base := strings.TrimRight(cfg.APIURL, "/")

	var (
		acked, apiErrors atomic.Int64
		first, last      atomic.Int64
		mu               sync.Mutex
		firstErr         error
		wg               sync.WaitGroup
	)
	done := make(chan struct{})
	var closeDone sync.Once
	for range cfg.Concurrency {
		wg.Go(func() {
			for {
				var m jetstream.Msg
				select {
				case m = <-msgs:
				case <-done:
					return
				case <-ctx.Done():
					return
				}
				ok, err := bareCall(ctx, client, base, auth, m.Data())
				if err == nil {
					err = m.DoubleAck(ctx)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					closeDone.Do(func() { close(done) })
					return
				}
				if !ok {
					apiErrors.Add(1)
				}
				now := time.Now().UnixNano()
				first.CompareAndSwap(0, now)
				last.Store(now)
				if acked.Add(1) >= int64(cfg.Count) {
					closeDone.Do(func() { close(done) })
					return
				}
			}
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	wg.Wait()
	rep = BareReport{Acked: int(acked.Load()), APIErrors: int(apiErrors.Load()), FirstAck: first.Load(), LastAck: last.Load()}
	if firstErr != nil {
		return rep, fmt.Errorf("bare: %w", firstErr)
	}
	if rep.Acked < cfg.Count {
		return rep, fmt.Errorf("bare: %d of %d acknowledged: %w", rep.Acked, cfg.Count, ctx.Err())
	}
	return rep, nil
}

// bareCall posts a command's payload to POST /clients/{location_id} and
// reports whether the API answered 201.
func bareCall(ctx context.Context, c *http.Client, base, auth string, data []byte) (bool, error) {
	var cmd struct {
		LocationID int64           `json:"location_id"`
		Payload    json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(data, &cmd); err != nil {
		return false, fmt.Errorf("decode command: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/clients/%d", base, cmd.LocationID), bytes.NewReader(cmd.Payload))
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", apiMediaType)
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusCreated, nil
}
