package auth

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestAccountsFromEnv(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("pw-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "tok")
	if err := os.WriteFile(tokFile, []byte("ptok-from-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		env     map[string]string
		want    []Account
		wantErr string // substring; "" means success
	}{
		{
			name: "single account with login",
			env: map[string]string{
				"ALTEGIO_PARTNER_TOKEN": "ptok", "ALTEGIO_LOGIN": "me@example.com",
				"ALTEGIO_PASSWORD": "pw", "ALTEGIO_LOCATIONS": "1, 2",
			},
			want: []Account{{Name: "default", PartnerToken: "ptok", Login: "me@example.com", Password: "pw", Locations: []int64{1, 2}}},
		},
		{
			name: "single account with fixed token, all locations",
			env:  map[string]string{"ALTEGIO_PARTNER_TOKEN": "ptok", "ALTEGIO_USER_TOKEN": "utok", "ALTEGIO_LOCATIONS": "*"},
			want: []Account{{Name: "default", PartnerToken: "ptok", UserToken: "utok"}},
		},
		{
			name: "secrets from files",
			env: map[string]string{
				"ALTEGIO_PARTNER_TOKEN_FILE": tokFile, "ALTEGIO_LOGIN": "me",
				"ALTEGIO_PASSWORD_FILE": pwFile,
			},
			want: []Account{{Name: "default", PartnerToken: "ptok-from-file", Login: "me", Password: "pw-from-file"}},
		},
		{
			name: "several accounts with a shared partner token",
			env: map[string]string{
				"ALTEGIO_ACCOUNTS": "main, eu-west", "ALTEGIO_PARTNER_TOKEN": "shared",
				"ALTEGIO_MAIN_USER_TOKEN":       "utok",
				"ALTEGIO_EU_WEST_PARTNER_TOKEN": "own", "ALTEGIO_EU_WEST_LOGIN": "eu",
				"ALTEGIO_EU_WEST_PASSWORD_FILE": pwFile, "ALTEGIO_EU_WEST_LOCATIONS": "7",
			},
			want: []Account{
				{Name: "main", PartnerToken: "shared", UserToken: "utok"},
				{Name: "eu-west", PartnerToken: "own", Login: "eu", Password: "pw-from-file", Locations: []int64{7}},
			},
		},
		{
			name:    "no partner token",
			env:     map[string]string{"ALTEGIO_USER_TOKEN": "utok"},
			wantErr: "ALTEGIO_PARTNER_TOKEN or ALTEGIO_PARTNER_TOKEN_FILE is required",
		},
		{
			name:    "value and file both set",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "ptok", "ALTEGIO_PASSWORD": "pw", "ALTEGIO_PASSWORD_FILE": pwFile, "ALTEGIO_LOGIN": "me"},
			wantErr: "set only one of ALTEGIO_PASSWORD and ALTEGIO_PASSWORD_FILE",
		},
		{
			name:    "missing file",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN_FILE": filepath.Join(dir, "nope"), "ALTEGIO_USER_TOKEN": "u"},
			wantErr: "ALTEGIO_PARTNER_TOKEN_FILE:",
		},
		{
			name:    "empty file",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_USER_TOKEN_FILE": emptyFile},
			wantErr: "ALTEGIO_USER_TOKEN_FILE: file",
		},
		{
			name:    "password without login",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_PASSWORD": "pw"},
			wantErr: "ALTEGIO_LOGIN is required with ALTEGIO_PASSWORD",
		},
		{
			name:    "login without password",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_LOGIN": "me"},
			wantErr: "ALTEGIO_PASSWORD is required with ALTEGIO_LOGIN",
		},
		{
			name:    "token and login",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_USER_TOKEN": "u", "ALTEGIO_LOGIN": "me", "ALTEGIO_PASSWORD": "pw"},
			wantErr: "set either ALTEGIO_USER_TOKEN or ALTEGIO_LOGIN and ALTEGIO_PASSWORD",
		},
		{
			name:    "no user credentials",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "p"},
			wantErr: "ALTEGIO_USER_TOKEN, or ALTEGIO_LOGIN and ALTEGIO_PASSWORD, is required",
		},
		{
			name:    "token with a comma",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "p,q", "ALTEGIO_USER_TOKEN": "u"},
			wantErr: "ALTEGIO_PARTNER_TOKEN: the token contains",
		},
		{
			name:    "bad location",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_USER_TOKEN": "u", "ALTEGIO_LOCATIONS": "1,x"},
			wantErr: `ALTEGIO_LOCATIONS: location "x" is not a positive integer ID`,
		},
		{
			name:    "negative location",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_USER_TOKEN": "u", "ALTEGIO_LOCATIONS": "-3"},
			wantErr: "ALTEGIO_LOCATIONS:",
		},
		{
			name:    "duplicate location",
			env:     map[string]string{"ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_USER_TOKEN": "u", "ALTEGIO_LOCATIONS": "4,4"},
			wantErr: "location 4 is listed twice",
		},
		{
			name:    "unprefixed login with several accounts",
			env:     map[string]string{"ALTEGIO_ACCOUNTS": "a", "ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_A_USER_TOKEN": "u", "ALTEGIO_LOGIN": "me"},
			wantErr: "ALTEGIO_LOGIN is not used when ALTEGIO_ACCOUNTS is set",
		},
		{
			name:    "bad account name",
			env:     map[string]string{"ALTEGIO_ACCOUNTS": "a b", "ALTEGIO_PARTNER_TOKEN": "p"},
			wantErr: "ALTEGIO_ACCOUNTS: account name",
		},
		{
			name:    "empty account name",
			env:     map[string]string{"ALTEGIO_ACCOUNTS": "a,,b", "ALTEGIO_PARTNER_TOKEN": "p"},
			wantErr: "account name is required",
		},
		{
			name:    "names that share variables",
			env:     map[string]string{"ALTEGIO_ACCOUNTS": "a-b,a_b", "ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_A_B_USER_TOKEN": "u"},
			wantErr: "both read variables ALTEGIO_A_B_*",
		},
		{
			name:    "account without partner token",
			env:     map[string]string{"ALTEGIO_ACCOUNTS": "a", "ALTEGIO_A_USER_TOKEN": "u"},
			wantErr: `account "a": ALTEGIO_A_PARTNER_TOKEN or ALTEGIO_PARTNER_TOKEN is required`,
		},
		{
			name: "two catch-all accounts",
			env: map[string]string{"ALTEGIO_ACCOUNTS": "a,b", "ALTEGIO_PARTNER_TOKEN": "p",
				"ALTEGIO_A_USER_TOKEN": "u", "ALTEGIO_B_USER_TOKEN": "v"},
			wantErr: `accounts "a" and "b" both serve all locations`,
		},
		{
			name: "location served twice",
			env: map[string]string{"ALTEGIO_ACCOUNTS": "a,b", "ALTEGIO_PARTNER_TOKEN": "p",
				"ALTEGIO_A_USER_TOKEN": "u", "ALTEGIO_A_LOCATIONS": "1,2",
				"ALTEGIO_B_USER_TOKEN": "v", "ALTEGIO_B_LOCATIONS": "2"},
			wantErr: `location 2 is served by both accounts "a" and "b"`,
		},
		{
			name:    "duplicate account",
			env:     map[string]string{"ALTEGIO_ACCOUNTS": "a,A", "ALTEGIO_PARTNER_TOKEN": "p", "ALTEGIO_A_USER_TOKEN": "u"},
			wantErr: "both read variables",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AccountsFromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				for k, v := range tc.env {
					if secretVar(k) && len(v) > 2 && strings.Contains(err.Error(), v) {
						t.Fatalf("error %q contains the value of %s", err, k)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("accounts = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// secretVar reports whether an environment variable holds a secret value.
func secretVar(k string) bool {
	return !strings.HasSuffix(k, "_FILE") &&
		(strings.HasSuffix(k, "PASSWORD") || strings.HasSuffix(k, "TOKEN"))
}

func TestAccountFormattingIsRedacted(t *testing.T) {
	a := Account{Name: "main", PartnerToken: partnerToken, Login: login, Password: password, Locations: []int64{1}}
	for _, s := range []string{a.String(), a.GoString(), fmtAll(a)} {
		for _, secret := range []string{partnerToken, password, login} {
			if strings.Contains(s, secret) {
				t.Fatalf("formatted account %q contains a secret", s)
			}
		}
		if !strings.Contains(s, "main") {
			t.Fatalf("formatted account %q lacks the name", s)
		}
	}
}

// FuzzAccountsFromEnv feeds arbitrary values to the environment reader: it
// must not panic, a success must be a valid set, and no error may quote the
// password or the tokens.
func FuzzAccountsFromEnv(f *testing.F) {
	f.Add("", "1,2", "me", "ptok")
	f.Add("main,eu", "*", "", "p,q")
	f.Add("a-b,a_b", "-1", "x", "")
	f.Add("main", "9223372036854775807,1", "me", "tok en")
	f.Fuzz(func(t *testing.T, accounts, locations, login, token string) {
		const marker = "SECRET"
		pw := marker + "-pw-" + login
		for _, s := range []string{accounts, locations, login, token} {
			if strings.Contains(strings.ToUpper(s), marker) {
				t.Skip()
			}
		}
		env := map[string]string{
			"ALTEGIO_ACCOUNTS":          accounts,
			"ALTEGIO_PARTNER_TOKEN":     marker + token,
			"ALTEGIO_LOCATIONS":         locations,
			"ALTEGIO_LOGIN":             login,
			"ALTEGIO_PASSWORD":          pw,
			"ALTEGIO_MAIN_LOGIN":        login,
			"ALTEGIO_MAIN_PASSWORD":     pw,
			"ALTEGIO_MAIN_LOCATIONS":    locations,
			"ALTEGIO_MAIN_USER_TOKEN":   token,
			"ALTEGIO_EU_PARTNER_TOKEN":  token,
			"ALTEGIO_EU_USER_TOKEN":     marker + token,
			"ALTEGIO_EU_LOCATIONS_FILE": "",
		}
		got, err := accountsFromEnv(func(k string) string { return env[k] }, func(string) ([]byte, error) {
			return []byte(marker + "-file"), nil
		})
		if err != nil {
			if strings.Contains(strings.ToUpper(err.Error()), marker) {
				t.Fatalf("error %q contains a secret", err)
			}
			return
		}
		if err := ValidateAccounts(got); err != nil {
			t.Fatalf("AccountsFromEnv returned an invalid set: %v", err)
		}
	})
}
