// Package dlq is the operators' library over the dead-letter queue: list
// and show dead letters with filters, replay them safely, purge them, and
// the HTTP handler that offers list and replay to tools that cannot run the
// CLI (`worker dlq …` in cmd/worker is the other front end).
//
// # Entries, marks and status
//
// An Entry is one message of the DLQ stream (a commands.DLQRecord) with
// its stream sequence. Entries are never changed; the package keeps its
// own state per entry in the KV bucket altegio_dlq_state (a Mark under
// "seq.<dlq seq>"): replayed (generation, time, operator, the COMMANDS
// sequence of the republished command), and resolved. An entry's Status
// combines the mark with the worker's idempotency record of the command:
//
//   - dead: not replayed yet;
//   - replayed: republished, no terminal outcome yet;
//   - failed_again: the replay was dead-lettered again (a newer entry holds
//     that failure; replay that one);
//   - resolved: the command reached a terminal outcome other than
//     dead_lettered (succeeded, or superseded by a newer command).
//
// # Replay
//
// Replay counts first (a dry run returns the plan), then republishes each
// selected entry's original bytes to commands.CommandSubject with the same
// command id, a new message id commands.ReplayMsgID(id, generation), and
// the headers HeaderReplay, HeaderReplayOf (the DLQ sequence) and
// HeaderOriginalSeq (the command's acceptance order, which the worker uses
// to report superseded replays). The generation is the failed delivery's
// generation plus one, so it is the same every time the same entry is
// replayed. Each republication is followed by a replayed result event and
// the entry's mark. Entries with a mark are skipped, so a replay that was
// interrupted and started again with the same selection replays every
// entry once; the deterministic message ids make the steps between
// publication and mark safe to repeat within the streams' dedup window
// (1 h). Replays are throttled (Config.Rate), in DLQ order.
package dlq
