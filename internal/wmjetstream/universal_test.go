package wmjetstream_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// TestUniversalPubSub runs Watermill's universal Pub/Sub suite twice against
// one in-process server: with the default unordered subscriber, and with a
// single ordered lane (a constant KeyFunc), which is the only configuration
// in which the subscriber guarantees order (one subscriber per consumer).
//
// Both runs use the suite's reduced message counts (ForceShort) so that the
// package's default test run stays around a minute on a shared two-core
// machine; set WMJETSTREAM_UNIVERSAL_FULL=1 for the full counts of the
// unordered run (5000–10000 messages per test, several minutes under -race).
func TestUniversalPubSub(t *testing.T) {
	full := os.Getenv("WMJETSTREAM_UNIVERSAL_FULL") == "1" && !testing.Short()
	for _, tc := range []struct {
		name    string
		keyFunc wmjetstream.KeyFunc
	}{
		{name: "Unordered"},
		{name: "SingleLane", keyFunc: func(string, nats.Header) string { return "all" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testenv.RunJetStream(t)
			_, js := testenv.Connect(t, n.URL())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
				Name:     "WM",
				Subjects: []string{"wm.>"},
				Storage:  jetstream.MemoryStorage,
			}); err != nil {
				t.Fatalf("create stream: %v", err)
			}

			ordered := tc.keyFunc != nil
			features := tests.Features{
				ConsumerGroups:                      true,
				ExactlyOnceDelivery:                 false,
				GuaranteedOrder:                     ordered,
				GuaranteedOrderWithSingleSubscriber: ordered,
				Persistent:                          true,
				// Subscribers of one consumer group share a durable, so a
				// new subscriber does not see what the group consumed.
				NewSubscriberReceivesOldMessages: false,
				GenerateTopicFunc:                func(tctx tests.TestContext) string { return "wm." + string(tctx.TestID) },
				ForceShort:                       ordered || !full,
			}
			constructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
				_, js := testenv.Connect(t, n.URL())
				pub, err := wmjetstream.NewPublisher(js, wmjetstream.PublisherConfig{
					// The suite publishes the same message (same UUID) to
					// several topics, all in one stream here.
					MsgIDFunc: func(subject string, msg *message.Message) string { return subject + "/" + msg.UUID },
				})
				if err != nil {
					t.Fatalf("new publisher: %v", err)
				}
				sub, err := wmjetstream.NewSubscriber(js, wmjetstream.SubscriberConfig{
					Stream:        "WM",
					ConsumerGroup: group,
					FetchExpiry:   200 * time.Millisecond,
					CloseTimeout:  time.Second,
					KeyFunc:       tc.keyFunc,
				})
				if err != nil {
					t.Fatalf("new subscriber: %v", err)
				}
				return pub, sub
			}
			tests.TestPubSub(t, features,
				func(t *testing.T) (message.Publisher, message.Subscriber) { return constructor(t, "") },
				constructor,
			)
		})
	}
}
