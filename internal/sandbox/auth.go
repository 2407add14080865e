package sandbox

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// userState is a configured user with its current token. Guarded by
// Server.mu.
type userState struct {
	User
}

// allowed reports whether the user may act on the location.
func (u *userState) allowed(loc int64) bool {
	return len(u.Locations) == 0 || slices.Contains(u.Locations, loc)
}

// parseAuthorization splits "Bearer <partner>, User <user>" (ref §2.1). The
// space after the comma is optional, as in the YCLIENTS example; scheme
// words are matched case-insensitively. A partner-only header has an empty
// user token.
func parseAuthorization(h string) (partner, user string, ok bool) {
	rest, ok := cutPrefixFold(strings.TrimSpace(h), "Bearer ")
	if !ok {
		return "", "", false
	}
	partner, userPart, hasUser := strings.Cut(rest, ",")
	partner = strings.TrimSpace(partner)
	if partner == "" {
		return "", "", false
	}
	if !hasUser {
		return partner, "", true
	}
	user, ok = cutPrefixFold(strings.TrimSpace(userPart), "User ")
	user = strings.TrimSpace(user)
	if !ok || user == "" {
		return "", "", false
	}
	return partner, user, true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

func equalSecret(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// authenticate checks the Authorization header for the route's level and
// stores the user in c. It answers 401 "Authentication needed." for a
// missing or wrong partner token, and for a missing, unknown or rotated
// user token (ref §2.2, §2.3).
func (s *Server) authenticate(r *http.Request, level authLevel, c *call) *response {
	unauthorized := errorResponse(http.StatusUnauthorized, msgAuthNeeded)
	partner, userToken, ok := parseAuthorization(r.Header.Get("Authorization"))
	if !ok || !equalSecret(partner, s.cfg.PartnerToken) {
		return &unauthorized
	}
	if level == authPartner {
		return nil
	}
	if userToken == "" {
		return &unauthorized
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if equalSecret(u.Token, userToken) {
			c.user = u
			return nil
		}
	}
	return &unauthorized
}

// userByLogin finds a user by login, email (case-insensitive) or phone
// digits, the forms POST /auth accepts (ref §2.2). Callers hold s.mu.
func (s *Server) userByLogin(login string) *userState {
	digits := normalizePhone(login)
	for _, u := range s.users {
		switch {
		case u.Login == login,
			u.Email != "" && strings.EqualFold(u.Email, login),
			u.Phone != "" && digits != "" && normalizePhone(u.Phone) == digits:
			return u
		}
	}
	return nil
}

// handleAuth is POST /auth (ref §2.2).
func (s *Server) handleAuth(c *call) response {
	var in struct {
		Login    *string `json:"login"`
		Password *string `json:"password"`
	}
	if err := json.Unmarshal(orEmptyObject(c.body), &in); err != nil {
		return invalidJSON(err)
	}
	var errs []any
	if in.Login == nil || *in.Login == "" {
		errs = append(errs, "The login field is required.")
	}
	if in.Password == nil || *in.Password == "" {
		errs = append(errs, "The password field is required.")
	}
	if len(errs) > 0 {
		return validationError(errs...)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByLogin(*in.Login)
	// The status of a wrong password is undocumented (ref §2.2); the sandbox
	// answers 401 with the error envelope. [I]
	if u == nil || !equalSecret(u.Password, *in.Password) {
		return errorResponse(http.StatusUnauthorized, "Incorrect login or password.")
	}
	if u.TwoFactor {
		// ref §2.2: 200 with a challenge and no token (YCLIENTS observation).
		return envelope(http.StatusOK, map[string]any{
			"uuid": newUUID(),
			"flow": "2fa",
			"transport": map[string]any{
				"type":      "sms",
				"recipient": maskPhone(u.Phone),
			},
			"refresh_ttl_sec": 60,
			"attempts_left":   3,
		}, emptyArray{})
	}
	s.stats.Logins++
	return envelope(http.StatusCreated, map[string]any{
		"id":                 u.ID,
		"user_token":         u.Token,
		"name":               u.Name,
		"phone":              u.Phone,
		"login":              u.Login,
		"email":              u.Email,
		"avatar":             "https://assets.alteg.io/general/0/01/no-avatar.png",
		"is_approved":        true,
		"is_email_confirmed": u.Email != "",
	}, emptyArray{})
}

// RotateUserToken gives the user a new token, as a password change does in
// the real API (ref §2.2): the old token answers 401 from now on. It returns
// the new token, or an error when no user has that login.
func (s *Server) RotateUserToken(login string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if u.Login == login {
			u.Token = newToken()
			return u.Token, nil
		}
	}
	return "", fmt.Errorf("sandbox: unknown user %q", login)
}

// UserToken returns the current token of the user with that login, so tests
// can act without calling POST /auth.
func (s *Server) UserToken(login string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if u.Login == login {
			return u.Token, true
		}
	}
	return "", false
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func maskPhone(phone string) string {
	d := normalizePhone(phone)
	if len(d) < 4 {
		return "***"
	}
	return "+" + strings.Repeat("*", len(d)-4) + d[len(d)-4:]
}
