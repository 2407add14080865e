package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// The worker keeps two small indexes next to the result events, written
// after a terminal result is published:
//
//   - the client history (bucket altegio_command_history): the terminal
//     result of each command under its client key, and under the client id
//     once known, so that the commands of a client can be listed by
//     client_ref or by client_id, newest first (ClientHistory);
//   - the own changes (bucket altegio_own_changes): for each client a
//     command changed, which command did it and when (commands.OwnChange),
//     so that ingest can mark the Altegio webhook of that change as ours.
//
// Both are best effort: a failed write is logged and counted, never fails
// the command, whose result event is already stored.

// HistoryKey returns the key of a command's entry in the client history:
// "<location>.<client key>.<time>.<command token>", where the client key
// is commands.Command.ClientKey's, the time is 19 digits of MaxInt64 less
// the completion time in Unix nanoseconds (so the keys of a client sort
// newest first), and the token is the command id, or its hash when the id
// is not a safe key token.
func HistoryKey(locationID int64, clientKey string, completed time.Time, commandID string) string {
	return strconv.FormatInt(locationID, 10) + "." + clientKey + "." +
		fmt.Sprintf("%019d", math.MaxInt64-completed.UnixNano()) + "." + commandToken(commandID)
}

// commandToken is commandID when it is a safe subject token
// (commands.IsSafeToken), and else the client key of a command with that
// id (a hash).
func commandToken(commandID string) string {
	if commands.IsSafeToken(commandID) {
		return commandID
	}
	return commands.Command{ID: commandID}.ClientKey()
}

// kvPut is one write of index.
type kvPut struct {
	index, bucket, key string
	value              []byte
}

// index records a terminal result in the client history (without the
// API's data, which the event has) and, for a success that changed a
// client, in the own changes. The writes go out together and are waited
// for together, so a bulk create's hundred clients cost one round trip.
func (w *Worker) index(ctx context.Context, r commands.Result) {
	if !r.Outcome.Terminal() || r.LocationID <= 0 || w.history == nil {
		return
	}
	var puts []kvPut
	lean := r
	lean.Data = nil
	if body, err := commands.Marshal(lean); err == nil {
		key := commands.Command{ID: r.CommandID, ClientRef: r.ClientRef, ClientID: r.ClientID}.ClientKey()
		puts = append(puts, kvPut{"history", topology.BucketCommandHistory, HistoryKey(r.LocationID, key, r.CompletedAt, r.CommandID), body})
		if byID := (commands.Command{ClientID: r.ClientID}).ClientKey(); r.ClientID > 0 && byID != key {
			puts = append(puts, kvPut{"history", topology.BucketCommandHistory, HistoryKey(r.LocationID, byID, r.CompletedAt, r.CommandID), body})
		}
	}
	if status, ok := commands.OwnChangeStatus(r.Type); ok && (r.Outcome == commands.OutcomeSucceeded || r.Outcome == commands.OutcomePartiallySucceeded) {
		for _, c := range changedClients(r) {
			fp, _ := altegio.CardFingerprint(c.card)
			change, _ := json.Marshal(commands.OwnChange{CommandID: r.CommandID, Type: r.Type, At: r.CompletedAt, Card: fp})
			puts = append(puts, kvPut{"own_changes", topology.BucketOwnChanges, commands.OwnChangeKey(r.LocationID, c.id, status), change})
		}
	}
	w.putAll(ctx, r, puts)
}

// putAll publishes puts to their buckets' subjects at once and waits for
// every acknowledgement, until ctx ends.
func (w *Worker) putAll(ctx context.Context, r commands.Result, puts []kvPut) {
	futures := make([]jetstream.PubAckFuture, len(puts))
	for i, p := range puts {
		f, err := w.js.PublishAsync("$KV."+p.bucket+"."+p.key, p.value)
		if err != nil {
			w.indexFailed(p.index, r, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			w.indexFailed(puts[i].index, r, err)
		case <-ctx.Done():
			w.indexFailed(puts[i].index, r, ctx.Err())
		}
	}
}

// indexFailed logs and counts a failed index write.
func (w *Worker) indexFailed(index string, r commands.Result, err error) {
	w.metrics.indexErrors.WithLabelValues(index).Inc()
	w.log.Warn("index write failed", "index", index, "command_id", r.CommandID, "error", err)
}

// changed is a client a command changed, and the card the API answered.
type changed struct {
	id   int64
	card json.RawMessage
}

// changedClients returns the clients whose Altegio webhook a successful
// result causes: the client of a create, update or delete, and every
// client a bulk create made, with their cards.
func changedClients(r commands.Result) []changed {
	switch r.Type {
	case commands.TypeClientCreate, commands.TypeClientUpdate, commands.TypeClientDelete:
		if r.ClientID > 0 {
			return []changed{{r.ClientID, r.Data}}
		}
	case commands.TypeClientBulkCreate:
		var data struct {
			Created []json.RawMessage `json:"created"`
		}
		_ = json.Unmarshal(r.Data, &data)
		var out []changed
		for _, card := range data.Created {
			var c struct {
				ID int64 `json:"id"`
			}
			if json.Unmarshal(card, &c) == nil && c.ID > 0 {
				out = append(out, changed{c.ID, card})
			}
		}
		return out
	}
	return nil
}

// HistoryQuery selects commands of one client from the client history.
type HistoryQuery struct {
	// ClientRef or ClientID names the client (one of them).
	ClientRef string
	ClientID  int64
	// Since drops commands completed before it; zero keeps them all.
	Since time.Time
	// Limit is the page size: default 50, at most 500.
	Limit int
	// Cursor continues a listing: the Next of the previous page.
	Cursor string
}

// HistoryPage is one page of a client's commands, newest first.
type HistoryPage struct {
	Commands []commands.Result `json:"commands"`
	// Next is the cursor of the next page; empty on the last.
	Next string `json:"next,omitempty"`
}

// ErrBadCursor is returned by ClientHistory for a cursor it did not make.
var ErrBadCursor = errors.New("history: malformed cursor")

// ClientHistory lists the commands of a client of locationID from the
// client history in kv, newest first (by completion time, then command
// token), q.Limit at a time. A client addressed by client_ref is found by
// its ref; one addressed by id also finds the creates and ref-addressed
// commands that resolved to that id. The keys carry the time, so a page
// reads its own entries only (the listing of keys still covers the
// client's whole history).
func ClientHistory(ctx context.Context, kv jetstream.KeyValue, locationID int64, q HistoryQuery) (HistoryPage, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, 500)
	var after historyCursor
	if q.Cursor != "" {
		var err error
		if after, err = parseHistoryCursor(q.Cursor); err != nil {
			return HistoryPage{}, err
		}
	}
	prefix := strconv.FormatInt(locationID, 10) + "." + commands.Command{ClientRef: q.ClientRef, ClientID: q.ClientID}.ClientKey() + "."
	lister, err := kv.ListKeysFiltered(ctx, prefix+"*.*")
	if err != nil {
		return HistoryPage{}, fmt.Errorf("history: list keys: %w", err)
	}
	var keys []historyCursor
	for k := range lister.Keys() {
		c, ok := parseHistoryKey(strings.TrimPrefix(k, prefix))
		if !ok || c.at.Before(q.Since) || (q.Cursor != "" && !after.before(c)) {
			continue
		}
		c.key = k
		keys = append(keys, c)
	}
	if err := ctx.Err(); err != nil {
		return HistoryPage{}, err
	}
	slices.SortFunc(keys, func(a, b historyCursor) int {
		return cmp.Or(b.at.Compare(a.at), strings.Compare(b.token, a.token))
	})
	page := HistoryPage{Commands: []commands.Result{}}
	for _, c := range keys[:min(len(keys), q.Limit)] {
		e, err := kv.Get(ctx, c.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return HistoryPage{}, fmt.Errorf("history: get %s: %w", c.key, err)
		}
		var r commands.Result
		if json.Unmarshal(e.Value(), &r) == nil {
			page.Commands = append(page.Commands, r)
		}
	}
	if len(keys) > q.Limit {
		page.Next = keys[q.Limit-1].String()
	}
	return page, nil
}

// historyCursor is a place in a client's history: an entry's completion
// time and command token (and, when read from the bucket, its key). The
// next page holds the entries ordered after it (older, or as old with a
// smaller token).
type historyCursor struct {
	at    time.Time
	token string
	key   string
}

// String encodes c as "<unix nanoseconds>.<command token>".
func (c historyCursor) String() string {
	return strconv.FormatInt(c.at.UnixNano(), 10) + "." + c.token
}

func parseHistoryCursor(s string) (historyCursor, error) {
	ns, token, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || token == "" {
		return historyCursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	return historyCursor{at: time.Unix(0, n), token: token}, nil
}

// parseHistoryKey reads "<time>.<command token>", the end of a HistoryKey.
func parseHistoryKey(s string) (historyCursor, bool) {
	inv, token, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(inv, 10, 64)
	if !ok || err != nil || token == "" {
		return historyCursor{}, false
	}
	return historyCursor{at: time.Unix(0, math.MaxInt64-n), token: token}, true
}

// before reports whether e comes after the cursor in newest-first order.
func (c historyCursor) before(e historyCursor) bool {
	if !e.at.Equal(c.at) {
		return e.at.Before(c.at)
	}
	return e.token < c.token
}
