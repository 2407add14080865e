package defaults

import (
	"regexp"
	"testing"
)

func TestEnv(t *testing.T) {
	for _, tc := range []struct{ name, set, want string }{
		{"unset", "", "fallback"},
		{"set", "from-env", "from-env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DEFAULTS_TEST_VAR", tc.set)
			if got := Env("DEFAULTS_TEST_VAR", "fallback"); got != tc.want {
				t.Errorf("Env = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRefIsNewEachCall(t *testing.T) {
	a, b := Ref(), Ref()
	if want := regexp.MustCompile(`^example-[0-9a-f]{12}$`); !want.MatchString(a) {
		t.Errorf("Ref = %q, want it to match %s", a, want)
	}
	if a == b {
		t.Errorf("Ref returned %q twice", a)
	}
}

func TestPhone(t *testing.T) {
	if got, want := Phone(), regexp.MustCompile(`^\+1555\d{7}$`); !want.MatchString(got) {
		t.Errorf("Phone = %q, want it to match %s", got, want)
	}
}
