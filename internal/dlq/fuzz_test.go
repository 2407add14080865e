package dlq

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// FuzzDecodeEntry: any stored DLQ message decodes without a panic (an
// undecodable one says so in Problem), and a record the worker wrote comes
// back with the command bytes a replay publishes.
func FuzzDecodeEntry(f *testing.F) {
	rec := commands.DLQRecord{SchemaVersion: commands.SchemaVersion, CommandID: "0193f3c2-0000-7000-8000-000000000001",
		Type: commands.TypeClientCreate, LocationID: 1, ErrorClass: commands.ClassPermanent, Reason: "r"}
	rec.SetCommand([]byte(`{"id":"0193f3c2-0000-7000-8000-000000000001","client_ref":"crm-1"}`))
	good, _ := json.Marshal(rec)
	f.Add(good, []byte(`{"client_ref":"crm-1"}`))
	f.Add([]byte(`{"command_raw":"AAEC"}`), []byte{0, 1, 2})
	f.Add([]byte(`not json`), []byte(`x`))
	f.Fuzz(func(t *testing.T, data, command []byte) {
		e := decodeEntry(1, "altegio.dlq.1.client_create", time.Unix(0, 0), data)
		if e.Problem == "" && json.Valid(data) == false {
			t.Fatalf("invalid JSON decoded without a problem: %q", data)
		}
		var r commands.DLQRecord
		r.SetCommand(command)
		b, err := commands.Marshal(r) // as the worker publishes it
		if err != nil {
			t.Fatal(err)
		}
		back := decodeEntry(2, "altegio.dlq.1.client_create", time.Unix(0, 0), b)
		if back.Problem != "" {
			t.Fatalf("a record with command %q does not decode: %s", command, back.Problem)
		}
		if got := back.Record.CommandBytes(); !bytes.Equal(compact(got), compact(command)) {
			t.Fatalf("command bytes %q came back as %q", command, got)
		}
	})
}

// compact returns b compacted when it is JSON (a record stores JSON
// commands compacted), else b.
func compact(b []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}
