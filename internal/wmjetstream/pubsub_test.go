package wmjetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

func TestPublishDeduplicatesOnMsgID(t *testing.T) {
	_, js := startJetStream(t)
	pub := newPublisher(t, js)

	// Same Nats-Msg-Id metadata, different UUIDs: one message.
	for range 2 {
		msg := message.NewMessage(watermill.NewUUID(), []byte("a"))
		msg.Metadata.Set(wmjetstream.MsgIDKey, "cmd-1")
		publish(t, pub, "t.dedup", msg)
	}
	// No metadata, same UUID: one message.
	publish(t, pub, "t.dedup", message.NewMessage("uuid-2", []byte("b")))
	publish(t, pub, "t.dedup", message.NewMessage("uuid-2", []byte("b")))
	// A different id: stored.
	publish(t, pub, "t.dedup", message.NewMessage("uuid-3", []byte("c")))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, testStream)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if got, want := info.State.Msgs, uint64(3); got != want {
		t.Fatalf("stream holds %d messages, want %d", got, want)
	}
	raw, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("get msg 1: %v", err)
	}
	if got, want := raw.Header.Get(jetstream.MsgIDHeader), "cmd-1"; got != want {
		t.Fatalf("Nats-Msg-Id = %q, want %q", got, want)
	}
}

func TestPublishAfterCloseFails(t *testing.T) {
	_, js := startJetStream(t)
	pub := newPublisher(t, js)
	if err := pub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	err := pub.Publish("t.x", message.NewMessage(watermill.NewUUID(), nil))
	if !errors.Is(err, wmjetstream.ErrPublisherClosed) {
		t.Fatalf("publish after close: %v, want ErrPublisherClosed", err)
	}
}

func TestHeadersAndDeliveryInfo(t *testing.T) {
	_, js := startJetStream(t)
	pub := newPublisher(t, js)
	sub := newSubscriber(t, js, wmjetstream.SubscriberConfig{})

	sent := message.NewMessage(watermill.NewUUID(), []byte(`{"n":1}`))
	sent.Metadata.Set("type", "client.create")
	sent.Metadata.Set("correlation_id", "corr-7")
	publish(t, pub, "t.headers", sent)

	got := receive(t, subscribe(t, sub, "t.headers"), 10*time.Second)
	defer got.Ack()

	if got.UUID != sent.UUID {
		t.Errorf("UUID = %q, want %q", got.UUID, sent.UUID)
	}
	if string(got.Payload) != string(sent.Payload) {
		t.Errorf("payload = %q, want %q", got.Payload, sent.Payload)
	}
	for k, want := range map[string]string{
		"type":               "client.create",
		"correlation_id":     "corr-7",
		wmjetstream.MsgIDKey: sent.UUID,
	} {
		if got := got.Metadata.Get(k); got != want {
			t.Errorf("metadata %s = %q, want %q", k, got, want)
		}
	}
	if v := got.Metadata.Get(wmjetstream.UUIDHeader); v != "" {
		t.Errorf("UUID header leaked into metadata: %q", v)
	}

	info, ok := wmjetstream.Delivery(got)
	if !ok {
		t.Fatal("Delivery: no delivery info")
	}
	want := wmjetstream.DeliveryInfo{
		Stream:       testStream,
		Consumer:     "t_headers",
		Subject:      "t.headers",
		StreamSeq:    1,
		ConsumerSeq:  1,
		NumDelivered: 1,
		NumPending:   0,
		Timestamp:    info.Timestamp,
	}
	if info != want {
		t.Errorf("Delivery = %+v, want %+v", info, want)
	}
	if info.Timestamp.IsZero() {
		t.Error("Delivery timestamp is zero")
	}
	if m, ok := wmjetstream.JetStreamMsg(got); !ok || m.Subject() != "t.headers" {
		t.Errorf("JetStreamMsg = %v, %v", m, ok)
	}
	if _, ok := wmjetstream.Delivery(message.NewMessage("x", nil)); ok {
		t.Error("Delivery reports info for a foreign message")
	}
	if err := wmjetstream.InProgress(message.NewMessage("x", nil)); !errors.Is(err, wmjetstream.ErrNotJetStream) {
		t.Errorf("InProgress on a foreign message: %v, want ErrNotJetStream", err)
	}
}

// TestRedeliveryDelay checks that a retried message comes back after the
// delay, with NumDelivered 2: through Retry, and through the router's Nack
// on a handler error with NackDelay configured.
func TestRedeliveryDelay(t *testing.T) {
	const delay = 700 * time.Millisecond
	tests := []struct {
		name      string
		nackDelay time.Duration
		fail      func(msg *message.Message) error
	}{
		{
			name: "Retry",
			fail: func(msg *message.Message) error {
				if !wmjetstream.Retry(msg, delay) {
					return errors.New("retry not recorded")
				}
				return nil
			},
		},
		{
			name:      "RouterNackWithNackDelay",
			nackDelay: delay,
			fail:      func(*message.Message) error { return errors.New("transient") },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, js := startJetStream(t)
			pub := newPublisher(t, js)
			sub := newSubscriber(t, js, wmjetstream.SubscriberConfig{NackDelay: tc.nackDelay})

			type attempt struct {
				at   time.Time
				info wmjetstream.DeliveryInfo
			}
			attempts := make(chan attempt, 10)
			runRouter(t, sub, "t.retry", func(msg *message.Message) error {
				info, _ := wmjetstream.Delivery(msg)
				attempts <- attempt{at: time.Now(), info: info}
				if info.NumDelivered == 1 {
					return tc.fail(msg)
				}
				return nil
			})
			publish(t, pub, "t.retry", message.NewMessage(watermill.NewUUID(), []byte("x")))

			first := <-attempts
			var second attempt
			select {
			case second = <-attempts:
			case <-time.After(10 * time.Second):
				t.Fatal("no redelivery")
			}
			if got := second.at.Sub(first.at); got < delay {
				t.Errorf("redelivered after %v, want at least %v", got, delay)
			}
			if got, want := second.info.NumDelivered, uint64(2); got != want {
				t.Errorf("NumDelivered = %d, want %d", got, want)
			}
			if got, want := second.info.StreamSeq, first.info.StreamSeq; got != want {
				t.Errorf("StreamSeq = %d, want %d", got, want)
			}
			testenv.WaitFor(t, 5*time.Second, func() error {
				if n := consumerInfo(t, js, "t_retry").NumAckPending; n != 0 {
					return fmt.Errorf("%d messages pending ack", n)
				}
				return nil
			})
		})
	}
}

func TestTerminateDoesNotRedeliver(t *testing.T) {
	url, js := startJetStream(t)
	nc, _ := testenv.Connect(t, url)
	advisories, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>")
	if err != nil {
		t.Fatalf("subscribe advisories: %v", err)
	}
	pub := newPublisher(t, js)
	sub := newSubscriber(t, js, wmjetstream.SubscriberConfig{})
	ch := subscribe(t, sub, "t.term")

	publish(t, pub, "t.term", message.NewMessage("bad", []byte("x")))
	msg := receive(t, ch, 10*time.Second)
	if !wmjetstream.Terminate(msg, "invalid command") {
		t.Fatal("Terminate not recorded")
	}

	adv, err := advisories.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no terminated advisory: %v", err)
	}
	var got struct {
		StreamSeq uint64 `json:"stream_seq"`
		Reason    string `json:"reason"`
	}
	if err := json.Unmarshal(adv.Data, &got); err != nil {
		t.Fatalf("decode advisory: %v", err)
	}
	if got.StreamSeq != 1 || got.Reason != "invalid command" {
		t.Errorf("advisory = %+v, want stream_seq 1, reason %q", got, "invalid command")
	}

	// The next message is delivered; the terminated one never again.
	publish(t, pub, "t.term", message.NewMessage("good", []byte("x")))
	next := receive(t, ch, 10*time.Second)
	if next.UUID != "good" {
		t.Fatalf("received %q after Terminate, want %q", next.UUID, "good")
	}
	next.Ack()
	testenv.WaitFor(t, 5*time.Second, func() error {
		info := consumerInfo(t, js, "t_term")
		if info.NumAckPending != 0 || info.NumRedelivered != 0 || info.Delivered.Stream != 2 {
			return fmt.Errorf("ack pending %d, redelivered %d, delivered up to %d",
				info.NumAckPending, info.NumRedelivered, info.Delivered.Stream)
		}
		return nil
	})
}

// TestKeepAlive holds a message for several AckWaits. With the default
// KeepAlive (AckWait/3) it is not redelivered; with a KeepAlive longer than
// AckWait it is, which shows the test can tell the difference. The test
// counts the keep-alives the subscriber sends instead of watching the clock.
func TestKeepAlive(t *testing.T) {
	const ackWait = 500 * time.Millisecond
	tests := []struct {
		name      string
		keepAlive time.Duration
	}{
		{name: "Default"},
		{name: "TooLong", keepAlive: time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, js := startJetStream(t)
			// Every keep-alive is an in-progress ack (+WPI) on the
			// message's reply subject.
			var keptAlive atomic.Int32
			acks, err := js.Conn().Subscribe("$JS.ACK."+testStream+".t_slow.>", func(m *nats.Msg) {
				if string(m.Data) == "+WPI" {
					keptAlive.Add(1)
				}
			})
			if err != nil {
				t.Fatalf("subscribe to acks: %v", err)
			}
			t.Cleanup(func() { _ = acks.Unsubscribe() })
			pub := newPublisher(t, js)
			sub := newSubscriber(t, js, wmjetstream.SubscriberConfig{AckWait: ackWait, KeepAlive: tc.keepAlive})
			ch := subscribe(t, sub, "t.slow")
			publish(t, pub, "t.slow", message.NewMessage(watermill.NewUUID(), []byte("x")))
			msg := receive(t, ch, 10*time.Second)

			// A slow handler.
			if tc.keepAlive == 0 {
				// Twelve keep-alives span four ack waits: without them the
				// server would have redelivered the message.
				testenv.WaitFor(t, 10*time.Second, func() error {
					if n := keptAlive.Load(); n < 12 {
						return fmt.Errorf("%d keep-alives sent", n)
					}
					return nil
				})
				if n := consumerInfo(t, js, "t_slow").NumRedelivered; n != 0 {
					t.Fatalf("%d redelivered despite the keep-alives", n)
				}
			} else {
				testenv.WaitFor(t, 10*time.Second, func() error {
					if consumerInfo(t, js, "t_slow").NumRedelivered == 0 {
						return fmt.Errorf("not redelivered")
					}
					return nil
				})
			}
			msg.Ack()
			testenv.WaitFor(t, 5*time.Second, func() error {
				if n := consumerInfo(t, js, "t_slow").NumAckPending; n != 0 {
					return fmt.Errorf("%d messages pending ack", n)
				}
				return nil
			})
		})
	}
}

// runRouter runs a Watermill router with one handler on topic and closes it
// in t.Cleanup.
func runRouter(t *testing.T, sub message.Subscriber, topic string, h message.NoPublishHandlerFunc) {
	t.Helper()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("new router: %v", err)
	}
	router.AddConsumerHandler("h", topic, sub, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	<-router.Running()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	})
}
