package producer

import "context"

// Sender sends commands; *HTTP and *NATS implement it, so a producer can
// switch transports without other changes.
type Sender interface {
	// Send sends cmds in order and returns one Receipt per command stored,
	// in order. On an error, the receipts say which commands were stored
	// before it; sending all of them again is safe.
	Send(ctx context.Context, cmds ...Command) ([]Receipt, error)
}

var (
	_ Sender = (*HTTP)(nil)
	_ Sender = (*NATS)(nil)
)

// Status says how a command was taken.
type Status string

// The statuses of a Receipt.
const (
	// StatusAccepted: the command is stored (in the COMMANDS stream, or
	// in ingest's outbox when Spooled) and will be carried out.
	StatusAccepted Status = "accepted"
	// StatusDuplicate: a command with the same id was stored before (a
	// retry); it is carried out once. StreamSeq is the first one's.
	StatusDuplicate Status = "duplicate"
)

// Receipt is the acknowledgement of one stored command.
type Receipt struct {
	// ID is the command's id.
	ID string `json:"id"`
	// Status is StatusAccepted or StatusDuplicate.
	Status Status `json:"status"`
	// StreamSeq is the command's sequence in the COMMANDS stream; 0 when
	// Spooled.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// Spooled is true when ingest could not reach JetStream and stored the
	// command in its outbox, to be relayed in order once it can (HTTP
	// only).
	Spooled bool `json:"spooled,omitempty"`
}

// Duplicate reports whether the command had been stored before.
func (r Receipt) Duplicate() bool { return r.Status == StatusDuplicate }

// encodeAll validates every command and returns their wire forms. It
// reports every problem of every command at once; with several commands
// the paths start with the command's index, as ingest reports a batch.
func encodeAll(cmds []Command) ([][]byte, error) {
	out := make([][]byte, len(cmds))
	var all *ValidationError
	for i, c := range cmds {
		data, err := c.encode()
		if err == nil {
			out[i] = data
			continue
		}
		ve := err.(*ValidationError)
		if len(cmds) == 1 {
			return nil, ve
		}
		if all == nil {
			all = &ValidationError{}
		}
		all.tooLarge = all.tooLarge || ve.tooLarge
		all.Problems = append(all.Problems, prefixed(i, ve.Problems)...)
	}
	if all != nil {
		return nil, all
	}
	return out, nil
}
