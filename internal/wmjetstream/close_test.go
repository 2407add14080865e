package wmjetstream_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/testenv/poll"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// TestCloseHandsOverKeyInOrder closes a subscriber that holds the pin of a
// priority group while another process's subscriber is already pulling (as
// every worker pulls every partition). Key k is parked: k0 was retried, and
// k1..k9 are held behind it. The other subscriber must then get k0 first and
// all of k in order, well within the ack wait, whether k0 came back while
// the subscriber closed or is still waiting out its retry delay.
//
// The other subscriber's pull requests wait on the server while the closing
// one holds the pin. Every time the server's delivery loop takes the head of
// its redelivery queue and finds no request it may serve, it puts the message
// back at the tail: the queue rotates. Naks processed in stream order while
// the pin is held therefore reach the next pin holder rotated (k3..k9, k0..k2).
func TestCloseHandsOverKeyInOrder(t *testing.T) {
	const held = 9
	tests := []struct {
		name string
		// delay k0 is retried with.
		delay time.Duration
		// fetchExpiry of the closing subscriber: long enough that k0 comes
		// back into its open pull request while it closes.
		fetchExpiry time.Duration
		// redelivered: k0's redelivery reaches the closing subscriber,
		// which then gives that delivery back; otherwise Close gives back
		// the parked delivery, whose delay has not run out.
		redelivered bool
	}{
		{"k0 redelivered while closing", 300 * time.Millisecond, 2 * time.Second, true},
		{"k0's retry delay outlasts the close", time.Hour, 100 * time.Millisecond, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, js := startJetStream(t)
			pub := newPublisher(t, js)
			topic := "handover" + strconv.Itoa(i)
			cfg := wmjetstream.SubscriberConfig{
				SubjectFunc:   func(string) string { return "t.lanes.*" },
				KeyFunc:       subjectKey,
				PriorityGroup: "workers",
				AckWait:       30 * time.Second,
			}
			publish(t, pub, "t.lanes.k", seqMsg("k", 0))
			publish(t, pub, "t.lanes.b", seqMsg("b", 0))
			for j := 1; j <= held; j++ {
				publish(t, pub, "t.lanes.k", seqMsg("k", j))
			}

			// The closing subscriber: retries k0 once; the handler of b
			// keeps Close waiting until k0 has come back, if it is to.
			closingCfg := cfg
			closingCfg.FetchExpiry = tc.fetchExpiry
			sub1 := newSubscriber(t, js, closingCfg)
			ch1 := subscribe(t, sub1, topic)
			retried, bStarted := make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			var closingHandled []string
			wg.Go(func() {
				for msg := range ch1 {
					info, _ := wmjetstream.Delivery(msg)
					mu.Lock()
					closingHandled = append(closingHandled, info.Key+string(msg.Payload))
					mu.Unlock()
					switch {
					case info.Key == "k" && string(msg.Payload) == "0" && info.NumDelivered == 1:
						wmjetstream.Retry(msg, tc.delay)
						close(retried)
					case info.Key == "b":
						close(bStarted)
						wg.Go(func() {
							<-retried
							if tc.redelivered {
								waitRedelivered(t, js, topic)
							}
							msg.Ack()
						})
					default:
						t.Errorf("closing subscriber handled %s%s (attempt %d)", info.Key, msg.Payload, info.NumDelivered)
						msg.Ack()
					}
				}
			})
			<-retried
			<-bStarted

			// The other process: pulling before the first one closes.
			_, js2 := testenv.Connect(t, url)
			otherCfg := cfg
			otherCfg.FetchExpiry = 500 * time.Millisecond
			sub2 := newSubscriber(t, js2, otherCfg)
			ch2 := subscribe(t, sub2, topic)
			var got []int
			var k0Attempt uint64
			wg2 := sync.WaitGroup{}
			wg2.Go(func() {
				for msg := range ch2 {
					info, _ := wmjetstream.Delivery(msg)
					if info.Key == "k" {
						n, _ := strconv.Atoi(string(msg.Payload))
						mu.Lock()
						got = append(got, n)
						if n == 0 {
							k0Attempt = info.NumDelivered
						}
						mu.Unlock()
					}
					msg.Ack()
				}
			})
			// Its pull requests are waiting on the server, behind the pin.
			testenv.WaitFor(t, 5*time.Second, func() error {
				if n := consumerInfo(t, js, topic).NumWaiting; n == 0 {
					return fmt.Errorf("no pull request waiting")
				}
				return nil
			})

			if err := sub1.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			wg.Wait()
			mu.Lock()
			slices.Sort(closingHandled)
			if want := []string{"b0", "k0"}; !slices.Equal(closingHandled, want) {
				t.Errorf("closing subscriber handled %v, want %v", closingHandled, want)
			}
			mu.Unlock()

			// Well within the ack wait (30 s): nothing waits for an ack timer.
			testenv.WaitFor(t, 10*time.Second, func() error {
				mu.Lock()
				defer mu.Unlock()
				if len(got) < held+1 {
					return fmt.Errorf("other subscriber handled k as %v", got)
				}
				return nil
			})
			if err := sub2.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			wg2.Wait()
			want := make([]int, held+1)
			for j := range want {
				want[j] = j
			}
			// The key's first message goes back while this subscriber still
			// holds the pin, so it reaches the other subscriber first; the
			// rest go back in stream order after the unpin and come in order
			// unless the server rotates its redelivery queue because the
			// receiver has no pull request open at that moment (a window of
			// a round trip). The lanes cannot see such a rotation; the
			// worker's stream check keeps the order in which commands are
			// applied (internal/worker TestOrderAcrossProcessesWhenThePinMoves).
			if len(got) == 0 || got[0] != 0 {
				t.Errorf("other subscriber handled k as %v, want k0 first", got)
			}
			if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, want) {
				t.Errorf("other subscriber handled k as %v, want each of %v once", got, want)
			}
			// k0 came back through the closing subscriber (attempt 2, given
			// back) or straight from its retry delay.
			if wantAttempt := map[bool]uint64{true: 3, false: 2}[tc.redelivered]; k0Attempt != wantAttempt {
				t.Errorf("k0 handled at attempt %d, want %d", k0Attempt, wantAttempt)
			}
			info := consumerInfo(t, js, topic)
			if info.NumAckPending != 0 || info.NumPending != 0 {
				t.Errorf("ack pending %d, pending %d after all was handled", info.NumAckPending, info.NumPending)
			}
		})
	}
}

// waitRedelivered returns once k0 has come back into the closing
// subscriber's open pull request. It runs in a handler, so it reports a
// timeout with t.Errorf.
func waitRedelivered(t *testing.T, js jetstream.JetStream, consumer string) {
	err := poll.Wait(5*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, testStream, consumer)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumRedelivered == 0 {
			return fmt.Errorf("k0 not redelivered")
		}
		return nil
	})
	if err != nil {
		t.Errorf("waiting for k0's redelivery: %v", err)
	}
}
