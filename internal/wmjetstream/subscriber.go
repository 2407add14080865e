package wmjetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrSubscriberClosed is returned by Subscribe after Close.
var ErrSubscriberClosed = errors.New("wmjetstream: subscriber closed")

// KeyFunc returns the ordering key (lane) of a message from its subject and
// headers. It is called from the subscriber's loop and must be fast and
// must not block or keep headers.
type KeyFunc func(subject string, headers nats.Header) string

// SubscriberConfig configures a [Subscriber]. Stream is required; every other
// field has the documented default.
type SubscriberConfig struct {
	// Stream is the name of the stream the consumers read from. The stream
	// must exist; the subscriber does not create it. Required.
	Stream string

	// SubjectFunc maps a topic to the filter subject of its default consumer.
	// Default: the topic itself.
	SubjectFunc func(topic string) string

	// ConsumerGroup names the durable consumer shared by every subscriber of
	// the same group and topic: the default consumer is named
	// "<group>_<topic>" (or "<topic>" without a group), with characters that
	// NATS does not allow in names replaced by '_'.
	ConsumerGroup string

	// ConsumerConfig returns the consumer config for a topic. With Bind
	// false the subscriber creates or updates the consumer with it; with Bind
	// true it only looks up the consumer named by its Durable (or Name).
	// Default: [SubscriberConfig.DefaultConsumerConfig].
	ConsumerConfig func(topic string) jetstream.ConsumerConfig

	// Bind makes Subscribe use an existing consumer and fail if it is
	// missing, instead of creating or updating it. Default: false.
	Bind bool

	// AckWait and MaxDeliver are used by the default consumer config.
	// Defaults: 30s and unlimited (0).
	AckWait    time.Duration
	MaxDeliver int

	// MaxInFlight bounds the messages out to handlers (emitted, not yet
	// settled) per Subscribe call; the subscriber fetches only as many as
	// there are free slots. Default: 16.
	MaxInFlight int

	// MaxHeld bounds the messages held back behind a busy or parked lane
	// (KeyFunc only): a pull request never asks for more messages than
	// could still be held. At the bound the subscriber stops fetching,
	// except to collect a parked message that has come due, one message at
	// a time (the server hands out redeliveries first); such a fetch may
	// exceed the bound by one message. The default consumer config also sets
	// MaxAckPending to MaxInFlight+MaxHeld so that the server enforces it
	// (at least one held). -1 holds nothing: the subscriber fetches only
	// for free handler slots, as without KeyFunc, which leaves a lane's
	// later messages on the server while its active one runs (the worker's
	// tests use it to make another process receive them). Default: 256.
	MaxHeld int

	// KeepAlive is the interval at which every message in the subscriber's
	// custody (out to a handler, waiting, or held) is sent InProgress.
	// Default: a third of the consumer's AckWait (or of its shortest BackOff
	// step, if smaller).
	KeepAlive time.Duration

	// FetchExpiry is how long one pull request waits on the server for
	// messages. Close waits for the pull requests in flight to end, so it
	// also bounds the start of shutdown. Default: 1s.
	FetchExpiry time.Duration

	// AckTimeout bounds the wait for the server to confirm an ack
	// (DoubleAck). Default: 5s.
	AckTimeout time.Duration

	// NackDelay is the redelivery delay for a plain msg.Nack() (which is
	// what Watermill's router does when a handler returns an error). Zero
	// means an immediate Nak. Default: 0.
	NackDelay time.Duration

	// CloseTimeout bounds how long Close (or cancelling the Subscribe
	// context) waits for handlers to settle the messages they hold. After it
	// their contexts are cancelled and the messages are nacked. Default: 10s.
	CloseTimeout time.Duration

	// KeyFunc, when set, turns on ordered lanes: see the package
	// documentation. Default: nil (no ordering; up to MaxInFlight messages
	// out at once in any order).
	KeyFunc KeyFunc

	// PriorityGroup, when set, is sent with every pull request. With a
	// consumer whose PriorityPolicy is PriorityPolicyPinned, one client at a
	// time receives its messages, which ordered lanes need when several
	// processes share a consumer. The default consumer config sets the
	// pinned policy with this group. Default: "".
	PriorityGroup string

	// Logger receives warnings (ack failures, stalled lanes) and Debug logs
	// per message. Default: discard.
	Logger *slog.Logger
}

func (c *SubscriberConfig) setDefaults() {
	if c.SubjectFunc == nil {
		c.SubjectFunc = func(topic string) string { return topic }
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 16
	}
	if c.MaxHeld == 0 {
		c.MaxHeld = 256
	}
	if c.FetchExpiry == 0 {
		c.FetchExpiry = time.Second
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ConsumerConfig == nil {
		c.ConsumerConfig = c.DefaultConsumerConfig
	}
}

// Validate reports a configuration that cannot work.
func (c SubscriberConfig) Validate() error {
	var errs []error
	if c.Stream == "" {
		errs = append(errs, errors.New("stream is required"))
	}
	if c.MaxInFlight < 0 || c.MaxHeld < -1 {
		errs = append(errs, fmt.Errorf("max in flight %d must not be negative, max held %d not below -1", c.MaxInFlight, c.MaxHeld))
	}
	for name, d := range map[string]time.Duration{
		"ack wait": c.AckWait, "keep alive": c.KeepAlive, "fetch expiry": c.FetchExpiry,
		"ack timeout": c.AckTimeout, "nack delay": c.NackDelay, "close timeout": c.CloseTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name, d))
		}
	}
	return errors.Join(errs...)
}

// ConsumerName returns the name of the default durable consumer for topic:
// "<group>_<topic>", or the topic alone without a group, with '.', '*', '>',
// path separators and whitespace replaced by '_'.
func (c SubscriberConfig) ConsumerName(topic string) string {
	name := topic
	if c.ConsumerGroup != "" {
		name = c.ConsumerGroup + "_" + topic
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', '/', '\\', ' ', '\t', '\n', '\r':
			return '_'
		}
		return r
	}, name)
}

// DefaultConsumerConfig is the consumer config used when ConsumerConfig is
// nil: a durable named [SubscriberConfig.ConsumerName] filtered on
// SubjectFunc(topic), explicit ack, deliver all, AckWait, MaxDeliver,
// MaxAckPending = MaxInFlight + MaxHeld, and, when PriorityGroup is set, the
// pinned priority policy with PinnedTTL = 2 × AckWait. Call it on a config with defaults applied (as the
// subscriber does) or set the fields it reads.
func (c SubscriberConfig) DefaultConsumerConfig(topic string) jetstream.ConsumerConfig {
	subject := topic
	if c.SubjectFunc != nil {
		subject = c.SubjectFunc(topic)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       c.ConsumerName(topic),
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxInFlight + max(c.MaxHeld, 1),
	}
	if c.PriorityGroup != "" {
		cc.PriorityPolicy = jetstream.PriorityPolicyPinned
		cc.PriorityGroups = []string{c.PriorityGroup}
		// A new client gets the pin only once every message of a crashed
		// one has come due (see the package doc on order after a crash).
		cc.PinnedTTL = 2 * c.AckWait
	}
	return cc
}

// Subscriber consumes JetStream messages for Watermill. Subscribe may be
// called many times (each call runs its own fetch loop); Subscribe and Close
// are safe for concurrent use. It does not own the connection.
type Subscriber struct {
	js  jetstream.JetStream
	cfg SubscriberConfig

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
	live    map[*subscription]struct{} // running subscriptions, under mu
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber returns a Subscriber over js. It returns an error if js is
// nil or the config is invalid.
func NewSubscriber(js jetstream.JetStream, cfg SubscriberConfig) (*Subscriber, error) {
	if js == nil {
		return nil, errors.New("wmjetstream: nil jetstream")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("subscriber config: %w", err)
	}
	return &Subscriber{js: js, cfg: cfg, closing: make(chan struct{}), live: make(map[*subscription]struct{})}, nil
}

// SubscribeInitialize creates or updates the consumer of topic (or, with
// Bind, checks that it exists) without consuming.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.consumer(ctx, topic)
	return err
}

func (s *Subscriber) consumer(ctx context.Context, topic string) (jetstream.Consumer, error) {
	cc := s.cfg.ConsumerConfig(topic)
	if s.cfg.Bind {
		name := cc.Durable
		if name == "" {
			name = cc.Name
		}
		c, err := s.js.Consumer(ctx, s.cfg.Stream, name)
		if err != nil {
			return nil, fmt.Errorf("bind consumer %s on stream %s: %w", name, s.cfg.Stream, err)
		}
		return c, nil
	}
	c, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on stream %s: %w", cc.Durable, s.cfg.Stream, err)
	}
	return c, nil
}

// Subscribe binds to or creates the consumer of topic and returns the channel
// of its messages. The channel is unbuffered and closed after ctx is
// cancelled or Close is called, once the subscription has shut down (see
// [SubscriberConfig.CloseTimeout]). The context of each message keeps ctx's
// values but not its cancellation, and is cancelled once the message is
// settled or abandoned at shutdown.
//
// It returns [ErrSubscriberClosed] after Close, or the error of looking up
// or creating the consumer.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSubscriberClosed
	}
	s.wg.Add(1) // under mu so that Close cannot miss it
	s.mu.Unlock()

	cons, err := s.consumer(ctx, topic)
	if err != nil {
		s.wg.Done()
		return nil, err
	}
	sub := newSubscription(s.cfg, topic, s.js.Conn(), cons, context.WithoutCancel(ctx))
	if s.cfg.PriorityGroup != "" {
		stream, name, group := s.cfg.Stream, sub.consumer, s.cfg.PriorityGroup
		sub.unpin = func(ctx context.Context) error { return Unpin(ctx, s.js, stream, name, group) }
	}
	s.mu.Lock()
	s.live[sub] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.live, sub)
			s.mu.Unlock()
		}()
		sub.run(ctx, s.closing)
	}()
	return sub.out, nil
}

// Pins returns the pin ids of the priority group under which the running
// subscriptions last received messages (a subscription that holds a pin but
// has received nothing under it does not know it yet). A subscription
// reports its pin until it has shut down, after it released the pin. Safe
// for concurrent use.
func (s *Subscriber) Pins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pins []string
	for sub := range s.live {
		if p := sub.pin.Load(); p != nil {
			pins = append(pins, *p)
		}
	}
	return pins
}

// Close stops every subscription: no more fetching, handlers get
// CloseTimeout to settle what they hold, everything else is nacked back to
// the server, and the message channels are closed. It returns when all of
// that is done. It never fails and may be called more than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
