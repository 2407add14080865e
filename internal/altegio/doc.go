// Package altegio is a typed client for the client endpoints of the Altegio
// Business Management API (B2B v1): client cards, bulk create, search, the
// deprecated list, comments, files and visit history, plus POST /auth.
//
// Every call sends Accept: application/vnd.api.v2+json and
// Authorization: Bearer <partner>, User <user> (partner only for /auth),
// takes its tokens from an [Authorizer], refreshes them once after a 401,
// waits for a [Limiter] before each request, and maps every answer to a
// result or to an error in one place. Errors carry a [Class] ([ClassOf]) that
// tells the caller whether to retry, back off, stop or re-authenticate, and
// wrap sentinels such as [ErrNotFound] for errors.Is. A [*TransportError]
// means the outcome is unknown.
//
// Responses are decoded tolerantly: the API is inconsistent about numbers
// versus strings, [] versus {} and field names across versions (see
// [ClientRecord]). Tokens and passwords never appear in errors or logs.
//
// Paths follow the reference (docs/reference altegio-api.md §6); comments
// use /company/{location_id}/clients/{client_id}/comments, which Altegio's
// own code uses, rather than the published /clients/{location_id}/clients/…
// form.
package altegio
