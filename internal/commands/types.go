package commands

// SchemaVersion is the version of the command and result contract this
// package speaks. A command with schema_version 0 or without it is read as
// this version; any other version is rejected with ErrUnsupportedVersion.
const SchemaVersion = 1

// Type names what a command asks for. The zero value is not a valid type.
type Type string

// The command types. Each maps to one Altegio client endpoint.
const (
	// TypeClientCreate creates a client: POST /clients/{location_id}.
	// Payload: ClientFields with name and phone.
	TypeClientCreate Type = "client.create"
	// TypeClientUpdate changes a client: read, merge, then
	// PUT /client/{location_id}/{id}. Payload: UpdatePayload, the client
	// fields to change; absent fields keep their current value, unless the
	// mode is UpdateReplace (PUT only, name and phone required, absent
	// fields cleared).
	TypeClientUpdate Type = "client.update"
	// TypeClientDelete deletes a client: DELETE /client/{location_id}/{id}.
	// No payload (absent, null or {}).
	TypeClientDelete Type = "client.delete"
	// TypeClientBulkCreate creates up to MaxBulkClients clients in one call:
	// POST /clients/{location_id}/bulk. Payload: BulkCreatePayload.
	TypeClientBulkCreate Type = "client.bulk_create"
	// TypeCommentAdd adds a comment to a client's card:
	// POST /company/{location_id}/clients/{client_id}/comments.
	// Payload: CommentAddPayload.
	TypeCommentAdd Type = "client.comment.add"
	// TypeCommentDelete deletes a comment:
	// DELETE /company/{location_id}/clients/{client_id}/comments/{comment_id}.
	// Payload: CommentDeletePayload.
	TypeCommentDelete Type = "client.comment.delete"
	// TypeFileDelete deletes a file from a client's card:
	// DELETE /company/{location_id}/clients/files/{client_id}/{file_id}.
	// Payload: FileDeletePayload.
	TypeFileDelete Type = "client.file.delete"
)

// opUnknown is the subject token used for a type, location or outcome that
// is not valid, so that invalid commands still get a well-formed subject.
const opUnknown = "unknown"

// Types returns every valid command type, in a stable order. The caller owns
// the returned slice.
func Types() []Type {
	return []Type{
		TypeClientCreate,
		TypeClientUpdate,
		TypeClientDelete,
		TypeClientBulkCreate,
		TypeCommentAdd,
		TypeCommentDelete,
		TypeFileDelete,
	}
}

// Valid reports whether t is one of the types returned by Types.
func (t Type) Valid() bool {
	return t.Op() != opUnknown
}

// Op returns the subject token for t: "create", "update", "delete",
// "bulk_create", "comment_add", "comment_delete" or "file_delete". It
// returns "unknown" for an invalid type.
func (t Type) Op() string {
	switch t {
	case TypeClientCreate:
		return "create"
	case TypeClientUpdate:
		return "update"
	case TypeClientDelete:
		return "delete"
	case TypeClientBulkCreate:
		return "bulk_create"
	case TypeCommentAdd:
		return "comment_add"
	case TypeCommentDelete:
		return "comment_delete"
	case TypeFileDelete:
		return "file_delete"
	default:
		return opUnknown
	}
}

// needsClient reports whether a command of type t acts on an existing client
// and so needs client_id or client_ref.
func (t Type) needsClient() bool {
	switch t {
	case TypeClientUpdate, TypeClientDelete, TypeCommentAdd, TypeCommentDelete, TypeFileDelete:
		return true
	default:
		return false
	}
}
