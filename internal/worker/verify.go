package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
)

// Notes of results found by the last check before dead-lettering.
const (
	noteUpdateFound = "reconciled: the card already holds the update"
	noteDeleteFound = "reconciled: the client is gone"
)

// verify is the last look before an uncertain command is dead-lettered as
// exhausted: its attempts kept failing, but some of them may have been
// applied with the answer lost (a reset, a timeout, a 5xx from a proxy
// after the change). It asks the API whether the command's effect is there
// and, if so, returns the outcome to record as succeeded. ok is false when
// the effect is not found, when the check itself fails, and for commands
// it cannot check (bulk creates are reconciled item by item on every
// attempt already; comment and file deletes answer 404 when repeated).
func (j *job) verify(ctx context.Context) (out outcome, ok bool) {
	out, found, err := j.lookForEffect(ctx)
	switch {
	case err != nil:
		j.log.Debug("last check before dead-lettering failed", slog.Any("error", err))
		return outcome{}, false
	case found:
		j.log.Info("uncertain command found applied before dead-lettering", slog.String("note", out.note))
	}
	return out, found
}

func (j *job) lookForEffect(ctx context.Context) (outcome, bool, error) {
	api, cmd := j.w.api, j.cmd
	loc := cmd.LocationID
	switch cmd.Type {
	case commands.TypeClientCreate:
		f, err := cmd.ClientFields()
		if err != nil {
			return outcome{}, false, err
		}
		return j.clientCreated(ctx, inputFromFields(f))

	case commands.TypeClientUpdate:
		p, err := cmd.ClientUpdate()
		if err != nil || j.rec.ClientID == 0 {
			return outcome{}, false, err
		}
		card, err := api.GetClient(ctx, loc, j.rec.ClientID)
		if err != nil {
			return outcome{}, false, err
		}
		if !holds(card, p.ClientFields) {
			return outcome{}, false, nil
		}
		return outcome{data: marshal(card), clientID: card.ID, note: noteUpdateFound}, true, nil

	case commands.TypeClientDelete:
		if j.rec.ClientID == 0 {
			return outcome{}, false, nil
		}
		_, err := api.GetClient(ctx, loc, j.rec.ClientID)
		if errors.Is(err, altegio.ErrNotFound) {
			return outcome{clientID: j.rec.ClientID, note: noteDeleteFound}, true, nil
		}
		return outcome{}, false, err

	case commands.TypeCommentAdd:
		p, err := cmd.CommentAdd()
		if err != nil || j.rec.ClientID == 0 {
			return outcome{}, false, err
		}
		return j.commentAdded(ctx, j.rec.ClientID, p.Text)
	}
	return outcome{}, false, nil
}

// holds reports whether card has every field f sets, with f's value (phones
// compared as digits, the form the API keeps). Fields f leaves out are not
// compared: a replace-mode update clears them, which a card cannot show
// apart from fields that were empty already.
func holds(card altegio.ClientRecord, f commands.ClientFields) bool {
	var want, have map[string]json.RawMessage
	if json.Unmarshal(marshal(f), &want) != nil || json.Unmarshal(marshal(card.Input()), &have) != nil {
		return false
	}
	for k, v := range want {
		if k == "phone" && f.Phone != nil {
			if commands.NormalizePhone(*f.Phone) != commands.NormalizePhone(card.Phone) {
				return false
			}
			continue
		}
		if !jsonEqual(v, have[k]) {
			return false
		}
	}
	return true
}

// jsonEqual compares two JSON values by meaning (1 and 1.0 are equal).
func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}
