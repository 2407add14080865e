// Package auth owns the Altegio credentials of every configured account: the
// partner token, and the user token obtained with POST /auth (or configured
// as a fixed token). Its [Manager] implements [altegio.Authorizer], so it is
// the only source of credentials a worker needs.
//
// # Accounts
//
// An [Account] has a partner token and either a fixed user token or a login
// and password, and serves a list of locations (or all of them). A call's
// location selects the account: an account that lists the location wins over
// the catch-all account; with neither, the call fails with [ErrNoAccount].
// [AccountsFromEnv] reads accounts from the environment; secrets can come
// from files (*_FILE variables) and never from flags.
//
// # Session model
//
// The user token of every login account lives in a JetStream KV bucket
// (default "altegio_tokens", defined by the topology) under the key
// "token.<account>", so that all worker processes share one session. The
// revision of that key is [altegio.Credentials.Version]. Each Manager caches
// the token in memory: [Manager.Credentials] never touches the KV once the
// cache is warm. A process that starts reads the token from the KV instead of
// logging in.
//
// After a 401 the client calls [Manager.Refresh] with the rejected
// credentials. Inside a process the refresh is single-flight per account:
// concurrent callers share one attempt. Across processes:
//
//  1. If the KV holds a newer revision than the rejected one, that token is
//     used without logging in.
//  2. Otherwise the process takes the login lease "lease.<account>" with
//     kv.Create. Only one process wins; it logs in, writes the new token
//     with compare-and-set on the revision it read (kv.Update), and deletes
//     its lease.
//  3. The others poll the token key until a newer revision appears. A lease
//     that has not changed for LeaseTimeout (measured on the local clock, so
//     clock skew between machines does not matter) is stale: its holder
//     died, and one waiter takes it over with compare-and-set.
//
// So N processes hitting a rotated token at the same moment cause exactly
// one POST /auth.
//
// # Failures
//
// A failed login arms an exponential back-off with jitter (LoginBackoffMin
// doubling up to LoginBackoffMax). During it, callers get the last error at
// once, wrapped in a [*BackoffError]. The process that failed leaves the
// lease in the "failed" state, so other processes adopt the failure and
// back off too instead of each trying /auth in turn. When a back-off ends,
// one process takes over the failed lease and tries again.
//
// Two-factor authentication, wrong credentials and a rejected fixed token
// are permanent: the error is an [*AccountError] whose Permanent method
// reports true and which [altegio.ClassOf] classifies as auth. A /auth 5xx
// or transport error is retryable (class transient).
//
// When the KV is unreachable (NATS down, bucket missing and not creatable),
// the Manager falls back to a process-local session: it logs in on its own
// (still single-flight and backed off), logs a warning, and serves that
// token with Version 0. While a local token is in use, the Manager tries in
// the background, at most every KVRetryInterval, to publish it to the KV
// (or to adopt a newer token found there); from then on the session is
// shared again. New never touches the KV, so a Manager can be built while
// NATS is down.
//
// # Secrets
//
// Tokens and passwords never appear in logs, errors or metric labels: the
// types that hold them format as [REDACTED], errors name the account and the
// environment variable, never a value. The KV bucket does hold the user
// tokens in clear, so restrict access to it with NATS permissions.
package auth
