package altegio

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Errors returned by [Client] wrap one of these where it
// applies, so callers test them with [errors.Is]. The class of an error is
// given by [ClassOf], not by the sentinel alone.
var (
	// ErrNotFound: the API answered 404 (unknown location, client, comment or file).
	ErrNotFound = errors.New("altegio: not found")
	// ErrUnauthorized: the API answered 401 and fresh credentials did not help,
	// or the [Authorizer] could not refresh them.
	ErrUnauthorized = errors.New("altegio: unauthorized")
	// ErrForbidden: the API answered 403 (the user lacks a right such as
	// clients_delete_access; the API does not say which).
	ErrForbidden = errors.New("altegio: forbidden")
	// ErrLicense: the API answered 402; the location's licence has expired.
	ErrLicense = errors.New("altegio: licence inactive")
	// ErrRateLimited: the API answered 429.
	ErrRateLimited = errors.New("altegio: rate limited")
	// ErrTwoFactorRequired: POST /auth asked for a second factor (HTTP 200 with
	// data.uuid). The client cannot complete it; use an application API key.
	ErrTwoFactorRequired = errors.New("altegio: two-factor authentication required")
	// ErrInvalidCredentials: POST /auth rejected the login, password or partner
	// token (401, 403, 404 or 422).
	ErrInvalidCredentials = errors.New("altegio: invalid credentials")
	// ErrInvalidRequest: the client refused to send a request that breaks the
	// documented contract (missing name or phone, page_size above 200, …).
	// Nothing was sent.
	ErrInvalidRequest = errors.New("altegio: invalid request")
	// ErrNotSent: the wait for the API budget ended (the context ended or
	// the Limiter closed) before the request was sent. Nothing was sent;
	// the class is transient, but retrying costs no attempt.
	ErrNotSent = errors.New("altegio: request not sent")
)

// Class is what a caller should do about an error. Use [ClassOf] to get it.
type Class int

const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassTransient: transport errors, timeouts, cancellations, 5xx and 408.
	// Retry with backoff. A [*TransportError] on a non-idempotent call means
	// the outcome is unknown; reconcile before retrying.
	ClassTransient
	// ClassRateLimited: 429. Retry after [APIError.RetryAfter] when it is
	// non-zero, otherwise back off.
	ClassRateLimited
	// ClassAuth: the credentials were rejected after one refresh, the
	// [Authorizer] could not provide credentials, or POST /auth refused the
	// login (invalid credentials, two-factor required). Not retryable until an
	// operator acts.
	ClassAuth
	// ClassPermanent: 400, 402, 403, 404, 422, any other 4xx, a 2xx with
	// "success": false, and requests refused before sending. Do not retry.
	ClassPermanent
)

// String returns the lower-case name of the class, e.g. "rate_limited".
func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassTransient:
		return "transient"
	case ClassRateLimited:
		return "rate_limited"
	case ClassAuth:
		return "auth"
	case ClassPermanent:
		return "permanent"
	default:
		return "class(" + strconv.Itoa(int(c)) + ")"
	}
}

// Retryable reports whether an error of this class may succeed if retried
// later: true for ClassTransient and ClassRateLimited.
func (c Class) Retryable() bool {
	return c == ClassTransient || c == ClassRateLimited
}

// ClassOf classifies err. It returns ClassNone for nil. Errors that this
// package did not produce are classified by the sentinels they wrap; context
// cancellation and unknown errors (for example an [Authorizer] that cannot
// reach its token store) are ClassTransient.
func ClassOf(err error) Class {
	if err == nil {
		return ClassNone
	}
	var re *refreshError
	if errors.As(err, &re) {
		if c := ClassOf(re.err); c.Retryable() {
			return c
		}
		return ClassAuth
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Class()
	}
	var te *TransportError
	if errors.As(err, &te) {
		return ClassTransient
	}
	switch {
	case errors.Is(err, ErrRateLimited):
		return ClassRateLimited
	case errors.Is(err, ErrUnauthorized),
		errors.Is(err, ErrInvalidCredentials),
		errors.Is(err, ErrTwoFactorRequired):
		return ClassAuth
	case errors.Is(err, ErrNotFound),
		errors.Is(err, ErrForbidden),
		errors.Is(err, ErrLicense),
		errors.Is(err, ErrInvalidRequest):
		return ClassPermanent
	}
	return ClassTransient
}

// FieldError is one validation message from meta.errors. Field is empty when
// the API gave a bare list of messages.
type FieldError struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// APIError is an answer from the API that is not a success: a non-2xx status,
// or a 2xx whose envelope says "success": false. It wraps the sentinel that
// matches its status ([ErrNotFound] for 404, …), so errors.Is works.
type APIError struct {
	// Op is the operation name, e.g. "client.create" or "auth".
	Op string
	// Method and Path identify the request; Path excludes the base URL and
	// never carries a secret.
	Method, Path string
	// Status is the HTTP status code.
	Status int
	// Message is meta.message, else errors.message; it may be empty and is in
	// the location's language. Do not match on it.
	Message string
	// FieldErrors are the normalized meta.errors.
	FieldErrors []FieldError
	// RetryAfter is the parsed Retry-After header of a 429 (seconds or an
	// HTTP date); zero when absent.
	RetryAfter time.Duration

	// kind overrides the sentinel derived from Status (used by Login).
	kind error
}

// Error returns "altegio <op>: <method> <path>: <status> <text>: <message> (<field>: <message>, …)".
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("altegio ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.Method)
	b.WriteByte(' ')
	b.WriteString(e.Path)
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(e.Status))
	if t := http.StatusText(e.Status); t != "" {
		b.WriteByte(' ')
		b.WriteString(strings.ToLower(t))
	}
	if e.Status >= 200 && e.Status < 300 {
		b.WriteString(" with success false")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if len(e.FieldErrors) > 0 {
		b.WriteString(" (")
		for i, fe := range e.FieldErrors {
			if i == 3 {
				fmt.Fprintf(&b, ", and %d more", len(e.FieldErrors)-3)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			if fe.Field != "" {
				b.WriteString(fe.Field)
				b.WriteString(": ")
			}
			b.WriteString(fe.Message)
		}
		b.WriteByte(')')
	}
	return b.String()
}

// Unwrap returns the sentinel for the status (nil when none applies).
func (e *APIError) Unwrap() error {
	if e.kind != nil {
		return e.kind
	}
	switch e.Status {
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusPaymentRequired:
		return ErrLicense
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusTooManyRequests:
		return ErrRateLimited
	}
	return nil
}

// Class classifies the error by status; see the Class constants.
func (e *APIError) Class() Class {
	switch {
	case errors.Is(e.kind, ErrInvalidCredentials), errors.Is(e.kind, ErrTwoFactorRequired):
		return ClassAuth
	case e.Status == http.StatusTooManyRequests:
		return ClassRateLimited
	case e.Status == http.StatusUnauthorized:
		return ClassAuth
	case e.Status >= 500, e.Status == http.StatusRequestTimeout:
		return ClassTransient
	default:
		return ClassPermanent
	}
}

// TransportError reports a call whose outcome is unknown: the request failed
// in transit (connection refused or reset, timeout, cancellation), or a
// response arrived but could not be read or decoded. The API may have applied
// the request, so a non-idempotent call (create, bulk create, add comment)
// must be reconciled before it is retried. Its class is ClassTransient.
type TransportError struct {
	// Op is the operation name, e.g. "client.create".
	Op string
	// Method and Path identify the request (Path excludes the base URL).
	Method, Path string
	// Status is the HTTP status when a response arrived but its body could not
	// be read or decoded; 0 when no response arrived.
	Status int
	// Err is the underlying error; it may wrap context.Canceled or
	// context.DeadlineExceeded.
	Err error
}

// Error returns "altegio <op>: <method> <path>: <cause>".
func (e *TransportError) Error() string {
	cause := e.Err
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err // the URL is already in the message as Path
	}
	msg := "<nil>"
	if cause != nil {
		msg = cause.Error()
	}
	if e.Status != 0 {
		return fmt.Sprintf("altegio %s: %s %s: %d response: %s", e.Op, e.Method, e.Path, e.Status, msg)
	}
	return fmt.Sprintf("altegio %s: %s %s: %s", e.Op, e.Method, e.Path, msg)
}

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }

// OutcomeUnknown reports whether err means the request may or may not have
// been applied by the API, that is whether it contains a [*TransportError].
// Callers reconcile non-idempotent operations in that case.
func OutcomeUnknown(err error) bool {
	var re *refreshError
	if errors.As(err, &re) {
		return false // the call itself was answered with 401: not applied
	}
	var te *TransportError
	return errors.As(err, &te)
}

// refreshError is returned when a call got 401 and the Authorizer could not
// refresh the credentials. It carries both: errors.Is finds ErrUnauthorized
// (through the 401 APIError) and whatever the refresh failed with.
type refreshError struct {
	unauthorized *APIError
	err          error
}

func (e *refreshError) Error() string {
	return e.unauthorized.Error() + ": refresh credentials: " + e.err.Error()
}

func (e *refreshError) Unwrap() []error { return []error{e.unauthorized, e.err} }

// invalidRequest returns an ErrInvalidRequest error for op.
func invalidRequest(op, format string, args ...any) error {
	return fmt.Errorf("altegio %s: %w: %s", op, ErrInvalidRequest, fmt.Sprintf(format, args...))
}
