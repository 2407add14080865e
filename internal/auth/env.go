package auth

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Environment variables read by [AccountsFromEnv].
const (
	// EnvAccounts lists account names, comma-separated, e.g. "main,eu".
	// When it is empty, one account named "default" is read from the
	// unprefixed variables below.
	EnvAccounts = "ALTEGIO_ACCOUNTS"
	// envPrefix starts every variable; a named account inserts its name in
	// upper case ('-' becomes '_'): ALTEGIO_MAIN_PASSWORD.
	envPrefix = "ALTEGIO_"
)

// Per-account variable suffixes. A secret may instead be read from the file
// named by the variable with "_FILE" appended; setting both is an error.
const (
	envPartnerToken = "PARTNER_TOKEN"
	envUserToken    = "USER_TOKEN"
	envLogin        = "LOGIN"
	envPassword     = "PASSWORD"
	envLocations    = "LOCATIONS"
)

// maxSecretFile bounds what is read from a *_FILE.
const maxSecretFile = 64 << 10

// AccountsFromEnv reads the accounts from the environment through getenv
// (os.Getenv in production) and validates them with [ValidateAccounts].
//
// One account, named "default":
//
//	ALTEGIO_PARTNER_TOKEN  partner token (required)
//	ALTEGIO_USER_TOKEN     fixed user token, or:
//	ALTEGIO_LOGIN          user login (phone or email) and
//	ALTEGIO_PASSWORD       user password
//	ALTEGIO_LOCATIONS      comma-separated location IDs; empty or "*" = all
//
// Several accounts: ALTEGIO_ACCOUNTS=main,eu, then the same variables with
// the account name inserted in upper case, e.g. ALTEGIO_MAIN_LOGIN and
// ALTEGIO_EU_LOCATIONS. ALTEGIO_PARTNER_TOKEN, when set, is the partner
// token of every account that sets none of its own.
//
// Every variable except *_LOCATIONS can instead name a file with a "_FILE"
// suffix (ALTEGIO_PASSWORD_FILE=/run/secrets/pw); one trailing newline is
// removed from the file. Errors name the variable, never its value.
func AccountsFromEnv(getenv func(string) string) ([]Account, error) {
	return accountsFromEnv(getenv, readSecretFile)
}

func accountsFromEnv(getenv func(string) string, readFile func(string) ([]byte, error)) ([]Account, error) {
	r := envReader{getenv: getenv, readFile: readFile}
	list := strings.TrimSpace(getenv(EnvAccounts))
	var accounts []Account
	if list == "" {
		a, err := r.account(DefaultAccountName, envPrefix, "")
		if err != nil {
			return nil, err
		}
		accounts = append(accounts, a)
	} else {
		for _, suffix := range []string{envUserToken, envLogin, envPassword, envLocations} {
			for _, name := range []string{envPrefix + suffix, envPrefix + suffix + "_FILE"} {
				if getenv(name) != "" {
					return nil, fmt.Errorf("%s is not used when %s is set; use %s<NAME>_%s", name, EnvAccounts, envPrefix, suffix)
				}
			}
		}
		shared, err := r.secret(envPrefix + envPartnerToken)
		if err != nil {
			return nil, err
		}
		prefixes := make(map[string]string)
		var names, order []string
		for _, raw := range strings.Split(list, ",") {
			name := strings.ToLower(strings.TrimSpace(raw))
			if err := validName(name); err != nil {
				return nil, fmt.Errorf("%s: %w", EnvAccounts, err)
			}
			prefix := envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
			if prev, ok := prefixes[prefix]; ok {
				return nil, fmt.Errorf("%s: accounts %q and %q both read variables %s*", EnvAccounts, prev, name, prefix)
			}
			prefixes[prefix] = name
			names, order = append(names, name), append(order, prefix)
		}
		for i, name := range names {
			a, err := r.account(name, order[i], shared)
			if err != nil {
				return nil, err
			}
			accounts = append(accounts, a)
		}
	}
	if err := ValidateAccounts(accounts); err != nil {
		return nil, err
	}
	return accounts, nil
}

type envReader struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
}

// account reads one account's variables, which all start with prefix.
// partnerDefault is used when the account sets no partner token.
func (r envReader) account(name, prefix, partnerDefault string) (Account, error) {
	a := Account{Name: name}
	var err error
	if a.PartnerToken, err = r.secret(prefix + envPartnerToken); err != nil {
		return Account{}, err
	}
	if a.PartnerToken == "" {
		a.PartnerToken = partnerDefault
	}
	if a.PartnerToken == "" {
		if prefix == envPrefix {
			return Account{}, fmt.Errorf("%s or %s_FILE is required", prefix+envPartnerToken, prefix+envPartnerToken)
		}
		return Account{}, fmt.Errorf("account %q: %s or %s is required", name, prefix+envPartnerToken, envPrefix+envPartnerToken)
	}
	if a.UserToken, err = r.secret(prefix + envUserToken); err != nil {
		return Account{}, err
	}
	if a.Login, err = r.secret(prefix + envLogin); err != nil {
		return Account{}, err
	}
	if a.Password, err = r.secret(prefix + envPassword); err != nil {
		return Account{}, err
	}
	for _, tok := range []struct{ v, name string }{{a.PartnerToken, envPartnerToken}, {a.UserToken, envUserToken}} {
		if tok.v != "" && !validToken(tok.v) {
			return Account{}, fmt.Errorf("%s: the token contains a space, comma or control character", prefix+tok.name)
		}
	}
	switch {
	case a.UserToken != "" && (a.Login != "" || a.Password != ""):
		return Account{}, fmt.Errorf("account %q: set either %s or %s and %s, not both",
			name, prefix+envUserToken, prefix+envLogin, prefix+envPassword)
	case a.UserToken == "" && a.Login == "" && a.Password == "":
		return Account{}, fmt.Errorf("account %q: %s, or %s and %s, is required",
			name, prefix+envUserToken, prefix+envLogin, prefix+envPassword)
	case a.UserToken == "" && a.Login == "":
		return Account{}, fmt.Errorf("account %q: %s is required with %s", name, prefix+envLogin, prefix+envPassword)
	case a.UserToken == "" && a.Password == "":
		return Account{}, fmt.Errorf("account %q: %s is required with %s", name, prefix+envPassword, prefix+envLogin)
	}
	if a.Locations, err = parseLocations(r.getenv(prefix + envLocations)); err != nil {
		return Account{}, fmt.Errorf("%s: %w", prefix+envLocations, err)
	}
	return a, nil
}

// secret returns the value of the variable name, or the content of the file
// named by name_FILE. Both set is an error; neither gives "".
func (r envReader) secret(name string) (string, error) {
	v, path := r.getenv(name), r.getenv(name+"_FILE")
	switch {
	case v != "" && path != "":
		return "", fmt.Errorf("set only one of %s and %s_FILE", name, name)
	case path == "":
		return v, nil
	}
	b, err := r.readFile(path)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	s := string(b)
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s_FILE: file %s is empty", name, path)
	}
	return s, nil
}

// parseLocations parses a comma-separated list of positive location IDs.
// Empty or "*" means all locations (nil).
func parseLocations(s string) ([]int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return nil, nil
	}
	var out []int64
	seen := make(map[int64]bool)
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		id, err := strconv.ParseInt(part, 10, 64)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("location %q is not a positive integer ID", truncate(part, 24))
		}
		if seen[id] {
			return nil, fmt.Errorf("location %d is listed twice", id)
		}
		seen[id] = true
		out = append(out, id)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// readSecretFile reads at most maxSecretFile bytes of a secret file.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return nil, errors.New("file " + path + " is larger than 64 KiB")
	}
	return b, nil
}
