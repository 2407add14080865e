package sandbox

import (
	"fmt"
	"net/http"
	"path"
	"strings"
)

// fileLink is the relative download link of the docs sample (ref §6.9).
func fileLink(loc, fileID int64) string {
	return fmt.Sprintf("/client_files/download/%d/%d/", loc, fileID)
}

// humanSize renders a byte count the way the API does: "9 B", "96.65 KB"
// (ref §6.9).
func humanSize(n int64) string {
	units := []string{"B", "KB", "MB", "GB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.2f %s", f, units[i])
}

// renderFile builds a file object with the sample's user_name spelling and
// the undocumented absolute full_link Altegio's own code reads (ref §6.9).
func renderFile(loc int64, f *File) map[string]any {
	link := fileLink(loc, f.ID)
	return map[string]any{
		"id":          f.ID,
		"client_id":   f.ClientID,
		"name":        f.Name,
		"description": f.Description,
		"date_create": formatTime(f.CreateDate),
		"extension":   strings.TrimPrefix(path.Ext(f.Name), "."),
		"mime":        f.Mime,
		"link":        link,
		"full_link":   "https://app.alteg.io" + link,
		"user_name":   f.UserName,
		"user_avatar": "/images/no-master.png",
		"size":        humanSize(f.Size),
		"can_edit":    false,
	}
}

// handleListFiles is GET .../clients/files/{client_id} (ref §6.9): the
// client's files newest first with meta.count; 404 for an unknown client.
func (s *Server) handleListFiles(c *call) response {
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
	files := s.clientFiles(l, clientID)
	data := make([]map[string]any, 0, len(files))
	for _, f := range files {
		data = append(data, renderFile(c.loc, f))
	}
	return envelope(http.StatusOK, data, map[string]any{"count": len(data)})
}

// handleDeleteFile is DELETE .../clients/files/{client_id}/{file_id}
// (ref §6.9): 202 with {"success":true,"data":null,"meta":{"message":"Accepted"}};
// 404 when the client or the file (of that client) does not exist. The
// sandbox deletes at once, so a following list no longer shows the file. [I]
func (s *Server) handleDeleteFile(c *call) response {
	clientID, ok1 := c.id("client_id")
	fileID, ok2 := c.id("file_id")
	if !ok1 || !ok2 {
		return s.notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(c.loc)
	f, found := l.files[fileID]
	if _, clientFound := l.clients[clientID]; !clientFound || !found || f.ClientID != clientID {
		return s.notFoundLocked()
	}
	delete(l.files, fileID)
	return s.savedLocked(envelope(http.StatusAccepted, nil, map[string]any{"message": "Accepted"}))
}
