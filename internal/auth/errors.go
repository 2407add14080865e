package auth

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/altegio-integrator/integrator/internal/altegio"
)

var (
	// ErrNoAccount: no configured account serves the call's location. It is
	// a configuration problem; errors wrapping it are classified
	// [altegio.ClassPermanent] by [altegio.ClassOf].
	ErrNoAccount = errors.New("no account serves the location")
	// ErrFixedTokenRejected: the API answered 401 to an account's fixed user
	// token, which cannot be renewed. It wraps [altegio.ErrUnauthorized]
	// (class auth).
	ErrFixedTokenRejected = fmt.Errorf("fixed user token rejected; an operator must replace it: %w", altegio.ErrUnauthorized)
	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("auth: manager closed")
)

// noAccountError is returned for a location no account serves.
type noAccountError struct{ location int64 }

func (e *noAccountError) Error() string {
	return "auth: location " + strconv.FormatInt(e.location, 10) + ": " + ErrNoAccount.Error()
}

// Unwrap lets errors.Is find ErrNoAccount, and altegio.ClassOf classify the
// error as permanent (through altegio.ErrInvalidRequest: nothing was sent).
func (e *noAccountError) Unwrap() []error { return []error{ErrNoAccount, altegio.ErrInvalidRequest} }

// AccountError is a failure to provide credentials for one account: a login
// that failed, a fixed token that was rejected, or a session store problem.
// Err never contains a secret. Use [AccountError.Permanent] (or
// [altegio.ClassOf], which sees through it) to decide between retrying and
// dead-lettering with class auth plus an "account needs attention" event.
type AccountError struct {
	// Account is the account name.
	Account string
	// Err is the cause: it wraps altegio.ErrTwoFactorRequired,
	// altegio.ErrInvalidCredentials, ErrFixedTokenRejected, an
	// *altegio.APIError or *altegio.TransportError from POST /auth, a
	// *BackoffError, or a context error.
	Err error
}

// Error returns `auth: account "<name>": <cause>`.
func (e *AccountError) Error() string {
	return "auth: account " + strconv.Quote(e.Account) + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *AccountError) Unwrap() error { return e.Err }

// Permanent reports whether retrying cannot help until an operator acts:
// two-factor authentication required, wrong credentials, a rejected fixed
// token. It is false for /auth outages, transport errors and timeouts.
func (e *AccountError) Permanent() bool {
	switch altegio.ClassOf(e.Err) {
	case altegio.ClassAuth, altegio.ClassPermanent:
		return true
	}
	return false
}

// BackoffError is returned while logins for an account are suspended after
// a failure. Err is the failure that started the back-off; RetryAfter is
// how long until the next login may be tried.
type BackoffError struct {
	// RetryAfter is the time left in the back-off, at least zero.
	RetryAfter time.Duration
	// Err is the last login failure.
	Err error
}

// Error returns "login suspended for <d> after: <cause>".
func (e *BackoffError) Error() string {
	return "login suspended for " + e.RetryAfter.Round(time.Millisecond).String() + " after: " + e.Err.Error()
}

// Unwrap returns the last login failure.
func (e *BackoffError) Unwrap() error { return e.Err }

// Reasons stored in a failed lease, so other processes can rebuild an error
// of the same class without the original message.
const (
	reasonTwoFactor          = "two_factor"
	reasonInvalidCredentials = "invalid_credentials"
	reasonUnavailable        = "unavailable"
)

// loginReason maps a login failure to the reason stored in the lease and
// to the result label of the logins metric.
func loginReason(err error) string {
	switch {
	case errors.Is(err, altegio.ErrTwoFactorRequired):
		return reasonTwoFactor
	case errors.Is(err, altegio.ErrInvalidCredentials):
		return reasonInvalidCredentials
	}
	return reasonUnavailable
}

// remoteFailure rebuilds, from a failed lease, the error another process
// got when it logged in.
func remoteFailure(reason string) error {
	switch reason {
	case reasonTwoFactor:
		return fmt.Errorf("login failed in another worker: %w", twoFactorHint(altegio.ErrTwoFactorRequired))
	case reasonInvalidCredentials:
		return fmt.Errorf("login failed in another worker: %w", altegio.ErrInvalidCredentials)
	}
	return errors.New("login failed in another worker: POST /auth unavailable")
}

// twoFactorHint explains what to do about an account with 2FA.
func twoFactorHint(err error) error {
	return fmt.Errorf("the user has two-factor authentication, which this service cannot complete; "+
		"configure the application's API key as a fixed user token, or disable 2FA for this user: %w", err)
}
