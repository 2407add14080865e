package worker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// deadLetterItems dead-letters each refused item of a bulk create as a
// client.create of its own (command id commands.BulkItemCommandID), so an
// operator or producer can fix and replay it alone. The records are
// published with deterministic message ids: repeating this after a crash
// publishes nothing twice.
func (j *job) deadLetterItems(ctx context.Context, items []refusedItem) error {
	w := j.w
	now := w.cfg.Now()
	for _, it := range items {
		cmd := commands.Command{
			SchemaVersion: commands.SchemaVersion,
			ID:            commands.BulkItemCommandID(j.cmd.ID, it.index),
			Type:          commands.TypeClientCreate,
			LocationID:    j.cmd.LocationID,
			CorrelationID: cmp.Or(j.cmd.CorrelationID, j.cmd.ID),
			OccurredAt:    j.cmd.OccurredAt,
		}
		if err := cmd.SetPayload(it.fields); err != nil {
			return fmt.Errorf("bulk item %d: %w", it.index, err)
		}
		body, err := commands.Marshal(cmd)
		if err != nil {
			return fmt.Errorf("bulk item %d: encode command: %w", it.index, err)
		}
		index := it.index
		dl := commands.DLQRecord{
			SchemaVersion:  commands.SchemaVersion,
			Subject:        commands.CommandSubject(cmd),
			StreamSeq:      j.info.StreamSeq,
			CommandID:      cmd.ID,
			Type:           cmd.Type,
			LocationID:     cmd.LocationID,
			ClientKey:      cmd.ClientKey(),
			ErrorClass:     commands.ClassPermanent,
			Reason:         fmt.Sprintf("item %d of bulk create %s refused: %s", it.index, j.cmd.ID, it.reason),
			APIMessage:     it.reason,
			Attempts:       j.rec.Attempts,
			Replay:         replayOf(j.msg),
			FirstFailureAt: now,
			LastFailureAt:  now,
			DeadLetteredAt: now,
			WorkerID:       w.cfg.WorkerID,
			BulkCommandID:  j.cmd.ID,
			BulkIndex:      &index,
		}
		dl.SetCommand(body)
		if err := w.publishDLQ(ctx, cmd, dl); err != nil {
			return err
		}
		w.metrics.dlq.WithLabelValues(string(commands.ClassPermanent)).Inc()
		j.log.Warn("bulk item dead-lettered", slog.Int("index", it.index), slog.String("item_command_id", cmd.ID),
			slog.String("reason", it.reason))
	}
	return nil
}
