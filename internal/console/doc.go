// Package console is the operators' web console, served by ingest under
// /ui/ (issue 15): plain HTML from html/template, one CSS and one small
// JavaScript file, all embedded; charts are SVG drawn on the server. No
// build step, nothing fetched from elsewhere, usable offline and by
// keyboard.
//
// # Pages and their sources
//
//   - Overview (/ui/): per minute over the last hour, commands accepted
//     (this ingest process's ingest_commands_total, sampled into a ring
//     kept in memory since the process started), succeeded, retried
//     (failed result events) and dead-lettered (result events read from
//     the EVENTS stream by an ordered consumer started at now − 1 h); lag
//     of the partition consumers worker-p0…7 (pending + ack pending); the
//     outbox (this process's outbox_entries); NATS; and, scraped from the
//     workers' /metrics (Config.WorkerMetrics), API health, 429s, budget
//     use, waiting commands and each account's session.
//   - Commands (/ui/commands): recent commands from the result events,
//     newest first, with filters; each opens its timeline
//     (/ui/commands/{id}): acceptance, attempts, deferrals, dead letters,
//     replays and the result, from the events, the idempotency record
//     (internal/idem) and the DLQ, with a link to its trace.
//   - DLQ (/ui/dlq): dead letters grouped by reason, entries, replay (one,
//     a selection or a filter: the count first, then a confirmation) and
//     purge, through the same dlq.Service as `worker dlq` and /v1/dlq.
//   - Accounts (/ui/accounts): each account's session, logins, 401s and
//     pauses, from the workers' metrics and account.needs_attention events.
//   - Traces (/ui/traces/{id}): a trace's spans as a waterfall when
//     Config.Traces is set, else a link built from Config.TraceURL.
//
// # Security
//
// Every page but the login form needs a session: the login form takes an
// operator key (the keys that open /v1/dlq), and a correct one starts a
// server-side session (a random 32-byte id in a cookie: HttpOnly,
// SameSite=Strict, Path=/ui/, Secure over TLS; kept in memory for
// Config.SessionTTL). Failed logins are rate-limited per client address
// and in total. Every POST checks the session's CSRF token (constant-time
// compare) and that Origin, or else Referer, names this host; GETs change
// nothing. Answers carry a Content-Security-Policy without inline script
// or style, X-Frame-Options DENY and Cache-Control no-store.
package console
