package dlq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/idem"
)

// Status is where a DLQ entry stands; see the package documentation.
type Status string

// The statuses of an Entry.
const (
	// StatusDead: dead-lettered and not replayed.
	StatusDead Status = "dead"
	// StatusReplayed: republished; the replay has no terminal outcome yet.
	StatusReplayed Status = "replayed"
	// StatusFailedAgain: the replay was dead-lettered again; a newer entry
	// holds that failure.
	StatusFailedAgain Status = "failed_again"
	// StatusResolved: the command reached succeeded (or superseded).
	StatusResolved Status = "resolved"
)

// Statuses returns every status, in a stable order.
func Statuses() []Status {
	return []Status{StatusDead, StatusReplayed, StatusFailedAgain, StatusResolved}
}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool { return slices.Contains(Statuses(), s) }

// Filter selects entries. Every set field must match (AND); the zero value
// selects every entry. It is also the JSON selection of the HTTP API.
type Filter struct {
	// LocationID selects one location (0: any).
	LocationID int64 `json:"location_id,omitempty"`
	// Type selects one command type.
	Type commands.Type `json:"type,omitempty"`
	// Class selects one error class.
	Class commands.ErrorClass `json:"error_class,omitempty"`
	// HTTPStatus selects the status of the API's last answer.
	HTTPStatus int `json:"http_status,omitempty"`
	// Since and Until bound the time the entry was dead-lettered:
	// Since <= t < Until.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// ClientID and ClientRef select the command's client_id or client_ref.
	ClientID  int64  `json:"client_id,omitempty"`
	ClientRef string `json:"client_ref,omitempty"`
	// Text selects entries whose reason, API message or field errors
	// contain it, case-insensitively.
	Text string `json:"text,omitempty"`
	// IDs selects command ids, Seqs DLQ stream sequences; an entry
	// matches when it is in either list (when both are empty, any entry).
	IDs  []string `json:"ids,omitempty"`
	Seqs []uint64 `json:"seqs,omitempty"`
	// Status selects one status.
	Status Status `json:"status,omitempty"`
	// All must be set for Replay and Purge to act on a filter that
	// selects everything.
	All bool `json:"all,omitempty"`
}

// Validate reports a filter that cannot match anything sensible.
func (f Filter) Validate() error {
	var errs []error
	if f.Type != "" && !f.Type.Valid() {
		errs = append(errs, fmt.Errorf("type %q is not a command type", f.Type))
	}
	if f.Class != "" && !f.Class.Valid() {
		errs = append(errs, fmt.Errorf("error class %q is not one of %v", f.Class, commands.ErrorClasses()))
	}
	if f.Status != "" && !f.Status.Valid() {
		errs = append(errs, fmt.Errorf("status %q is not one of %v", f.Status, Statuses()))
	}
	if f.LocationID < 0 || f.ClientID < 0 || f.HTTPStatus < 0 {
		errs = append(errs, errors.New("location, client id and http status must not be negative"))
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		errs = append(errs, errors.New("until must be after since"))
	}
	return errors.Join(errs...)
}

// Selective reports whether f narrows the selection at all (All aside).
func (f Filter) Selective() bool {
	return f.LocationID != 0 || f.Type != "" || f.Class != "" || f.HTTPStatus != 0 ||
		!f.Since.IsZero() || !f.Until.IsZero() || f.ClientID != 0 || f.ClientRef != "" ||
		f.Text != "" || len(f.IDs) > 0 || len(f.Seqs) > 0 || f.Status != ""
}

// subject returns the DLQ subject filter for the location and type.
func (f Filter) subject() string {
	var op string
	if f.Type != "" {
		op = f.Type.Op()
	}
	return commands.DLQFilter(f.LocationID, op)
}

// matchRecord reports whether e matches everything but Status.
func (f Filter) matchRecord(e Entry) bool {
	r := e.Record
	if len(f.IDs) > 0 || len(f.Seqs) > 0 {
		if !slices.Contains(f.IDs, r.CommandID) && !slices.Contains(f.Seqs, e.Seq) {
			return false
		}
	}
	switch {
	case f.LocationID != 0 && r.LocationID != f.LocationID,
		f.Type != "" && r.Type != f.Type,
		f.Class != "" && r.ErrorClass != f.Class,
		f.HTTPStatus != 0 && r.HTTPStatus != f.HTTPStatus,
		f.ClientID != 0 && e.ClientID != f.ClientID,
		f.ClientRef != "" && e.ClientRef != f.ClientRef:
		return false
	}
	at := e.DeadLetteredAt()
	if (!f.Since.IsZero() && at.Before(f.Since)) || (!f.Until.IsZero() && !at.Before(f.Until)) {
		return false
	}
	if f.Text != "" && !strings.Contains(strings.ToLower(e.errorText()), strings.ToLower(f.Text)) {
		return false
	}
	return true
}

// Entry is one dead letter: the DLQ record, where it is stored, what the
// command names, and its status.
type Entry struct {
	// Seq is the entry's DLQ stream sequence: its id for show, replay
	// and purge.
	Seq uint64 `json:"seq"`
	// Subject is the DLQ subject, altegio.dlq.<location>.<op>.
	Subject string `json:"subject"`
	// StoredAt is when the DLQ stream stored the record.
	StoredAt time.Time `json:"stored_at"`
	// Record is the dead-letter record as the worker wrote it.
	Record commands.DLQRecord `json:"record"`
	// ClientID, ClientRef and CorrelationID are read from the command.
	ClientID      int64  `json:"client_id,omitempty"`
	ClientRef     string `json:"client_ref,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	// Status combines the mark and the command's idempotency record.
	Status Status `json:"status"`
	// Outcome is the command's terminal outcome from its idempotency
	// record, when it is resolved.
	Outcome commands.Outcome `json:"outcome,omitempty"`
	// Mark is the entry's replay mark, if any.
	Mark *Mark `json:"mark,omitempty"`
	// Problem describes an entry whose record could not be decoded.
	Problem string `json:"problem,omitempty"`
}

// DeadLetteredAt is when the command was dead-lettered (the stored time
// when the record does not say).
func (e Entry) DeadLetteredAt() time.Time {
	if !e.Record.DeadLetteredAt.IsZero() {
		return e.Record.DeadLetteredAt
	}
	return e.StoredAt
}

// Client names the entry's client for people: "ref <ref>", "id <id>" or "".
func (e Entry) Client() string {
	switch {
	case e.ClientRef != "":
		return "ref " + e.ClientRef
	case e.ClientID > 0:
		return "id " + strconv.FormatInt(e.ClientID, 10)
	}
	return ""
}

// errorText is everything Filter.Text searches.
func (e Entry) errorText() string {
	var b strings.Builder
	b.WriteString(e.Record.Reason)
	b.WriteString("\n")
	b.WriteString(e.Record.APIMessage)
	for _, p := range e.Record.FieldErrors {
		b.WriteString("\n" + p.Path + ": " + p.Reason)
	}
	return b.String()
}

// Summary counts a list of entries.
type Summary struct {
	// Total is the number of entries listed.
	Total int `json:"total"`
	// ByStatus counts entries per status.
	ByStatus map[Status]int `json:"by_status"`
	// ByReason counts entries per error class and HTTP status, most
	// frequent first.
	ByReason []ReasonCount `json:"by_reason"`
}

// ReasonCount is the number of entries with one error class and status.
type ReasonCount struct {
	// Class is the error class.
	Class commands.ErrorClass `json:"error_class"`
	// HTTPStatus is the status of the API's last answer (0: none).
	HTTPStatus int `json:"http_status,omitempty"`
	// Count is the number of entries.
	Count int `json:"count"`
}

// Summarize counts entries.
func Summarize(entries []Entry) Summary {
	s := Summary{Total: len(entries), ByStatus: map[Status]int{}, ByReason: []ReasonCount{}}
	idx := map[ReasonCount]int{}
	for _, e := range entries {
		s.ByStatus[e.Status]++
		k := ReasonCount{Class: e.Record.ErrorClass, HTTPStatus: e.Record.HTTPStatus}
		if i, ok := idx[k]; ok {
			s.ByReason[i].Count++
			continue
		}
		idx[k] = len(s.ByReason)
		k.Count = 1
		s.ByReason = append(s.ByReason, k)
	}
	slices.SortStableFunc(s.ByReason, func(a, b ReasonCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Class, b.Class), cmp.Compare(a.HTTPStatus, b.HTTPStatus))
	})
	return s
}

// List returns the entries f selects, in DLQ order, with their summary. It
// reads the whole DLQ (narrowed by location and type on the server), the
// marks and the idempotency records of the listed commands. It returns an
// error for an invalid filter or when NATS fails.
func (s *Service) List(ctx context.Context, f Filter) ([]Entry, Summary, error) {
	if err := f.Validate(); err != nil {
		return nil, Summary{}, err
	}
	entries, err := s.list(ctx, f)
	if err != nil {
		return nil, Summary{}, err
	}
	return entries, Summarize(entries), nil
}

// list is List without validation and summary.
func (s *Service) list(ctx context.Context, f Filter) ([]Entry, error) {
	var raw []Entry
	keep := func(e Entry) {
		if f.matchRecord(e) {
			raw = append(raw, e)
		}
	}
	var err error
	if len(f.Seqs) > 0 && len(f.IDs) == 0 {
		err = s.get(ctx, f.Seqs, keep)
	} else {
		err = s.scan(ctx, f.subject(), keep)
	}
	if err != nil {
		return nil, err
	}
	if err := s.annotate(ctx, raw); err != nil {
		return nil, err
	}
	out := raw[:0]
	for _, e := range raw {
		if f.Status == "" || e.Status == f.Status {
			out = append(out, e)
		}
	}
	return out, nil
}

// Show returns the entries of a DLQ sequence (a decimal number) or of a
// command id, in DLQ order. It returns ErrNotFound when there is none.
func (s *Service) Show(ctx context.Context, idOrSeq string) ([]Entry, error) {
	f := Filter{IDs: []string{idOrSeq}}
	if seq, err := strconv.ParseUint(idOrSeq, 10, 64); err == nil {
		f = Filter{Seqs: []uint64{seq}}
	}
	entries, err := s.list(ctx, f)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, idOrSeq)
	}
	return entries, nil
}

// get reads entries by sequence.
func (s *Service) get(ctx context.Context, seqs []uint64, fn func(Entry)) error {
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	for _, seq := range slices.Compact(seqs) {
		cctx, cancel := s.timeout(ctx)
		m, err := s.dlq.GetMsg(cctx, seq)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("get dlq entry %d: %w", seq, err)
		}
		if commands.IsDLQCommandSubject(m.Subject) {
			continue // a command stored apart, reached through its record
		}
		fn(decodeEntry(m.Sequence, m.Subject, m.Time, m.Data))
	}
	return nil
}

// scan reads every entry on subject, from the first to the last stored
// when the scan started.
func (s *Service) scan(ctx context.Context, subject string, fn func(Entry)) error {
	cctx, cancel := s.timeout(ctx)
	cons, err := s.dlq.OrderedConsumer(cctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("read dlq: %w", err)
	}
	info := cons.CachedInfo()
	if info == nil || info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read dlq: %w", err)
	}
	defer it.Stop()
	for {
		cctx, cancel := s.timeout(ctx)
		m, err := it.Next(jetstream.NextContext(cctx))
		cancel()
		if err != nil {
			return fmt.Errorf("read dlq: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read dlq: %w", err)
		}
		fn(decodeEntry(md.Sequence.Stream, m.Subject(), md.Timestamp, m.Data()))
		if md.NumPending == 0 {
			return nil
		}
	}
}

// decodeEntry builds an entry from a stored DLQ message.
func decodeEntry(seq uint64, subject string, at time.Time, data []byte) Entry {
	e := Entry{Seq: seq, Subject: subject, StoredAt: at.UTC(), Status: StatusDead}
	if err := json.Unmarshal(data, &e.Record); err != nil {
		e.Problem = "undecodable DLQ record: " + err.Error()
		return e
	}
	var c struct {
		ClientID      int64  `json:"client_id"`
		ClientRef     string `json:"client_ref"`
		CorrelationID string `json:"correlation_id"`
	}
	if len(e.Record.Command) > 0 && json.Unmarshal(e.Record.Command, &c) == nil {
		e.ClientID, e.ClientRef, e.CorrelationID = c.ClientID, c.ClientRef, c.CorrelationID
	}
	return e
}

// annotate sets the mark, status and outcome of every entry.
func (s *Service) annotate(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	marks, err := s.loadMarks(ctx)
	if err != nil {
		return err
	}
	records := map[string]*idem.Record{}
	for i := range entries {
		e := &entries[i]
		if m, ok := marks[e.Seq]; ok {
			e.Mark = &m
		}
		id := e.Record.CommandID
		rec, seen := records[id]
		if !seen && id != "" {
			cctx, cancel := s.timeout(ctx)
			r, _, err := idem.Load(cctx, s.idem, id)
			cancel()
			switch {
			case err == nil:
				rec = &r
			case errors.Is(err, jetstream.ErrKeyNotFound):
			default:
				return fmt.Errorf("idempotency record of %s: %w", id, err)
			}
			records[id] = rec
		}
		e.Status, e.Outcome = status(e.Mark, rec)
	}
	return nil
}

// status derives an entry's status from its mark and the command's
// idempotency record (nil when there is none).
func status(m *Mark, rec *idem.Record) (Status, commands.Outcome) {
	if rec != nil && rec.State == idem.StateDone {
		var o commands.Outcome
		if rec.Result != nil {
			o = rec.Result.Outcome
		}
		return StatusResolved, o
	}
	if m == nil {
		return StatusDead, ""
	}
	if m.State == MarkResolved {
		return StatusResolved, m.Outcome
	}
	if rec != nil && rec.State == idem.StateDead && m.CommandSeq != 0 && rec.StreamSeq >= m.CommandSeq {
		return StatusFailedAgain, ""
	}
	return StatusReplayed, ""
}
