package worker

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// The commands of a client are listed newest first, by client_ref and by
// the client id the create resolved to, paged by cursor; each success that
// changed the client leaves its own change for the webhook's loop check.
func TestClientHistoryAndOwnChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.startWorker(workerOpts{})
	create := createCmd("hist-1", "Hana", phone(901))
	e.publish(create)
	created := e.waitTerminal(20*time.Second, create.ID)[create.ID]
	update := updateCmd("hist-1", commands.ClientFields{Name: new("Hana B"), Phone: new(phone(901))})
	e.publish(update)
	e.waitTerminal(20*time.Second, update.ID)
	comment := commentCmd("hist-1", "called back")
	e.publish(comment)
	e.waitTerminal(20*time.Second, comment.ID)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, topology.BucketCommandHistory)
	must(err)
	want := []string{comment.ID, update.ID, create.ID}
	for _, q := range []HistoryQuery{{ClientRef: "hist-1"}, {ClientID: created.ClientID}} {
		page, err := ClientHistory(ctx, kv, testLoc, q)
		if err != nil {
			t.Fatalf("history %+v: %v", q, err)
		}
		if got := resultIDs(page.Commands); !slices.Equal(got, want) || page.Next != "" {
			t.Errorf("history %+v = %v next %q, want %v newest first, one page", q, got, page.Next, want)
		}
		for _, r := range page.Commands {
			if r.Data != nil || r.Outcome != commands.OutcomeSucceeded {
				t.Errorf("history entry of %s: outcome %s, data %s; want the result without the API's data", r.CommandID, r.Outcome, r.Data)
			}
		}
	}

	// Two at a time: the cursor continues where the first page ended.
	first, err := ClientHistory(ctx, kv, testLoc, HistoryQuery{ClientRef: "hist-1", Limit: 2})
	must(err)
	second, err := ClientHistory(ctx, kv, testLoc, HistoryQuery{ClientRef: "hist-1", Limit: 2, Cursor: first.Next})
	must(err)
	if got := append(resultIDs(first.Commands), resultIDs(second.Commands)...); !slices.Equal(got, want) || first.Next == "" || second.Next != "" {
		t.Errorf("paged: %v then %v (next %q, %q), want %v", resultIDs(first.Commands), resultIDs(second.Commands), first.Next, second.Next, want)
	}
	// since drops what completed before it.
	since, err := ClientHistory(ctx, kv, testLoc, HistoryQuery{ClientRef: "hist-1", Since: second.Commands[0].CompletedAt.Add(time.Nanosecond)})
	must(err)
	if got := resultIDs(since.Commands); !slices.Equal(got, want[:2]) {
		t.Errorf("since the create: %v, want %v", got, want[:2])
	}
	if _, err := ClientHistory(ctx, kv, testLoc, HistoryQuery{ClientRef: "hist-1", Cursor: "nonsense"}); err == nil {
		t.Error("a cursor ClientHistory did not make was accepted")
	}

	// The create and the update each leave the own change their webhook
	// looks for; the comment causes no client webhook.
	own, err := e.js.KeyValue(ctx, topology.BucketOwnChanges)
	must(err)
	for status, want := range map[commands.WebhookStatus]commands.Command{commands.WebhookCreate: create, commands.WebhookUpdate: update} {
		entry, err := own.Get(ctx, commands.OwnChangeKey(testLoc, created.ClientID, status))
		if err != nil {
			t.Fatalf("own change %s of client %d: %v", status, created.ClientID, err)
		}
		var change commands.OwnChange
		must(json.Unmarshal(entry.Value(), &change))
		if change.CommandID != want.ID || change.Type != want.Type || change.At.IsZero() {
			t.Errorf("own change %s: %+v, want command %s", status, change, want.ID)
		}
	}
}

func resultIDs(rs []commands.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.CommandID
	}
	return out
}
