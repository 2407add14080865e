// Package ingest is the HTTP front door for producers that cannot speak
// NATS: it authenticates them, validates their commands with
// internal/commands, and answers 202 only once JetStream stored each command
// (PubAck) or, while JetStream is unreachable, the local outbox did
// (internal/outbox); the outbox relay publishes spooled commands in order
// with the same Nats-Msg-Id once NATS is back.
//
// # Endpoints
//
//	POST /v1/commands        one command or an array (1..MaxBatch), 202 {commands:[{id,status,stream_seq|spooled}]}
//	GET  /v1/commands/{id}   status (spooled, queued, in_flight, succeeded, dead_lettered, superseded) and result
//	GET  /healthz            liveness
//	GET  /readyz             NATS connected, streams present, outbox usable (200 or 503)
//	GET  /metrics            Prometheus
//	GET  /openapi.json       the OpenAPI 3.1 document (OpenAPI)
//	GET  /schemas/command.json, /schemas/result.json   the contract's JSON Schemas
//	/v1/dlq, /v1/dlq/{seq|id}, /v1/dlq/replay           DLQ operations, only when Config.Operator is set
//
// Every error is an RFC 9457 application/problem+json (Problem): 400
// malformed JSON or header, 401 unauthenticated, 403 forbidden by the
// producer's permissions, 404, 405, 413 body, batch or command too large, 415
// not application/json, 422 invalid command or unknown type (every problem at
// once, with paths), 503 + Retry-After when the COMMANDS stream is full, or
// JetStream is unreachable and the outbox is full or unavailable.
//
// # Producers
//
// A producer authenticates with "Authorization: Bearer <key>" (keys stored
// as SHA-256 digests, compared in constant time) or with a Standard
// Webhooks signature (webhook-id, webhook-timestamp within
// Config.WebhookTolerance, webhook-signature "v1,<base64>" HMAC-SHA256 over
// "id.timestamp.body", verified over the raw body before any JSON parsing;
// several secrets per producer for rotation). Its Types and Locations limit
// what it may send (403 with the reason). See ProducerSpec for the JSON
// configuration.
//
// # Metrics
//
//	ingest_http_requests_total{route,code}          counter
//	ingest_http_requests_in_flight                  gauge
//	ingest_commands_total{result,reason}            counter: accepted, duplicate, spooled, rejected (reason)
//	ingest_publish_duration_seconds                 histogram: publish to PubAck
//	outbox_entries, outbox_oldest_entry_age_seconds and the other outbox_* metrics,
//	when the outbox is opened with the same registerer
package ingest
