package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/devstack"
	"github.com/altegio-integrator/integrator/internal/devstack/devtest"
	"github.com/altegio-integrator/integrator/internal/testenv"
)

func TestRunCreatesAClientAndAddsAComment(t *testing.T) {
	st := devtest.Start(t, devstack.DevConfig{})
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, []string{"-nats-url", st.NATSURL, "-ref", "ex-nats", "-name", "Bea", "-phone", "+13155550302", "-comment", "hello over NATS"}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^published client\.create +id=[0-9a-f-]{36} stream_seq=\d+ duplicate=false$`),
		regexp.MustCompile(`(?m)^published client\.comment\.add +id=[0-9a-f-]{36} stream_seq=\d+ duplicate=false$`),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
	// The worker carries both out.
	testenv.WaitFor(t, 30*time.Second, func() error {
		clients := st.Sandbox.Clients(devstack.DevLocationID)
		if len(clients) != 1 || clients[0].Name != "Bea" || clients[0].Phone != "13155550302" {
			return fmt.Errorf("sandbox clients %+v, want Bea", clients)
		}
		if cs := st.Sandbox.Comments(devstack.DevLocationID, clients[0].ID); len(cs) != 1 || cs[0].Text != "hello over NATS" {
			return fmt.Errorf("comments %+v", cs)
		}
		return nil
	})
}

func TestRunWithoutNATSFails(t *testing.T) {
	var out bytes.Buffer
	n := testenv.RunJetStream(t)
	url := n.URL()
	n.Stop()
	if err := run(context.Background(), []string{"-nats-url", url}, &out); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("run = %v, want a connection error", err)
	}
}

func TestRunHelpListsTheDefaults(t *testing.T) {
	t.Setenv("NATS_URL", "")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h = %v", err)
	}
	for _, want := range []string{"nats://127.0.0.1:4222", "NATS_URL", "_INBOX_producer"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}
