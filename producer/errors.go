package producer

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// Sentinels that the errors of this package match with errors.Is.
var (
	// ErrInvalidCommand is matched by a *ValidationError (a command that
	// breaks the contract, found before sending) and by a *ProblemError
	// with status 422.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrTooLarge is matched by a *ValidationError for a command larger
	// than MaxCommandSize and by a *ProblemError with status 413.
	ErrTooLarge = errors.New("command too large")
	// ErrUnauthenticated is matched by a *ProblemError with status 401: the
	// key is wrong.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden is matched by a *ProblemError with status 403: the
	// producer may not send this type or act in this location.
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable is matched by a *ProblemError with status 429 or 5xx,
	// returned once the retries are spent. Sending the same commands again
	// later is safe.
	ErrUnavailable = errors.New("ingest unavailable")
)

// FieldError is one problem with a command: where and what.
// Path locates the value: "location_id", "payload.phone",
// "payload.clients[3].name"; in a batch of several commands it starts with
// the command's index, "[2].payload.phone". Empty means the whole command
// or request. Reason says what is wrong, e.g. "must be greater than 0". It
// is the contract's own problem type, so the two cannot drift apart.
type FieldError = commands.Problem

// ValidationError lists every problem found in the commands of one Send
// (or one Validate) before anything was sent. Problems is never empty; in
// a Send of several commands the paths start with the command's index, as
// ingest's would.
//
// It matches ErrInvalidCommand, and ErrTooLarge when a command is too
// large.
type ValidationError struct {
	Problems []FieldError

	tooLarge bool
}

// Error joins the problems into one line.
func (e *ValidationError) Error() string {
	return "invalid command: " + commands.JoinProblems(e.Problems)
}

// Is reports whether target is ErrInvalidCommand, or ErrTooLarge for a
// command too large.
func (e *ValidationError) Is(target error) bool {
	return target == ErrInvalidCommand || (e.tooLarge && target == ErrTooLarge)
}

// validationError combines the problems found before decoding with the
// error of commands.Decode (nil, *commands.ValidationError or
// commands.ErrTooLarge).
func validationError(problems []FieldError, err error) *ValidationError {
	ve := &ValidationError{Problems: problems}
	var cve *commands.ValidationError
	switch {
	case err == nil:
	case errors.As(err, &cve):
		ve.Problems = append(ve.Problems, cve.Problems...)
	case errors.Is(err, commands.ErrTooLarge):
		ve.tooLarge = true
		ve.Problems = append(ve.Problems, FieldError{Reason: err.Error()})
	default:
		ve.Problems = append(ve.Problems, FieldError{Reason: err.Error()})
	}
	return ve
}

// prefixed returns the problems with an index in front of their paths,
// "[i].payload.phone", as ingest reports the problems of a batch.
func prefixed(i int, problems []FieldError) []FieldError {
	out := make([]FieldError, len(problems))
	for j, p := range problems {
		out[j] = FieldError{Path: joinPath(indexToken(i), p.Path), Reason: p.Reason}
	}
	return out
}

func indexToken(i int) string { return "[" + strconv.Itoa(i) + "]" }

// joinPath puts an index in front of a path.
func joinPath(prefix, path string) string {
	switch {
	case path == "", strings.HasPrefix(path, "["):
		return prefix + path
	default:
		return prefix + "." + path
	}
}

// rebase adds offset to the leading index of a batch problem path
// ("[2].payload" with offset 100 is "[102].payload"), so that the problems
// of a request carrying part of a Send name the commands by their index in
// the Send. Paths without a leading index are returned as they are.
func rebase(path string, offset int) string {
	if offset == 0 || !strings.HasPrefix(path, "[") {
		return path
	}
	end := strings.IndexByte(path, ']')
	if end < 0 {
		return path
	}
	i, err := strconv.Atoi(path[1:end])
	if err != nil {
		return path
	}
	return indexToken(i+offset) + path[end+1:]
}

// ProblemError is an error answer of ingest: its RFC 9457 problem details
// (application/problem+json), or, for an answer that was not one (a proxy's
// page), the status with its text as Title.
//
// It matches ErrInvalidCommand (422), ErrTooLarge (413),
// ErrUnauthenticated (401), ErrForbidden (403) and ErrUnavailable (429,
// 5xx) with errors.Is.
type ProblemError struct {
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Type identifies the kind of problem,
	// "urn:altegio-integrator:problem:<slug>" (e.g. "invalid-command",
	// "stream-full").
	Type string `json:"type"`
	// Title is the short summary of the type.
	Title string `json:"title"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
	// Instance identifies this occurrence in ingest's logs
	// ("urn:uuid:<request id>").
	Instance string `json:"instance,omitempty"`
	// Errors lists every field problem, with the paths of ValidationError.
	Errors []FieldError `json:"errors,omitempty"`
	// RetryAfter is the wait the answer asked for (Retry-After), if any.
	RetryAfter time.Duration `json:"-"`
}

// Error describes the problem on one line.
func (e *ProblemError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ingest answered %d", e.Status)
	if e.Title != "" {
		b.WriteString(" " + e.Title)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if len(e.Errors) > 0 {
		b.WriteString(" (" + commands.JoinProblems(e.Errors) + ")")
	}
	return b.String()
}

// Is matches the sentinel of the status; see ProblemError.
func (e *ProblemError) Is(target error) bool {
	switch target {
	case ErrInvalidCommand:
		return e.Status == http.StatusUnprocessableEntity
	case ErrTooLarge:
		return e.Status == http.StatusRequestEntityTooLarge
	case ErrUnauthenticated:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrUnavailable:
		return e.Temporary()
	}
	return false
}

// Temporary reports whether the same request may succeed later: 429, and
// 5xx other than 501 Not Implemented. HTTP.Send retries these.
func (e *ProblemError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests ||
		(e.Status >= 500 && e.Status <= 599 && e.Status != http.StatusNotImplemented)
}
