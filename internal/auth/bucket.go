package auth

import "github.com/altegio-integrator/integrator/internal/topology"

// DefaultBucket is the KV bucket holding the tokens, as the topology
// defines it (deploy/nats/topology/kv/tokens.json).
const DefaultBucket = topology.BucketTokens
