package worker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"

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
		in := inputFromFields(f)
		row, err := j.findByPhone(ctx, in.Phone, in.Name)
		if err != nil || row == nil {
			return outcome{}, false, err
		}
		card, err := api.GetClient(ctx, loc, row.ID)
		if err != nil {
			return outcome{}, false, err
		}
		return outcome{data: marshal(card), clientID: card.ID, note: noteCreateFound}, true, nil

	case commands.TypeClientUpdate:
		p, err := cmd.ClientUpdate()
		if err != nil || j.rec.ClientID == 0 {
			return outcome{}, false, err
		}
		card, err := api.GetClient(ctx, loc, j.rec.ClientID)
		if err != nil {
			return outcome{}, false, err
		}
		want := p.ClientFields
		if p.Mode != commands.UpdateReplace {
			want = p.ClientFields.ApplyTo(fieldsFromRecord(card))
		}
		a, b := marshal(inputFromFields(want)), marshal(card.Input())
		if !bytes.Equal(a, b) {
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
		c, err := j.findComment(ctx, j.rec.ClientID, p.Text)
		if err != nil || c == nil {
			return outcome{}, false, err
		}
		return outcome{data: commentData(*c), clientID: j.rec.ClientID, note: noteCommentFound}, true, nil
	}
	return outcome{}, false, nil
}
