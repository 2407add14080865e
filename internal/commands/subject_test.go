package commands

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestTypes(t *testing.T) {
	ops := make(map[string]Type)
	for _, typ := range Types() {
		if !typ.Valid() {
			t.Errorf("%q.Valid() = false, want true", typ)
		}
		op := typ.Op()
		if !validToken(op) || op == opUnknown {
			t.Errorf("%q.Op() = %q, want a valid token", typ, op)
		}
		if prev, dup := ops[op]; dup {
			t.Errorf("%q and %q share Op %q", prev, typ, op)
		}
		ops[op] = typ
	}
	for _, typ := range []Type{"", "client", "client.create ", "CLIENT.CREATE"} {
		if typ.Valid() {
			t.Errorf("%q.Valid() = true, want false", typ)
		}
		if got := typ.Op(); got != opUnknown {
			t.Errorf("%q.Op() = %q, want %q", typ, got, opUnknown)
		}
	}
	wantOps := []string{"create", "update", "delete", "bulk_create", "comment_add", "comment_delete", "file_delete"}
	var gotOps []string
	for _, typ := range Types() {
		gotOps = append(gotOps, typ.Op())
	}
	if !slices.Equal(gotOps, wantOps) {
		t.Errorf("ops = %q, want %q", gotOps, wantOps)
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct {
		name string
		c    Command
		want string
	}{
		{name: "safe ref", c: Command{ClientRef: "crm-42_A", ClientID: 7, ID: testID}, want: "ref_crm-42_A"},
		{name: "ref with dot", c: Command{ClientRef: "crm.42"}, want: "refh_" + hashToken("crm.42")},
		{name: "id", c: Command{ClientID: 7, ID: testID}, want: "id_7"},
		{name: "command id", c: Command{ID: testID}, want: "cmd_" + testID},
		{name: "invalid command id", c: Command{ID: "a.b c"}, want: "cmdh_" + hashToken("a.b c")},
		{name: "no id", c: Command{}, want: "cmdh_" + hashToken("")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.ClientKey(); got != tc.want {
				t.Errorf("ClientKey() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClientKeyDistinguishesRefs(t *testing.T) {
	refs := []string{"a.b", "a_b", "a*b", "a>b", "a b", "A.B", "ref_a", "a", "ü", "u", longRef, longRef[:63]}
	seen := make(map[string]string)
	for _, ref := range refs {
		key := Command{ClientRef: ref}.ClientKey()
		if !validToken(key) {
			t.Errorf("ClientKey for ref %q = %q, not a valid token", ref, key)
		}
		if again := (Command{ClientRef: ref, ClientID: 9}).ClientKey(); again != key {
			t.Errorf("ClientKey for ref %q not stable: %q then %q", ref, key, again)
		}
		if prev, dup := seen[key]; dup {
			t.Errorf("refs %q and %q share key %q", prev, ref, key)
		}
		seen[key] = ref
	}
}

func TestSubjects(t *testing.T) {
	c := Command{ID: testID, Type: TypeCommentAdd, LocationID: 42, ClientRef: "crm-42"}
	if got, want := CommandSubject(c), "altegio.cmd.42.ref_crm-42.comment_add"; got != want {
		t.Errorf("CommandSubject = %q, want %q", got, want)
	}
	if got, want := DLQSubject(c), "altegio.dlq.42.comment_add"; got != want {
		t.Errorf("DLQSubject = %q, want %q", got, want)
	}
	r := Result{CommandID: testID, Type: TypeCommentAdd, LocationID: 42, Outcome: OutcomeDeadLettered}
	if got, want := EventSubject(r), "altegio.evt.42.comment_add.dead_lettered"; got != want {
		t.Errorf("EventSubject = %q, want %q", got, want)
	}
	if got, want := ClientCommandFilter(42, c.ClientKey()), "altegio.cmd.42.ref_crm-42.*"; got != want {
		t.Errorf("ClientCommandFilter = %q, want %q", got, want)
	}
}

// TestSubjectsAlwaysValid checks every subject of valid and invalid commands
// and results: the right shape, and every token usable.
func TestSubjectsAlwaysValid(t *testing.T) {
	var cmds []Command
	for _, tc := range commandCases {
		c, _ := Decode([]byte(tc.in))
		cmds = append(cmds, c)
	}
	cmds = append(cmds,
		Command{},
		Command{Type: "a.b", LocationID: -1, ClientRef: "x.y>*", ID: "not a uuid"},
		Command{Type: "client.create\n", ClientRef: " ", ID: "*"},
	)
	for _, c := range cmds {
		checkSubject(t, CommandSubject(c), "altegio.cmd.", 5)
		checkSubject(t, DLQSubject(c), "altegio.dlq.", 4)
		for _, o := range append(Outcomes(), "", "what.ever") {
			r := Result{Type: c.Type, LocationID: c.LocationID, Outcome: o}
			checkSubject(t, EventSubject(r), "altegio.evt.", 5)
		}
	}
	for _, pattern := range []string{CommandSubjects, EventSubjects, DLQSubjects} {
		if !strings.HasSuffix(pattern, ".>") {
			t.Errorf("stream filter %q does not end in .>", pattern)
		}
	}
}

func TestCommandHeaders(t *testing.T) {
	c := Command{ID: testID, Type: TypeClientCreate, LocationID: 1, CorrelationID: "corr"}
	h := CommandHeaders(c)
	want := map[string]string{
		HeaderMsgID:         testID,
		HeaderCommandID:     testID,
		HeaderCommandType:   "client.create",
		HeaderSchemaVersion: "1",
		HeaderClientKey:     "cmd_" + testID,
		HeaderCorrelationID: "corr",
	}
	if len(h) != len(want) {
		t.Errorf("CommandHeaders has %d headers, want %d: %v", len(h), len(want), h)
	}
	for k, v := range want {
		if got := h[k]; len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want [%q]", k, got, v)
		}
	}
	if h := CommandHeaders(Command{Type: TypeClientCreate}); h[HeaderMsgID] != nil {
		t.Errorf("CommandHeaders without id sets %s = %q", HeaderMsgID, h[HeaderMsgID])
	}
}

func TestMsgIDs(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "ResultMsgID", got: ResultMsgID(testID, OutcomeSucceeded), want: testID + ":succeeded"},
		{name: "terminal", got: Result{CommandID: testID, Outcome: OutcomeSucceeded, Attempts: 3}.MsgID(), want: testID + ":succeeded"},
		{name: "failed attempt", got: Result{CommandID: testID, Outcome: OutcomeFailed, Attempts: 2}.MsgID(), want: testID + ":failed:attempt:2"},
		{name: "replay", got: Result{CommandID: testID, Outcome: OutcomeDeadLettered, Replay: 1}.MsgID(), want: testID + ":dead_lettered:replay:1"},
		{name: "unknown command", got: Result{Outcome: OutcomeDeadLettered, StreamSeq: 17}.MsgID(), want: "seq-17:dead_lettered"},
		{name: "replay command", got: ReplayMsgID(testID, 2), want: testID + ":replay:2"},
		{name: "dlq record", got: DLQRecord{CommandID: testID, StreamSeq: 17}.MsgID(), want: "dlq:" + testID + ":17"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	// Distinct outcomes of one command never share an id.
	seen := make(map[string]Outcome)
	for _, o := range Outcomes() {
		id := ResultMsgID(testID, o)
		if prev, dup := seen[id]; dup {
			t.Errorf("outcomes %q and %q share msg id %q", prev, o, id)
		}
		seen[id] = o
	}
}

func TestCheckStoredSubject(t *testing.T) {
	c := Command{Type: TypeClientDelete, LocationID: 1, ClientRef: "mm-body"}
	p := StoredPartition("1", "ref_mm-body", 8)
	for _, tc := range []struct {
		subject string
		wantErr string // "" when the subject agrees
	}{
		{"altegio.cmd." + p + ".1.ref_mm-body.delete", ""},
		{"altegio.cmd." + p + ".2.ref_mm-body.delete", "location"},
		{"altegio.cmd." + p + ".1.ref_other.delete", "client key"},
		{"altegio.cmd." + p + ".1.ref_mm-body.update", "operation"},
		{"altegio.cmd.9.1.ref_mm-body.delete", "partition"},
		{"altegio.cmd.1.ref_mm-body.delete", "is not"},
		{"altegio.evt.1.2.ref_mm-body.delete", "is not"},
	} {
		err := c.CheckStoredSubject(tc.subject, 8)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v, want it to agree", tc.subject, err)
		case tc.wantErr != "" && (!errors.Is(err, ErrSubjectMismatch) || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: %v, want a mismatch naming %q", tc.subject, err, tc.wantErr)
		}
	}
}

// A stored subject splits into its parts, names its lane and its client's
// filter; any other form is refused.
func TestParseStoredSubject(t *testing.T) {
	s, ok := ParseStoredSubject("altegio.cmd.3.7.ref_crm-1.update")
	if !ok || s != (StoredSubject{Partition: "3", Location: "7", ClientKey: "ref_crm-1", Op: "update"}) {
		t.Fatalf("parse = %+v %v", s, ok)
	}
	if s.Lane() != "7.ref_crm-1" || s.ClientFilter() != "altegio.cmd.3.7.ref_crm-1.*" {
		t.Errorf("lane %q, filter %q", s.Lane(), s.ClientFilter())
	}
	for _, bad := range []string{"altegio.cmd.7.ref_crm-1.update", "altegio.evt.3.7.ref_crm-1.update", "altegio.cmd.3.7.ref.crm.update", ""} {
		if _, ok := ParseStoredSubject(bad); ok {
			t.Errorf("ParseStoredSubject(%q) is ok", bad)
		}
	}
}

func TestFilters(t *testing.T) {
	tests := []struct{ got, want string }{
		{EventFilter(0, "", ""), "altegio.evt.*.*.*"},
		{EventFilter(7, "update", OutcomeSucceeded), "altegio.evt.7.update.succeeded"},
		{EventFilter(-1, "", OutcomeFailed), "altegio.evt.*.*.failed"},
		{DLQFilter(0, ""), DLQRecordFilter},
		{DLQFilter(7, "create"), "altegio.dlq.7.create"},
		{PartitionFilter(3), "altegio.cmd.3.>"},
		{AccountAttentionSubject(7), "altegio.evt.7.account.needs_attention"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	// Every result event matches the filter of its own parts.
	r := Result{LocationID: 7, Type: TypeClientUpdate, Outcome: OutcomeSucceeded}
	if got, want := EventSubject(r), EventFilter(r.LocationID, r.Type.Op(), r.Outcome); got != want {
		t.Errorf("event subject %q, filter %q", got, want)
	}
}
