package worker

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/commands"
)

// ErrUnknownClientRef is wrapped by the failure of a command that names its
// client by a client_ref no successful create has mapped (class permanent).
var ErrUnknownClientRef = errors.New("unknown client_ref")

// ErrStaleClientRef is wrapped by the failure of a command that names its
// client by a client_ref whose mapped client the API answers 404 for: the
// client was deleted behind the integrator's back, or the API lost it
// (class permanent). The failure also wraps the API's *altegio.APIError.
var ErrStaleClientRef = errors.New("client_ref points at a client the API does not have")

// staleRefError is the failure of a command whose client_ref maps to
// clientID, which the API answered 404 for.
type staleRefError struct {
	ref      string
	clientID int64
	err      error // the API's 404
}

func (e *staleRefError) Error() string {
	return fmt.Sprintf("client_ref %q points at client %d, which the API does not have (404)", e.ref, e.clientID)
}

func (e *staleRefError) Unwrap() []error { return []error{ErrStaleClientRef, e.err} }

// explainStaleRef names the client_ref in the failure of a command whose
// client came from the ref's mapping and which the API answered 404 for
// (see ErrStaleClientRef); any other failure is returned as it is. A
// command with a client_id keeps the API's failure, and deletes never get
// here with a 404: they succeed.
func explainStaleRef(cmd commands.Command, clientID int64, err error) error {
	if cmd.ClientID != 0 || cmd.ClientRef == "" || clientID == 0 || !errors.Is(err, altegio.ErrNotFound) {
		return err
	}
	return &staleRefError{ref: cmd.ClientRef, clientID: clientID, err: err}
}

// ErrAmbiguous is wrapped by the failure of a command whose earlier attempt
// may have been applied and whose reconciliation could not tell (class
// ambiguous).
var ErrAmbiguous = errors.New("outcome of an earlier attempt is unknown")

// permanentError is a failure found by the worker itself that retrying
// cannot fix (class permanent).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// ambiguousError is a reconciliation that could not decide (class ambiguous).
type ambiguousError struct{ err error }

func (e *ambiguousError) Error() string { return e.err.Error() }
func (e *ambiguousError) Unwrap() error { return e.err }

// verdict is what a failure means for the command.
type verdict struct {
	class commands.ErrorClass
	// status, message and fields come from the API's answer, if any.
	status  int
	message string
	fields  []commands.Problem
	// retryAfter is the 429's Retry-After, 0 when absent.
	retryAfter time.Duration
	// unknown: the request may have been applied (transport error,
	// timeout, 5xx), so a non-idempotent call must be reconciled.
	unknown bool
	// account is the account that needs attention (class auth), if known.
	account string
}

// classify maps an execution error to its class, in one place:
//
//	transport error, timeout, 5xx, 408      → transient (outcome unknown)
//	429                                      → rate_limited (deferral)
//	401 after the client's one re-login,
//	*auth.AccountError that is permanent     → auth
//	400, 402, 403, 404, 422, other 4xx,
//	unknown or stale client_ref, refused     → permanent
//	reconciliation undecided                 → ambiguous
//
// Deletes that find 404 never get here: they succeed.
func classify(err error) verdict {
	var v verdict
	var ae *altegio.APIError
	if errors.As(err, &ae) {
		v.status = ae.Status
		v.message = ae.Message
		v.retryAfter = ae.RetryAfter
		for _, fe := range ae.FieldErrors {
			v.fields = append(v.fields, commands.Problem{Path: fe.Field, Reason: fe.Message})
		}
	}
	var acc *auth.AccountError
	if errors.As(err, &acc) {
		v.account = acc.Account
	}
	var pe *permanentError
	var amb *ambiguousError
	switch {
	case errors.As(err, &amb):
		v.class = commands.ClassAmbiguous
		return v
	case errors.As(err, &pe):
		v.class = commands.ClassPermanent
		return v
	case acc != nil && acc.Permanent():
		v.class = commands.ClassAuth
		return v
	}
	switch altegio.ClassOf(err) {
	case altegio.ClassRateLimited:
		v.class = commands.ClassRateLimited
	case altegio.ClassAuth:
		v.class = commands.ClassAuth
	case altegio.ClassPermanent:
		v.class = commands.ClassPermanent
	default:
		v.class = commands.ClassTransient
		// A credentials failure (acc != nil) happened before the
		// command's request was sent.
		v.unknown = acc == nil && (altegio.OutcomeUnknown(err) || v.status >= http.StatusInternalServerError ||
			v.status == http.StatusRequestTimeout)
	}
	return v
}

// accountLabel bounds the account label of metrics: the account's name, or
// "unknown" when the failure did not name one.
func accountLabel(account string) string {
	if account == "" {
		return "unknown"
	}
	return account
}
