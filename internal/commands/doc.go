// Package commands is the contract between producers, cmd/ingest, cmd/worker
// and the DLQ tooling: the command envelope and its typed payloads, strict
// decoding and validation with field-level problems, the NATS subjects and
// headers the commands, result events and dead-letter records travel on, and
// the JSON Schema documents that describe all of it to producers.
//
// # Commands
//
// A producer sends one JSON object per command (see [Command]). [Decode]
// parses it strictly (unknown fields, duplicate fields and nulls are rejected,
// including inside the payload) and validates it; [Command.Validate] checks a
// command built in Go. Both report every problem at once as a
// [*ValidationError]; malformed JSON is a [*SyntaxError] and oversized input
// wraps [ErrTooLarge], so an HTTP front door can answer 400, 413 or 422.
//
// # Subjects
//
// All subject naming lives here:
//
//	altegio.cmd.<location>.<client-key>.<op>    commands ([CommandSubject])
//	altegio.evt.<location>.<op>.<outcome>       result events ([EventSubject])
//	altegio.evt.<location>.account.needs_attention  ([AccountAttentionSubject])
//	altegio.evt.<location>.webhook.client.<status>  Altegio's webhooks ([WebhookEventSubject])
//	altegio.dlq.<location>.<op>                 dead-letter records ([DLQSubject])
//	altegio.read.<location>.<query>             reads ([ReadSubject])
//
// COMMANDS stores commands as altegio.cmd.<partition>.<location>.<client-key>.<op>
// ([StoredSubject], [ParseStoredSubject], [PartitionFilter]).
//
// <client-key> ([Command.ClientKey]) groups the commands of one client, so a
// consumer can apply them in order. Every token is safe in a NATS subject,
// even for an invalid command, so invalid commands can be dead-lettered too.
//
// # Schema
//
// [CommandSchema] and [ResultSchema] return the JSON Schema (draft 2020-12)
// documents committed in schema/. Tests keep them in agreement with this
// package; where the two differ, Go is stricter (integer literals with a
// fraction or exponent, duplicate object keys, Unicode whitespace in "blank"
// checks, duplicate phones inside one bulk) and [Decode] is authoritative.
//
// All functions are safe for concurrent use; the types are plain values.
package commands
