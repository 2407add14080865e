package wmjetstream

import (
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotJetStream is returned by helpers given a message that was not
// emitted by a [Subscriber] (or whose context no longer derives from the one
// the subscriber set).
var ErrNotJetStream = errors.New("wmjetstream: message not delivered by a jetstream subscriber")

// DeliveryInfo describes one delivery of a JetStream message to a handler.
type DeliveryInfo struct {
	// Stream and Consumer name where the message was delivered from.
	Stream, Consumer string
	// Subject the message was published to.
	Subject string
	// StreamSeq is the message's sequence in the stream; it identifies the
	// message across redeliveries.
	StreamSeq uint64
	// ConsumerSeq is the consumer's delivery sequence; it grows with every
	// delivery, redeliveries included.
	ConsumerSeq uint64
	// NumDelivered counts deliveries of this message, this one included
	// (1 on the first delivery).
	NumDelivered uint64
	// NumPending is the number of messages matching the consumer that had
	// not been delivered yet when this one was.
	NumPending uint64
	// Timestamp is when the stream stored the message.
	Timestamp time.Time
	// Key is the lane key from [SubscriberConfig.KeyFunc], empty without one.
	Key string
}

type dispositionKind int

const (
	// dispNack is a plain msg.Nack(): Nak, or NakWithDelay(NackDelay).
	dispNack dispositionKind = iota
	dispRetry
	dispTerm
)

type disposition struct {
	kind   dispositionKind
	delay  time.Duration
	reason string
}

// delivery is the per-message state the subscriber keeps in the context of
// each emitted message. Handlers reach it through the package helpers.
type delivery struct {
	info DeliveryInfo // immutable once the message is emitted

	mu     sync.Mutex
	js     jetstream.Msg // latest delivery; replaced if the server redelivers
	disp   disposition
	sealed bool // the subscriber has read disp; later changes are ignored
}

func (d *delivery) msg() jetstream.Msg {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.js
}

func (d *delivery) setMsg(m jetstream.Msg) {
	d.mu.Lock()
	d.js = m
	d.mu.Unlock()
}

// record stores a disposition unless the subscriber has already acted.
func (d *delivery) record(disp disposition) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sealed {
		return false
	}
	d.disp = disp
	return true
}

// seal returns the disposition and freezes it.
func (d *delivery) seal() disposition {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sealed = true
	return d.disp
}

type deliveryKey struct{}

func deliveryOf(msg *message.Message) (*delivery, bool) {
	if msg == nil {
		return nil, false
	}
	d, ok := msg.Context().Value(deliveryKey{}).(*delivery)
	return d, ok
}

// Delivery returns the delivery information of a message emitted by a
// [Subscriber]. ok is false for any other message. Safe for concurrent use.
func Delivery(msg *message.Message) (info DeliveryInfo, ok bool) {
	d, ok := deliveryOf(msg)
	if !ok {
		return DeliveryInfo{}, false
	}
	return d.info, true
}

// JetStreamMsg returns the underlying jetstream.Msg of a message emitted by a
// [Subscriber] (the latest delivery of it). Handlers should settle the message
// through msg.Ack, msg.Nack, [Retry] or [Terminate], not through the returned
// value, or the subscriber's lane bookkeeping is bypassed.
func JetStreamMsg(msg *message.Message) (jetstream.Msg, bool) {
	d, ok := deliveryOf(msg)
	if !ok {
		return nil, false
	}
	return d.msg(), true
}

// InProgress tells the server that msg is still being worked on, resetting
// its ack timer. The subscriber already does this every KeepAlive for
// messages out to handlers; call it before a single step that may outlast
// AckWait. It returns [ErrNotJetStream] for a message not emitted by a
// Subscriber, and the publish error otherwise. Safe for concurrent use.
func InProgress(msg *message.Message) error {
	d, ok := deliveryOf(msg)
	if !ok {
		return ErrNotJetStream
	}
	return d.msg().InProgress()
}

// Retry asks for msg to be redelivered after delay (NakWithDelay; a delay of
// zero or less means an immediate Nak) and nacks it. With ordered lanes the
// message's key stays parked until the redelivery is acked or terminated.
//
// It reports whether the disposition was recorded: false if msg was not
// emitted by a Subscriber or was already acked or nacked, in which case it
// only calls msg.Nack() (a no-op on an acked message).
func Retry(msg *message.Message, delay time.Duration) bool {
	if delay < 0 {
		delay = 0
	}
	return settle(msg, disposition{kind: dispRetry, delay: delay})
}

// Terminate asks the server never to redeliver msg (TermWithReason; the
// reason appears in the server's terminated advisory) and nacks it. With
// ordered lanes the next message of the key is emitted after it.
//
// It reports whether the disposition was recorded, as [Retry] does.
func Terminate(msg *message.Message, reason string) bool {
	return settle(msg, disposition{kind: dispTerm, reason: reason})
}

func settle(msg *message.Message, disp disposition) bool {
	d, ok := deliveryOf(msg)
	if !ok {
		msg.Nack()
		return false
	}
	select {
	case <-msg.Acked():
		return false
	case <-msg.Nacked():
		return false
	default:
	}
	recorded := d.record(disp)
	// Nack after recording: the subscriber reads the disposition only once
	// it has seen the Nack.
	return msg.Nack() && recorded
}
