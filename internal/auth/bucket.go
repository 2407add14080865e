package auth

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the default name of the KV bucket holding the tokens.
const DefaultBucket = "altegio_tokens"

// BucketConfig describes the token bucket.
type BucketConfig struct {
	// Name of the bucket; default DefaultBucket.
	Name string
	// Replicas is the number of stream replicas; default 1. Use 3 on a
	// three-node cluster.
	Replicas int
	// Storage is file (default) or memory.
	Storage jetstream.StorageType
}

func (c *BucketConfig) setDefaults() {
	if c.Name == "" {
		c.Name = DefaultBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
}

// EnsureBucket creates the token bucket, or updates its configuration, and
// returns it. It is idempotent and safe to call from every process at
// start. The bucket keeps one revision per key. It returns the JetStream
// error when NATS is unreachable or the account lacks permission.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, cfg BucketConfig) (jetstream.KeyValue, error) {
	cfg.setDefaults()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Name,
		Description: "Altegio user tokens and login leases (internal/auth); holds secrets",
		History:     1,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", cfg.Name, err)
	}
	return kv, nil
}
