package main

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/stack"
)

// connectNATS connects as c says and waits, at most c.connectWait, until
// the connection is up. Its errors name --nats-url or --nats-creds and never
// show credentials.
func connectNATS(ctx context.Context, c common, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := stack.ConnectNATS(c.nats, log)
	if err != nil {
		return nil, nil, stack.ExplainNATSError(err, stack.MainNATSFlags)
	}
	if err := stack.WaitConnected(ctx, nc, c.connectWait, c.nats.URL, stack.MainNATSFlags); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
