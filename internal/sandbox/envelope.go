package sandbox

import (
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Messages of the documented error bodies (ref §2.3, §3).
const (
	msgAuthNeeded    = "Authentication needed."
	msgAccessDenied  = "Access denied."
	msgErrorOccurred = "An error has occurred."
	msgTooMany       = "Too many requests."
	mediaTypeV2      = "application/vnd.api.v2+json"
)

// response is an answer computed before anything is written, so that a
// rule can replace it after the operation ran and slow delivery can pace it.
type response struct {
	status      int
	body        []byte
	contentType string
	header      http.Header
}

// emptyObject and emptyArray are the two documented spellings of an empty
// meta: {} and [] (ref §3).
type (
	emptyObject struct{}
	emptyArray  [0]int
)

// envelope builds {"success","data","meta"} (ref §3). success follows the
// status: true for 2xx.
func envelope(status int, data, meta any) response {
	if meta == nil {
		meta = emptyObject{}
	}
	body, err := json.Marshal(struct {
		Success bool `json:"success"`
		Data    any  `json:"data"`
		Meta    any  `json:"meta"`
	}{status >= 200 && status < 300, data, meta})
	if err != nil {
		// Only sandbox-built values reach here; failing to encode them is a bug.
		panic("sandbox: encode envelope: " + err.Error())
	}
	return response{status: status, body: body, contentType: "application/json"}
}

// errorResponse is {"success":false,"data":null,"meta":{"message":...}}.
func errorResponse(status int, message string) response {
	return envelope(status, nil, map[string]any{"message": message})
}

// validationError is the documented 422 (ref §3): the generic message plus
// meta.errors as an array. Items are strings or objects with "message".
func validationError(errs ...any) response {
	return envelope(http.StatusUnprocessableEntity, nil, map[string]any{
		"message": msgErrorOccurred,
		"errors":  errs,
	})
}

// fieldError is the 400 shape of clients search (ref §3): meta.errors is an
// object keyed by field.
func fieldError(message, field, detail string) response {
	return envelope(http.StatusBadRequest, nil, map[string]any{
		"message": message,
		"errors":  map[string][]string{field: {detail}},
	})
}

// noContent is a 204 with an empty body (ref §3, §6.3, §6.8).
func noContent() response {
	return response{status: http.StatusNoContent}
}

// acceptsV2 reports whether one of the Accept values names the v2 media
// type; parameters such as charset are allowed (ref §5).
func acceptsV2(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == mediaTypeV2 {
				return true
			}
		}
	}
	return false
}

// isJSON reports whether a Content-Type names application/json.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// deliver writes resp, pacing the body over the SlowBody fault when set.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, resp response) {
	for k, vs := range resp.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if resp.contentType != "" {
		w.Header().Set("Content-Type", resp.contentType)
	}
	if len(resp.body) > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
	}
	w.WriteHeader(resp.status)

	slow := s.currentFaults().SlowBody
	if slow <= 0 || len(resp.body) == 0 {
		_, _ = w.Write(resp.body)
		return
	}
	const chunks = 8
	size := (len(resp.body) + chunks - 1) / chunks
	pause := slow / chunks
	rc := http.NewResponseController(w)
	for body := resp.body; len(body) > 0; {
		n := min(size, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		_ = rc.Flush()
		body = body[n:]
		if len(body) == 0 || !sleepCtx(r, pause) {
			return
		}
	}
}

// sleepCtx waits d or until the request is cancelled; it reports whether
// the full wait elapsed.
func sleepCtx(r *http.Request, d time.Duration) bool {
	return d <= 0 || sleepFor(r.Context(), d)
}

// parseID parses a positive integer path segment.
func parseID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0
}

// formatTime renders timestamps like the current docs: ISO 8601 with a
// numeric offset without colon, "2026-05-01T12:00:00-0500" (ref §1).
func formatTime(t time.Time) string {
	return t.Format("2006-01-02T15:04:05-0700")
}
