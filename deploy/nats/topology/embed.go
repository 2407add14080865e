// Package topology holds the JetStream definitions of the product as JSON:
// streams (the format `nats stream add --config` takes), consumers (a stream
// name and the format `nats consumer add --config` takes) and KV buckets.
// The binaries apply exactly these files at start, through
// internal/topology.
package topology

import "embed"

// Files holds streams/*.json, consumers/*.json and kv/*.json.
//
//go:embed streams/*.json consumers/*.json kv/*.json
var Files embed.FS
