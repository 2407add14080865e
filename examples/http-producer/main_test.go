package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/devstack"
	"github.com/altegio-integrator/integrator/internal/devstack/devtest"
)

func TestRunCreatesAClientAndAddsAComment(t *testing.T) {
	st := devtest.Start(t, devstack.DevConfig{})
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, []string{"-url", st.IngestURL, "-ref", "ex-http", "-name", "Ann", "-phone", "+13155550301", "-comment", "hello from the example"}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^sent client\.create +id=[0-9a-f-]{36} status=accepted stream_seq=\d+$`),
		regexp.MustCompile(`(?m)^sent client\.comment\.add +id=[0-9a-f-]{36} status=accepted stream_seq=\d+$`),
		regexp.MustCompile(`(?m)^done client\.create +id=[0-9a-f-]{36} succeeded client_id=\d+$`),
		regexp.MustCompile(`(?m)^done client\.comment\.add +id=[0-9a-f-]{36} succeeded`),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
	clients := st.Sandbox.Clients(devstack.DevLocationID)
	if len(clients) != 1 || clients[0].Name != "Ann" || clients[0].Phone != "13155550301" {
		t.Fatalf("sandbox clients %+v, want Ann", clients)
	}
	if cs := st.Sandbox.Comments(devstack.DevLocationID, clients[0].ID); len(cs) != 1 || cs[0].Text != "hello from the example" {
		t.Errorf("comments %+v", cs)
	}

	// A wrong key is refused, and says so.
	out.Reset()
	err = run(ctx, []string{"-url", st.IngestURL, "-key", "wrong", "-wait", "0"}, &out)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("run with a wrong key = %v, want ingest's 401", err)
	}
}

func TestRunHelpListsTheDefaults(t *testing.T) {
	t.Setenv("INGEST_URL", "")
	t.Setenv("PRODUCER_KEY", "")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h = %v", err)
	}
	for _, want := range []string{"http://127.0.0.1:8080", "dev-producer-key", "INGEST_URL", "PRODUCER_KEY"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}
