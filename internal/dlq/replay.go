package dlq

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// MarkState is the state of a Mark.
type MarkState string

// The states of a Mark.
const (
	// MarkReplayed: the entry was republished.
	MarkReplayed MarkState = "replayed"
	// MarkResolved: the command reached a terminal outcome other than
	// dead_lettered (written by Replay when it finds one).
	MarkResolved MarkState = "resolved"
)

// Mark is the DLQ tooling's state of one entry, stored as JSON in the
// bucket altegio_dlq_state under MarkKey(seq).
type Mark struct {
	// State is replayed or resolved.
	State MarkState `json:"state"`
	// Generation is the replay generation the entry was republished with
	// (0 when it was resolved without a replay).
	Generation int `json:"generation,omitempty"`
	// CommandID is the replayed command's id.
	CommandID string `json:"command_id"`
	// CommandSeq is the COMMANDS stream sequence of the republication.
	CommandSeq uint64 `json:"command_seq,omitempty"`
	// ReplayedAt and By say when and by whom the entry was replayed.
	ReplayedAt time.Time `json:"replayed_at,omitzero"`
	By         string    `json:"by,omitempty"`
	// ResolvedAt and Outcome are set once the command is known to have
	// reached a terminal outcome.
	ResolvedAt time.Time        `json:"resolved_at,omitzero"`
	Outcome    commands.Outcome `json:"outcome,omitempty"`
}

// MarkKey returns the key of an entry's mark: "seq.<dlq seq>".
func MarkKey(seq uint64) string { return "seq." + strconv.FormatUint(seq, 10) }

// loadMarks reads every mark.
func (s *Service) loadMarks(ctx context.Context) (map[uint64]Mark, error) {
	cctx, cancel := s.timeout(ctx)
	defer cancel()
	w, err := s.marks.WatchFiltered(cctx, []string{"seq.>"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read marks: %w", err)
	}
	defer w.Stop()
	out := map[uint64]Mark{}
	for {
		select {
		case <-cctx.Done():
			return nil, fmt.Errorf("read marks: %w", cctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("read marks: watcher stopped")
			}
			if e == nil {
				return out, nil
			}
			seq, err := strconv.ParseUint(strings.TrimPrefix(e.Key(), "seq."), 10, 64)
			var m Mark
			if err != nil || json.Unmarshal(e.Value(), &m) != nil {
				s.cfg.Logger.Warn("dlq: unreadable mark ignored", slog.String("key", e.Key()))
				continue
			}
			out[seq] = m
		}
	}
}

// putMark creates an entry's mark; an existing mark is kept (another
// replay got there first) unless replace is set.
func (s *Service) putMark(ctx context.Context, seq uint64, m Mark, replace bool) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode mark: %w", err)
	}
	cctx, cancel := s.timeout(ctx)
	defer cancel()
	if replace {
		_, err = s.marks.Put(cctx, MarkKey(seq), b)
	} else {
		_, err = s.marks.Create(cctx, MarkKey(seq), b)
		if topology.IsKVConflict(err) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("mark dlq entry %d: %w", seq, err)
	}
	return nil
}

// ReplayOptions tune one Replay call.
type ReplayOptions struct {
	// DryRun only plans: nothing is published or marked.
	DryRun bool
	// Rate overrides Config.Rate (entries per second) when > 0.
	Rate float64
	// Max bounds how many entries this call republishes (0: all); the
	// rest are counted in ReplayReport.Remaining and replayed by the next
	// call with the same selection.
	Max int
	// Operator overrides Config.Operator in marks and events.
	Operator string
	// Progress, when set, is called after each republished entry, from
	// the goroutine that called Replay.
	Progress func(Progress)
}

// Progress reports a running replay.
type Progress struct {
	// Done of Total planned entries are republished.
	Done, Total int
	// Last is the entry just republished.
	Last Replayed
}

// Replayed is one republished entry.
type Replayed struct {
	// Seq is the DLQ entry's sequence.
	Seq uint64 `json:"seq"`
	// CommandID is the command's id.
	CommandID string `json:"command_id"`
	// Generation is the replay generation.
	Generation int `json:"generation"`
	// CommandSeq is the COMMANDS stream sequence of the republication.
	CommandSeq uint64 `json:"command_seq"`
	// Duplicate is set when the republication had already been stored by
	// an interrupted earlier run (same message id).
	Duplicate bool `json:"duplicate,omitempty"`
}

// Skip is a selected entry that is not replayed, and why.
type Skip struct {
	// Seq is the entry's DLQ sequence.
	Seq uint64 `json:"seq"`
	// CommandID is the entry's command id, when known.
	CommandID string `json:"command_id,omitempty"`
	// Status is the entry's status.
	Status Status `json:"status"`
	// Reason says why the entry is not replayed.
	Reason string `json:"reason"`
}

// ReplayReport is what Replay did, or would do in a dry run.
type ReplayReport struct {
	// DryRun is set for a plan.
	DryRun bool `json:"dry_run"`
	// Matched is how many entries the filter selected.
	Matched int `json:"matched"`
	// Planned are the entries to replay, in DLQ order.
	Planned []Entry `json:"planned"`
	// Skipped are the selected entries that are not replayed.
	Skipped []Skip `json:"skipped"`
	// Replayed are the entries republished by this call.
	Replayed []Replayed `json:"replayed"`
	// Remaining is how many planned entries were not republished (Max
	// reached, or the call was cancelled); call again to continue.
	Remaining int `json:"remaining"`
}

// Replay republishes the entries f selects; see the package
// documentation. Entries that are already replayed or resolved, that have
// no command id, or whose command has a later entry in the same selection
// are skipped (and reported). Entries whose command is already resolved
// get a resolved mark. A dry run returns the plan.
//
// Replay returns ErrEmptySelection when f selects everything without
// f.All, a validation error for an invalid filter, and ctx's error when it
// is cancelled: the report then says what was done, and a later call with
// the same selection continues where this one stopped.
func (s *Service) Replay(ctx context.Context, f Filter, opts ReplayOptions) (ReplayReport, error) {
	if err := f.Validate(); err != nil {
		return ReplayReport{}, err
	}
	if !f.Selective() && !f.All {
		return ReplayReport{}, ErrEmptySelection
	}
	entries, err := s.list(ctx, f)
	if err != nil {
		return ReplayReport{}, err
	}
	rep := s.plan(entries)
	rep.DryRun = opts.DryRun
	rep.Remaining = len(rep.Planned)
	if opts.DryRun {
		return rep, nil
	}
	for _, e := range entries {
		if e.Status == StatusResolved && (e.Mark == nil || e.Mark.State != MarkResolved) {
			s.resolve(ctx, e)
		}
	}
	s.metrics.replays.WithLabelValues("skipped").Add(float64(len(rep.Skipped)))

	r := opts.Rate
	if r <= 0 {
		r = s.cfg.Rate
	}
	lim := rate.NewLimiter(rate.Limit(r), 1)
	operator := opts.Operator
	if operator == "" {
		operator = s.cfg.Operator
	}
	total := len(rep.Planned)
	if opts.Max > 0 {
		total = min(total, opts.Max)
	}
	log := s.cfg.Logger.With(slog.String("operator", operator))
	log.Info("dlq replay started", slog.Int("matched", rep.Matched), slog.Int("planned", len(rep.Planned)),
		slog.Int("skipped", len(rep.Skipped)), slog.Float64("rate", r))
	for _, e := range rep.Planned[:total] {
		if err := lim.Wait(ctx); err != nil {
			return rep, s.stopped(ctx, err, log, rep)
		}
		done, err := s.replayOne(ctx, e, operator)
		if err != nil {
			s.metrics.replays.WithLabelValues("error").Inc()
			if ctx.Err() != nil {
				return rep, s.stopped(ctx, err, log, rep)
			}
			return rep, err
		}
		rep.Replayed = append(rep.Replayed, done)
		rep.Remaining--
		s.metrics.replays.WithLabelValues("replayed").Inc()
		log.Debug("replayed", slog.Uint64("dlq_seq", e.Seq), slog.String("command_id", done.CommandID),
			slog.Int("generation", done.Generation), slog.Uint64("stream_seq", done.CommandSeq))
		if opts.Progress != nil {
			opts.Progress(Progress{Done: len(rep.Replayed), Total: total, Last: done})
		}
	}
	log.Info("dlq replay finished", slog.Int("replayed", len(rep.Replayed)), slog.Int("remaining", rep.Remaining))
	return rep, nil
}

// stopped logs an interrupted replay and returns the context's error.
func (s *Service) stopped(ctx context.Context, err error, log *slog.Logger, rep ReplayReport) error {
	log.Info("dlq replay interrupted", slog.Int("replayed", len(rep.Replayed)), slog.Int("remaining", rep.Remaining))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// plan splits the selected entries into planned and skipped.
func (s *Service) plan(entries []Entry) ReplayReport {
	rep := ReplayReport{Matched: len(entries), Planned: []Entry{}, Skipped: []Skip{}, Replayed: []Replayed{}}
	latest := map[string]uint64{}
	for _, e := range entries {
		if e.Status == StatusDead && e.Record.CommandID != "" {
			latest[e.Record.CommandID] = max(latest[e.Record.CommandID], e.Seq)
		}
	}
	for _, e := range entries {
		skip := Skip{Seq: e.Seq, CommandID: e.Record.CommandID, Status: e.Status}
		switch {
		case e.Status == StatusResolved:
			skip.Reason = "already resolved (" + string(cmp.Or(e.Outcome, "done")) + ")"
		case e.Status == StatusReplayed || e.Status == StatusFailedAgain:
			skip.Reason = "already replayed"
			if e.Mark != nil {
				skip.Reason += " (generation " + strconv.Itoa(e.Mark.Generation) + ")"
			}
		case e.Record.CommandID == "" || (len(e.Record.CommandBytes()) == 0 && e.Record.CommandRef == nil):
			skip.Reason = "no command id: cannot be replayed"
		case latest[e.Record.CommandID] != e.Seq:
			skip.Reason = "a later entry of the same command is replayed instead"
		default:
			rep.Planned = append(rep.Planned, e)
			continue
		}
		rep.Skipped = append(rep.Skipped, skip)
	}
	return rep
}

// resolve records that an entry's command is resolved; a failure is only
// logged (the status is derived from the idempotency record anyway).
func (s *Service) resolve(ctx context.Context, e Entry) {
	m := Mark{State: MarkResolved, CommandID: e.Record.CommandID, ResolvedAt: s.cfg.Now().UTC(), Outcome: e.Outcome}
	if e.Mark != nil {
		m.Generation, m.CommandSeq, m.ReplayedAt, m.By = e.Mark.Generation, e.Mark.CommandSeq, e.Mark.ReplayedAt, e.Mark.By
	}
	if err := s.putMark(ctx, e.Seq, m, true); err != nil {
		s.cfg.Logger.Warn("dlq: mark resolved", slog.Uint64("dlq_seq", e.Seq), slog.Any("error", err))
	}
}

// commandBytes returns the command of a record: embedded, or, for one too
// large to embed, read from its own message in the DLQ stream and checked
// against the record's size and digest.
func (s *Service) commandBytes(ctx context.Context, rec commands.DLQRecord) ([]byte, error) {
	ref := rec.CommandRef
	if ref == nil {
		return rec.CommandBytes(), nil
	}
	cctx, cancel := s.timeout(ctx)
	defer cancel()
	m, err := s.dlq.GetMsg(cctx, ref.Seq)
	if err != nil {
		return nil, fmt.Errorf("read the stored command at %d: %w", ref.Seq, err)
	}
	sum := sha256.Sum256(m.Data)
	if m.Subject != ref.Subject || len(m.Data) != ref.Size || hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, fmt.Errorf("the stored command at %d is not the one the record names", ref.Seq)
	}
	return m.Data, nil
}

// replayOne republishes one entry, publishes its replayed event and marks
// it, in that order: each step is deduplicated or compare-and-set, so a
// crash between them is repaired by replaying the entry again.
func (s *Service) replayOne(ctx context.Context, e Entry, operator string) (Replayed, error) {
	rec := e.Record
	gen := rec.Replay + 1
	data, err := s.commandBytes(ctx, rec)
	if err != nil {
		return Replayed{}, fmt.Errorf("dlq entry %d: %w", e.Seq, err)
	}
	var cmd commands.Command
	if err := json.Unmarshal(data, &cmd); err != nil || cmd.ID == "" {
		// Not decodable as a command: keep the fields the record knows.
		cmd = commands.Command{ID: rec.CommandID, Type: rec.Type, LocationID: rec.LocationID,
			ClientID: e.ClientID, ClientRef: e.ClientRef}
	}
	cmd.ID = rec.CommandID
	h := nats.Header{}
	for k, v := range rec.Headers {
		if strings.HasPrefix(k, "Nats-") {
			continue // server-side headers of the failed delivery
		}
		h[k] = slices.Clone(v)
	}
	orig := rec.StreamSeq
	if v, err := strconv.ParseUint(h.Get(commands.HeaderOriginalSeq), 10, 64); err == nil && v > 0 {
		orig = v // a replay of a replay keeps the first acceptance order
	}
	h.Set(commands.HeaderMsgID, commands.ReplayMsgID(rec.CommandID, gen))
	h.Set(commands.HeaderCommandID, rec.CommandID)
	h.Set(commands.HeaderReplay, strconv.Itoa(gen))
	h.Set(commands.HeaderReplayOf, strconv.FormatUint(e.Seq, 10))
	h.Set(commands.HeaderOriginalSeq, strconv.FormatUint(orig, 10))

	cctx, cancel := s.timeout(ctx)
	defer cancel()
	ack, err := s.js.PublishMsg(cctx, &nats.Msg{Subject: commands.CommandSubject(cmd), Header: h, Data: data})
	if err != nil {
		return Replayed{}, fmt.Errorf("republish dlq entry %d: %w", e.Seq, err)
	}
	now := s.cfg.Now().UTC()
	done := Replayed{Seq: e.Seq, CommandID: rec.CommandID, Generation: gen, CommandSeq: ack.Sequence, Duplicate: ack.Duplicate}

	ev := commands.Result{
		SchemaVersion: commands.SchemaVersion, CommandID: rec.CommandID, Type: rec.Type, LocationID: rec.LocationID,
		ClientID: e.ClientID, ClientRef: e.ClientRef, Outcome: commands.OutcomeReplayed,
		ErrorClass: rec.ErrorClass, HTTPStatus: rec.HTTPStatus, Attempts: rec.Attempts,
		Replay: gen, ReplayOf: e.Seq, CompletedAt: now, CorrelationID: e.CorrelationID,
		StreamSeq: ack.Sequence, Note: "replayed from the DLQ by " + operator, WorkerID: "dlq:" + operator,
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return Replayed{}, fmt.Errorf("encode replayed event: %w", err)
	}
	if _, err := s.js.PublishMsg(cctx, &nats.Msg{Subject: commands.EventSubject(ev), Header: nats.Header(commands.ResultHeaders(ev)), Data: body}); err != nil {
		return Replayed{}, fmt.Errorf("publish replayed event of dlq entry %d: %w", e.Seq, err)
	}
	m := Mark{State: MarkReplayed, Generation: gen, CommandID: rec.CommandID, CommandSeq: ack.Sequence, ReplayedAt: now, By: operator}
	if err := s.putMark(cctx, e.Seq, m, false); err != nil {
		return Replayed{}, err
	}
	return done, nil
}

// PurgeReport is what Purge deleted.
type PurgeReport struct {
	// Matched is how many entries the filter selected.
	Matched int `json:"matched"`
	// Deleted are the sequences of the deleted entries.
	Deleted []uint64 `json:"deleted"`
}

// Purge deletes the entries f selects from the DLQ stream, and their
// marks. It returns ErrEmptySelection when f selects everything without
// f.All, and ctx's error when cancelled (the report says what was
// deleted). An entry deleted meanwhile by someone else counts as deleted.
func (s *Service) Purge(ctx context.Context, f Filter) (PurgeReport, error) {
	if err := f.Validate(); err != nil {
		return PurgeReport{}, err
	}
	if !f.Selective() && !f.All {
		return PurgeReport{}, ErrEmptySelection
	}
	entries, err := s.list(ctx, f)
	if err != nil {
		return PurgeReport{}, err
	}
	rep := PurgeReport{Matched: len(entries), Deleted: []uint64{}}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		cctx, cancel := s.timeout(ctx)
		var err error
		if ref := e.Record.CommandRef; ref != nil {
			// The command stored on its own goes first, so that a failure
			// in between leaves the record, which still lists it.
			if err = s.dlq.DeleteMsg(cctx, ref.Seq); errors.Is(err, jetstream.ErrMsgNotFound) {
				err = nil
			}
		}
		if err == nil {
			err = s.dlq.DeleteMsg(cctx, e.Seq)
		}
		if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
			err = s.marks.Delete(cctx, MarkKey(e.Seq))
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				err = nil
			}
		}
		cancel()
		if err != nil {
			return rep, fmt.Errorf("purge dlq entry %d: %w", e.Seq, err)
		}
		rep.Deleted = append(rep.Deleted, e.Seq)
		s.metrics.purged.Inc()
	}
	s.cfg.Logger.Info("dlq purged", slog.Int("deleted", len(rep.Deleted)), slog.String("operator", s.cfg.Operator))
	return rep, nil
}
