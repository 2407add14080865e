package sandbox

import (
	"net/http"
	"slices"
	"strings"
)

// Operation names, used by Rule.Op and in Stats.
const (
	OpAuth           = "auth"
	OpClientGet      = "client.get"
	OpClientUpdate   = "client.update"
	OpClientDelete   = "client.delete"
	OpClientCreate   = "client.create"
	OpClientBulk     = "client.bulk_create"
	OpClientSearch   = "client.search"
	OpClientList     = "client.list"
	OpCommentList    = "comment.list"
	OpCommentAdd     = "comment.add"
	OpCommentDelete  = "comment.delete"
	OpFileList       = "file.list"
	OpFileDelete     = "file.delete"
	OpVisitSearch    = "visit.search"
	OpHooksGet       = "hooks.get"
	OpHooksSet       = "hooks.set"
	opUnknown        = "unknown"
	locationPrefixes = "company|locations"
)

// authLevel is the credential a route needs (ref §2.1).
type authLevel int

const (
	authPartner authLevel = iota // Bearer <partner>
	authUser                     // Bearer <partner>, User <user>
)

// route is one endpoint. Pattern segments are literals, alternatives
// "a|b", or "{name}" wildcards.
type route struct {
	method  string
	pattern []string
	op      string
	auth    authLevel
	handle  func(*call) response
}

// buildRoutes lists every endpoint of ref §6 and §7 under BasePath.
// ServeMux is not used because the documented paths overlap ambiguously
// (/clients/files/{client_id} versus /clients/{client_id}/comments); here
// the first match wins, so files are listed before comments.
func (s *Server) buildRoutes() []route {
	p := locationPrefixes
	routes := []route{
		{http.MethodPost, seg("auth"), OpAuth, authPartner, s.handleAuth},

		{http.MethodGet, seg("client", "{location_id}", "{client_id}"), OpClientGet, authUser, s.handleGetClient},
		{http.MethodPut, seg("client", "{location_id}", "{client_id}"), OpClientUpdate, authUser, s.handleUpdateClient},
		{http.MethodDelete, seg("client", "{location_id}", "{client_id}"), OpClientDelete, authUser, s.handleDeleteClient},

		{http.MethodPost, seg("clients", "{location_id}"), OpClientCreate, authUser, s.handleCreateClient},
		{http.MethodGet, seg("clients", "{location_id}"), OpClientList, authUser, s.handleListClients},
		{http.MethodPost, seg("clients", "{location_id}", "bulk"), OpClientBulk, authUser, s.handleBulkCreate},

		// ref §1: /company/ and /locations/ reach the same handler.
		{http.MethodPost, seg(p, "{location_id}", "clients", "search"), OpClientSearch, authUser, s.handleSearch},
		{http.MethodPost, seg(p, "{location_id}", "clients", "visits", "search"), OpVisitSearch, authUser, s.handleVisitSearch},

		{http.MethodGet, seg(p, "{location_id}", "clients", "files", "{client_id}"), OpFileList, authUser, s.handleListFiles},
		{http.MethodDelete, seg(p, "{location_id}", "clients", "files", "{client_id}", "{file_id}"), OpFileDelete, authUser, s.handleDeleteFile},

		{http.MethodGet, seg(p, "{location_id}", "clients", "{client_id}", "comments"), OpCommentList, authUser, s.handleListComments},
		{http.MethodPost, seg(p, "{location_id}", "clients", "{client_id}", "comments"), OpCommentAdd, authUser, s.handleAddComment},
		{http.MethodDelete, seg(p, "{location_id}", "clients", "{client_id}", "comments", "{comment_id}"), OpCommentDelete, authUser, s.handleDeleteComment},

		// ref §7: location-wide webhook settings.
		{http.MethodGet, seg("hooks_settings", "{location_id}"), OpHooksGet, authUser, s.handleGetHooks},
		{http.MethodPost, seg("hooks_settings", "{location_id}"), OpHooksSet, authUser, s.handleSetHooks},
	}
	if s.cfg.ServePublishedCommentPaths {
		// ref §6.8: the form shown on the published docs pages.
		routes = append(routes,
			route{http.MethodGet, seg("clients", "{location_id}", "clients", "{client_id}", "comments"), OpCommentList, authUser, s.handleListComments},
			route{http.MethodPost, seg("clients", "{location_id}", "clients", "{client_id}", "comments"), OpCommentAdd, authUser, s.handleAddComment},
			route{http.MethodDelete, seg("clients", "{location_id}", "clients", "{client_id}", "comments", "{comment_id}"), OpCommentDelete, authUser, s.handleDeleteComment},
		)
	}
	return routes
}

func seg(parts ...string) []string { return parts }

// match finds the route for r. When the path matches but no method does, it
// returns a nil route and non-nil params.
func (s *Server) match(r *http.Request) (*route, map[string]string) {
	rest, ok := strings.CutPrefix(r.URL.Path, BasePath+"/")
	if !ok {
		return nil, nil
	}
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	var pathOnly map[string]string
	for i := range s.routes {
		rt := &s.routes[i]
		params, ok := matchSegments(rt.pattern, parts)
		if !ok {
			continue
		}
		if rt.method == r.Method {
			return rt, params
		}
		pathOnly = params
	}
	return nil, pathOnly
}

func matchSegments(pattern, parts []string) (map[string]string, bool) {
	if len(pattern) != len(parts) {
		return nil, false
	}
	params := make(map[string]string)
	for i, p := range pattern {
		switch {
		case strings.HasPrefix(p, "{"):
			if parts[i] == "" {
				return nil, false
			}
			params[strings.Trim(p, "{}")] = parts[i]
		case strings.Contains(p, "|"):
			if !slices.Contains(strings.Split(p, "|"), parts[i]) {
				return nil, false
			}
		case p != parts[i]:
			return nil, false
		}
	}
	return params, true
}
