package altegio

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// BulkOutcome is what the API reported for one input of a bulk create.
type BulkOutcome int

const (
	// BulkUnknown: no created or error item could be attributed to the input.
	// Treat the outcome as unknown and reconcile by phone.
	BulkUnknown BulkOutcome = iota
	// BulkCreated: a created item was attributed to the input.
	BulkCreated
	// BulkFailed: an error item was attributed to the input.
	BulkFailed
)

// String returns "unknown", "created" or "failed".
func (o BulkOutcome) String() string {
	switch o {
	case BulkCreated:
		return "created"
	case BulkFailed:
		return "failed"
	default:
		return "unknown"
	}
}

// BulkItemError is one entry of data.errors[]: the phone and name the API
// echoed (either may be empty) and its message, in the location's language.
type BulkItemError struct {
	Phone   string
	Name    string
	Message string
}

// BulkItem is the outcome for one input.
type BulkItem struct {
	// Index is the position of the input in the request.
	Index   int
	Outcome BulkOutcome
	// Client is the created card when Outcome is BulkCreated.
	Client *ClientRecord
	// Error is the API's item error when Outcome is BulkFailed.
	Error *BulkItemError
}

// BulkCreateResult matches the API's created[] and errors[] back to the
// inputs. The API reports no input index, so items are attributed by
// normalized phone and name (see BulkCreateClients).
type BulkCreateResult struct {
	// Items has one entry per input, in input order.
	Items []BulkItem
	// UnmatchedCreated and UnmatchedErrors are API items that no input
	// matched.
	UnmatchedCreated []ClientRecord
	UnmatchedErrors  []BulkItemError
}

// Unmatched returns the indices of inputs whose outcome is BulkUnknown.
func (r BulkCreateResult) Unmatched() []int {
	var idx []int
	for _, it := range r.Items {
		if it.Outcome == BulkUnknown {
			idx = append(idx, it.Index)
		}
	}
	return idx
}

type bulkErrorWire struct {
	Phone   flexString `json:"phone"`
	Name    flexString `json:"name"`
	Error   flexString `json:"error"`
	Message flexString `json:"message"`
}

// BulkCreateClients creates several clients in one request:
// POST /clients/{location_id}/bulk with a JSON array. The API answers 200
// even when some items fail and reports created[] and errors[] without input
// indices; the result attributes each to an input:
//
//  1. phone and name both match,
//  2. else the phone matches,
//  3. else (the item has no phone) the name matches, preferring inputs
//     without a phone,
//
// where phones compare by digits without leading zeros (NormalizePhone) and
// names case- and space-insensitively, against the input's name alone or
// combined with its surname and middle name. Created items are attributed
// before error items, each to the lowest unmatched input index, so of two
// inputs with one phone the first is the created one.
//
// Bulk does not document custom_fields: an input with CustomFields is refused
// (ErrInvalidRequest). An empty batch returns an empty result without a
// request. The call is not idempotent: on a *TransportError every input's
// outcome is unknown.
func (c *Client) BulkCreateClients(ctx context.Context, locationID int64, inputs []ClientInput) (BulkCreateResult, error) {
	const op = OpBulkCreate
	if err := checkID(op, "location id", locationID); err != nil {
		return BulkCreateResult{}, err
	}
	if len(inputs) == 0 {
		return BulkCreateResult{Items: []BulkItem{}}, nil
	}
	body := make([]clientBody, len(inputs))
	for i, in := range inputs {
		if len(in.CustomFields) > 0 {
			return BulkCreateResult{}, invalidRequest(op, "input %d: custom_fields is not supported by bulk create", i)
		}
		body[i] = in.body(tagsAsCategories, false)
	}
	r := request{op: op, method: http.MethodPost, location: locationID,
		path: fmt.Sprintf("/clients/%d/bulk", locationID), body: body}
	env, status, err := c.call(ctx, r)
	if err != nil {
		return BulkCreateResult{}, err
	}
	var data struct {
		Created json.RawMessage `json:"created"`
		Errors  json.RawMessage `json:"errors"`
	}
	if err := decodeObject(env.Data, &data); err != nil {
		return BulkCreateResult{}, c.decodeError(r, status, err)
	}
	created, err := decodeList[ClientRecord](data.Created)
	if err != nil {
		return BulkCreateResult{}, c.decodeError(r, status, err)
	}
	errWires, err := decodeList[bulkErrorWire](data.Errors)
	if err != nil {
		return BulkCreateResult{}, c.decodeError(r, status, err)
	}
	itemErrs := make([]BulkItemError, len(errWires))
	for i, w := range errWires {
		msg := string(w.Error)
		if msg == "" {
			msg = string(w.Message)
		}
		itemErrs[i] = BulkItemError{Phone: string(w.Phone), Name: string(w.Name), Message: msg}
	}
	return matchBulk(inputs, created, itemErrs), nil
}

// bulkKey is what an API item can be matched on.
type bulkKey struct {
	phone, name string // normalized
}

// matchBulk attributes created and error items to inputs; see
// BulkCreateClients for the rules.
func matchBulk(inputs []ClientInput, created []ClientRecord, errs []BulkItemError) BulkCreateResult {
	res := BulkCreateResult{Items: make([]BulkItem, len(inputs))}
	phones := make([]string, len(inputs))
	names := make([][]string, len(inputs))
	for i, in := range inputs {
		res.Items[i].Index = i
		phones[i] = NormalizePhone(in.Phone)
		names[i] = inputNames(in)
	}

	keys := make([]bulkKey, 0, len(created)+len(errs))
	for _, cl := range created {
		keys = append(keys, bulkKey{NormalizePhone(cl.Phone), normalizeName(cl.Name)})
	}
	for _, e := range errs {
		keys = append(keys, bulkKey{NormalizePhone(e.Phone), normalizeName(e.Name)})
	}

	nameMatches := func(i int, name string) bool {
		for _, n := range names[i] {
			if n == name {
				return true
			}
		}
		return false
	}
	tiers := []func(k bulkKey, i int) bool{
		func(k bulkKey, i int) bool {
			return k.phone != "" && k.name != "" && k.phone == phones[i] && nameMatches(i, k.name)
		},
		func(k bulkKey, i int) bool { return k.phone != "" && k.phone == phones[i] },
		func(k bulkKey, i int) bool {
			return k.phone == "" && k.name != "" && phones[i] == "" && nameMatches(i, k.name)
		},
		func(k bulkKey, i int) bool { return k.phone == "" && k.name != "" && nameMatches(i, k.name) },
	}

	owner := make([]int, len(keys)) // input index + 1; 0 = unmatched
	taken := make([]bool, len(inputs))
	for _, match := range tiers {
		for k, key := range keys {
			if owner[k] != 0 {
				continue
			}
			for i := range inputs {
				if !taken[i] && match(key, i) {
					owner[k], taken[i] = i+1, true
					break
				}
			}
		}
	}

	for k := range keys {
		i := owner[k] - 1
		if k < len(created) {
			if i < 0 {
				res.UnmatchedCreated = append(res.UnmatchedCreated, created[k])
				continue
			}
			cl := created[k]
			res.Items[i].Outcome, res.Items[i].Client = BulkCreated, &cl
			continue
		}
		e := errs[k-len(created)]
		if i < 0 {
			res.UnmatchedErrors = append(res.UnmatchedErrors, e)
			continue
		}
		res.Items[i].Outcome, res.Items[i].Error = BulkFailed, &e
	}
	return res
}

// inputNames returns the normalized names an API item may echo for in.
func inputNames(in ClientInput) []string {
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	name, surname, middle := in.Name, deref(in.Surname), deref(in.MiddleName)
	forms := []string{
		name,
		name + " " + surname,
		surname + " " + name,
		name + " " + middle + " " + surname,
		surname + " " + name + " " + middle,
	}
	out := make([]string, 0, len(forms))
	for _, f := range forms {
		if n := normalizeName(f); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// normalizeName lower-cases s and collapses white space.
func normalizeName(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}
