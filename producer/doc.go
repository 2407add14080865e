// Package producer sends client commands to the Altegio integrator from Go:
// typed constructors for the commands of the contract, local validation
// with the integrator's own rules, and two transports.
//
// # Commands
//
// CreateClient, UpdateClient, ReplaceClient, DeleteClient,
// BulkCreateClients, AddComment, DeleteComment and DeleteFile build a
// Command; the payload types (Client) use the contract's JSON names.
// Command.Validate checks a command exactly as ingest and the worker will
// (the same decoder), so a bad command fails before anything is sent, with
// every problem and its path ("payload.phone") in a *ValidationError.
//
// # Transports
//
// HTTP (NewHTTP) posts to ingest's POST /v1/commands with a producer key,
// retries transient failures (network errors, 429 and 503 after their
// Retry-After, other 5xx) with capped exponential backoff and jitter, and
// reports an error answer as a *ProblemError carrying ingest's RFC 9457
// problem; HTTP.Wait follows a command to its outcome. NATS (NewNATS)
// publishes straight to the COMMANDS stream of JetStream and waits for each
// PubAck. Both return one Receipt per command stored: its id, whether it
// was a duplicate, and its stream sequence.
//
// # Idempotency
//
// Every constructor gives its command an id once (a UUID version 7, NewID).
// The id is the idempotency key: ingest and JetStream (Nats-Msg-Id)
// deduplicate on it, and the worker carries out an id once, so sending the
// same Command value again after a timeout or a crash is safe. Build a new
// command only for a new intent; resend the old one to retry.
//
// # Subjects
//
// Over NATS a command travels on altegio.cmd.<location>.<client-key>.<op>:
// the location id; the client key, "ref_<client_ref>" when the command
// names a client by reference (a hash, "refh_…", for references with other
// characters than letters, digits, '-' and '_'), else "id_<client_id>",
// else "cmd_<command id>" (a create without reference, a bulk create); and
// the operation, the type's last part with '_' ("create", "update",
// "delete", "bulk_create", "comment_add", "comment_delete",
// "file_delete"). Commands of one client key are applied in order, so
// address a client the same way, preferably by reference, in every
// command. The NATS sender computes the subject; it is shown here for
// permissions and for tools such as nats pub.
//
// The senders are safe for concurrent use; Command and the other types are
// plain values.
package producer
