package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// headerIdempotencyKey is the request header whose value becomes the
// command id when the body has none.
const headerIdempotencyKey = "Idempotency-Key"

// maxIdempotencyKeyLength bounds Idempotency-Key.
const maxIdempotencyKeyLength = 255

// idNamespace is the UUID namespace of ids derived from Idempotency-Key and
// webhook-id (UUIDv5).
var idNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/altegio-integrator/integrator/ingest/idempotency-key"))

// requestError is why a request body was refused.
type requestError struct {
	kind   problemKind
	detail string
	errors []commands.Problem
}

func (e *requestError) Error() string { return e.kind.title + ": " + e.detail }

func (e *requestError) problem() *Problem {
	p := e.kind.problem(e.detail)
	p.Errors = e.errors
	return p
}

// decodeRequest decodes the body of POST /v1/commands: one command object,
// or an array of 1 to maxBatch of them. Every command is decoded and
// validated by commands.Decode, and every problem of every command is
// reported at once, with the array index in front of the path. The
// returned error is a *requestError: 400 (malformed JSON), 413 (too many
// commands, or one too large) or 422 (invalid commands).
func decodeRequest(body []byte, maxBatch int) ([]commands.Command, bool, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		c, err := commands.Decode(body)
		if err != nil {
			return nil, false, itemError(err, "")
		}
		return []commands.Command{c}, false, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, true, &requestError{kind: probBadJSON, detail: fmt.Sprintf("malformed json at offset %d: %v", se.Offset, se)}
		}
		return nil, true, &requestError{kind: probBadJSON, detail: err.Error()}
	}
	switch {
	case len(items) == 0:
		return nil, true, &requestError{kind: probInvalid, detail: "the array holds no command",
			errors: []commands.Problem{{Path: "", Reason: "must hold at least one command"}}}
	case len(items) > maxBatch:
		return nil, true, &requestError{kind: probTooLarge, detail: fmt.Sprintf("%d commands in one request; the limit is %d", len(items), maxBatch)}
	}
	cmds := make([]commands.Command, len(items))
	var problems []commands.Problem
	unknownType, more := false, false
	for i, item := range items {
		c, err := commands.Decode(item)
		if err == nil {
			cmds[i] = c
			continue
		}
		re := itemError(err, indexPrefix(i))
		if re.kind != probInvalid && re.kind != probUnknownType {
			re.detail = fmt.Sprintf("command [%d]: %s", i, re.detail)
			return nil, true, re
		}
		unknownType = unknownType || re.kind == probUnknownType
		for _, p := range re.errors {
			if len(problems) >= commands.MaxProblems {
				more = true
				break
			}
			problems = append(problems, p)
		}
	}
	if len(problems) == 0 {
		return cmds, true, nil
	}
	if more {
		problems = append(problems, commands.Problem{Path: "", Reason: "more problems not shown"})
	}
	kind := probInvalid
	if unknownType {
		kind = probUnknownType
	}
	return nil, true, &requestError{kind: kind, detail: fmt.Sprintf("%d problems; nothing was accepted", len(problems)), errors: problems}
}

// itemError converts an error of commands.Decode into a requestError whose
// problem paths start with prefix.
func itemError(err error, prefix string) *requestError {
	var se *commands.SyntaxError
	var ve *commands.ValidationError
	switch {
	case errors.As(err, &se):
		return &requestError{kind: probBadJSON, detail: se.Error()}
	case errors.Is(err, commands.ErrTooLarge):
		return &requestError{kind: probTooLarge, detail: err.Error()}
	case errors.As(err, &ve):
		kind := probInvalid
		if errors.Is(err, commands.ErrUnknownType) {
			kind = probUnknownType
		}
		problems := make([]commands.Problem, len(ve.Problems))
		for i, p := range ve.Problems {
			problems[i] = commands.Problem{Path: joinPath(prefix, p.Path), Reason: p.Reason}
		}
		return &requestError{kind: kind, detail: fmt.Sprintf("%d problems; nothing was accepted", len(problems)), errors: problems}
	default:
		return &requestError{kind: probInvalid, detail: err.Error()}
	}
}

func indexPrefix(i int) string { return "[" + strconv.Itoa(i) + "]" }

// joinPath puts an array index in front of a problem path.
func joinPath(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "", strings.HasPrefix(path, "["):
		return prefix + path
	default:
		return prefix + "." + path
	}
}

// assignIDs gives every command without an id one: derived from key (the
// Idempotency-Key or webhook-id) when set, else a new UUIDv7. A key that is
// already a lowercase UUID is the id of a single command as it is; any
// other key, and every key of a batch, is turned into a UUIDv5 of the
// producer's name, the key and (in a batch) the index, so equal keys of
// different producers never collide and a retried batch gets the same ids.
func assignIDs(cmds []commands.Command, batch bool, producer, key string) {
	for i := range cmds {
		c := &cmds[i]
		if c.ID != "" {
			continue
		}
		switch {
		case key == "":
			c.ID = commands.NewID()
		case !batch && commands.ValidID(key):
			c.ID = key
		case !batch:
			c.ID = uuid.NewSHA1(idNamespace, []byte(producer+"\n"+key)).String()
		default:
			c.ID = uuid.NewSHA1(idNamespace, []byte(producer+"\n"+key+"\n"+strconv.Itoa(i))).String()
		}
	}
}

// idempotencyKey reads Idempotency-Key: a token or a quoted string (the
// structured-field form of the IETF draft), at most 255 characters.
func idempotencyKey(v string) (string, error) {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	switch {
	case v == "":
		return "", nil
	case len(v) > maxIdempotencyKeyLength:
		return "", fmt.Errorf("idempotency-key header longer than %d characters", maxIdempotencyKeyLength)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "", errors.New("idempotency-key header must be printable ascii")
		}
	}
	return v, nil
}

// isJSON reports whether a Content-Type is application/json (any
// parameters, such as charset=utf-8, are accepted).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}
