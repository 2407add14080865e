// Package bench runs the benchmark scenarios of cmd/bench the way the
// integrator is deployed: every part is a separate process on loopback. A run
// builds the binaries once (nats-server, altegio-sandbox, ingest, worker and
// cmd/bench itself, for the bare reference consumer) into a temporary
// folder, starts a fresh set of processes for each phase on free 127.0.0.1
// ports, and stops every one of them (the whole process group) when the
// phase ends, fails or times out.
//
// Figures come from outside the processes under test: result events read
// from the EVENTS stream (altegio.evt.>), the sandbox's own counters (GET
// /stats of cmd/altegio-sandbox) for API requests and 429 answers, and
// /proc/<pid>/status for memory. Each scenario also measures its reference
// in the same run (a bare consumer, raw JetStream publishes, direct API
// calls, or the budget itself) and reports both as Markdown.
//
// The scenarios are budget, bulk, fairness, drain, ingest and growth, and
// the fault suite, faults (see Scenarios and faults.go); Config.Quick shrinks each to seconds, for CI, which checks
// that they run and report rather than how fast.
package bench
