package producer

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// NATS publishes commands straight to the COMMANDS stream of JetStream. It
// is safe for concurrent use, as the jetstream.JetStream it wraps.
type NATS struct {
	js jetstream.JetStream
}

// NewNATS returns a sender that publishes with js. The connection behind js
// needs permission to publish on altegio.cmd.*.*.* and to receive the
// PubAcks on its inboxes (the "producer" user of deploy/nats). It returns
// an error for a nil js.
func NewNATS(js jetstream.JetStream) (*NATS, error) {
	if js == nil {
		return nil, errors.New("nil jetstream")
	}
	return &NATS{js: js}, nil
}

// Send validates every command (a *ValidationError before anything is
// published), then publishes them one after the other, in order, each on
// its subject, altegio.cmd.<location>.<client-key>.<op>, with the
// contract's headers (Nats-Msg-Id is the command id), and waits for each
// PubAck from the COMMANDS stream before the next. A command id the stream
// stored before, within its duplicate window, is not stored again: its
// receipt says StatusDuplicate, with the first one's sequence.
//
// When ctx has no deadline, each publish waits at most the timeout of js
// (jetstream.WithDefaultTimeout, 5s by default). Send does not retry
// (beyond the retries of js when no stream answers); on an error it returns
// the receipts of the commands stored before and the error of the publish
// that failed, wrapped with the command id. Sending all of them again is
// safe: the stream and the worker deduplicate on the id.
func (n *NATS) Send(ctx context.Context, cmds ...Command) ([]Receipt, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	bodies, err := encodeAll(cmds)
	if err != nil {
		return nil, err
	}
	receipts := make([]Receipt, 0, len(cmds))
	for i, c := range cmds {
		msg := &nats.Msg{Subject: c.subject(), Header: nats.Header(c.headers()), Data: bodies[i]}
		ack, err := n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(c.ID), jetstream.WithExpectStream(commands.StreamCommands))
		if err != nil {
			return receipts, fmt.Errorf("publish command %s: %w", c.ID, err)
		}
		r := Receipt{ID: c.ID, Status: StatusAccepted, StreamSeq: ack.Sequence}
		if ack.Duplicate {
			r.Status = StatusDuplicate
		}
		receipts = append(receipts, r)
	}
	return receipts, nil
}
