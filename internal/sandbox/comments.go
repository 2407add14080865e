package sandbox

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// maxCommentLen is the limit Altegio's own MCP applies (ref §6.8); the
// sandbox enforces it. [I]
const maxCommentLen = 255

// renderComment builds a comment object (ref §6.8). Dates use RFC 3339 with
// a colon in the offset, as the comments sample does, unlike the client
// card. user is null when the author is unknown.
func renderComment(cm *Comment) map[string]any {
	files := make([]map[string]any, 0, len(cm.Files))
	for _, f := range cm.Files {
		files = append(files, map[string]any{"link": f.Link, "filename": f.Filename})
	}
	var user any
	if cm.UserID != 0 || cm.UserName != "" {
		user = map[string]any{
			"id":     cm.UserID,
			"name":   cm.UserName,
			"avatar": "https://api.alteg.io/images/avatar.png",
		}
	}
	return map[string]any{
		"id":          cm.ID,
		"create_date": cm.CreateDate.Format(time.RFC3339),
		"update_date": cm.UpdateDate.Format(time.RFC3339),
		"type":        cm.Type,
		"text":        cm.Text,
		"files":       files,
		"user":        user,
	}
}

// handleListComments is GET .../clients/{client_id}/comments (ref §6.8):
// newest first, meta.count, no pagination; 404 for an unknown client.
func (s *Server) handleListComments(c *call) response {
	clientID, ok := c.id("client_id")
	if !ok {
		return s.notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(c.loc)
	if _, found := l.clients[clientID]; !found {
		return s.notFoundLocked()
	}
	comments := s.clientComments(l, clientID)
	data := make([]map[string]any, 0, len(comments))
	for _, cm := range comments {
		data = append(data, renderComment(cm))
	}
	return envelope(http.StatusOK, data, map[string]any{"count": len(data)})
}

// handleAddComment is POST .../clients/{client_id}/comments (ref §6.8):
// {"text": ...} with 1..255 non-blank characters, 201 with the comment and
// meta alternating between {} and [] (both documented). Invalid text
// answers 422 with meta.errors as an array of objects with "message".
func (s *Server) handleAddComment(c *call) response {
	clientID, ok := c.id("client_id")
	if !ok {
		return s.notFound()
	}
	var in struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(orEmptyObject(c.body), &in); err != nil {
		return invalidJSON(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(c.loc)
	if _, found := l.clients[clientID]; !found {
		return s.notFoundLocked()
	}
	switch {
	case in.Text == nil || strings.TrimSpace(*in.Text) == "":
		return validationError(map[string]any{"field": "text", "message": "The text field is required."})
	case utf8.RuneCountInString(*in.Text) > maxCommentLen:
		return validationError(map[string]any{"field": "text", "message": "The text may not be greater than 255 characters."})
	}
	cm := s.storeComment(l, Comment{
		ClientID: clientID,
		Type:     "default",
		Text:     *in.Text,
		UserID:   c.user.ID,
		UserName: c.user.Name,
	})
	var meta any = emptyObject{}
	if s.alternateLocked() {
		meta = emptyArray{}
	}
	return s.savedLocked(envelope(http.StatusCreated, renderComment(cm), meta))
}

// handleDeleteComment is DELETE .../clients/{client_id}/comments/{comment_id}
// (ref §6.8): 204 with an empty body; 404 when the client or the comment
// (of that client) does not exist. Files of a "file" comment stay.
func (s *Server) handleDeleteComment(c *call) response {
	clientID, ok1 := c.id("client_id")
	commentID, ok2 := c.id("comment_id")
	if !ok1 || !ok2 {
		return s.notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(c.loc)
	cm, found := l.comments[commentID]
	if _, clientFound := l.clients[clientID]; !clientFound || !found || cm.ClientID != clientID {
		return s.notFoundLocked()
	}
	delete(l.comments, commentID)
	return s.savedLocked(noContent())
}
