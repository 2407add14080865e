package altegio

import (
	"context"
	"fmt"
	"net/http"
)

// ClientFile is a file attached to a client card.
type ClientFile struct {
	ID          int64  `json:"id"`
	ClientID    int64  `json:"client_id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	DateCreate  string `json:"date_create"`
	Extension   string `json:"extension"`
	Mime        string `json:"mime"`
	// Link is relative, e.g. "/client_files/download/456/123/".
	Link string `json:"link"`
	// FullLink is the absolute download URL (undocumented; empty when absent).
	FullLink string `json:"full_link"`
	// UserName is the uploader ("user_name", or "username" as the prose says).
	UserName   string `json:"user_name"`
	UserAvatar string `json:"user_avatar"`
	// Size is human-readable, e.g. "96.65 KB", not a byte count.
	Size    string `json:"size"`
	CanEdit bool   `json:"can_edit"`
}

// UnmarshalJSON decodes a file record tolerantly.
func (f *ClientFile) UnmarshalJSON(raw []byte) error {
	var w struct {
		ID          flexInt    `json:"id"`
		ClientID    flexInt    `json:"client_id"`
		Name        flexString `json:"name"`
		Description flexString `json:"description"`
		DateCreate  flexString `json:"date_create"`
		Extension   flexString `json:"extension"`
		Mime        flexString `json:"mime"`
		Link        flexString `json:"link"`
		FullLink    flexString `json:"full_link"`
		UserName    flexString `json:"user_name"`
		Username    flexString `json:"username"`
		UserAvatar  flexString `json:"user_avatar"`
		Size        flexString `json:"size"`
		CanEdit     flexBool   `json:"can_edit"`
	}
	if ok, err := unmarshalObject(raw, &w); !ok {
		return err
	}
	*f = ClientFile{
		ID: int64(w.ID), ClientID: int64(w.ClientID), Name: string(w.Name),
		Description: string(w.Description), DateCreate: string(w.DateCreate),
		Extension: string(w.Extension), Mime: string(w.Mime), Link: string(w.Link),
		FullLink: string(w.FullLink), UserName: string(w.UserName),
		UserAvatar: string(w.UserAvatar), Size: string(w.Size), CanEdit: bool(w.CanEdit),
	}
	if f.UserName == "" {
		f.UserName = string(w.Username)
	}
	return nil
}

func filesPath(locationID, clientID int64) string {
	return fmt.Sprintf("/company/%d/clients/files/%d", locationID, clientID)
}

// ListFiles lists the files of a client: GET /company/{location_id}/clients/files/{client_id}.
func (c *Client) ListFiles(ctx context.Context, locationID, clientID int64) ([]ClientFile, error) {
	const op = OpListFiles
	if err := checkIDs(op, locationID, clientID); err != nil {
		return nil, err
	}
	return getList[ClientFile](ctx, c, request{op: op, method: http.MethodGet, location: locationID, path: filesPath(locationID, clientID)})
}

// DeleteFile deletes a client file:
// DELETE /company/{location_id}/clients/files/{client_id}/{file_id}, answered
// 202 with or without a body (any 2xx is accepted). Both tokens are sent,
// although the old docs list the partner token only.
func (c *Client) DeleteFile(ctx context.Context, locationID, clientID, fileID int64) error {
	const op = OpDeleteFile
	if err := checkIDs(op, locationID, clientID); err != nil {
		return err
	}
	if err := checkID(op, "file id", fileID); err != nil {
		return err
	}
	_, _, err := c.call(ctx, request{op: op, method: http.MethodDelete, location: locationID, noData: true,
		path: fmt.Sprintf("%s/%d", filesPath(locationID, clientID), fileID)})
	return err
}
