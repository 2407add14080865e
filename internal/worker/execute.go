package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/commands"
)

// API is the part of the Altegio client the worker calls. *altegio.Client
// implements it; the client waits for the shared rate limiter before every
// request and re-logs in once after a 401.
//
// Errors must be classifiable by altegio.ClassOf: *altegio.APIError when the
// API answered, *altegio.TransportError when the outcome is unknown.
// Implementations must be safe for concurrent use.
type API interface {
	// GetClient reads a card (update's read step; adoption by phone).
	GetClient(ctx context.Context, locationID, clientID int64) (altegio.ClientRecord, error)
	// UpdateClient PUTs the merged card.
	UpdateClient(ctx context.Context, locationID, clientID int64, in altegio.ClientInput) (altegio.ClientRecord, error)
	// DeleteClient deletes a client; ErrNotFound counts as success.
	DeleteClient(ctx context.Context, locationID, clientID int64) error
	// CreateClient creates a client; not idempotent.
	CreateClient(ctx context.Context, locationID int64, in altegio.ClientInput) (altegio.ClientRecord, error)
	// BulkCreateClients creates several clients; not idempotent.
	BulkCreateClients(ctx context.Context, locationID int64, inputs []altegio.ClientInput) (altegio.BulkCreateResult, error)
	// SearchClients finds clients by phone for reconciliation.
	SearchClients(ctx context.Context, locationID int64, req altegio.SearchClientsRequest) (altegio.SearchClientsResult, error)
	// ListComments lists a client's comments for reconciliation.
	ListComments(ctx context.Context, locationID, clientID int64) ([]altegio.Comment, error)
	// AddComment adds a comment; not idempotent.
	AddComment(ctx context.Context, locationID, clientID int64, text string) (altegio.Comment, error)
	// DeleteComment deletes a comment; ErrNotFound counts as success.
	DeleteComment(ctx context.Context, locationID, clientID, commentID int64) error
	// DeleteFile deletes a client file; ErrNotFound counts as success.
	DeleteFile(ctx context.Context, locationID, clientID, fileID int64) error
}

var _ API = (*altegio.Client)(nil)

// Notes on results reached without a plain API success.
const (
	noteCreateFound   = "reconciled: client found by phone"
	noteCommentFound  = "reconciled: comment found by text"
	noteBulkFound     = "reconciled: some clients found by phone"
	noteDeleteMissing = "delete found 404"
)

// commentClockSkew is how much older than the first attempt a comment may
// look and still be adopted by reconciliation (clock skew between us and
// the API).
const commentClockSkew = 5 * time.Minute

// outcome is what a successful execution produced.
type outcome struct {
	data     json.RawMessage
	clientID int64
	note     string
	// refused are the items of a bulk create the API refused (the command
	// then ends partially_succeeded).
	refused []refusedItem
}

// refusedItem is one client of a bulk create that was not created.
type refusedItem struct {
	index  int
	fields commands.ClientFields
	reason string
}

// execute carries out cmd against the API. clientID is the resolved client
// (0 for creates). reconcile is set when an earlier attempt may have been
// applied: non-idempotent operations then look for their effect first.
func (j *job) execute(ctx context.Context, clientID int64, reconcile bool) (outcome, error) {
	api, cmd := j.w.api, j.cmd
	loc := cmd.LocationID
	switch cmd.Type {
	case commands.TypeClientCreate:
		f, err := cmd.ClientFields()
		if err != nil {
			return outcome{}, &permanentError{err}
		}
		return j.create(ctx, f, reconcile)

	case commands.TypeClientUpdate:
		p, err := cmd.ClientUpdate()
		if err != nil {
			return outcome{}, &permanentError{err}
		}
		// Read, merge, PUT: the PUT replaces the whole card, and applying
		// it again is harmless, so a retry needs no reconciliation. With
		// mode replace the producer owns the card and sends all of it: the
		// payload is PUT as it is, without the read, so the fields it
		// leaves out are cleared, which is what "replace" means.
		in := p.ClientFields
		if p.Mode != commands.UpdateReplace {
			cur, err := api.GetClient(ctx, loc, clientID)
			if err != nil {
				return outcome{}, err
			}
			in = p.ClientFields.ApplyTo(fieldsFromRecord(cur))
		}
		rec, err := api.UpdateClient(ctx, loc, clientID, inputFromFields(in))
		if err != nil {
			return outcome{}, err
		}
		return outcome{data: marshal(rec), clientID: clientID}, nil

	case commands.TypeClientDelete:
		return deleted(clientID, api.DeleteClient(ctx, loc, clientID))

	case commands.TypeCommentDelete:
		p, err := cmd.CommentDelete()
		if err != nil {
			return outcome{}, &permanentError{err}
		}
		return deleted(clientID, api.DeleteComment(ctx, loc, clientID, p.CommentID))

	case commands.TypeFileDelete:
		p, err := cmd.FileDelete()
		if err != nil {
			return outcome{}, &permanentError{err}
		}
		return deleted(clientID, api.DeleteFile(ctx, loc, clientID, p.FileID))

	case commands.TypeCommentAdd:
		p, err := cmd.CommentAdd()
		if err != nil {
			return outcome{}, &permanentError{err}
		}
		if reconcile {
			if out, found, err := j.commentAdded(ctx, clientID, p.Text); err != nil || found {
				return out, err
			}
		}
		c, err := api.AddComment(ctx, loc, clientID, p.Text)
		if err != nil {
			return outcome{}, err
		}
		return outcome{data: commentData(c), clientID: clientID}, nil

	case commands.TypeClientBulkCreate:
		p, err := cmd.BulkCreate()
		if err != nil {
			return outcome{}, &permanentError{err}
		}
		return j.bulkCreate(ctx, p, reconcile)
	}
	return outcome{}, &permanentError{fmt.Errorf("command type %q: %w", cmd.Type, commands.ErrUnknownType)}
}

// deleted turns the answer of a delete into an outcome: 404 means the thing
// is already gone, which is what the command asked for.
func deleted(clientID int64, err error) (outcome, error) {
	if errors.Is(err, altegio.ErrNotFound) {
		return outcome{clientID: clientID, note: noteDeleteMissing}, nil
	}
	if err != nil {
		return outcome{}, err
	}
	return outcome{clientID: clientID}, nil
}

// create creates one client, after looking it up by phone when an earlier
// attempt may have created it already.
func (j *job) create(ctx context.Context, f commands.ClientFields, reconcile bool) (outcome, error) {
	api, loc := j.w.api, j.cmd.LocationID
	in := inputFromFields(f)
	if reconcile {
		if out, found, err := j.clientCreated(ctx, in); err != nil || found {
			return out, err
		}
	}
	rec, err := api.CreateClient(ctx, loc, in)
	if err != nil {
		return outcome{}, err
	}
	return outcome{data: marshal(rec), clientID: rec.ID}, nil
}

// clientCreated looks for the client an earlier attempt of a create may
// have made (by phone, see findByPhone); found is false when there is none.
func (j *job) clientCreated(ctx context.Context, in altegio.ClientInput) (out outcome, found bool, err error) {
	row, err := j.findByPhone(ctx, in.Phone, in.Name)
	if err != nil || row == nil {
		return outcome{}, false, err
	}
	card, err := j.w.api.GetClient(ctx, j.cmd.LocationID, row.ID)
	if err != nil {
		return outcome{}, false, err
	}
	return outcome{data: marshal(card), clientID: card.ID, note: noteCreateFound}, true, nil
}

// commentAdded looks for the comment an earlier attempt may have added (by
// text, see findComment); found is false when there is none.
func (j *job) commentAdded(ctx context.Context, clientID int64, text string) (out outcome, found bool, err error) {
	c, err := j.findComment(ctx, clientID, text)
	if err != nil || c == nil {
		return outcome{}, false, err
	}
	return outcome{data: commentData(*c), clientID: clientID, note: noteCommentFound}, true, nil
}

// findByPhone searches the location for a client with the same normalized
// phone. It returns nil when there is none, the row when exactly one has
// the same name too, and an ambiguous error otherwise (a client with this
// phone exists, but we cannot tell it is the one we created).
func (j *job) findByPhone(ctx context.Context, phone, name string) (*altegio.ClientRow, error) {
	want := commands.NormalizePhone(phone)
	if want == "" {
		return nil, nil
	}
	res, err := j.w.api.SearchClients(ctx, j.cmd.LocationID, altegio.SearchClientsRequest{
		PageSize: 50,
		Fields:   []string{"id", "name", "phone"},
		Filters:  []altegio.SearchFilter{altegio.QuickSearchFilter(want)},
	})
	if err != nil {
		return nil, err
	}
	var matches []altegio.ClientRow
	for _, r := range res.Clients {
		if commands.NormalizePhone(r.Phone) == want {
			matches = append(matches, r)
		}
	}
	switch {
	case len(matches) == 0:
		return nil, nil
	case len(matches) == 1 && sameName(matches[0].Name, name):
		return &matches[0], nil
	}
	return nil, &ambiguousError{fmt.Errorf("%w: %d client(s) with the phone exist, not clearly the one created",
		ErrAmbiguous, len(matches))}
}

// sameName compares names case- and space-insensitively. The search may
// return the display name (name and surname), so a prefix match counts.
func sameName(got, want string) bool {
	g := strings.Join(strings.Fields(strings.ToLower(got)), " ")
	w := strings.Join(strings.Fields(strings.ToLower(want)), " ")
	return g == w || strings.HasPrefix(g, w+" ")
}

// findComment looks for a text comment with the same text, created no
// earlier than the first attempt (minus clock skew) when the API gives a
// readable date. It returns the newest match, or nil.
func (j *job) findComment(ctx context.Context, clientID int64, text string) (*altegio.Comment, error) {
	list, err := j.w.api.ListComments(ctx, j.cmd.LocationID, clientID)
	if err != nil {
		return nil, err
	}
	since := j.rec.FirstAttemptAt.Add(-commentClockSkew)
	var best *altegio.Comment
	for i := range list {
		c := &list[i]
		if c.Text != text || (c.Type != "" && c.Type != "default") {
			continue
		}
		if at, err := altegio.ParseTime(c.CreateDate); err == nil && !j.rec.FirstAttemptAt.IsZero() && at.Before(since) {
			continue
		}
		if best == nil || c.ID > best.ID {
			best = c
		}
	}
	return best, nil
}

// bulkItem is one entry of the result data of a bulk create.
type bulkItem struct {
	Index    int    `json:"index"`
	ClientID int64  `json:"client_id,omitempty"`
	Phone    string `json:"phone,omitempty"`
	Name     string `json:"name,omitempty"`
	// Status is "created", "found" (reconciled by phone) or "failed".
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// DLQCommandID is the command id under which a failed item was
	// dead-lettered as a client.create of its own.
	DLQCommandID string `json:"dlq_command_id,omitempty"`
}

// bulkData is the Data of a bulk create's result: one item per input.
type bulkData struct {
	Items []bulkItem `json:"items"`
}

// bulkCreate creates the clients of a bulk command. When an earlier
// attempt may have been applied, each input is first looked up by phone and
// only the missing ones are created. Inputs the API reported no outcome for
// are looked up by phone afterwards. Items the API refused are returned as
// refused (the command ends partially_succeeded and each is dead-lettered
// on its own); when every item is refused the command fails as a whole.
func (j *job) bulkCreate(ctx context.Context, p commands.BulkCreatePayload, reconcile bool) (outcome, error) {
	items := make([]bulkItem, len(p.Clients))
	inputs := make([]altegio.ClientInput, len(p.Clients))
	for i, f := range p.Clients {
		inputs[i] = inputFromFields(f)
		items[i] = bulkItem{Index: i, Phone: inputs[i].Phone, Name: inputs[i].Name}
	}
	var todo []int
	note := ""
	for i := range inputs {
		if reconcile {
			row, err := j.findByPhone(ctx, inputs[i].Phone, inputs[i].Name)
			if err != nil {
				return outcome{}, err
			}
			if row != nil {
				items[i].Status, items[i].ClientID = "found", row.ID
				note = noteBulkFound
				continue
			}
		}
		todo = append(todo, i)
	}
	if len(todo) > 0 {
		batch := make([]altegio.ClientInput, len(todo))
		for k, i := range todo {
			batch[k] = inputs[i]
		}
		res, err := j.w.api.BulkCreateClients(ctx, j.cmd.LocationID, batch)
		if err != nil {
			return outcome{}, err
		}
		for k, it := range res.Items {
			i := todo[k]
			switch it.Outcome {
			case altegio.BulkCreated:
				items[i].Status, items[i].ClientID = "created", it.Client.ID
			case altegio.BulkFailed:
				items[i].Status, items[i].Error = "failed", it.Error.Message
			default:
				row, err := j.findByPhone(ctx, inputs[i].Phone, inputs[i].Name)
				if err != nil {
					return outcome{}, err
				}
				if row == nil {
					items[i].Status, items[i].Error = "failed", "the API reported no outcome and no client has the phone"
					continue
				}
				items[i].Status, items[i].ClientID = "found", row.ID
				note = noteBulkFound
			}
		}
	}
	var refused []refusedItem
	var reasons []string
	for i, it := range items {
		if it.Status != "failed" {
			continue
		}
		items[i].DLQCommandID = commands.BulkItemCommandID(j.cmd.ID, i)
		refused = append(refused, refusedItem{index: i, fields: p.Clients[i], reason: it.Error})
		reasons = append(reasons, fmt.Sprintf("[%d] %s", i, it.Error))
	}
	if len(refused) == len(items) {
		return outcome{}, &permanentError{fmt.Errorf("every client of the bulk create was refused: %s", strings.Join(reasons, "; "))}
	}
	return outcome{data: marshal(bulkData{Items: items}), note: note, refused: refused}, nil
}

// fieldsFromRecord returns the writable fields of a card as a full
// ClientFields, the base an update's fields are merged onto.
func fieldsFromRecord(rec altegio.ClientRecord) commands.ClientFields {
	in := rec.Input()
	return commands.ClientFields{
		Name: new(in.Name), Phone: new(in.Phone),
		Surname: in.Surname, MiddleName: in.MiddleName, Email: in.Email,
		GenderID: in.GenderID, ImportanceID: in.ImportanceID, Discount: in.Discount,
		Card: in.Card, BirthDate: in.BirthDate, Comment: in.Comment,
		Spent: in.Spent, Balance: in.Balance, SMSCheck: in.SMSCheck, SMSNot: in.SMSNot,
		Categories: in.Categories, CustomFields: in.CustomFields,
	}
}

// inputFromFields returns the API body for f; absent fields stay absent.
func inputFromFields(f commands.ClientFields) altegio.ClientInput {
	in := altegio.ClientInput{
		Surname: f.Surname, MiddleName: f.MiddleName, Email: f.Email,
		GenderID: f.GenderID, ImportanceID: f.ImportanceID, Discount: f.Discount,
		Card: f.Card, BirthDate: f.BirthDate, Comment: f.Comment,
		Spent: f.Spent, Balance: f.Balance, SMSCheck: f.SMSCheck, SMSNot: f.SMSNot,
		Categories: f.Categories, CustomFields: f.CustomFields,
	}
	if f.Name != nil {
		in.Name = *f.Name
	}
	if f.Phone != nil {
		in.Phone = *f.Phone
	}
	return in
}

// commentData is the result data of a comment add: the comment as the
// API returned it, in the API's field names.
func commentData(c altegio.Comment) json.RawMessage {
	return marshal(struct {
		ID         int64  `json:"id"`
		Type       string `json:"type,omitempty"`
		Text       string `json:"text"`
		CreateDate string `json:"create_date,omitempty"`
	}{c.ID, c.Type, c.Text, c.CreateDate})
}

// marshal encodes v for a result's data; the types passed are plain data
// and always encode.
func marshal(v any) json.RawMessage {
	b, err := commands.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
