package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
)

// The state file (Config.StateFile) is one JSON document, rewritten whole
// after every change:
//
//	{"version":1,
//	 "next_id":{"client":1000042,"comment":5000007,"file":7000000,"visit":9000000},
//	 "locations":[{"id":1,"unlicensed":false,"clients":[…],"comments":[…],"files":[…],"visits":[…]}],
//	 "hooks":[{"location_id":1,"urls":[…],"flags":{"active":1,…},"written_by":"owner@example.com"}]}
//
// It holds what the real API would keep: the records of every location,
// their licence flags, the webhook settings and the ID counters, so that an
// ID is never handed out twice. It does not hold the users and their
// tokens (they come from Config.Users), faults and rules, rate-limit
// windows, statistics or the webhook delivery log.

// stateVersion is the version of the state file's format.
const stateVersion = 1

// stateDoc is the state file.
type stateDoc struct {
	Version   int           `json:"version"`
	NextID    nextIDDoc     `json:"next_id"`
	Locations []locationDoc `json:"locations"`
	Hooks     []hookDoc     `json:"hooks"`
}

// nextIDDoc holds the last ID handed out of each kind.
type nextIDDoc struct {
	Client  int64 `json:"client"`
	Comment int64 `json:"comment"`
	File    int64 `json:"file"`
	Visit   int64 `json:"visit"`
}

// locationDoc is one location's records, each list by ascending ID.
type locationDoc struct {
	ID         int64          `json:"id"`
	Unlicensed bool           `json:"unlicensed,omitempty"`
	Clients    []ClientRecord `json:"clients"`
	Comments   []Comment      `json:"comments"`
	Files      []File         `json:"files"`
	Visits     []Visit        `json:"visits"`
}

// hookDoc is a location's webhook settings; WrittenBy is the login of the
// user who wrote them through the API, empty when seeded.
type hookDoc struct {
	LocationID int64          `json:"location_id"`
	URLs       []string       `json:"urls"`
	Flags      map[string]int `json:"flags"`
	WrittenBy  string         `json:"written_by,omitempty"`
}

// snapshotLocked returns the state as a stateDoc, locations and records by
// ascending ID. Callers hold s.mu.
func (s *Server) snapshotLocked() stateDoc {
	doc := stateDoc{
		Version: stateVersion,
		NextID: nextIDDoc{Client: s.nextID.client, Comment: s.nextID.comment,
			File: s.nextID.file, Visit: s.nextID.visit},
		Locations: []locationDoc{},
		Hooks:     []hookDoc{},
	}
	for _, id := range slices.Sorted(maps.Keys(s.locations)) {
		l := s.locations[id]
		if !l.unlicensed && len(l.clients) == 0 && len(l.comments) == 0 && len(l.files) == 0 && len(l.visits) == 0 {
			continue // made by a read; nothing to keep
		}
		doc.Locations = append(doc.Locations, locationDoc{
			ID:         id,
			Unlicensed: l.unlicensed,
			Clients:    byID(l.clients),
			Comments:   byID(l.comments),
			Files:      byID(l.files),
			Visits:     byID(l.visits),
		})
	}
	for _, loc := range slices.Sorted(maps.Keys(s.hooks)) {
		h := s.hooks[loc]
		d := hookDoc{LocationID: loc, URLs: h.urls, Flags: h.flags}
		if h.writer != nil {
			d.WrittenBy = h.writer.Login
		}
		doc.Hooks = append(doc.Hooks, d)
	}
	return doc
}

// byID returns the records of m by ascending ID.
func byID[R any](m map[int64]*R) []R {
	out := make([]R, 0, len(m))
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, *m[id])
	}
	return out
}

// restoreLocked replaces the empty state of a new Server with doc. ID
// counters never go below the largest ID of a record, even if the file
// says so. Callers hold s.mu.
func (s *Server) restoreLocked(doc stateDoc) error {
	if doc.Version != stateVersion {
		return fmt.Errorf("version %d, want %d", doc.Version, stateVersion)
	}
	n := &s.nextID
	n.client = max(n.client, doc.NextID.Client)
	n.comment = max(n.comment, doc.NextID.Comment)
	n.file = max(n.file, doc.NextID.File)
	n.visit = max(n.visit, doc.NextID.Visit)
	for _, ld := range doc.Locations {
		if _, dup := s.locations[ld.ID]; dup {
			return fmt.Errorf("location %d listed twice", ld.ID)
		}
		l := s.loc(ld.ID)
		l.unlicensed = ld.Unlicensed
		var err error
		if n.client, err = restore(l.clients, ld.Clients, n.client, "client",
			func(d ClientRecord) int64 { return d.ID }); err != nil {
			return fmt.Errorf("location %d: %w", ld.ID, err)
		}
		if n.comment, err = restore(l.comments, ld.Comments, n.comment, "comment",
			func(d Comment) int64 { return d.ID }); err != nil {
			return fmt.Errorf("location %d: %w", ld.ID, err)
		}
		if n.file, err = restore(l.files, ld.Files, n.file, "file",
			func(d File) int64 { return d.ID }); err != nil {
			return fmt.Errorf("location %d: %w", ld.ID, err)
		}
		if n.visit, err = restore(l.visits, ld.Visits, n.visit, "visit",
			func(d Visit) int64 { return d.ID }); err != nil {
			return fmt.Errorf("location %d: %w", ld.ID, err)
		}
	}
	for _, hd := range doc.Hooks {
		h := &hookState{urls: hd.URLs, flags: hd.Flags}
		if h.flags == nil {
			h.flags = make(map[string]int)
		}
		for _, u := range s.users {
			if hd.WrittenBy != "" && u.Login == hd.WrittenBy {
				h.writer = u
			}
		}
		s.hooks[hd.LocationID] = h
	}
	return nil
}

// restore stores recs in m and returns the counter raised to
// the largest ID. IDs must be positive and unique.
func restore[R any](m map[int64]*R, recs []R, counter int64, kind string, idOf func(R) int64) (int64, error) {
	for _, rec := range recs {
		id := idOf(rec)
		if id <= 0 {
			return 0, fmt.Errorf("%s with id %d", kind, id)
		}
		if _, dup := m[id]; dup {
			return 0, fmt.Errorf("%s %d listed twice", kind, id)
		}
		m[id] = &rec
		counter = max(counter, id)
	}
	return counter, nil
}

// loadState restores the state file, if there is one, into a new Server;
// without one it writes the empty state, so that a path that cannot be
// written fails New rather than the first change.
func (s *Server) loadState() error {
	path := s.cfg.StateFile
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s.saveLocked()
	}
	if err != nil {
		return fmt.Errorf("sandbox: read state file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var doc stateDoc
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("sandbox: state file %s: %w", path, err)
	}
	if dec.More() {
		return fmt.Errorf("sandbox: state file %s: data after the document", path)
	}
	if err := s.restoreLocked(doc); err != nil {
		return fmt.Errorf("sandbox: state file %s: %w", path, err)
	}
	return nil
}

// saveLocked writes the whole state to Config.StateFile, and does nothing
// without one. Callers hold s.mu, so snapshots are written in the order of
// the changes and the file never goes back to an older state.
func (s *Server) saveLocked() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	b, err := json.Marshal(s.snapshotLocked())
	if err != nil {
		return fmt.Errorf("sandbox: encode state: %w", err)
	}
	if err := writeFileAtomic(s.cfg.StateFile, b); err != nil {
		return fmt.Errorf("sandbox: save state: %w", err)
	}
	return nil
}

// saveOrLogLocked is saveLocked for a change made by a Go method, which
// has no answer to fail: the error is logged at Error level. Callers hold
// s.mu.
func (s *Server) saveOrLogLocked() {
	if err := s.saveLocked(); err != nil {
		s.logger.Error("sandbox state not saved", "path", s.cfg.StateFile, "error", err)
	}
}

// savedLocked saves the state after a change made through the API and
// returns resp, or a 500 when the state could not be saved. The change
// stays in memory and reaches the file with the next save; the client
// sees a failure whose outcome is unknown, like a 500 of the real API
// after the change was applied. Callers hold s.mu.
func (s *Server) savedLocked(resp response) response {
	if err := s.saveLocked(); err != nil {
		s.logger.Error("sandbox state not saved; answering 500", "path", s.cfg.StateFile, "error", err)
		return errorResponse(http.StatusInternalServerError, "The sandbox could not save its state.")
	}
	return resp
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory is written, synced and renamed over path, and the directory is
// synced, so that path holds either the old or the new data, even after a
// crash. The temporary file is removed on failure.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
