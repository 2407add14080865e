package commands

import (
	"errors"
	"strings"
)

// ErrUnknownType is matched (errors.Is) by a *ValidationError whose command
// type is not one of Types. An HTTP front door maps it, like any
// *ValidationError, to 422, but may want to say so in the problem's title.
var ErrUnknownType = errors.New("unknown command type")

// ErrUnsupportedVersion is matched (errors.Is) by a *ValidationError whose
// schema_version is neither 0 nor SchemaVersion.
var ErrUnsupportedVersion = errors.New("unsupported schema version")

// Problem is one thing wrong with a command. The same shape carries the
// API's field errors in Result and DLQRecord.
type Problem struct {
	// Path locates the value: "location_id", "payload.phone",
	// "payload.clients[3].name", or payload["odd key"] for names that are
	// not identifiers. Empty means the whole document (or, for an API error,
	// no particular field).
	Path string `json:"path"`
	// Reason says what is wrong, in lower case, e.g. "must be greater than 0".
	Reason string `json:"reason"`
}

// ValidationError lists every problem found in a command, in a stable order,
// at most MaxProblems of them. Problems is never empty. It is meant to become
// the "errors" member of an RFC 9457 problem+json body (status 422).
//
// errors.Is(err, ErrUnknownType) and errors.Is(err, ErrUnsupportedVersion)
// tell those two problems apart from field validation.
type ValidationError struct {
	Problems []Problem `json:"errors"`

	unknownType        bool
	unsupportedVersion bool
}

// Error joins the problems into one line.
func (e *ValidationError) Error() string { return "invalid command: " + JoinProblems(e.Problems) }

// JoinProblems writes problems on one line: "path: reason; path: reason".
func JoinProblems(problems []Problem) string {
	var b strings.Builder
	for i, p := range problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
		b.WriteString(p.Reason)
	}
	return b.String()
}

// Unwrap returns ErrUnknownType and ErrUnsupportedVersion when they apply.
func (e *ValidationError) Unwrap() []error {
	var errs []error
	if e.unknownType {
		errs = append(errs, ErrUnknownType)
	}
	if e.unsupportedVersion {
		errs = append(errs, ErrUnsupportedVersion)
	}
	return errs
}
