package worker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/tracing"
	"github.com/altegio-integrator/integrator/internal/wmjetstream"
)

// AccountAttentionKind is the Kind of an AccountAttention event.
const AccountAttentionKind = "account.needs_attention"

// AccountAttention is the event published when an account's credentials
// were rejected after one re-login, or the account cannot log in (two-factor
// authentication, wrong password): while its commands wait for it (Paused,
// at most once per account per 5 minutes), and when one is dead-lettered
// at its last delivery. Operators fix the account; the waiting commands
// then go on by themselves. It is published on commands.AccountAttentionSubject.
type AccountAttention struct {
	// SchemaVersion is commands.SchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// Kind is AccountAttentionKind.
	Kind string `json:"kind"`
	// LocationID is the location of the failed command.
	LocationID int64 `json:"location_id"`
	// Account is the account name from internal/auth, when known.
	Account string `json:"account,omitempty"`
	// Reason explains the failure; it never contains a secret.
	Reason string `json:"reason"`
	// CommandID and StreamSeq identify the command message that found the
	// account broken: dead-lettered, or (Paused) waiting for the account.
	CommandID string `json:"command_id"`
	StreamSeq uint64 `json:"stream_seq"`
	// Paused is set while the account's commands wait for it to work
	// again (published at most once per account per 5 minutes); unset
	// when a command was dead-lettered for it.
	Paused bool `json:"paused,omitempty"`
	// At is when the failure was recorded.
	At time.Time `json:"at"`
	// WorkerID is the process that saw the failure.
	WorkerID string `json:"worker_id,omitempty"`
}

// EventMsgID returns the Nats-Msg-Id of a result event: r.MsgID() (command
// id, outcome, replay generation, attempt for failed events) plus the
// stream sequence of the command message. Publishing the same result again
// is deduplicated; the outcome of a later message with the same command id
// (a new stream sequence) is not.
func EventMsgID(r commands.Result) string {
	return r.MsgID() + ":seq:" + strconv.FormatUint(r.StreamSeq, 10)
}

// publishResult publishes a result event on commands.EventSubject(r) and,
// once it is stored, indexes a terminal one (history.go).
// The publication is the span worker.publish_result, and the event carries
// its trace context.
func (w *Worker) publishResult(ctx context.Context, r commands.Result) (err error) {
	subject := commands.EventSubject(r)
	ctx, span := w.startPublish(ctx, "worker.publish_result", subject)
	defer func() {
		tracing.SetError(span, err)
		span.End()
	}()
	body, err := commands.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := w.publish(ctx, subject, EventMsgID(r), commands.ResultHeaders(r), body); err != nil {
		return err
	}
	w.index(ctx, r)
	return nil
}

// publishDLQ publishes a DLQ record on commands.DLQSubject(cmd), with
// Nats-Msg-Id dl.MsgID() ("dlq:<command id>:<stream seq>"), in the span
// worker.publish_dlq.
func (w *Worker) publishDLQ(ctx context.Context, cmd commands.Command, dl commands.DLQRecord) (err error) {
	subject := commands.DLQSubject(cmd)
	ctx, span := w.startPublish(ctx, "worker.publish_dlq", subject)
	defer func() {
		tracing.SetError(span, err)
		span.End()
	}()
	body, err := commands.Marshal(dl)
	if err == nil && len(body) > w.dlqLimit() {
		// The record always fits: a command too large to embed is stored
		// apart and the record points at it.
		if err := w.storeCommandApart(ctx, cmd, &dl); err != nil {
			return err
		}
		body, err = commands.Marshal(dl)
	}
	if err != nil {
		return fmt.Errorf("encode dlq record: %w", err)
	}
	id := dl.MsgID()
	h := map[string][]string{
		commands.HeaderErrorClass:    {string(dl.ErrorClass)},
		commands.HeaderSchemaVersion: {strconv.Itoa(commands.SchemaVersion)},
	}
	if dl.CommandID != "" {
		h[commands.HeaderCommandID] = []string{dl.CommandID}
	}
	if dl.Type != "" {
		h[commands.HeaderCommandType] = []string{string(dl.Type)}
	}
	return w.publish(ctx, subject, id, h, body)
}

// dlqHeaderRoom is what a DLQ record's message headers may take.
const dlqHeaderRoom = 4 << 10

// dlqLimit is the largest DLQ record body that fits in one message: the
// connection's max payload and the DLQ stream's max message size, less room
// for the headers.
func (w *Worker) dlqLimit() int {
	limit := int64(1 << 20)
	if nc := w.js.Conn(); nc != nil && nc.MaxPayload() > 0 {
		limit = nc.MaxPayload()
	}
	if w.dlqMaxMsg > 0 {
		limit = min(limit, w.dlqMaxMsg)
	}
	return int(limit) - dlqHeaderRoom
}

// storeCommandApart stores the command of dl on its own on
// DLQCommandSubject and makes dl point at it (CommandRef), for a command
// too large to embed. It is deduplicated by message id, so repeating it
// after a crash stores the command once.
func (w *Worker) storeCommandApart(ctx context.Context, cmd commands.Command, dl *commands.DLQRecord) error {
	payload := dl.CommandBytes()
	subject := commands.DLQCommandSubject(cmd)
	id := "dlqcmd:" + dl.CommandID + ":" + strconv.FormatUint(dl.StreamSeq, 10)
	msg := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: payload}
	if dl.CommandID != "" {
		msg.Header.Set(commands.HeaderCommandID, dl.CommandID)
	}
	ack, err := w.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
	if err != nil {
		return fmt.Errorf("store the command of dlq record %s: %w", id, err)
	}
	sum := sha256.Sum256(payload)
	dl.Command, dl.CommandRaw = nil, nil
	dl.CommandRef = &commands.CommandRef{Subject: subject, Seq: ack.Sequence, Size: len(payload), SHA256: hex.EncodeToString(sum[:])}
	return nil
}

// publishAccountAttention publishes the AccountAttention event of a command
// dead-lettered for its account (once per command delivery: the message id
// names the command and its stream sequence).
func (w *Worker) publishAccountAttention(ctx context.Context, cmd commands.Command, seq uint64, account, reason string) error {
	id := "account:" + cmd.ID + ":" + strconv.FormatUint(seq, 10)
	return w.publishAccountEvent(ctx, cmd, seq, account, reason, false, id)
}

// accountPausedEvery is how often, at most, a paused account's
// needs_attention event is published (its message id is the same within
// one such period, so the stream keeps one).
const accountPausedEvery = 5 * time.Minute

// publishAccountPaused publishes the AccountAttention event of an account
// whose commands wait for it: one per account per accountPausedEvery, named
// after the command that found it first. A process that published it in the
// current period does not publish it again (the stream's deduplication keeps
// one across processes).
func (w *Worker) publishAccountPaused(ctx context.Context, cmd commands.Command, seq uint64, account, reason string) error {
	period := w.cfg.Now().Unix() / int64(accountPausedEvery/time.Second)
	key := cmp.Or(account, "location-"+strconv.FormatInt(cmd.LocationID, 10))
	if last, ok := w.pausedPublished.Load(key); ok && last.(int64) == period {
		return nil
	}
	id := "account-paused:" + key + ":" + strconv.FormatInt(period, 10)
	if err := w.publishAccountEvent(ctx, cmd, seq, account, reason, true, id); err != nil {
		return err
	}
	w.pausedPublished.Store(key, period)
	return nil
}

// publishAccountEvent publishes one AccountAttention event under msgID.
func (w *Worker) publishAccountEvent(ctx context.Context, cmd commands.Command, seq uint64, account, reason string, paused bool, msgID string) error {
	ev := AccountAttention{
		SchemaVersion: commands.SchemaVersion, Kind: AccountAttentionKind, LocationID: cmd.LocationID,
		Account: account, Reason: reason, CommandID: cmd.ID, StreamSeq: seq, At: w.cfg.Now(), WorkerID: w.cfg.WorkerID,
		Paused: paused,
	}
	body, err := commands.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode account event: %w", err)
	}
	h := map[string][]string{commands.HeaderCommandID: {cmd.ID}}
	return w.publish(ctx, commands.AccountAttentionSubject(cmd.LocationID), msgID, h, body)
}

// publish sends one message through the Watermill publisher and waits for
// the stream to store it; a duplicate of its message id counts as stored.
// msgID is the only source of the Nats-Msg-Id header: it overrides any in h.
// The message carries the trace context of ctx's span (traceparent), if any.
func (w *Worker) publish(ctx context.Context, subject, msgID string, h map[string][]string, body []byte) error {
	m := message.NewMessage(msgID, body)
	for k, v := range h {
		if len(v) > 0 {
			m.Metadata.Set(k, v[0])
		}
	}
	tracing.InjectMetadata(ctx, m.Metadata)
	m.Metadata.Set(wmjetstream.MsgIDKey, msgID)
	if err := w.pub.PublishContext(ctx, subject, m); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}
