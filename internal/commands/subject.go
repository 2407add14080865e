package commands

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Stream filter patterns: one stream per pattern.
const (
	// CommandSubjects matches every command subject (stream COMMANDS).
	CommandSubjects = "altegio.cmd.>"
	// EventSubjects matches every result event subject (stream EVENTS).
	EventSubjects = "altegio.evt.>"
	// DLQSubjects matches every dead-letter subject (stream DLQ).
	DLQSubjects = "altegio.dlq.>"
)

// Stream names, as in the architecture.
const (
	// StreamCommands holds commands on CommandSubjects.
	StreamCommands = "COMMANDS"
	// StreamEvents holds result events on EventSubjects.
	StreamEvents = "EVENTS"
	// StreamDLQ holds dead-letter records on DLQSubjects.
	StreamDLQ = "DLQ"
)

// Message header names. NATS header names are case-sensitive: use these.
const (
	// HeaderMsgID is JetStream's deduplication header. A command's first
	// publication uses its id; a replay uses ReplayMsgID; results use
	// Result.MsgID; DLQ records use DLQRecord.MsgID.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderCommandID carries the command id on commands, results and DLQ
	// records.
	HeaderCommandID = "Altegio-Command-Id"
	// HeaderCommandType carries the command type, e.g. "client.create".
	HeaderCommandType = "Altegio-Command-Type"
	// HeaderCorrelationID carries the producer's correlation id, when set.
	HeaderCorrelationID = "Altegio-Correlation-Id"
	// HeaderSchemaVersion carries the contract version of the body.
	HeaderSchemaVersion = "Altegio-Schema-Version"
	// HeaderClientKey carries the command's ClientKey.
	HeaderClientKey = "Altegio-Client-Key"
	// HeaderOutcome carries a result's outcome.
	HeaderOutcome = "Altegio-Outcome"
	// HeaderErrorClass carries the error class of a failed result or DLQ
	// record.
	HeaderErrorClass = "Altegio-Error-Class"
	// HeaderReplay carries the replay generation (1 for the first replay)
	// on a command republished from the DLQ.
	HeaderReplay = "Altegio-Replay"
	// HeaderReplayOf carries the DLQ stream sequence of the record a
	// replayed command came from.
	HeaderReplayOf = "Altegio-Replay-Of"
	// HeaderOriginalSeq carries, on a command republished from the DLQ,
	// the COMMANDS stream sequence of its first publication: its
	// acceptance order. The worker compares it with the last command
	// applied to the same client and reports OutcomeSuperseded instead of
	// overwriting newer state. A replay of a replay keeps the first value.
	HeaderOriginalSeq = "Altegio-Original-Seq"
)

// Client key prefixes. Each kind has its own prefix, so keys of different
// kinds never collide.
const (
	keyRefPrefix       = "ref_"  // a readable client_ref
	keyRefHashPrefix   = "refh_" // the hash of any other client_ref
	keyClientPrefix    = "id_"   // an Altegio client id
	keyCommandPrefix   = "cmd_"  // a command id (a UUID)
	keyCommandHashPref = "cmdh_" // the hash of anything else in the id field
)

// NamesClient reports whether a client key (ClientKey) names a client, as
// opposed to only the command itself (a create without client_ref, a bulk
// create): only keys that name a client have other commands to be ordered
// with.
func NamesClient(key string) bool {
	return !strings.HasPrefix(key, keyCommandPrefix) && !strings.HasPrefix(key, keyCommandHashPref)
}

// ClientKey returns the subject token that groups the commands of one
// client, so that a consumer can apply them in order. It is, in order of
// preference:
//
//   - "ref_<client_ref>" when client_ref is set and made only of ASCII
//     letters, digits, '-' and '_' (at most MaxClientRefLength of them);
//     any other client_ref becomes "refh_<32 hex digits of its SHA-256>";
//   - "id_<client_id>" when client_id > 0;
//   - "cmd_<id>" otherwise: a client.create without client_ref and every
//     client.bulk_create are ordered only with themselves. An id that is not
//     a UUID is hashed like a ref ("cmdh_…"); assign the id (NewID) before
//     computing subjects.
//
// A client that producers address by client_ref in one command and by
// client_id only in another gets two keys, and those commands are not
// ordered with each other: address a client the same way every time, by
// client_ref when there is one. The key is always a valid, non-empty NATS
// subject token, even for an invalid command.
func (c Command) ClientKey() string {
	switch {
	case c.ClientRef != "":
		if IsSafeToken(c.ClientRef) {
			return keyRefPrefix + c.ClientRef
		}
		return keyRefHashPrefix + hashToken(c.ClientRef)
	case c.ClientID > 0:
		return keyClientPrefix + strconv.FormatInt(c.ClientID, 10)
	case uuidRE.MatchString(c.ID):
		return keyCommandPrefix + c.ID
	default:
		return keyCommandHashPref + hashToken(c.ID)
	}
}

// IsSafeToken reports whether s can appear in a subject token (and a KV
// key) as it is: 1 to MaxClientRefLength ASCII letters, digits, '-' and '_'.
func IsSafeToken(s string) bool {
	if s == "" || len(s) > MaxClientRefLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// hashToken returns 128 bits of the SHA-256 of s in lowercase hex.
func hashToken(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// locationToken returns the subject token for a location id: its decimal
// form, or "unknown" when it is not positive.
func locationToken(id int64) string {
	if id <= 0 {
		return opUnknown
	}
	return strconv.FormatInt(id, 10)
}

// CommandSubject returns the subject c is published on:
// altegio.cmd.<location>.<client-key>.<op>. Invalid parts become "unknown"
// (see Command.ClientKey), so the subject is always well-formed.
func CommandSubject(c Command) string {
	return "altegio.cmd." + locationToken(c.LocationID) + "." + c.ClientKey() + "." + c.Type.Op()
}

// ErrSubjectMismatch is wrapped by CheckStoredSubject's errors: the subject
// a command was stored under does not say what its body says.
var ErrSubjectMismatch = errors.New("subject does not match the command")

// StoredPartition returns the partition token the COMMANDS stream's subject
// transform ({{partition(n,1,2)}}: FNV-1a of the location and client-key
// tokens, modulo n) gives a command of loc and clientKey.
func StoredPartition(locationToken, clientKey string, partitions int) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(locationToken + clientKey))
	return strconv.Itoa(int(h.Sum32() % uint32(max(partitions, 1))))
}

// PartitionFilter matches the commands COMMANDS stores in partition p:
// altegio.cmd.<p>.>, the filter of the partition's worker consumer.
func PartitionFilter(p int) string { return "altegio.cmd." + strconv.Itoa(p) + ".>" }

// MisformedCommandFilters match the altegio.cmd subjects of every form but
// the one COMMANDS takes (CommandSubject: five tokens): two, three and four
// tokens, and six or more. No stream stores them; the workers listen on
// them so that a core publish there does not vanish without a word.
var MisformedCommandFilters = []string{"altegio.cmd", "altegio.cmd.*", "altegio.cmd.*.*", "altegio.cmd.*.*.*.>"}

// StoredSubject is a subject as COMMANDS stores it:
// altegio.cmd.<partition>.<location>.<client-key>.<op>.
type StoredSubject struct {
	Partition, Location, ClientKey, Op string
}

// ParseStoredSubject splits a COMMANDS subject into its parts; ok is false
// for a subject of any other form.
func ParseStoredSubject(subject string) (s StoredSubject, ok bool) {
	t := strings.Split(subject, ".")
	if len(t) != 6 || t[0] != "altegio" || t[1] != "cmd" {
		return StoredSubject{}, false
	}
	return StoredSubject{Partition: t[2], Location: t[3], ClientKey: t[4], Op: t[5]}, true
}

// Lane names the commands of one client in one location:
// "<location>.<client-key>".
func (s StoredSubject) Lane() string { return s.Location + "." + s.ClientKey }

// ClientFilter matches every stored command of the same client:
// altegio.cmd.<partition>.<location>.<client-key>.*.
func (s StoredSubject) ClientFilter() string {
	return "altegio.cmd." + s.Partition + "." + s.Location + "." + s.ClientKey + ".*"
}

// CheckStoredSubject reports whether subject, under which c was stored in
// COMMANDS (altegio.cmd.<partition>.<location>.<client-key>.<op>), agrees
// with c: its location, client key and operation, and the partition the
// stream's transform gives them. A command published on another client's
// subject, or straight on a partitioned subject, would be ordered with the
// wrong client; the error wraps ErrSubjectMismatch and says which part
// differs.
func (c Command) CheckStoredSubject(subject string, partitions int) error {
	t, ok := ParseStoredSubject(subject)
	if !ok {
		return fmt.Errorf("%w: %q is not altegio.cmd.<partition>.<location>.<client-key>.<op>", ErrSubjectMismatch, subject)
	}
	loc, key := locationToken(c.LocationID), c.ClientKey()
	for _, part := range []struct{ name, got, want string }{
		{"location", t.Location, loc},
		{"client key", t.ClientKey, key},
		{"operation", t.Op, c.Type.Op()},
		{"partition", t.Partition, StoredPartition(loc, key, partitions)},
	} {
		if part.got != part.want {
			return fmt.Errorf("%w: %s %q in the subject, %q in the command", ErrSubjectMismatch, part.name, part.got, part.want)
		}
	}
	return nil
}

// ClientCommandFilter returns the filter that matches every command of one
// client key in one location: altegio.cmd.<location>.<client-key>.*.
func ClientCommandFilter(locationID int64, clientKey string) string {
	return "altegio.cmd." + locationToken(locationID) + "." + clientKey + ".*"
}

// EventSubject returns the subject r is published on:
// altegio.evt.<location>.<op>.<outcome>. Invalid parts become "unknown".
func EventSubject(r Result) string {
	outcome := opUnknown
	if r.Outcome.Valid() {
		outcome = string(r.Outcome)
	}
	return "altegio.evt." + locationToken(r.LocationID) + "." + r.Type.Op() + "." + outcome
}

// EventFilter matches the result events of a location, operation and
// outcome; a location of 0 or less and an empty op or outcome match any.
func EventFilter(locationID int64, op string, outcome Outcome) string {
	return "altegio.evt." + filterToken(locationID) + "." + orAny(op) + "." + orAny(string(outcome))
}

// AccountAttentionSubject returns the subject of the events that say a
// location's account needs an operator (its credentials were refused):
// altegio.evt.<location>.account.needs_attention, in the EVENTS stream next
// to the result events.
func AccountAttentionSubject(locationID int64) string {
	return "altegio.evt." + locationToken(locationID) + ".account.needs_attention"
}

// DLQFilter matches the dead-letter records of a location and operation; a
// location of 0 or less and an empty op match any.
func DLQFilter(locationID int64, op string) string {
	return "altegio.dlq." + filterToken(locationID) + "." + orAny(op)
}

// filterToken is the location token of a filter: "*" for any location.
func filterToken(locationID int64) string {
	if locationID <= 0 {
		return "*"
	}
	return strconv.FormatInt(locationID, 10)
}

func orAny(token string) string {
	if token == "" {
		return "*"
	}
	return token
}

// DLQSubject returns the subject the dead-letter record of c is published
// on: altegio.dlq.<location>.<op>. Invalid parts become "unknown", so a
// command that failed validation (or a zero Command, for input that could
// not be decoded at all) still has a DLQ subject.
func DLQSubject(c Command) string {
	return "altegio.dlq." + locationToken(c.LocationID) + "." + c.Type.Op()
}

// DLQCommandSubject returns the subject a command too large to embed in
// its DLQ record is stored on, in the DLQ stream next to the records:
// altegio.dlq.<location>.<op>.command. DLQ listings read the four-token
// record subjects only.
func DLQCommandSubject(c Command) string { return DLQSubject(c) + dlqCommandSuffix }

// dlqCommandSuffix ends a DLQCommandSubject.
const dlqCommandSuffix = ".command"

// DLQRecordFilter matches the DLQ stream's records, not the commands
// stored apart beside some of them (DLQCommandSubject).
const DLQRecordFilter = "altegio.dlq.*.*"

// IsDLQCommandSubject reports whether a DLQ stream subject holds a command
// stored apart (DLQCommandSubject) rather than a record.
func IsDLQCommandSubject(subject string) bool { return strings.HasSuffix(subject, dlqCommandSuffix) }

// CommandHeaders returns the headers to publish c with: HeaderMsgID (the
// command id), HeaderCommandID, HeaderCommandType, HeaderSchemaVersion,
// HeaderClientKey and, when set, HeaderCorrelationID. The result converts
// to nats.Header. A command without an id gets no HeaderMsgID or
// HeaderCommandID.
func CommandHeaders(c Command) map[string][]string {
	h := map[string][]string{
		HeaderCommandType:   {string(c.Type)},
		HeaderSchemaVersion: {strconv.Itoa(SchemaVersion)},
		HeaderClientKey:     {c.ClientKey()},
	}
	if c.ID != "" {
		h[HeaderMsgID] = []string{c.ID}
		h[HeaderCommandID] = []string{c.ID}
	}
	if c.CorrelationID != "" {
		h[HeaderCorrelationID] = []string{c.CorrelationID}
	}
	return h
}

// ReplayMsgID returns the Nats-Msg-Id of the replay-th republication of a
// command from the DLQ (replay >= 1): "<command id>:replay:<replay>". The
// command id in the body stays the same, so the worker's idempotency state
// still recognises work that already succeeded.
func ReplayMsgID(commandID string, replay int) string {
	return commandID + ":replay:" + strconv.Itoa(replay)
}

// Read subjects: altegio.read.<location>.<query>, answered by the workers'
// read service (internal/reads) and asked by ingest's HTTP reads. The
// location is a token of its own so that NATS permissions can scope a
// caller to its locations.
const ReadSubjectPrefix = "altegio.read."

// The read queries.
const (
	ReadClient   = "client.get"
	ReadComments = "client.comments"
	ReadFiles    = "client.files"
	ReadSearch   = "clients.search"
	ReadList     = "clients.list"   // the deprecated list, full cards
	ReadExport   = "clients.export" // a page of the deprecated list, throttled for exports
	ReadVisits   = "visits.search"
	ReadCommands = "commands.list" // a client's commands and outcomes, from the workers' history
)

// ReadQueries lists every read query.
var ReadQueries = []string{ReadClient, ReadComments, ReadFiles, ReadSearch, ReadList, ReadExport, ReadVisits, ReadCommands}

// Headers of read requests and answers.
const (
	// HeaderReadTimeout, on a read request, is how long the caller waits
	// for the answer (a Go duration such as "5s"); the read service
	// answers 503 rather than let the read outlive it.
	HeaderReadTimeout = "Altegio-Read-Timeout"
	// HeaderRetryAfter, on a 503 answer of the read service, is when to
	// retry, in whole seconds (as HTTP's Retry-After).
	HeaderRetryAfter = "Retry-After"
)

// ReadSubject returns the subject of a read query in a location.
func ReadSubject(location int64, query string) string {
	return ReadSubjectPrefix + strconv.FormatInt(location, 10) + "." + query
}

// WebhookEventFilter matches every webhook event ingest publishes on the
// EVENTS stream (WebhookEventSubject), and no result event.
const WebhookEventFilter = "altegio.evt.*.webhook.>"

// WebhookEventSubject returns the subject of the WebhookEvent of a client
// webhook: altegio.evt.<location>.webhook.client.<status>. Invalid parts
// become "unknown", so the subject is always well-formed.
func WebhookEventSubject(location int64, status WebhookStatus) string {
	op := opUnknown
	if status.Valid() {
		op = string(status)
	}
	return "altegio.evt." + locationToken(location) + ".webhook." + WebhookResourceClient + "." + op
}
