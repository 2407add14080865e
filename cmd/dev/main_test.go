package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help: %v", err)
	}
	for _, want := range []string{"$NATS_URL", "$ALTEGIO_API_URL", "$DEV_DATA", "$DEV_INGEST_ADDR", "$DEV_SANDBOX_ERROR_RATE", "$ALTEGIO_RATE_PER_SECOND", "(default 5)"} {
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
