package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// The scenarios themselves run in internal/bench's tests; these check the
// command line around them, which starts nothing.

func TestHelpListsScenarios(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pipeline", "budget", "bulk", "fairness", "drain", "ingest", "growth", "faults"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{arg}, func(string) string { return "" }, &out, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), "bench ") || len(strings.TrimSpace(out.String())) <= len("bench") {
			t.Errorf("bench %s printed %q", arg, out.String())
		}
	}
}

func TestScenarioHelpListsFlags(t *testing.T) {
	tests := map[string][]string{
		"budget":   {"-quick", "-duration", "-workers", "-offered-rate", "-rate-per-second", "BENCH_BIN_DIR"},
		"bulk":     {"-quick", "-n", "-batch", "-rate-per-minute"},
		"fairness": {"-backlog", "-backlog-type", "-settle"},
		"drain":    {"-n", "-bare-concurrency", "-no-budget-rate"},
		"ingest":   {"-producers", "-batch"},
		"growth":   {"-sizes", "-locations"},
		"pipeline": {"-n", "-producers", "-batch"},
	}
	for name, wants := range tests {
		var out bytes.Buffer
		err := run(context.Background(), []string{name, "--help"}, func(string) string { return "" }, &out, &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s --help = %v, want flag.ErrHelp", name, err)
		}
		flags := flagNames(out.String())
		for _, want := range wants {
			found := flags[want] // a flag, by its whole name
			if !strings.HasPrefix(want, "-") {
				found = strings.Contains(out.String(), want)
			}
			if !found {
				t.Errorf("%s --help lacks %q:\n%s", name, want, out.String())
			}
		}
	}
}

// flagNames lists the flags a usage text defines ("-n", "-quick"), so that
// a wanted "-n" is not found inside "-no-budget-rate".
func flagNames(usage string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.SplitSeq(usage, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(line, "  -") {
			names[f[0]] = true
		}
	}
	return names
}

func TestBadArguments(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `unknown scenario "nope"`},
		{[]string{"growth", "--sizes", "1,x"}, "-sizes"},
		{[]string{"budget", "--workers", "0"}, "-workers"},
		{[]string{"drain", "extra"}, "extra"},
		{[]string{"faults", "--phases", "kill, bogus"}, `unknown phase "bogus"`},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(context.Background(), tt.args, func(string) string { return "" }, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}
