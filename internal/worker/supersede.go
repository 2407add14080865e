package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// Superseded replays.
//
// Commands of one client are applied in acceptance order (their COMMANDS
// stream sequence). A command replayed from the DLQ is published again
// long after it was accepted; carried out blindly, an old update would
// overwrite what newer commands wrote. So the worker keeps, per client, the
// acceptance order of the last applied command that sets the client's card
// or existence (create, update, delete) in altegio_client_refs under
// LastAppliedKey, and a replay of such a command (it carries its original
// order in commands.HeaderOriginalSeq) that is older than the last applied
// one ends as superseded without calling the API. Comments and file
// deletes act on their own objects, not on the card, and are neither
// recorded nor checked; commands whose client key names only the command
// itself (cmd_…: a create without ref, a bulk create) have no client to
// order against.

// lastApplied is the stored value of a LastAppliedKey.
type lastApplied struct {
	// Seq is the acceptance order (COMMANDS stream sequence of the first
	// publication) of the last applied command.
	Seq       uint64    `json:"seq"`
	CommandID string    `json:"command_id"`
	At        time.Time `json:"at"`
}

// LastAppliedKey returns the key in altegio_client_refs under which the
// worker keeps the acceptance order of the last applied create, update or
// delete of a client: "last.<location>.<client key>".
func LastAppliedKey(locationID int64, clientKey string) string {
	return "last." + RefKey(locationID, clientKey)
}

// ordersClient reports whether c's outcome is ordered against the client's
// other card changes: a create, update or delete of a named client.
func ordersClient(c commands.Command) bool {
	switch c.Type {
	case commands.TypeClientCreate, commands.TypeClientUpdate, commands.TypeClientDelete:
	default:
		return false
	}
	return commands.NamesClient(c.ClientKey())
}

// acceptanceOrder returns the acceptance order of the delivered command:
// its original sequence when it is a replay that carries one, else its own
// stream sequence.
func (j *job) acceptanceOrder() uint64 {
	if s := originalSeq(j.msg); s > 0 && replayOf(j.msg) > 0 {
		return s
	}
	return j.info.StreamSeq
}

// newerApplied returns the acceptance order of the last command applied to
// the client when it is newer than this replay's original order, else 0.
// A replay without commands.HeaderOriginalSeq is not checked.
func (j *job) newerApplied(ctx context.Context) (uint64, error) {
	orig := originalSeq(j.msg)
	if orig == 0 || !ordersClient(j.cmd) {
		return 0, nil
	}
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	last, _, err := j.w.refs.lastApplied(bctx, j.cmd.LocationID, j.cmd.ClientKey())
	if err != nil {
		return 0, err
	}
	if last.Seq > orig {
		return last.Seq, nil
	}
	return 0, nil
}

// recordApplied raises the client's last applied order to this command's,
// for commands that order the client.
func (j *job) recordApplied(ctx context.Context) error {
	if !ordersClient(j.cmd) {
		return nil
	}
	v := lastApplied{Seq: j.acceptanceOrder(), CommandID: j.cmd.ID, At: j.w.cfg.Now()}
	return j.w.refs.raiseLastApplied(ctx, j.cmd.LocationID, j.cmd.ClientKey(), v, j.cmd.Type == commands.TypeClientCreate)
}

// supersede ends a replay that a newer applied command made moot: the
// record becomes done with a terminal superseded result, which is
// published, and the message is acked. The API is not called.
func (j *job) supersede(ctx context.Context, newer uint64) error {
	r := j.result(commands.OutcomeSuperseded, verdict{})
	r.Note = fmt.Sprintf("superseded: a newer command (accepted at stream seq %d) was applied to the client after this one (accepted at %d)",
		newer, originalSeq(j.msg))
	j.rec.State, j.rec.Uncertain, j.rec.Result = idem.StateDone, false, &r
	j.rec.StreamSeq = j.info.StreamSeq
	if err := j.save(ctx); err != nil {
		return j.retryInfra(err)
	}
	bctx, cancel := j.bookkeeping(ctx)
	defer cancel()
	if err := j.w.publishResult(bctx, r); err != nil {
		// Done is recorded: the redelivery re-publishes the stored result.
		return j.retryInfra(err)
	}
	j.log.Info("replay superseded", slog.Uint64("newer_seq", newer))
	j.mark(string(commands.OutcomeSuperseded), "", nil)
	j.w.metrics.commands.WithLabelValues(string(j.cmd.Type), string(commands.OutcomeSuperseded)).Inc()
	j.msg.Ack()
	return nil
}

// lastApplied reads a client's last applied order; a zero value and
// revision 0 when none is stored.
func (s refStore) lastApplied(ctx context.Context, loc int64, key string) (lastApplied, uint64, error) {
	k := LastAppliedKey(loc, key)
	e, err := s.kv.Get(ctx, k)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return lastApplied{}, 0, nil
	case err != nil:
		return lastApplied{}, 0, fmt.Errorf("load %s: %w", k, err)
	}
	var v lastApplied
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return lastApplied{}, 0, fmt.Errorf("decode %s: %w", k, err)
	}
	return v, e.Revision(), nil
}

// raiseLastApplied stores v unless a newer order is stored already, with
// compare-and-set, so that concurrent writers keep the maximum. fresh says
// the key most likely does not exist yet (a create): it is then created
// without being read first.
func (s refStore) raiseLastApplied(ctx context.Context, loc int64, key string, v lastApplied, fresh bool) error {
	k := LastAppliedKey(loc, key)
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", k, err)
	}
	// Most clients have no last-applied order yet when their create
	// succeeds: then try to create it before reading it.
	if fresh {
		if _, err := s.kv.Create(ctx, k, b); err == nil {
			return nil
		} else if !topology.IsKVConflict(err) {
			return fmt.Errorf("store %s: %w", k, err)
		}
	}
	for range 5 {
		cur, rev, err := s.lastApplied(ctx, loc, key)
		if err != nil {
			return err
		}
		if cur.Seq >= v.Seq {
			return nil
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, k, b)
		} else {
			_, err = s.kv.Update(ctx, k, b, rev)
		}
		if err == nil {
			return nil
		}
		if !topology.IsKVConflict(err) {
			return fmt.Errorf("store %s: %w", k, err)
		}
	}
	return fmt.Errorf("store %s: %w", k, errConflict)
}
