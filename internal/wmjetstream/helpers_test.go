package wmjetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

const testStream = "T"

// startJetStream runs a server with stream T on subjects t.> and returns
// its URL and a JetStream context.
func startJetStream(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     testStream,
		Subjects: []string{"t.>"},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	return n.URL(), js
}

func newPublisher(t *testing.T, js jetstream.JetStream) *wmjetstream.Publisher {
	t.Helper()
	pub, err := wmjetstream.NewPublisher(js, wmjetstream.PublisherConfig{})
	if err != nil {
		t.Fatalf("new publisher: %v", err)
	}
	return pub
}

// newSubscriber fills in the stream and a short fetch expiry and closes the
// subscriber in t.Cleanup.
func newSubscriber(t *testing.T, js jetstream.JetStream, cfg wmjetstream.SubscriberConfig) *wmjetstream.Subscriber {
	t.Helper()
	cfg.Stream = testStream
	if cfg.FetchExpiry == 0 {
		cfg.FetchExpiry = 200 * time.Millisecond
	}
	sub, err := wmjetstream.NewSubscriber(js, cfg)
	if err != nil {
		t.Fatalf("new subscriber: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

func subscribe(t *testing.T, sub *wmjetstream.Subscriber, topic string) <-chan *message.Message {
	t.Helper()
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
	return ch
}

// receive returns the next message or fails the test after timeout.
func receive(t *testing.T, ch <-chan *message.Message, timeout time.Duration) *message.Message {
	t.Helper()
	select {
	case msg, ok := <-ch:
		if !ok {
			t.Fatal("message channel closed")
		}
		return msg
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
		return nil
	}
}

func consumerInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, testStream, name)
	if err != nil {
		t.Fatalf("consumer %s: %v", name, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer %s info: %v", name, err)
	}
	return info
}

func publish(t *testing.T, pub *wmjetstream.Publisher, topic string, msgs ...*message.Message) {
	t.Helper()
	if err := pub.Publish(topic, msgs...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}
