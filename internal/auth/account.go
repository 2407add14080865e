package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// redacted replaces a secret wherever an account is formatted.
const redacted = "[REDACTED]"

// DefaultAccountName is the name of the single account configured without
// ALTEGIO_ACCOUNTS.
const DefaultAccountName = "default"

// maxAccountName bounds an account name; it becomes part of a KV key, log
// lines and metric labels.
const maxAccountName = 64

// Account is one set of Altegio credentials and the locations it serves.
// Formatting an Account with fmt or slog never shows its secrets.
type Account struct {
	// Name identifies the account in logs, errors, metrics and the KV key.
	// Lower-case letters, digits, '_' and '-', starting with a letter or a
	// digit, at most 64 characters. Required.
	Name string
	// PartnerToken is the developer's partner bearer token. Required.
	PartnerToken string
	// UserToken is a fixed user token (for example an application's API
	// key). When set, the account never logs in, and a 401 is a permanent
	// error. Set either UserToken or Login and Password.
	UserToken string
	// Login and Password are the business user's credentials for POST
	// /auth. Set both, or set UserToken instead.
	Login, Password string
	// Locations lists the location IDs the account serves. Empty means
	// every location not listed by another account (a catch-all); at most
	// one account may be a catch-all.
	Locations []int64
}

// fixed reports whether the account uses a fixed user token.
func (a Account) fixed() bool { return a.UserToken != "" }

// Validate reports the first problem with a, naming the field but never a
// secret's value.
func (a Account) Validate() error {
	if err := validName(a.Name); err != nil {
		return err
	}
	var problems []string
	if a.PartnerToken == "" {
		problems = append(problems, "partner token is required")
	}
	switch {
	case a.UserToken != "" && (a.Login != "" || a.Password != ""):
		problems = append(problems, "set either a user token or login and password, not both")
	case a.UserToken == "" && (a.Login == "" || a.Password == ""):
		problems = append(problems, "a user token, or login and password, is required")
	}
	for _, tok := range []struct{ what, v string }{{"partner token", a.PartnerToken}, {"user token", a.UserToken}} {
		if tok.v != "" && !validToken(tok.v) {
			problems = append(problems, tok.what+" contains a space, comma or control character")
		}
	}
	seen := make(map[int64]bool, len(a.Locations))
	for _, loc := range a.Locations {
		if loc <= 0 {
			problems = append(problems, fmt.Sprintf("location %d is not a positive ID", loc))
		} else if seen[loc] {
			problems = append(problems, fmt.Sprintf("location %d is listed twice", loc))
		}
		seen[loc] = true
	}
	if len(problems) > 0 {
		return fmt.Errorf("account %q: %s", a.Name, strings.Join(problems, "; "))
	}
	return nil
}

// String returns the name, the locations and which secrets are set, e.g.
// `auth.Account{Name:"main", PartnerToken:[REDACTED], UserToken:"", Login:[REDACTED], Password:[REDACTED], Locations:[1 2]}`.
func (a Account) String() string {
	return fmt.Sprintf("auth.Account{Name:%q, PartnerToken:%s, UserToken:%s, Login:%s, Password:%s, Locations:%v}",
		a.Name, mask(a.PartnerToken), mask(a.UserToken), mask(a.Login), mask(a.Password), a.Locations)
}

// GoString is String, so %#v is redacted too.
func (a Account) GoString() string { return a.String() }

// LogValue logs the name, the locations and the kind of user credentials.
func (a Account) LogValue() slog.Value {
	kind := "login"
	if a.fixed() {
		kind = "fixed_token"
	}
	locs := make([]string, len(a.Locations))
	for i, l := range a.Locations {
		locs[i] = strconv.FormatInt(l, 10)
	}
	return slog.GroupValue(
		slog.String("name", a.Name),
		slog.String("credentials", kind),
		slog.String("locations", strings.Join(locs, ",")),
	)
}

// mask returns `""` for an empty secret and [REDACTED] otherwise.
func mask(secret string) string {
	if secret == "" {
		return `""`
	}
	return redacted
}

func validName(name string) error {
	if name == "" {
		return errors.New("account name is required")
	}
	if len(name) > maxAccountName {
		return fmt.Errorf("account name %.16q… is longer than %d characters", name, maxAccountName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("account name %q: use lower-case letters, digits, '_' and '-', starting with a letter or digit", name)
		}
	}
	return nil
}

// validToken reports whether a token can go into the Authorization header:
// no control characters, spaces or commas (the comma separates the tokens).
func validToken(tok string) bool {
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c == 0x7f || c == ',' {
			return false
		}
	}
	return true
}

// ValidateAccounts checks every account and the set: names are unique, no
// location is served by two accounts, and at most one account is a
// catch-all. It returns nil for a usable set; an empty set is an error.
func ValidateAccounts(accounts []Account) error {
	if len(accounts) == 0 {
		return errors.New("no account configured")
	}
	names := make(map[string]bool, len(accounts))
	owner := make(map[int64]string)
	catchAll := ""
	for _, a := range accounts {
		if err := a.Validate(); err != nil {
			return err
		}
		if names[a.Name] {
			return fmt.Errorf("account %q is configured twice", a.Name)
		}
		names[a.Name] = true
		if len(a.Locations) == 0 {
			if catchAll != "" {
				return fmt.Errorf("accounts %q and %q both serve all locations; list the locations of one of them", catchAll, a.Name)
			}
			catchAll = a.Name
		}
		for _, loc := range a.Locations {
			if prev, ok := owner[loc]; ok {
				return fmt.Errorf("location %d is served by both accounts %q and %q", loc, prev, a.Name)
			}
			owner[loc] = a.Name
		}
	}
	return nil
}
