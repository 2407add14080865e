package sandbox

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
)

// MaxHookURLs is the most unique URLs a location's webhook settings hold
// (ref §7).
const MaxHookURLs = 10

// HookFlags are the event flags of the webhook settings besides "active",
// in the order of the documented body (ref §7). Each is 0 or 1.
var HookFlags = []string{
	"client", "record", "salon", "service", "service_category", "master", "good",
	"goods_operations_sale", "goods_operations_receipt", "goods_operations_consumable",
	"goods_operations_stolen", "goods_operations_move", "finances_operation", "self_sending",
}

// HookSettings are a location's webhook settings (ref §7), as the sandbox
// stores them.
type HookSettings struct {
	// URLs are the unique destination URLs, in the order they were sent.
	URLs []string
	// Flags holds "active" and every name of HookFlags, each 0 or 1; a
	// missing key reads as 0.
	Flags map[string]int
	// WrittenBy is the login of the user who last wrote the settings
	// through the API; empty for settings given to SeedHookSettings.
	// self_sending 0 keeps that user's own changes from being sent.
	WrittenBy string
}

// hookState is a location's stored settings. Guarded by Server.mu.
type hookState struct {
	urls   []string
	flags  map[string]int // "active" and HookFlags
	writer *userState     // nil when seeded
}

// flag reads a flag; absent flags are 0.
func (h *hookState) flag(name string) int {
	if h == nil {
		return 0
	}
	return h.flags[name]
}

// render is the data of GET and POST /hooks_settings: urls, active and
// every flag, plus url_settings, which the newer backend adds with per-URL
// flags (ref §7). Its shape is undocumented; the sandbox sends one object
// per URL with "url" and the location-wide flags, so that a client must
// tolerate the key. [I]
func (h *hookState) render() map[string]any {
	out := map[string]any{"active": h.flag("active")}
	urls := []string{}
	if h != nil {
		urls = append(urls, h.urls...)
	}
	out["urls"] = urls
	perURL := make([]map[string]any, 0, len(urls))
	for _, u := range urls {
		item := map[string]any{"url": u}
		for _, f := range HookFlags {
			if f != "self_sending" {
				item[f] = h.flag(f)
			}
		}
		perURL = append(perURL, item)
	}
	for _, f := range HookFlags {
		out[f] = h.flag(f)
	}
	out["url_settings"] = perURL
	return out
}

// handleGetHooks is GET /hooks_settings/{location_id} (ref §7). A location
// that never had settings answers 200 with "urls": [], "active": 0 and
// every flag 0: the reference is silent on this case. [I]
func (s *Server) handleGetHooks(c *call) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	return envelope(http.StatusOK, s.hooks[c.loc].render(), emptyArray{})
}

// handleSetHooks is POST /hooks_settings/{location_id} (ref §7): a
// location-wide replacement. "urls" and "active" are required; every flag
// left out is stored as 0. The answer is 201 with the settings in data.
//
// Validation follows the other endpoints: a body that is not a JSON object
// answers 400, a bad field 422 with meta.errors. Duplicate URLs count once
// and are stored once; more than MaxHookURLs unique URLs, a URL that is not
// absolute http(s) and a flag other than the integers 0 and 1 answer 422.
// An empty "urls" list is accepted: it is how a location stops all
// deliveries. [I]
func (s *Server) handleSetHooks(c *call) response {
	fields, err := decodeObject(c.body)
	if err != nil {
		return invalidJSON(err)
	}
	h, errs := readHookSettings(fields)
	if len(errs) > 0 {
		return validationError(toAny(errs)...)
	}
	h.writer = c.user
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks[c.loc] = h
	return s.savedLocked(envelope(http.StatusCreated, h.render(), emptyArray{}))
}

// readHookSettings validates the POST body.
func readHookSettings(fields map[string]json.RawMessage) (*hookState, []string) {
	r := &fieldReader{fields: fields}
	h := &hookState{flags: make(map[string]int, len(HookFlags)+1)}
	var errs []string

	if raw, _, ok := r.raw("urls"); !ok {
		errs = append(errs, "The urls field is required.")
	} else {
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			errs = append(errs, "The urls field must be an array of strings.")
		}
		for i, u := range list {
			if !validHookURL(u) {
				errs = append(errs, fmt.Sprintf("The urls.%d must be a valid URL.", i))
				continue
			}
			if !slices.Contains(h.urls, u) {
				h.urls = append(h.urls, u)
			}
		}
		if len(h.urls) > MaxHookURLs {
			errs = append(errs, fmt.Sprintf("The urls may not have more than %d unique items.", MaxHookURLs))
		}
	}
	if _, _, ok := r.raw("active"); !ok {
		errs = append(errs, "The active field is required.")
	}
	h.flags["active"] = r.integer(0, 1, "active")
	for _, f := range HookFlags {
		h.flags[f] = r.integer(0, 1, f)
	}
	return h, append(errs, r.errs...)
}

// validHookURL accepts absolute http and https URLs with a host.
func validHookURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// HookSettingsOf returns a copy of the location's webhook settings, and
// false when the location has none.
func (s *Server) HookSettingsOf(locationID int64) (HookSettings, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hooks[locationID]
	if !ok {
		return HookSettings{}, false
	}
	out := HookSettings{URLs: slices.Clone(h.urls), Flags: maps.Clone(h.flags)}
	if h.writer != nil {
		out.WrittenBy = h.writer.Login
	}
	return out, true
}

// SeedHookSettings stores webhook settings for the location without
// validation, as if another system had written them: WrittenBy is ignored,
// so self_sending never holds back a change. Flags missing from h are 0.
func (s *Server) SeedHookSettings(locationID int64, h HookSettings) {
	st := &hookState{flags: make(map[string]int, len(HookFlags)+1)}
	for _, u := range h.URLs {
		if !slices.Contains(st.urls, u) {
			st.urls = append(st.urls, u)
		}
	}
	st.flags["active"] = h.Flags["active"]
	for _, f := range HookFlags {
		st.flags[f] = h.Flags[f]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks[locationID] = st
	s.saveOrLogLocked()
}
