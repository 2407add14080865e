package altegio

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
)

const redacted = "[REDACTED]"

// Credentials are the tokens sent on one call. Version identifies the
// generation of the user token (for example a KV revision) so that an
// [Authorizer] can tell whether a rejected token has already been replaced.
// Formatting with fmt or slog never shows the tokens.
type Credentials struct {
	PartnerToken string
	UserToken    string
	Version      uint64
}

// String returns a redacted description, e.g.
// "altegio.Credentials{PartnerToken:[REDACTED], UserToken:[REDACTED], Version:3}".
func (c Credentials) String() string {
	return "altegio.Credentials{PartnerToken:" + mask(c.PartnerToken) +
		", UserToken:" + mask(c.UserToken) + ", Version:" + strconv.FormatUint(c.Version, 10) + "}"
}

// GoString is String, so %#v is redacted too.
func (c Credentials) GoString() string { return c.String() }

// LogValue logs whether each token is set, and the version.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("partner_token", mask(c.PartnerToken)),
		slog.String("user_token", mask(c.UserToken)),
		slog.Uint64("version", c.Version),
	)
}

// mask returns "" for an empty secret and [REDACTED] otherwise.
func mask(secret string) string {
	if secret == "" {
		return `""`
	}
	return redacted
}

// Authorizer supplies the credentials for calls on a location. The client
// calls Credentials before each call and Refresh at most once per call, after
// a 401. Implementations must be safe for concurrent use.
type Authorizer interface {
	// Credentials returns what to send for a call on locationID.
	Credentials(ctx context.Context, locationID int64) (Credentials, error)
	// Refresh is called once after a 401 with the rejected credentials; it
	// returns fresh ones (implementations re-login single-flight). Returning
	// an error ends the call; wrap ErrUnauthorized or ErrInvalidCredentials
	// when no fresh credentials can exist, so the call is classified ClassAuth.
	Refresh(ctx context.Context, locationID int64, rejected Credentials) (Credentials, error)
}

// StaticAuthorizer sends the same tokens for every location and cannot
// refresh them. It is safe for concurrent use. Formatting it never shows the
// tokens.
type StaticAuthorizer struct {
	PartnerToken string
	UserToken    string
}

var _ Authorizer = StaticAuthorizer{}

// Credentials returns the static tokens with Version 0.
func (a StaticAuthorizer) Credentials(context.Context, int64) (Credentials, error) {
	return Credentials{PartnerToken: a.PartnerToken, UserToken: a.UserToken}, nil
}

// Refresh always returns an error wrapping ErrUnauthorized: a static token
// cannot be renewed.
func (a StaticAuthorizer) Refresh(context.Context, int64, Credentials) (Credentials, error) {
	return Credentials{}, fmt.Errorf("static credentials cannot be refreshed: %w", ErrUnauthorized)
}

// String returns a redacted description.
func (a StaticAuthorizer) String() string {
	return "altegio.StaticAuthorizer{PartnerToken:" + mask(a.PartnerToken) + ", UserToken:" + mask(a.UserToken) + "}"
}

// GoString is String.
func (a StaticAuthorizer) GoString() string { return a.String() }

// LogValue logs whether each token is set.
func (a StaticAuthorizer) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("partner_token", mask(a.PartnerToken)),
		slog.String("user_token", mask(a.UserToken)),
	)
}

// validToken reports whether a token can go into a header: no control
// characters, no comma (it separates the two tokens) and no space.
func validToken(tok string) bool {
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c == 0x7f || c == ',' {
			return false
		}
	}
	return true
}

// authorization builds the Authorization header value.
func authorization(partner, user string) string {
	if user == "" {
		return "Bearer " + partner
	}
	return "Bearer " + partner + ", User " + user
}
