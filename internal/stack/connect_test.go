package stack

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestWaitConnectedNamesTheFlagAndHidesThePassword(t *testing.T) {
	// A port nobody listens on: take one and give it back.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	url := "nats://alice:s3cret@" + addr
	nc, _, err := ConnectNATS(NATSConfig{URL: url}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	err = WaitConnected(context.Background(), nc, 200*time.Millisecond, url, MainNATSFlags)
	if err == nil {
		t.Fatal("connected to a port nobody listens on")
	}
	msg := err.Error()
	for _, want := range []string{"--nats-url", "$NATS_URL", "alice:xxxxx@" + addr, "refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "s3cret") {
		t.Errorf("error %q shows the password", msg)
	}
}

func TestExplainNATSErrorNamesTheCredsFlag(t *testing.T) {
	_, _, err := ConnectNATS(NATSConfig{URL: "nats://127.0.0.1:1", Creds: "/nonexistent/user.creds"}, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("connected with a credentials file that does not exist")
	}
	if got := ExplainNATSError(err, MainNATSFlags).Error(); !strings.Contains(got, "--nats-creds") {
		t.Errorf("error %q does not name --nats-creds", got)
	}
}
