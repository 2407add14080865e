package envflag

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	env := map[string]string{"X_ADDR": ":9", "X_WAIT": "3s", "X_ON": "true"}
	tests := []struct {
		name     string
		args     []string
		wantAddr string
		wantWait time.Duration
	}{
		{"default", nil, ":9", 3 * time.Second},
		{"flag wins", []string{"-addr", ":1", "-wait", "1s"}, ":1", time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New("x", func(k string) string { return env[k] }, io.Discard)
			var (
				addr string
				wait time.Duration
				on   bool
			)
			s.String(&addr, "addr", "X_ADDR", ":8", "listen")
			s.Duration(&wait, "wait", "X_WAIT", time.Minute, "wait")
			s.Bool(&on, "on", "X_ON", false, "on")
			if err := s.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if addr != tt.wantAddr || wait != tt.wantWait || !on {
				t.Errorf("got %q %v %v, want %q %v true", addr, wait, on, tt.wantAddr, tt.wantWait)
			}
		})
	}
}

func TestBadVariableIsNamedNotEchoed(t *testing.T) {
	s := New("x", func(k string) string { return map[string]string{"X_N": "s3cret"}[k] }, io.Discard)
	var n int
	s.Int(&n, "n", "X_N", 1, "n")
	err := s.Parse(nil)
	if err == nil || !strings.Contains(err.Error(), "$X_N") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v, want one naming $X_N without its value", err)
	}
}

func TestHelpListsVariables(t *testing.T) {
	var out strings.Builder
	s := New("x", func(string) string { return "" }, &out)
	var d time.Duration
	s.Duration(&d, "wait", "X_WAIT", time.Minute, "how long")
	if err := s.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	if got := out.String(); !strings.Contains(got, "$X_WAIT") || !strings.Contains(got, "1m0s") {
		t.Errorf("help = %q, want the variable and the default", got)
	}
}

func TestParseNoArgs(t *testing.T) {
	s := New("x", func(string) string { return "" }, io.Discard)
	var n int
	s.Int(&n, "n", "X_N", 1, "n")
	if err := s.ParseNoArgs([]string{"-n", "2", "5000"}); err == nil || !strings.Contains(err.Error(), "5000") {
		t.Fatalf("err = %v, want one naming the leftover argument", err)
	}
	s = New("x", func(string) string { return "" }, io.Discard)
	s.Int(&n, "n", "X_N", 1, "n")
	if err := s.ParseNoArgs([]string{"-n", "2"}); err != nil || n != 2 {
		t.Fatalf("ParseNoArgs(-n 2) = %v, n = %d", err, n)
	}
}

func TestSetUsagePrintsOneFormat(t *testing.T) {
	tests := []struct {
		name     string
		synopsis string
		env      map[string]string
		more     []string
		want     string
	}{
		{
			name: "defaults",
			want: `Usage: x [flags]

Does x.

Flags:
  --addr string
        listen address ($X_ADDR) (default ":8")
  --on
        switch on ($X_ON)
  --wait duration
        how long
        at most ($X_WAIT) (default 1m0s)
`,
		},
		{
			name:     "synopsis, a variable set, more",
			synopsis: "<file> [flags]",
			env:      map[string]string{"X_ON": "true", "X_WAIT": "2s"},
			more:     []string{"Exit codes: 0 ok, 1 error.\n"},
			want: `Usage: x <file> [flags]

Does x.

Flags:
  --addr string
        listen address ($X_ADDR) (default ":8")
  --on
        switch on ($X_ON) (default true)
  --wait duration
        how long
        at most ($X_WAIT) (default 2s)

Exit codes: 0 ok, 1 error.
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			s := New("x", func(k string) string { return tt.env[k] }, &out)
			var (
				addr string
				on   bool
				wait time.Duration
			)
			s.String(&addr, "addr", "X_ADDR", ":8", "listen address")
			s.Bool(&on, "on", "X_ON", false, "switch on")
			s.Duration(&wait, "wait", "X_WAIT", time.Minute, "how long\nat most")
			s.SetUsage(tt.synopsis, "Does x.", tt.more...)
			if err := s.Parse([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("err = %v, want flag.ErrHelp", err)
			}
			if got := out.String(); got != tt.want {
				t.Errorf("help:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
