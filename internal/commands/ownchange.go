package commands

import (
	"strconv"
	"time"
)

// OwnChange records that a command of the integrator changed an Altegio
// client, so that the webhook Altegio sends about that change can be told
// apart from a change someone else made (loop prevention). The workers put
// one under OwnChangeKey in the altegio_own_changes bucket
// (topology.BucketOwnChanges; history 1, entries expire after 10 minutes)
// for every command that succeeded; ingest reads it when a client webhook
// arrives. A later command of the same client replaces the entry.
type OwnChange struct {
	// CommandID is the id of the command that made the change.
	CommandID string `json:"command_id"`
	// Type is the command's type: client.create, client.bulk_create,
	// client.update or client.delete (other types do not change what a
	// client webhook reports).
	Type Type `json:"type"`
	// At is when the API call that made the change succeeded.
	At time.Time `json:"at"`
	// Card is the fingerprint (altegio.CardFingerprint) of the card the
	// change left, when the API answered one (not on delete): a webhook
	// whose card differs reports a later change by someone else, not ours.
	Card string `json:"card,omitempty"`
}

// OwnChangeKey returns the key of the OwnChange of a client in the
// altegio_own_changes bucket for the webhooks of status:
// "<location>.<client_id>.<status>", the webhook's company_id, resource_id
// and status. One entry per status, so that an update right after a
// create does not hide the create from its webhook.
func OwnChangeKey(locationID, clientID int64, status WebhookStatus) string {
	return strconv.FormatInt(locationID, 10) + "." + strconv.FormatInt(clientID, 10) + "." + string(status)
}

// OwnChangeStatus returns the status of the client webhook a command of
// type t causes when it succeeds: create for client.create and
// client.bulk_create, update, delete; ok is false for the other types.
func OwnChangeStatus(t Type) (status WebhookStatus, ok bool) {
	for _, st := range WebhookStatuses() {
		if (OwnChange{Type: t}).Matches(st) {
			return st, true
		}
	}
	return "", false
}

// Matches reports whether a client webhook of status can report the change
// c made: client.create and client.bulk_create match create, client.update
// matches update, client.delete matches delete; nothing else matches.
func (c OwnChange) Matches(status WebhookStatus) bool {
	switch c.Type {
	case TypeClientCreate, TypeClientBulkCreate:
		return status == WebhookCreate
	case TypeClientUpdate:
		return status == WebhookUpdate
	case TypeClientDelete:
		return status == WebhookDelete
	default:
		return false
	}
}
