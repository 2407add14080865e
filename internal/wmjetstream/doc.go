// Package wmjetstream is a small Watermill Publisher and Subscriber over the
// nats.go jetstream API.
//
// It exists because watermill-nats cannot express what the worker needs per
// message: NakWithDelay, Term with a reason, InProgress, the delivery count,
// and keeping a caller-chosen Nats-Msg-Id for publish deduplication.
//
// # Publishing
//
// [Publisher.Publish] sends each message to subject = topic (or
// [PublisherConfig.SubjectFunc]), copies metadata to NATS headers, stores the
// Watermill UUID in the [UUIDHeader] header, sets Nats-Msg-Id to the metadata
// value of [MsgIDKey] or else the UUID ([PublisherConfig.MsgIDFunc]), and
// waits for the stream's PubAck. Deduplication is per stream, not per
// subject.
//
// # Consuming
//
// [Subscriber.Subscribe] binds to (or creates) one durable pull consumer per
// topic and pulls with Fetch, asking only for as many messages as there are
// free handler slots ([SubscriberConfig.MaxInFlight]): the ack-wait clock of
// a message starts when the server hands it out, so nothing waits in a large
// client-side buffer. Every message in the subscriber's custody (out to a
// handler, waiting to be emitted, or held for its lane) is kept alive with
// InProgress every [SubscriberConfig.KeepAlive].
//
// # Dispositions
//
// Handlers decide per message:
//
//   - msg.Ack() → DoubleAck: the subscriber waits for the server to confirm
//     the ack (bounded by [SubscriberConfig.AckTimeout]).
//   - msg.Nack() → Nak, or NakWithDelay([SubscriberConfig.NackDelay]) when
//     set. This is what Watermill's router does when a handler fails.
//   - [Retry](msg, d) → NakWithDelay(d).
//   - [Terminate](msg, reason) → TermWithReason(reason): never redelivered.
//
// [Delivery] reads the stream and consumer sequence, delivery count and
// subject of a message; [InProgress] resets its ack timer from a handler.
// Both work through msg.Context(), so middleware that replaces the context
// must derive the new one from the old (Watermill's does).
//
// # Ordered lanes
//
// With [SubscriberConfig.KeyFunc] set, messages with the same key form a
// lane and are handed out strictly one at a time in stream order. A message
// that is nacked or retried parks its lane: later messages of the key are
// held inside the subscriber (kept alive, not emitted) until the parked
// message is redelivered — recognised by its stream sequence — and finally
// acked or terminated. An older message of the key that arrives meanwhile
// (first delivered elsewhere, e.g. before a pin moved) goes ahead of the
// parked one. A parked message that does not come back within its delay plus
// one redelivery period releases its lane (logged as a warning). Other lanes
// proceed in parallel up to MaxInFlight.
//
// Order holds only while one subscriber at a time consumes a consumer: use
// one consumer per partition with [SubscriberConfig.PriorityGroup] (pinned
// client) when several processes run.
//
// Close keeps order for the next subscriber: it gives back everything in its
// custody — held, waiting, abandoned, and parked messages, whose retry delay
// is cut short — as immediate Naks in stream order (through the latest
// delivery of each: a parked message the server redelivered while Close
// waited is given back through that delivery), and waits until the server
// has processed them. The server redelivers nacked messages before new ones,
// in the order it processed the naks — except while the pin of a priority
// group belongs to a client with no pull request open and other clients'
// requests wait: then every wake-up of the server's delivery loop moves the
// head of its redelivery queue to the tail, and the queue rotates. So with a
// PriorityGroup, Close gives back the first message of each key while it
// still holds the pin (rotating one message per key cannot reorder a key),
// then unpins, then gives back the rest in stream order; they reach the new
// pin holder while it has the first message of their key in hand, and its
// lanes hold them behind it. If the new holder has no pull request open
// when they come back, the server can still rotate them; callers that need
// a strict order must check it where the order matters (the worker checks
// the stream for an older stored message of the key before it acts).
//
// After a crash nothing is given back: each message comes back when its ack
// timer runs out, and the server queues expired messages in stream order.
// Order survives if (1) every retry delay of an ordered lane stays below
// AckWait − KeepAlive, so that a parked message comes due before the messages
// held behind it (the subscriber logs a warning otherwise), and (2) no
// subscriber pulls from the consumer until all of the crashed one's messages
// have come due, or messages never delivered to it would overtake them. With
// a pinned priority group, a PinnedTTL of at least AckWait plus the longest
// retry delay gives (2); the default consumer config uses 2 × AckWait.
// Not covered: while the crashed client's pin lasts, the pull requests of
// other clients make the server rotate its redelivery queue as described
// above, so messages of one key that came due together can reach the next
// pin holder out of stream order.
//
// # Inside
//
// One loop goroutine per subscription (subscription.go) owns its state and
// does all the talking to the server; fetch goroutines and one watcher per
// emitted message reach it through channels. What goes out next is decided
// without I/O or a clock of its own, so that each case has a table test
// (lanes_internal_test.go): the lanes (laneSet, lanes.go), the size of the
// next pull request (fetchSize) and the order of the hand-back at Close
// (handBackOrder). The one message settled outside jetstream.Msg is the
// hand-back of a parked message (renak says why).
//
// If the consumer has BackOff set, the server times NakWithDelay(d)
// redeliveries as d − AckWait + BackOff[n]; prefer AckWait alone with
// NakWithDelay, and use BackOff only as the crash safety net.
package wmjetstream
