// Package topology loads the JetStream definitions in deploy/nats/topology
// and applies them to a server: streams, consumers and KV buckets, created
// or updated idempotently, so that every binary can call Apply at start.
package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	deploy "github.com/altegio-integrator/integrator/deploy/nats/topology"
	"github.com/altegio-integrator/integrator/internal/commands"
)

// Names of the streams, consumers and buckets the code refers to. The JSON
// files are the definitions; a test checks that these names exist in them.
const (
	StreamCommands   = "COMMANDS"
	StreamEvents     = "EVENTS"
	StreamDLQ        = "DLQ"
	StreamAdvisories = "COMMAND_ADVISORIES"

	// ConsumerWorkerPrefix + partition number names a worker consumer.
	ConsumerWorkerPrefix = "worker-p"
	// PriorityGroup is the priority group of the pinned worker consumers.
	PriorityGroup   = "workers"
	ConsumerSweeper = "sweeper"

	BucketIdempotency = "altegio_idempotency"
	BucketClientRefs  = "altegio_client_refs"
	BucketTokens      = "altegio_tokens"
	BucketRateLimit   = "altegio_ratelimit"
	// BucketCommandHistory holds the terminal result of each command under
	// its client (see worker.HistoryKey), for lookups of a client's commands.
	BucketCommandHistory = "altegio_command_history"
	// BucketDLQState holds the DLQ tooling's replay marks, keyed by DLQ
	// stream sequence (see internal/dlq).
	BucketDLQState = "altegio_dlq_state"
	// BucketOwnChanges holds, per client (commands.OwnChangeKey), the last
	// change a command of the integrator made (commands.OwnChange); ingest
	// reads it to mark or skip the Altegio webhooks of its own changes.
	BucketOwnChanges = "altegio_own_changes"

	// SubjectWorkers is the core NATS subject on which worker processes
	// announce themselves to share the partitions (not stored by any
	// stream; only the worker user may publish or subscribe to it).
	SubjectWorkers = "altegio.workers"
)

// Consumer is a durable consumer definition and the stream it belongs to.
type Consumer struct {
	Stream string                   `json:"stream_name"`
	Config jetstream.ConsumerConfig `json:"config"`
}

// Topology is the full set of definitions.
type Topology struct {
	Streams   []jetstream.StreamConfig
	Consumers []Consumer
	Buckets   []jetstream.KeyValueConfig
}

// Load reads the definitions embedded from deploy/nats/topology.
func Load() (*Topology, error) {
	return LoadFS(deploy.Files)
}

// LoadFS reads definitions from fsys, laid out as streams/*.json,
// consumers/*.json and kv/*.json.
func LoadFS(fsys fs.FS) (*Topology, error) {
	t := &Topology{}
	if err := readAll(fsys, "streams", &t.Streams); err != nil {
		return nil, err
	}
	if err := readAll(fsys, "consumers", &t.Consumers); err != nil {
		return nil, err
	}
	if err := readAll(fsys, "kv", &t.Buckets); err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

func readAll[T any](fsys fs.FS, dir string, out *[]T) error {
	names, err := fs.Glob(fsys, dir+"/*.json")
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		var v T
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("parse %s: %w", path.Base(name), err)
		}
		*out = append(*out, v)
	}
	return nil
}

// partitionRe finds the partition count in the COMMANDS subject transform.
var partitionRe = regexp.MustCompile(`\{\{\s*partition\((\d+),`)

// Partitions is the number of command partitions, read from the COMMANDS
// stream's subject transform. Each partition has one worker consumer.
func (t *Topology) Partitions() int {
	s, ok := t.Stream(StreamCommands)
	if !ok || s.SubjectTransform == nil {
		return 0
	}
	m := partitionRe.FindStringSubmatch(s.SubjectTransform.Destination)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Stream returns the stream definition with the given name.
func (t *Topology) Stream(name string) (jetstream.StreamConfig, bool) {
	for _, s := range t.Streams {
		if s.Name == name {
			return s, true
		}
	}
	return jetstream.StreamConfig{}, false
}

// WorkerConsumer returns the name of the worker consumer of partition p.
func WorkerConsumer(p int) string { return ConsumerWorkerPrefix + strconv.Itoa(p) }

// Validate checks that the definitions hold what the code relies on: the
// named streams and buckets, and one pinned worker consumer per partition.
func (t *Topology) Validate() error {
	for _, name := range []string{StreamCommands, StreamEvents, StreamDLQ, StreamAdvisories} {
		if _, ok := t.Stream(name); !ok {
			return fmt.Errorf("topology: stream %s not defined", name)
		}
	}
	for _, name := range []string{BucketIdempotency, BucketClientRefs, BucketTokens, BucketRateLimit} {
		found := false
		for _, b := range t.Buckets {
			found = found || b.Bucket == name
		}
		if !found {
			return fmt.Errorf("topology: bucket %s not defined", name)
		}
	}
	n := t.Partitions()
	if n < 1 {
		return fmt.Errorf("topology: no partition count in the %s subject transform", StreamCommands)
	}
	for p := range n {
		c, ok := t.Consumer(StreamCommands, WorkerConsumer(p))
		switch {
		case !ok:
			return fmt.Errorf("topology: no consumer %s for partition %d", WorkerConsumer(p), p)
		case c.Config.FilterSubject != commands.PartitionFilter(p):
			return fmt.Errorf("topology: consumer %s filters %q", c.Config.Durable, c.Config.FilterSubject)
		case c.Config.PriorityPolicy != jetstream.PriorityPolicyPinned:
			return fmt.Errorf("topology: consumer %s is not pinned", c.Config.Durable)
		}
	}
	return nil
}

// Consumer returns the definition of consumer name on stream.
func (t *Topology) Consumer(stream, name string) (Consumer, bool) {
	for _, c := range t.Consumers {
		if c.Stream == stream && c.Config.Durable == name {
			return c, true
		}
	}
	return Consumer{}, false
}

// WithReplicas returns a copy of t with every stream, consumer and bucket
// set to n replicas (3 on a cluster). Consumers follow their stream (0).
func (t *Topology) WithReplicas(n int) *Topology {
	c := &Topology{
		Streams:   append([]jetstream.StreamConfig(nil), t.Streams...),
		Consumers: append([]Consumer(nil), t.Consumers...),
		Buckets:   append([]jetstream.KeyValueConfig(nil), t.Buckets...),
	}
	for i := range c.Streams {
		c.Streams[i].Replicas = n
	}
	for i := range c.Buckets {
		c.Buckets[i].Replicas = n
	}
	return c
}

// leaderReadBuckets are the buckets whose reads must see every write that
// came before them. JetStream KV buckets answer reads by "direct get", from
// any replica, so on a cluster a read right after a write may come from a
// follower that has not applied it yet: a client ref written by a create
// could look unknown to the next command of that client. The token and
// rate-limit buckets are read and then written with compare-and-set: a stale
// read there only loses its CAS, but a run of them exhausts the caller's
// timeout (the rate limiter then paces locally, outside the shared budget).
// For these buckets (and the COMMANDS stream, which the worker's order check
// reads) direct get is turned off when they have replicas, so that reads go
// to the stream leader. With one replica the leader is the only copy, and
// direct gets, which are much cheaper to answer and to decode than the JSON
// of $JS.API.STREAM.MSG.GET, are kept on.
var leaderReadBuckets = map[string]bool{
	BucketIdempotency: true,
	BucketClientRefs:  true,
	BucketTokens:      true,
	BucketRateLimit:   true,
}

// Apply creates or updates every stream, bucket and consumer of t. It is
// idempotent and safe to run from several processes at once.
func Apply(ctx context.Context, js jetstream.JetStream, t *Topology) error {
	for _, s := range t.Streams {
		if s.Name == StreamCommands {
			s.AllowDirect = s.Replicas <= 1
		}
		if _, err := js.CreateOrUpdateStream(ctx, s); err != nil {
			return fmt.Errorf("apply stream %s: %w", s.Name, err)
		}
	}
	for _, b := range t.Buckets {
		if _, err := js.CreateOrUpdateKeyValue(ctx, b); err != nil {
			return fmt.Errorf("apply bucket %s: %w", b.Bucket, err)
		}
		if leaderReadBuckets[b.Bucket] {
			if err := setDirect(ctx, js, "KV_"+b.Bucket, b.Replicas <= 1); err != nil {
				return fmt.Errorf("apply bucket %s: %w", b.Bucket, err)
			}
		}
	}
	for _, c := range t.Consumers {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config); err != nil {
			return fmt.Errorf("apply consumer %s on %s: %w", c.Config.Durable, c.Stream, err)
		}
	}
	return nil
}

// setDirect turns direct get on or off on a stream; off, its messages are
// read through the stream leader.
func setDirect(ctx context.Context, js jetstream.JetStream, stream string, direct bool) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	if cfg.AllowDirect == direct {
		return nil
	}
	cfg.AllowDirect = direct
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// BindBucket opens the KV bucket name, creating it from its definition in
// the embedded topology (with one replica) when it does not exist yet: for
// a process that may run before any worker applied the topology. A bucket
// the topology does not define is an error.
func BindBucket(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bind bucket %s: %w", name, err)
	}
	top, err := Load()
	if err != nil {
		return nil, err
	}
	for _, b := range top.Buckets {
		if b.Bucket == name {
			if kv, err = js.CreateOrUpdateKeyValue(ctx, b); err != nil {
				return nil, fmt.Errorf("create bucket %s: %w", name, err)
			}
			return kv, nil
		}
	}
	return nil, fmt.Errorf("bucket %s: not defined in the topology", name)
}

// IsKVConflict reports whether err from a KV Create or Update is a lost
// compare-and-set: the key exists, or its revision moved on. nats.go reports
// the conflict as ErrKeyExists or ErrKeyRevisionMismatch, whatever the
// stream's replicas (the server's codes differ: 10071 on R1, 10164 on R3).
func IsKVConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// LazyBucket is a KV bucket looked up on first use and kept: for readers
// that may start before the bucket exists (a worker creates it) and must
// not create it themselves. A failed lookup is retried on the next use.
// The zero value is ready; safe for concurrent use.
type LazyBucket struct {
	// Name is the bucket's name, one of the Bucket* constants.
	Name string

	mu sync.Mutex
	kv jetstream.KeyValue
}

// Get returns the bucket, looking it up the first time it exists.
func (b *LazyBucket) Get(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	kv, err := js.KeyValue(ctx, b.Name)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", b.Name, err)
	}
	b.kv = kv
	return kv, nil
}
