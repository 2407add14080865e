package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/reads"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/worker"
)

// startReads runs the read service against a sandbox on e's server, with
// the client history of e's buckets, and returns the sandbox.
func (e *cliEnv) startReads() *sandbox.Server {
	t := e.t
	sb, url := testenv.Sandbox(t, sandbox.Config{PartnerToken: "p", Users: []sandbox.User{{Login: "o@example.com", Password: "pw", Token: "u"}},
		RatePerSecond: -1, RatePerMinute: -1})
	api, err := altegio.New(altegio.Config{BaseURL: url}, altegio.StaticAuthorizer{PartnerToken: "p", UserToken: "u"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	history, err := e.js.KeyValue(ctx, topology.BucketCommandHistory)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := reads.Start(e.js.Conn(), api, func(context.Context, int64, string) (int64, bool, error) { return 0, false, nil },
		reads.Config{History: func(ctx context.Context, loc int64, q worker.HistoryQuery) (worker.HistoryPage, error) {
			return worker.ClientHistory(ctx, history, loc, q)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return sb
}

// export clients writes every card as a JSON line, with progress on
// stderr, and resumes after an id; commands lists a client's commands.
func TestCLIExportAndCommands(t *testing.T) {
	e := newCLIEnv(t)
	sb := e.startReads()
	var ids []int64
	for i := range 350 {
		ids = append(ids, sb.SeedClient(7, sandbox.ClientRecord{Name: fmt.Sprint("c", i), Phone: fmt.Sprintf("1555%07d", i)}))
	}

	out, errOut, exit := e.run("", "export", "clients", "--location", "7")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if exit != 0 || len(lines) != 350 || !strings.Contains(errOut, "page 2/2, 350 clients") || !strings.Contains(errOut, "done, 350 clients") {
		t.Fatalf("export: exit %d, %d lines, stderr %q", exit, len(lines), errOut)
	}
	var lastCard altegio.ClientRecord
	if err := json.Unmarshal([]byte(lines[349]), &lastCard); err != nil || lastCard.ID != ids[349] {
		t.Errorf("last line %s, want client %d", lines[349], ids[349])
	}
	out, _, exit = e.run("", "export", "clients", "--location", "7", "--after-id", itoa(ids[299]))
	if lines := strings.Split(strings.TrimSpace(out), "\n"); exit != 0 || len(lines) != 50 {
		t.Errorf("export --after-id: exit %d, %d lines, want the last 50", exit, len(lines))
	}
	if _, _, exit := e.run("", "export", "clients"); exit != exitUsage {
		t.Errorf("export without --location: exit %d, want %d", exit, exitUsage)
	}

	res := `{"schema_version":1,"command_id":"c-9","type":"client.update","location_id":7,"client_ref":"crm-9","outcome":"succeeded","attempts":1,"completed_at":"2025-01-15T10:00:00Z"}`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	history, err := e.js.KeyValue(ctx, topology.BucketCommandHistory)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := history.Put(ctx, worker.HistoryKey(7, "ref_crm-9", time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC), "c-9"), []byte(res)); err != nil {
		t.Fatal(err)
	}
	out, errOut, exit = e.run("", "commands", "--location", "7", "--client-ref", "crm-9")
	if exit != 0 || !strings.Contains(out, "c-9") || !strings.Contains(out, "succeeded") {
		t.Errorf("commands: exit %d %q %q", exit, out, errOut)
	}
	if _, _, exit := e.run("", "commands", "--location", "7", "--client-ref", "nobody"); exit != exitNoMatch {
		t.Errorf("commands of a client without any: exit %d, want %d", exit, exitNoMatch)
	}
	if _, _, exit := e.run("", "commands", "--location", "7", "--client-ref", "a", "--client-id", "1"); exit != exitUsage {
		t.Errorf("commands with two names: exit %d, want %d", exit, exitUsage)
	}
}
