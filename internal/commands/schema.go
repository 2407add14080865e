package commands

import _ "embed"

//go:embed schema/command.schema.json
var commandSchema []byte

//go:embed schema/result.schema.json
var resultSchema []byte

// CommandSchema returns the JSON Schema (draft 2020-12) of a command, as
// committed in schema/command.schema.json, for ingest to serve. It asserts
// the "date" and "date-time" formats; a validator that ignores formats
// accepts some impossible dates. Decode is authoritative and a little
// stricter (see the package documentation). The caller must not modify the
// returned slice.
func CommandSchema() []byte { return commandSchema }

// ResultSchema returns the JSON Schema (draft 2020-12) of a result event, as
// committed in schema/result.schema.json. The caller must not modify the
// returned slice.
func ResultSchema() []byte { return resultSchema }

//go:embed schema/webhook.schema.json
var webhookSchema []byte

// WebhookEventSchema returns the JSON Schema (draft 2020-12) of a
// WebhookEvent, as committed in schema/webhook.schema.json, for ingest to
// serve. The caller must not modify the returned slice.
func WebhookEventSchema() []byte { return webhookSchema }
