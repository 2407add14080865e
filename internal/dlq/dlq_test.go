package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A command fails permanently (422), the sandbox is fixed, the replay
// succeeds exactly once; replaying again changes nothing.
func TestReplayAfterFixSucceedsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startWorker()
	remove := refuseCreates(e.sb)
	var cmds []commands.Command
	for i := range 3 {
		c := createCmd("fix-"+string(rune('a'+i)), "Ann", phone(100+i))
		cmds = append(cmds, c)
		e.publish(c)
	}
	f := Filter{Class: commands.ClassPermanent, HTTPStatus: 422}
	entries := e.waitList(f, 3)
	for _, en := range entries {
		if en.Status != StatusDead || en.Record.Type != commands.TypeClientCreate || !strings.HasPrefix(en.ClientRef, "fix-") {
			t.Fatalf("entry: %+v", en)
		}
	}
	if got := e.metric("dlq_depth", nil); got != 3 {
		t.Errorf("dlq_depth = %v, want 3", got)
	}

	remove() // the sandbox is fixed
	cmdsBefore := e.streamMsgs(topology.StreamCommands)
	plan, err := e.svc.Replay(context.Background(), f, ReplayOptions{DryRun: true})
	if err != nil || len(plan.Planned) != 3 || len(plan.Replayed) != 0 || !plan.DryRun {
		t.Fatalf("dry run: %+v, %v", plan, err)
	}
	if n := e.streamMsgs(topology.StreamCommands); n != cmdsBefore {
		t.Fatalf("dry run published: %d commands", n)
	}

	var progress []Progress
	rep, err := e.svc.Replay(context.Background(), f, ReplayOptions{Progress: func(p Progress) { progress = append(progress, p) }})
	if err != nil || len(rep.Replayed) != 3 || rep.Remaining != 0 {
		t.Fatalf("replay: %+v, %v", rep, err)
	}
	if len(progress) != 3 || progress[2].Done != 3 || progress[2].Total != 3 {
		t.Errorf("progress: %+v", progress)
	}
	for _, c := range cmds {
		got := e.waitEvent(c.ID, commands.OutcomeSucceeded, 1)
		if got.ReplayOf == 0 {
			t.Errorf("succeeded event without replay_of: %+v", got)
		}
	}
	e.waitList(Filter{Status: StatusResolved}, 3)

	// Again: nothing left to replay; no API call, no publication.
	calls := e.sb.Stats().ByOp[sandbox.OpClientCreate]
	again, err := e.svc.Replay(context.Background(), f, ReplayOptions{})
	if err != nil || len(again.Planned) != 0 || len(again.Skipped) != 3 || !strings.HasPrefix(again.Skipped[0].Reason, "already resolved") {
		t.Fatalf("second replay: %+v, %v", again, err)
	}
	for i, c := range cmds {
		if n := e.sb.Stats().CreatesByPhone[digits(phone(100+i))]; n != 1 {
			t.Errorf("%s created %d times", c.ClientRef, n)
		}
		if n := len(e.eventsOf(c.ID, commands.OutcomeReplayed)); n != 1 {
			t.Errorf("%s: %d replayed events, want 1", c.ClientRef, n)
		}
		if n := len(e.eventsOf(c.ID, commands.OutcomeSucceeded)); n != 1 {
			t.Errorf("%s: %d succeeded events, want 1", c.ClientRef, n)
		}
	}
	if n := e.sb.Stats().ByOp[sandbox.OpClientCreate]; n != calls {
		t.Errorf("create calls %d → %d after replaying resolved entries", calls, n)
	}
	// Entries are marked, not deleted; the marks say resolved.
	all := e.waitList(f, 3)
	for _, en := range all {
		if en.Mark == nil || en.Mark.State != MarkResolved || en.Mark.Generation != 1 || en.Mark.By != "tester" || en.Outcome != commands.OutcomeSucceeded {
			t.Errorf("mark of %d: %+v (outcome %s)", en.Seq, en.Mark, en.Outcome)
		}
	}
	if got := e.metric("dlq_replays_total", map[string]string{"result": "replayed"}); got != 3 {
		t.Errorf("dlq_replays_total{replayed} = %v, want 3", got)
	}
}

// A replay that fails again yields a new entry; the old one reads
// failed_again and is not replayed twice; once the command succeeded, its
// entries are resolved and replaying any of them calls nothing.
func TestReplayOfSucceededCommandCallsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startWorker()
	remove := refuseCreates(e.sb)
	c := createCmd("again-1", "Bo", phone(200))
	e.publish(c)
	first := e.waitList(Filter{IDs: []string{c.ID}}, 1)[0]

	if _, err := e.svc.Replay(context.Background(), Filter{Seqs: []uint64{first.Seq}}, ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEvent(c.ID, commands.OutcomeDeadLettered, 1) // still broken
	both := e.waitList(Filter{IDs: []string{c.ID}}, 2)
	if both[0].Status != StatusFailedAgain || both[1].Status != StatusDead || both[1].Record.Replay != 1 {
		t.Fatalf("entries after a failed replay: %s/%s (replay %d)", both[0].Status, both[1].Status, both[1].Record.Replay)
	}
	remove()
	rep, err := e.svc.Replay(context.Background(), Filter{IDs: []string{c.ID}}, ReplayOptions{})
	if err != nil || len(rep.Replayed) != 1 || rep.Replayed[0].Seq != both[1].Seq || rep.Replayed[0].Generation != 2 {
		t.Fatalf("replay of the command's entries: %+v, %v", rep, err)
	}
	e.waitEvent(c.ID, commands.OutcomeSucceeded, 2)
	e.waitList(Filter{IDs: []string{c.ID}, Status: StatusResolved}, 2)

	calls := e.sb.Stats().Requests
	cmdsBefore := e.streamMsgs(topology.StreamCommands)
	rep, err = e.svc.Replay(context.Background(), Filter{Seqs: []uint64{first.Seq, both[1].Seq}}, ReplayOptions{})
	if err != nil || len(rep.Replayed) != 0 || len(rep.Skipped) != 2 {
		t.Fatalf("replay of resolved entries: %+v, %v", rep, err)
	}
	if n := e.sb.Stats().Requests; n != calls {
		t.Errorf("API calls %d → %d", calls, n)
	}
	if n := e.streamMsgs(topology.StreamCommands); n != cmdsBefore {
		t.Errorf("commands published for resolved entries")
	}
	if n := e.sb.Stats().CreatesByPhone[digits(phone(200))]; n != 1 {
		t.Errorf("created %d times", n)
	}
}

// A replay cancelled halfway and started again with the same selection
// replays every entry exactly once.
func TestInterruptedReplayResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startWorker()
	remove := refuseCreates(e.sb)
	const n = 6
	var cmds []commands.Command
	for i := range n {
		c := createCmd("resume-"+string(rune('a'+i)), "Cy", phone(300+i))
		cmds = append(cmds, c)
		e.publish(c)
	}
	f := Filter{Type: commands.TypeClientCreate, Text: "INJECTED"}
	e.waitList(f, n)
	remove()

	ctx, cancel := context.WithCancel(context.Background())
	rep, err := e.svc.Replay(ctx, f, ReplayOptions{Rate: 20, Progress: func(p Progress) {
		if p.Done == 3 {
			cancel() // Ctrl-C
		}
	}})
	if !errors.Is(err, context.Canceled) || len(rep.Replayed) != 3 || rep.Remaining != n-3 {
		t.Fatalf("interrupted replay: replayed %d, remaining %d, err %v", len(rep.Replayed), rep.Remaining, err)
	}
	rep2, err := e.svc.Replay(context.Background(), f, ReplayOptions{Rate: 20})
	if err != nil || len(rep2.Replayed) != n-3 || len(rep2.Skipped) != 3 {
		t.Fatalf("resumed replay: replayed %d, skipped %d, err %v", len(rep2.Replayed), len(rep2.Skipped), err)
	}
	done := map[uint64]bool{}
	for _, r := range append(rep.Replayed, rep2.Replayed...) {
		if done[r.Seq] {
			t.Errorf("entry %d replayed twice", r.Seq)
		}
		done[r.Seq] = true
	}
	for i, c := range cmds {
		e.waitEvent(c.ID, commands.OutcomeSucceeded, 1)
		if k := len(e.eventsOf(c.ID, commands.OutcomeReplayed)); k != 1 {
			t.Errorf("%s: %d replayed events", c.ClientRef, k)
		}
		if k := e.sb.Stats().CreatesByPhone[digits(phone(300+i))]; k != 1 {
			t.Errorf("%s: created %d times", c.ClientRef, k)
		}
	}
}

// A crash between the republication and the mark: the next run publishes
// the same message id, which the stream drops, and then marks.
func TestReplayRepeatedAfterLostMarkIsDeduplicated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seq := publishRecord(t, e.js, fixture()[0])
	ctx := context.Background()
	first, err := e.svc.Replay(ctx, Filter{Seqs: []uint64{seq}}, ReplayOptions{})
	if err != nil || len(first.Replayed) != 1 || first.Replayed[0].Duplicate {
		t.Fatalf("replay: %+v, %v", first, err)
	}
	if err := e.svc.marks.Delete(ctx, MarkKey(seq)); err != nil { // the mark never got written
		t.Fatal(err)
	}
	again, err := e.svc.Replay(ctx, Filter{Seqs: []uint64{seq}}, ReplayOptions{})
	if err != nil || len(again.Replayed) != 1 || !again.Replayed[0].Duplicate || again.Replayed[0].CommandSeq != first.Replayed[0].CommandSeq {
		t.Fatalf("repeated replay: %+v, %v", again, err)
	}
	if n := e.streamMsgs(topology.StreamCommands); n != 1 {
		t.Errorf("COMMANDS holds %d messages, want 1", n)
	}
	en := e.waitList(Filter{Seqs: []uint64{seq}, Status: StatusReplayed}, 1)[0]
	if en.Mark == nil || en.Mark.Generation != 1 {
		t.Errorf("mark: %+v", en.Mark)
	}
	// The republished command: same id and body, new message id, replay
	// headers with the original acceptance order.
	s, _ := e.js.Stream(ctx, topology.StreamCommands)
	m, err := s.GetMsg(ctx, first.Replayed[0].CommandSeq)
	if err != nil {
		t.Fatal(err)
	}
	rec := fixture()[0]
	for k, want := range map[string]string{
		commands.HeaderMsgID: commands.ReplayMsgID(rec.CommandID, 1), commands.HeaderReplay: "1",
		commands.HeaderReplayOf: itoa(seq), commands.HeaderOriginalSeq: itoa(rec.StreamSeq),
		commands.HeaderCommandID: rec.CommandID,
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if string(m.Data) != string(rec.Command) {
		t.Errorf("body %s, want %s", m.Data, rec.Command)
	}
}

// A replayed update older than the client's last applied change ends as
// superseded, and its entry reads resolved (superseded).
func TestReplaySuperseded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startWorker()
	create := createCmd("sup-1", "Di", phone(400))
	e.publish(create)
	e.waitEvent(create.ID, commands.OutcomeSucceeded, 0)
	remove := e.sb.Inject(sandbox.Rule{Op: sandbox.OpClientUpdate, Status: http.StatusUnprocessableEntity, Times: 1})
	old := updateCmd("sup-1", "Old", phone(400))
	e.publish(old)
	e.waitList(Filter{IDs: []string{old.ID}}, 1)
	remove()
	newer := updateCmd("sup-1", "New", phone(400))
	e.publish(newer)
	e.waitEvent(newer.ID, commands.OutcomeSucceeded, 0)

	if _, err := e.svc.Replay(context.Background(), Filter{ClientRef: "sup-1"}, ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	got := e.waitEvent(old.ID, commands.OutcomeSuperseded, 1)
	if !strings.Contains(got.Note, "newer command") {
		t.Errorf("superseded event: %+v", got)
	}
	en := e.waitList(Filter{IDs: []string{old.ID}, Status: StatusResolved}, 1)[0]
	if en.Outcome != commands.OutcomeSuperseded {
		t.Errorf("outcome %q, want superseded", en.Outcome)
	}
	for _, c := range e.sb.Clients(testLoc) {
		if c.Name != "New" {
			t.Errorf("client %q: the old update overwrote the newer one", c.Name)
		}
	}
}

// fixture is a set of synthetic dead letters with fixed times and ids.
func fixture() []commands.DLQRecord {
	at := func(h int) time.Time { return time.Date(2026, 11, 30, h, 0, 0, 0, time.UTC) }
	rec := func(id string, t commands.Type, loc int64, ref string, clientID int64, class commands.ErrorClass, status int, reason, msg string, h int, seq uint64) commands.DLQRecord {
		c := map[string]any{"id": id, "type": t, "location_id": loc, "payload": map[string]any{"name": "X", "phone": "+13155550100"}}
		if ref != "" {
			c["client_ref"] = ref
		}
		if clientID > 0 {
			c["client_id"] = clientID
		}
		b, _ := json.Marshal(c)
		return commands.DLQRecord{SchemaVersion: 1, Command: b, Subject: "altegio.cmd.0.x", StreamSeq: seq, CommandID: id,
			Type: t, LocationID: loc, ErrorClass: class, Reason: reason, HTTPStatus: status, APIMessage: msg,
			Attempts: 1, FirstFailureAt: at(h), LastFailureAt: at(h), DeadLetteredAt: at(h), WorkerID: "w1",
			Headers: map[string][]string{commands.HeaderCommandType: {string(t)}}}
	}
	return []commands.DLQRecord{
		rec("0193f3c2-0000-7000-8000-000000000001", commands.TypeClientCreate, 1, "crm-1", 0, commands.ClassPermanent, 422, "create client 1: status 422: Phone is taken", "Phone is taken", 9, 11),
		rec("0193f3c2-0000-7000-8000-000000000002", commands.TypeClientUpdate, 1, "crm-2", 0, commands.ClassPermanent, 404, "unknown client_ref \"crm-2\" in location 1", "", 10, 12),
		rec("0193f3c2-0000-7000-8000-000000000003", commands.TypeClientDelete, 2, "", 77, commands.ClassAuth, 401, "account needs attention: user token rejected", "Unauthorized", 11, 13),
		rec("0193f3c2-0000-7000-8000-000000000004", commands.TypeClientCreate, 2, "crm-4", 0, commands.ClassExhausted, 503, "8 attempts made, last: status 503", "", 12, 14),
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var s []uint64
	for _, r := range fixture() {
		s = append(s, publishRecord(t, e.js, r))
	}
	at := func(h int) time.Time { return time.Date(2026, 11, 30, h, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"all", Filter{}, s},
		{"location", Filter{LocationID: 2}, s[2:]},
		{"type", Filter{Type: commands.TypeClientCreate}, []uint64{s[0], s[3]}},
		{"location and type", Filter{LocationID: 2, Type: commands.TypeClientCreate}, s[3:]},
		{"class", Filter{Class: commands.ClassPermanent}, s[:2]},
		{"http status", Filter{HTTPStatus: 401}, s[2:3]},
		{"since", Filter{Since: at(11)}, s[2:]},
		{"until", Filter{Until: at(10)}, s[:1]},
		{"range", Filter{Since: at(10), Until: at(12)}, s[1:3]},
		{"client id", Filter{ClientID: 77}, s[2:3]},
		{"client ref", Filter{ClientRef: "crm-2"}, s[1:2]},
		{"text in reason", Filter{Text: "PHONE IS"}, s[:1]},
		{"text in api message", Filter{Text: "unauthorized"}, s[2:3]},
		{"ids", Filter{IDs: []string{"0193f3c2-0000-7000-8000-000000000004"}}, s[3:]},
		{"seqs", Filter{Seqs: []uint64{s[1], s[2], 999}}, s[1:3]},
		{"ids or seqs", Filter{IDs: []string{"0193f3c2-0000-7000-8000-000000000001"}, Seqs: []uint64{s[3]}}, []uint64{s[0], s[3]}},
		{"status", Filter{Status: StatusDead}, s},
		{"none", Filter{Status: StatusResolved}, nil},
		{"and", Filter{Class: commands.ClassPermanent, LocationID: 2}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, sum, err := e.svc.List(context.Background(), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seqs(got), tc.want) || sum.Total != len(tc.want) {
				t.Errorf("seqs %v (total %d), want %v", seqs(got), sum.Total, tc.want)
			}
		})
	}
	_, sum, _ := e.svc.List(context.Background(), Filter{})
	if sum.ByReason[0] != (ReasonCount{Class: commands.ClassAuth, HTTPStatus: 401, Count: 1}) || len(sum.ByReason) != 4 || sum.ByStatus[StatusDead] != 4 {
		t.Errorf("summary: %+v", sum)
	}
	if _, _, err := e.svc.List(context.Background(), Filter{Type: "client.nope"}); err == nil {
		t.Error("invalid type accepted")
	}
	if got, err := e.svc.Show(context.Background(), "0193f3c2-0000-7000-8000-000000000002"); err != nil || len(got) != 1 || got[0].Seq != s[1] {
		t.Errorf("show by id: %+v, %v", got, err)
	}
	if _, err := e.svc.Show(context.Background(), "4242"); !errors.Is(err, ErrNotFound) {
		t.Errorf("show of a missing seq: %v", err)
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var s []uint64
	for _, r := range fixture() {
		s = append(s, publishRecord(t, e.js, r))
	}
	ctx := context.Background()
	if _, err := e.svc.Purge(ctx, Filter{}); !errors.Is(err, ErrEmptySelection) {
		t.Fatalf("purge without selection: %v", err)
	}
	if _, err := e.svc.Replay(ctx, Filter{Seqs: s[:1]}, ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := e.svc.Purge(ctx, Filter{Class: commands.ClassPermanent})
	if err != nil || !slices.Equal(rep.Deleted, s[:2]) {
		t.Fatalf("purge: %+v, %v", rep, err)
	}
	if _, err := e.svc.marks.Get(ctx, MarkKey(s[0])); err == nil {
		t.Error("the purged entry's mark is still there")
	}
	left, _, _ := e.svc.List(ctx, Filter{})
	if !slices.Equal(seqs(left), s[2:]) {
		t.Errorf("left after purge: %v", seqs(left))
	}
	if got := e.metric("dlq_depth", nil); got != 2 {
		t.Errorf("dlq_depth = %v, want 2", got)
	}
	rep, err = e.svc.Purge(ctx, Filter{All: true})
	if err != nil || len(rep.Deleted) != 2 || e.streamMsgs(topology.StreamDLQ) != 0 {
		t.Fatalf("purge all: %+v, %v", rep, err)
	}
}

// refuseCreates makes the sandbox answer 422 to every create, alone or
// coalesced into a bulk request, until the returned function is called.
func refuseCreates(sb *sandbox.Server) func() {
	one := sb.Inject(sandbox.Rule{Op: sandbox.OpClientCreate, Status: http.StatusUnprocessableEntity})
	bulk := sb.Inject(sandbox.Rule{Op: sandbox.OpClientBulk, Status: http.StatusUnprocessableEntity})
	return func() {
		one()
		bulk()
	}
}

// A command too large for its DLQ record to embed is stored on its own in
// the DLQ stream and the record points at it: the entry is listed, replay
// republishes exactly the original bytes, and purge removes both.
func TestTooLargeCommandIsStoredByReference(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startWorker()
	c := createCmd("huge-dlq", "Huge", phone(400))
	body := []byte(`{"id":"` + c.ID + `","type":"client.create","location_id":1,"client_ref":"huge-dlq",` +
		`"payload":{"name":"Huge","phone":"` + phone(400) + `","custom_fields":{"x":"` +
		strings.Repeat("a", 1_045_000) + `"}}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: commands.CommandSubject(c),
		Header: nats.Header(commands.CommandHeaders(c)), Data: body}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	f := Filter{IDs: []string{c.ID}}
	entries := e.waitList(f, 1)
	rec := entries[0].Record
	if rec.CommandRef == nil || len(rec.Command) != 0 || rec.CommandRef.Size != len(body) || rec.ErrorClass != commands.ClassInvalid {
		t.Fatalf("record: ref %+v, %d bytes embedded, class %s", rec.CommandRef, len(rec.Command), rec.ErrorClass)
	}
	if got := e.metric("dlq_depth", nil); got != 1 {
		t.Errorf("dlq_depth = %v, want 1 (the command stored apart is no entry)", got)
	}
	if _, err := e.svc.Show(ctx, strconv.FormatUint(rec.CommandRef.Seq, 10)); !errors.Is(err, ErrNotFound) {
		t.Errorf("show of the stored command's sequence = %v, want ErrNotFound", err)
	}
	got, err := e.svc.commandBytes(ctx, rec)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("the stored command: %d bytes, %v; want the original %d bytes", len(got), err, len(body))
	}
	rep, err := e.svc.Replay(ctx, f, ReplayOptions{})
	if err != nil || len(rep.Replayed) != 1 {
		t.Fatalf("replay: %+v, %v", rep, err)
	}
	// The replay is the same command: too large again, dead-lettered again
	// by reference.
	again := e.waitList(Filter{IDs: []string{c.ID}, All: true}, 2)
	if ref := again[len(again)-1].Record.CommandRef; ref == nil || ref.Size != len(body) {
		t.Errorf("the replay's record: %+v", again[len(again)-1].Record.CommandRef)
	}
	if _, err := e.svc.Purge(ctx, Filter{IDs: []string{c.ID}}); err != nil {
		t.Fatalf("purge: %v", err)
	}
	if _, err := e.svc.dlq.GetMsg(ctx, rec.CommandRef.Seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the stored command outlived its purged record: %v", err)
	}
}
