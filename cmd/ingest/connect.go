package main

import (
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/stack"
)

// operatorNATS names the flags of ingest's operator connection (/v1/dlq).
var operatorNATS = stack.NATSFlags{URL: "operator-nats-url", URLEnv: "INGEST_OPERATOR_NATS_URL", Creds: "operator-nats-creds", CredsEnv: "INGEST_OPERATOR_NATS_CREDS"}

// connectNATS is stack.ConnectNATS with errors that name the flags f of
// the URL or the credentials and never show credentials.
func connectNATS(cfg stack.NATSConfig, f stack.NATSFlags, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := stack.ConnectNATS(cfg, log)
	if err != nil {
		return nil, nil, stack.ExplainNATSError(err, f)
	}
	return nc, js, nil
}
