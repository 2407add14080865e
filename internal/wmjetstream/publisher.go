package wmjetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// UUIDHeader is the NATS header that carries the Watermill message UUID.
	UUIDHeader = "Watermill-Uuid"

	// MsgIDKey is the metadata key (and NATS header) of the JetStream
	// deduplication id. A message published with this metadata key set is
	// deduplicated on it within the stream's Duplicates window; without it
	// the Watermill UUID is used.
	MsgIDKey = jetstream.MsgIDHeader
)

// ErrPublisherClosed is returned by Publish after Close.
var ErrPublisherClosed = errors.New("wmjetstream: publisher closed")

// PublisherConfig configures a [Publisher]. The zero value is valid.
type PublisherConfig struct {
	// SubjectFunc maps a Watermill topic to the NATS subject to publish to.
	// Default: the topic itself.
	SubjectFunc func(topic string) string

	// MsgIDFunc returns the Nats-Msg-Id for a message published to subject;
	// "" publishes without one (no deduplication). Default:
	// [DefaultMsgID], the metadata value of MsgIDKey, else the UUID.
	//
	// JetStream deduplicates per stream, not per subject: the same Watermill
	// message (same UUID) published to two topics of one stream is stored
	// once. Publish copies with new UUIDs, set MsgIDKey, or scope the id by
	// subject here when that is not wanted.
	MsgIDFunc func(subject string, msg *message.Message) string

	// PublishTimeout bounds the wait for each message's PubAck when the
	// caller's context has no deadline. Default: 5s.
	PublishTimeout time.Duration

	// Logger receives Debug logs per message (duplicates). Default: discard.
	Logger *slog.Logger
}

func (c *PublisherConfig) setDefaults() {
	if c.SubjectFunc == nil {
		c.SubjectFunc = func(topic string) string { return topic }
	}
	if c.MsgIDFunc == nil {
		c.MsgIDFunc = DefaultMsgID
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work.
func (c PublisherConfig) Validate() error {
	if c.PublishTimeout < 0 {
		return fmt.Errorf("publish timeout %v is negative", c.PublishTimeout)
	}
	return nil
}

// Publisher publishes Watermill messages to JetStream and waits for each to
// be stored. It is safe for concurrent use. It does not own the connection.
type Publisher struct {
	js     jetstream.JetStream
	cfg    PublisherConfig
	closed atomic.Bool
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher over js. It returns an error if js is nil
// or the config is invalid.
func NewPublisher(js jetstream.JetStream, cfg PublisherConfig) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("wmjetstream: nil jetstream")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("publisher config: %w", err)
	}
	return &Publisher{js: js, cfg: cfg}, nil
}

// Publish publishes msgs in order to the subject of topic, each with its own
// PublishTimeout. See [Publisher.PublishContext].
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	return p.PublishContext(context.Background(), topic, msgs...)
}

// PublishContext publishes msgs in order to the subject of topic and returns
// once the stream has acknowledged each of them, or at the first error
// (earlier messages stay published). A message the stream reports as a
// duplicate of its Nats-Msg-Id counts as published. When ctx has no
// deadline, each message waits at most PublishTimeout. The messages' own
// contexts are not used. It returns [ErrPublisherClosed] after Close.
func (p *Publisher) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return ErrPublisherClosed
	}
	subject := p.cfg.SubjectFunc(topic)
	for _, msg := range msgs {
		if err := p.publish(ctx, subject, msg); err != nil {
			return fmt.Errorf("publish %s to %s: %w", msg.UUID, subject, err)
		}
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, subject string, msg *message.Message) error {
	nm := toNATS(subject, msg)
	if id := p.cfg.MsgIDFunc(subject, msg); id != "" {
		nm.Header[MsgIDKey] = []string{id}
	} else {
		delete(nm.Header, MsgIDKey)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.PublishTimeout)
		defer cancel()
	}
	ack, err := p.js.PublishMsg(ctx, nm)
	if err != nil {
		return err
	}
	if ack.Duplicate {
		p.cfg.Logger.Debug("duplicate publish", "subject", subject,
			"msg_id", nm.Header.Get(MsgIDKey), "stream_seq", ack.Sequence)
	}
	return nil
}

// DefaultMsgID is the default [PublisherConfig.MsgIDFunc]: the metadata
// value of MsgIDKey if set, else the message UUID.
func DefaultMsgID(_ string, msg *message.Message) string {
	if id := msg.Metadata.Get(MsgIDKey); id != "" {
		return id
	}
	return msg.UUID
}

// toNATS turns a Watermill message into a NATS message: metadata become
// headers and the UUID goes to UUIDHeader.
func toNATS(subject string, msg *message.Message) *nats.Msg {
	h := make(nats.Header, len(msg.Metadata)+2)
	for k, v := range msg.Metadata {
		h[k] = []string{v}
	}
	if msg.UUID != "" {
		h[UUIDHeader] = []string{msg.UUID}
	}
	return &nats.Msg{Subject: subject, Header: h, Data: msg.Payload}
}

// Close makes later Publish calls fail with ErrPublisherClosed. Publishes in
// progress finish. It never fails and may be called more than once.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}
