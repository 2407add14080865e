package worker

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

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
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
// "<location>.<client key>.<command token>", where the client key is
// commands.Command.ClientKey's and the token is the command id, or its
// hash when the id is not a safe key token.
func HistoryKey(locationID int64, clientKey, commandID string) string {
	return strconv.FormatInt(locationID, 10) + "." + clientKey + "." + commandToken(commandID)
}

// commandToken is commandID when it is made of letters, digits, '-' and
// '_' only, and else the client key of a command with that id (a hash).
func commandToken(commandID string) string {
	if commandID != "" && strings.Trim(commandID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == "" {
		return commandID
	}
	return commands.Command{ID: commandID}.ClientKey()
}

// index records a terminal result in the client history and, for a
// success that changed a client, in the own changes.
func (w *Worker) index(ctx context.Context, r commands.Result) {
	if !r.Outcome.Terminal() || r.LocationID <= 0 || w.history == nil {
		return
	}
	body, err := commands.Marshal(r)
	if err != nil {
		return
	}
	key := commands.Command{ID: r.CommandID, ClientRef: r.ClientRef, ClientID: r.ClientID}.ClientKey()
	keys := []string{HistoryKey(r.LocationID, key, r.CommandID)}
	if byID := (commands.Command{ClientID: r.ClientID}).ClientKey(); r.ClientID > 0 && byID != key {
		keys = append(keys, HistoryKey(r.LocationID, byID, r.CommandID))
	}
	for _, k := range keys {
		if _, err := w.history.Put(ctx, k, body); err != nil {
			w.indexFailed("history", r, err)
		}
	}
	if r.Outcome != commands.OutcomeSucceeded && r.Outcome != commands.OutcomePartiallySucceeded {
		return
	}
	status, ok := commands.OwnChangeStatus(r.Type)
	if !ok {
		return
	}
	for _, c := range changedClients(r) {
		fp, _ := altegio.CardFingerprint(c.card)
		change, _ := json.Marshal(commands.OwnChange{CommandID: r.CommandID, Type: r.Type, At: r.CompletedAt, Card: fp})
		if _, err := w.ownChanges.Put(ctx, commands.OwnChangeKey(r.LocationID, c.id, status), change); err != nil {
			w.indexFailed("own_changes", r, err)
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
// id), q.Limit at a time. A client addressed by client_ref is found by its
// ref; one addressed by id also finds the creates and ref-addressed
// commands that resolved to that id.
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
	key := commands.Command{ClientRef: q.ClientRef, ClientID: q.ClientID}.ClientKey()
	lister, err := kv.ListKeysFiltered(ctx, strconv.FormatInt(locationID, 10)+"."+key+".*")
	if err != nil {
		return HistoryPage{}, fmt.Errorf("history: list keys: %w", err)
	}
	var all []commands.Result
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			_ = lister.Stop()
			return HistoryPage{}, fmt.Errorf("history: get %s: %w", k, err)
		}
		var r commands.Result
		if json.Unmarshal(e.Value(), &r) != nil || r.CompletedAt.Before(q.Since) {
			continue
		}
		if q.Cursor != "" && !after.before(r) {
			continue
		}
		all = append(all, r)
	}
	if err := ctx.Err(); err != nil {
		return HistoryPage{}, err
	}
	slices.SortFunc(all, func(a, b commands.Result) int {
		return cmp.Or(b.CompletedAt.Compare(a.CompletedAt), strings.Compare(b.CommandID, a.CommandID))
	})
	page := HistoryPage{Commands: all[:min(len(all), q.Limit)]}
	if len(all) > q.Limit {
		last := page.Commands[len(page.Commands)-1]
		page.Next = historyCursor{at: last.CompletedAt, id: last.CommandID}.String()
	}
	if page.Commands == nil {
		page.Commands = []commands.Result{}
	}
	return page, nil
}

// historyCursor is the last command of a page: the next page holds the
// commands ordered after it (older, or as old with a smaller id).
type historyCursor struct {
	at time.Time
	id string
}

// String encodes c as "<unix nanoseconds>.<command id>".
func (c historyCursor) String() string {
	return strconv.FormatInt(c.at.UnixNano(), 10) + "." + c.id
}

func parseHistoryCursor(s string) (historyCursor, error) {
	ns, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil {
		return historyCursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	return historyCursor{at: time.Unix(0, n), id: id}, nil
}

// before reports whether r comes after the cursor in newest-first order.
func (c historyCursor) before(r commands.Result) bool {
	if !r.CompletedAt.Equal(c.at) {
		return r.CompletedAt.Before(c.at)
	}
	return r.CommandID < c.id
}
