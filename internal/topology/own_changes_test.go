package topology

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/testenv"
)

// TestOwnChangesBucket checks the definition ingest and the workers rely
// on: one entry per client, kept 10 minutes (longer than any own-change
// window), on disk; and that the server takes it.
func TestOwnChangesBucket(t *testing.T) {
	top, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var def *jetstream.KeyValueConfig
	for i := range top.Buckets {
		if top.Buckets[i].Bucket == BucketOwnChanges {
			def = &top.Buckets[i]
		}
	}
	if def == nil {
		t.Fatalf("bucket %s not defined", BucketOwnChanges)
	}
	if def.History != 1 || def.TTL != 10*time.Minute || def.Storage != jetstream.FileStorage || def.Replicas != 1 {
		t.Errorf("%s: history %d, ttl %v, storage %v, replicas %d; want 1, 10m, file, 1",
			def.Bucket, def.History, def.TTL, def.Storage, def.Replicas)
	}

	n := testenv.RunJetStream(t)
	_, js := testenv.Connect(t, n.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Apply(ctx, js, top); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, BucketOwnChanges)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 10*time.Minute || st.History() != 1 {
		t.Errorf("applied bucket: ttl %v, history %d", st.TTL(), st.History())
	}
}
