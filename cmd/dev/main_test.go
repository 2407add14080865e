package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/altegio-integrator/integrator/internal/stack"
)

func TestHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help: %v", err)
	}
	if first, _, _ := strings.Cut(out.String(), "\n"); first != about || !strings.Contains(first, "compiles for a minute or two") {
		t.Errorf("--help starts with %q, want the line saying what dev is and that the first run compiles", first)
	}
	for _, want := range []string{"-version", "$NATS_URL", "$ALTEGIO_API_URL", "$DEV_DATA", "$DEV_INGEST_ADDR", "$DEV_SANDBOX_ERROR_RATE", "$ALTEGIO_RATE_PER_SECOND", "(default 5)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestRealAPIWithoutCredentialsFails(t *testing.T) {
	env := map[string]string{"ALTEGIO_API_URL": "https://api.alteg.io/api/v1"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "ALTEGIO_") {
		t.Fatalf("err = %v, want one naming the missing ALTEGIO_ variables", err)
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("run --version: %v", err)
	}
	if got, want := stdout.String(), "dev "+stack.Version()+"\n"; got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}
}
