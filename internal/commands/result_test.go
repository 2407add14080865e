package commands

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestOutcomes(t *testing.T) {
	terminal := map[Outcome]bool{OutcomeSucceeded: true, OutcomePartiallySucceeded: true, OutcomeDeadLettered: true, OutcomeSuperseded: true}
	for _, o := range Outcomes() {
		if !o.Valid() {
			t.Errorf("%q.Valid() = false", o)
		}
		if got, want := o.Terminal(), terminal[o]; got != want {
			t.Errorf("%q.Terminal() = %v, want %v", o, got, want)
		}
	}
	if Outcome("done").Valid() || Outcome("done").Terminal() {
		t.Error(`Outcome("done") is valid or terminal`)
	}
}

func TestErrorClasses(t *testing.T) {
	retryable := map[ErrorClass]bool{ClassTransient: true, ClassRateLimited: true, ClassAmbiguous: true}
	for _, c := range ErrorClasses() {
		if !c.Valid() {
			t.Errorf("%q.Valid() = false", c)
		}
		if got, want := c.Retryable(), retryable[c]; got != want {
			t.Errorf("%q.Retryable() = %v, want %v", c, got, want)
		}
	}
	if ErrorClass("oops").Valid() {
		t.Error(`ErrorClass("oops").Valid() = true`)
	}
}

func TestResultHeaders(t *testing.T) {
	r := Result{CommandID: testID, Type: TypeClientDelete, Outcome: OutcomeFailed, ErrorClass: ClassTransient, Attempts: 1, CorrelationID: "c"}
	h := ResultHeaders(r)
	want := map[string][]string{
		HeaderMsgID:         {r.MsgID()},
		HeaderCommandID:     {testID},
		HeaderCommandType:   {"client.delete"},
		HeaderOutcome:       {"failed"},
		HeaderErrorClass:    {"transient"},
		HeaderCorrelationID: {"c"},
		HeaderSchemaVersion: {"1"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("ResultHeaders = %v, want %v", h, want)
	}
}

func TestDLQRecordCommand(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantRaw bool
	}{
		{name: "json", in: []byte(`{"type":"client.delete","location_id":1}`)},
		{name: "not json", in: []byte("{\"type\":\xff"), wantRaw: true},
		{name: "empty", in: []byte{}, wantRaw: true},
	}
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := DLQRecord{
				SchemaVersion: SchemaVersion, Subject: "altegio.cmd.1.cmd_x.delete", StreamSeq: 3,
				Headers: map[string][]string{HeaderMsgID: {"x"}}, ErrorClass: ClassInvalid,
				Reason: "invalid command", Attempts: 0, DeadLetteredAt: at,
			}
			r.SetCommand(tc.in)
			if got := len(r.CommandRaw) > 0 || (len(tc.in) == 0 && r.Command == nil); got != tc.wantRaw {
				t.Errorf("stored raw = %v, want %v (%+v)", got, tc.wantRaw, r)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			var back DLQRecord
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if got := back.CommandBytes(); !bytes.Equal(got, tc.in) {
				t.Errorf("CommandBytes after round trip = %q, want %q", got, tc.in)
			}
		})
	}
}
