package altegio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// LoginResult is the user behind a user token, from POST /auth. Formatting it
// with fmt or slog never shows the token.
type LoginResult struct {
	// UserToken is the token to send as "User <token>". It does not expire;
	// the API regenerates it when the user changes their password.
	UserToken        string
	UserID           int64
	Name             string
	Phone            string
	Login            string
	Email            string
	IsApproved       bool
	IsEmailConfirmed bool
	// TwoFactor is set, and UserToken empty, when Login returns
	// ErrTwoFactorRequired.
	TwoFactor *TwoFactorChallenge
}

// String returns a redacted description.
func (r LoginResult) String() string {
	return "altegio.LoginResult{UserID:" + strconv.FormatInt(r.UserID, 10) +
		", UserToken:" + mask(r.UserToken) + ", TwoFactor:" + strconv.FormatBool(r.TwoFactor != nil) + "}"
}

// GoString is String.
func (r LoginResult) GoString() string { return r.String() }

// LogValue logs the user ID and whether a token or a 2FA challenge came back.
func (r LoginResult) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int64("user_id", r.UserID),
		slog.String("user_token", mask(r.UserToken)),
		slog.Bool("two_factor", r.TwoFactor != nil),
	)
}

// TwoFactorChallenge describes the second step that POST /auth asked for
// (observed on YCLIENTS; undocumented for Altegio).
type TwoFactorChallenge struct {
	UUID          string
	Flow          string
	TransportType string // e.g. "sms"
	Recipient     string // masked phone or email
	RefreshTTL    time.Duration
	AttemptsLeft  int
}

// loginWire is the data of POST /auth: the token, or a 2FA challenge.
type loginWire struct {
	UserToken        flexString `json:"user_token"`
	ID               flexInt    `json:"id"`
	Name             flexString `json:"name"`
	Phone            flexString `json:"phone"`
	Login            flexString `json:"login"`
	Email            flexString `json:"email"`
	IsApproved       flexBool   `json:"is_approved"`
	IsEmailConfirmed flexBool   `json:"is_email_confirmed"`

	UUID      flexString `json:"uuid"`
	Flow      flexString `json:"flow"`
	Transport struct {
		Type      flexString `json:"type"`
		Recipient flexString `json:"recipient"`
	} `json:"transport"`
	RefreshTTLSec flexInt `json:"refresh_ttl_sec"`
	AttemptsLeft  flexInt `json:"attempts_left"`
}

// decodeLogin reads a successful POST /auth body: data.user_token first, then
// a top-level user_token (the older, envelope-less form). It never fails: a
// body without a token or challenge gives an empty result.
func decodeLogin(env envelope) LoginResult {
	var w loginWire
	if jsonKind(env.Data) == '{' {
		_ = json.Unmarshal(env.Data, &w)
	}
	if w.UserToken == "" && w.UUID == "" && jsonKind(env.raw) == '{' {
		var top loginWire
		_ = json.Unmarshal(env.raw, &top)
		if top.UserToken != "" {
			w = top
		}
	}
	r := LoginResult{
		UserToken:        string(w.UserToken),
		UserID:           int64(w.ID),
		Name:             string(w.Name),
		Phone:            string(w.Phone),
		Login:            string(w.Login),
		Email:            string(w.Email),
		IsApproved:       bool(w.IsApproved),
		IsEmailConfirmed: bool(w.IsEmailConfirmed),
	}
	if r.UserToken == "" && w.UUID != "" {
		ttl := time.Duration(0)
		if s := int64(w.RefreshTTLSec); s > 0 && s < int64(maxRetryAfter/time.Second) {
			ttl = time.Duration(s) * time.Second
		}
		r.TwoFactor = &TwoFactorChallenge{
			UUID:          string(w.UUID),
			Flow:          string(w.Flow),
			TransportType: string(w.Transport.Type),
			Recipient:     string(w.Transport.Recipient),
			RefreshTTL:    ttl,
			AttemptsLeft:  int(w.AttemptsLeft),
		}
	}
	return r
}

// Login exchanges a business user's login (phone or email) and password for
// a user token: POST /auth with the partner token only. It waits for the
// Limiter but does not use the Authorizer and never retries.
//
// Results: 201 (or 200) with data.user_token, else a top-level user_token →
// the token. 200 with data.uuid → the challenge in LoginResult.TwoFactor and
// an error wrapping ErrTwoFactorRequired (ClassAuth). 401, 403, 404 and 422 →
// an *APIError wrapping ErrInvalidCredentials (ClassAuth). 429 → ClassRateLimited;
// 5xx, transport errors and a success without a token → ClassTransient. The
// password and tokens never appear in errors or logs.
func (c *Client) Login(ctx context.Context, partnerToken, login, password string) (LoginResult, error) {
	const op = "auth"
	switch {
	case partnerToken == "":
		return LoginResult{}, invalidRequest(op, "partner token is required")
	case login == "":
		return LoginResult{}, invalidRequest(op, "login is required")
	case password == "":
		return LoginResult{}, invalidRequest(op, "password is required")
	}
	r := request{
		op:     op,
		method: http.MethodPost,
		path:   "/auth",
		body: struct {
			Login    string `json:"login"`
			Password string `json:"password"`
		}{login, password},
		partnerOnly:  true,
		partnerToken: partnerToken,
		secrets:      []string{password},
	}
	env, status, err := c.call(ctx, r)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			switch ae.Status {
			case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusUnprocessableEntity:
				ae.kind = ErrInvalidCredentials
			}
		}
		return LoginResult{}, err
	}
	res := decodeLogin(env)
	switch {
	case res.UserToken != "" && validToken(res.UserToken):
		return res, nil
	case res.TwoFactor != nil:
		return res, fmt.Errorf("altegio %s: %w (flow %q)", op, ErrTwoFactorRequired, res.TwoFactor.Flow)
	case res.UserToken != "":
		return LoginResult{}, c.decodeError(r, status, errors.New("user_token contains characters not allowed in a header"))
	default:
		return LoginResult{}, c.decodeError(r, status, errors.New("response has no user_token"))
	}
}
