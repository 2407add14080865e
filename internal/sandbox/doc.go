// Package sandbox is a stateful fake of the Altegio Business
// Management API (B2B v1, client endpoints), built from the project reference
// (shared/reference/altegio-api.md, cited below as "ref §N").
//
// A *Server is an http.Handler with the API mounted under /api/v1, so a test
// can run it with httptest and point a client at ts.URL+"/api/v1":
//
//	sb, err := sandbox.New(sandbox.Config{
//		PartnerToken: "partner",
//		Users:        []sandbox.User{{Login: "owner@example.com", Password: "secret"}},
//	})
//	ts := httptest.NewServer(sb)
//
// The sandbox is an independent implementation of the reference: it does not
// share code with the project's API client, so contract tests catch mistakes
// on either side. Where the reference is silent or only inferred, the sandbox
// chooses the strict behaviour and says so next to the code (look for
// "[I]" comments), so the client must be written defensively.
//
// Besides the API it offers:
//   - a per-IP rate limit of 5 requests/s and 200/min (ref §4), with an
//     injectable clock;
//   - global faults (latency, random 5xx, connection resets, slow bodies, a
//     429 storm) and deterministic per-operation rules, including
//     "apply, then fail" to simulate a lost response (see Faults and Rule);
//   - state inspection and seeding for tests, and request statistics;
//   - the webhook settings (GET and POST /hooks_settings/{location_id}) and
//     client webhooks sent the way Altegio sends them (ref §7): after every
//     client create, update and delete, a POST of the client event to each
//     URL about 5 s later, retried twice on transport errors, 429 and 5xx.
//     Recent deliveries are listed by Webhooks; Close stops them;
//   - state in memory, or also in a JSON file rewritten atomically after
//     every change (Config.StateFile), so that records and ID counters
//     survive a restart.
//
// Every method of *Server is safe for concurrent use.
package sandbox
