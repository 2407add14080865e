// Package worker carries out client commands against the Altegio API: it
// consumes the COMMANDS stream, applies each command exactly once in
// effect, in order per client, and ends every command in one terminal
// result event (succeeded, dead_lettered or superseded) on altegio.evt.….
//
// # Pipeline
//
// A Watermill router (middleware: metrics, recoverer, correlation id,
// timeout) is fed by one wmjetstream subscriber per partition consumer
// (worker-p0…p7, pinned to one process at a time). Messages form ordered
// lanes keyed by "<location>.<client-key>" (LaneKey): one command per
// client at a time, and a command being retried parks its client. Each
// delivery goes through:
//
//  1. decode and validate (commands.Decode); invalid → DLQ class invalid;
//  2. the idempotency record (Record, KV altegio_idempotency): done →
//     re-publish the stored result and ack without calling the API; dead →
//     finish the dead-letter publication (same message) or start over (a
//     replay from the DLQ);
//  3. order across processes: if the COMMANDS stream still stores an older
//     command of the same client (in another process, or waiting for its
//     retry), defer with NakWithDelay without attempting (see order.go);
//     this check, not the pinned consumer, is what guarantees the order;
//     then a replay of a create, update or delete older than the last one
//     applied to its client ends as superseded (see LastAppliedKey);
//  4. resolve client_ref through KV altegio_client_refs (unknown → permanent;
//     a mapped client the API answers 404 for → permanent, ErrStaleClientRef);
//  5. record the attempt's intent (in_flight, attempts+1, uncertain) with
//     compare-and-set, then call the API; when an earlier attempt may have
//     been applied, reconcile first (create and bulk: search by phone;
//     comment add: list comments; updates and deletes are idempotent, and a
//     delete that finds 404 succeeded);
//  6. classify and act: success → client ref, last-applied order, KV
//     done with the result, result event, ack; transient → NakWithDelay with backoff and jitter
//     (an attempt); 429 → NakWithDelay honouring Retry-After (a deferral);
//     permanent, auth, ambiguous, exhausted → KV dead, DLQ record, result
//     event (plus an AccountAttention event for auth), Term.
//
// Each step after the API call is safe to repeat, so a crash at any point
// leads to a redelivery that either re-publishes (deduplicated by message
// id) or reconciles. A sweeper on the COMMAND_ADVISORIES stream
// dead-letters commands that ran out of deliveries without a verdict.
//
// The worker does not own the NATS connection; the caller applies the
// topology before Run and drains the connection after it.
package worker
