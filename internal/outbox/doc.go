// Package outbox is a durable local store-and-forward queue for messages that
// must reach NATS JetStream but cannot be published right now: commands that
// ingest accepted while JetStream was unreachable.
//
// An Outbox is one SQLite file in WAL mode with synchronous=FULL, opened by a
// single connection that holds an exclusive lock on it, so a second process
// (or a second Open in this one) cannot use the same file. Append returns nil
// only once its entries are committed and fsynced. Concurrent Append calls
// are gathered by one writer goroutine into a single transaction (group
// commit); every entry gets a sequence number, increasing in commit order.
//
// Run is the relay: it publishes entries strictly in sequence order with
// Nats-Msg-Id set to Entry.MsgID, and deletes an entry only after JetStream
// acknowledged it. Delivery is at least once; a re-publish after a crash or a
// lost PubAck is dropped by the stream's duplicate window (1 h on
// COMMANDS), and beyond it by the consumer's idempotency. A failed publish is
// retried with capped exponential backoff, never skipped, except when it can
// never succeed (see IsPermanent and Config.NoStreamDeadAfter): then the entry
// is moved to the dead table with the reason, counted in
// outbox_dead_lettered_total and logged at Error, and the queue moves on.
//
// Metrics (registered with Config.Registerer):
//
//	outbox_entries                    gauge      entries waiting
//	outbox_bytes                      gauge      payload bytes waiting (Entry.Size)
//	outbox_oldest_entry_age_seconds   gauge      age of the oldest waiting entry
//	outbox_appended_total             counter    entries committed by Append
//	outbox_append_rejected_total      counter    entries refused, label reason (full)
//	outbox_relayed_total              counter    entries acknowledged by JetStream
//	outbox_relay_errors_total         counter    failed publish attempts, label class
//	outbox_dead_lettered_total        counter    entries moved to the dead table
//	outbox_commit_batch_size          histogram  entries per group commit
//	outbox_commit_duration_seconds    histogram  time per group commit, fsync included
package outbox
