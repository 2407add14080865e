package commands

import (
	"encoding/json"
	"time"
)

// WebhookSchemaVersion is the version of the webhook event contract
// (schema/webhook.schema.json), independent of SchemaVersion.
const WebhookSchemaVersion = 1

// WebhookResourceClient is the only resource whose webhooks become events.
const WebhookResourceClient = "client"

// WebhookStatus is what an Altegio webhook reports happened to its resource.
type WebhookStatus string

// The statuses of Altegio's client webhooks.
const (
	WebhookCreate WebhookStatus = "create"
	WebhookUpdate WebhookStatus = "update"
	WebhookDelete WebhookStatus = "delete"
)

// WebhookStatuses returns every valid status, in a stable order. The caller
// owns the returned slice.
func WebhookStatuses() []WebhookStatus {
	return []WebhookStatus{WebhookCreate, WebhookUpdate, WebhookDelete}
}

// Valid reports whether s is one of WebhookStatuses.
func (s WebhookStatus) Valid() bool {
	switch s {
	case WebhookCreate, WebhookUpdate, WebhookDelete:
		return true
	default:
		return false
	}
}

// WebhookEvent is the event ingest publishes for each client webhook
// Altegio delivers, on WebhookEventSubject, described by
// WebhookEventSchema. Altegio delivers at least once and in no particular
// order: the stream drops retries of one delivery (Nats-Msg-Id is
// DeliveryID within the EVENTS duplicate window), but consumers must still
// tolerate repeats and re-read the client (GET /client/{location}/{id})
// when they need its current state.
type WebhookEvent struct {
	// SchemaVersion is WebhookSchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// LocationID is the webhook's company_id.
	LocationID int64 `json:"location_id"`
	// Resource is WebhookResourceClient.
	Resource string `json:"resource"`
	// ResourceID is the Altegio client id.
	ResourceID int64 `json:"resource_id"`
	// Status is create, update or delete.
	Status WebhookStatus `json:"status"`
	// Data is the webhook's data object as Altegio sent it (compacted):
	// the full client card; {} when a delete carried none.
	Data json.RawMessage `json:"data"`
	// ReceivedAt is when ingest received the delivery.
	ReceivedAt time.Time `json:"received_at"`
	// DeliveryID identifies the delivery: 64 hex digits of the SHA-256 of
	// the canonical payload, equal for Altegio's retries of it; also the
	// message's Nats-Msg-Id.
	DeliveryID string `json:"delivery_id"`
	// Origin says whether the integrator itself made the change.
	Origin WebhookOrigin `json:"origin"`
}

// WebhookOrigin says who made the change a webhook reports, as far as the
// integrator knows: a command of its own that succeeded shortly before
// (an OwnChange of the same client and a matching status) or not.
type WebhookOrigin struct {
	// Integrator is true when the change was the integrator's own.
	Integrator bool `json:"integrator"`
	// CommandID is the id of the command that made it, when Integrator.
	CommandID string `json:"command_id,omitempty"`
	// CommandType is that command's type, when Integrator.
	CommandType Type `json:"command_type,omitempty"`
}
