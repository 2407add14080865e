package sandbox

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// ClientRecord is a client card as the sandbox stores it (ref §6.1, §8).
// Phone holds digits only. Zero values mean "not set". The JSON names of
// the records here are the state file's (persist.go), not the API's.
type ClientRecord struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Surname    string `json:"surname,omitempty"`
	MiddleName string `json:"middle_name,omitempty"` // "middle_name"; "patronymic" in older docs
	Phone      string `json:"phone"`                 // normalized digits
	Email      string `json:"email,omitempty"`
	GenderID   int    `json:"gender_id,omitempty"` // 0 unknown, 1 male, 2 female
	// ImportanceID is 0 none, 1 bronze, 2 silver, 3 gold.
	ImportanceID int               `json:"importance_id,omitempty"`
	Discount     float64           `json:"discount,omitempty"` // percent
	Card         string            `json:"card,omitempty"`
	BirthDate    string            `json:"birth_date,omitempty"` // YYYY-MM-DD or ""
	Comment      string            `json:"comment,omitempty"`
	SMSCheck     int               `json:"sms_check,omitempty"`
	SMSNot       int               `json:"sms_not,omitempty"`
	Spent        float64           `json:"spent,omitempty"`
	Balance      float64           `json:"balance,omitempty"`
	Paid         float64           `json:"paid,omitempty"`       // read-only through the API
	Visits       int               `json:"visits,omitempty"`     // read-only through the API
	Categories   []int64           `json:"categories,omitempty"` // tag IDs; read back as {id,title,color}
	CustomFields map[string]string `json:"custom_fields,omitempty"`
	// LastChangeDate is set on create and on every update.
	LastChangeDate time.Time `json:"last_change_date"`
}

func (c ClientRecord) clone() ClientRecord {
	c.Categories = slices.Clone(c.Categories)
	c.CustomFields = maps.Clone(c.CustomFields)
	return c
}

// Comment is a client comment (ref §6.8). Type is "default" for a text
// comment or "file" for the record of a file upload.
type Comment struct {
	ID         int64         `json:"id"`
	ClientID   int64         `json:"client_id"`
	Type       string        `json:"type"`
	Text       string        `json:"text,omitempty"`
	Files      []CommentFile `json:"files,omitempty"`
	UserID     int64         `json:"user_id,omitempty"`
	UserName   string        `json:"user_name,omitempty"`
	CreateDate time.Time     `json:"create_date"`
	UpdateDate time.Time     `json:"update_date"`
}

// CommentFile is a file attached to a "file" comment. The JSON names are
// those of the state file (Config.StateFile).
type CommentFile struct {
	Link     string `json:"link"`
	Filename string `json:"filename"`
}

// File is a client file (ref §6.9). Size is in bytes; the API renders it
// as a human-readable string.
type File struct {
	ID          int64     `json:"id"`
	ClientID    int64     `json:"client_id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Mime        string    `json:"mime"`
	Size        int64     `json:"size"`
	UserName    string    `json:"user_name,omitempty"`
	CreateDate  time.Time `json:"create_date"`
}

// Visit is one appointment in a client's history, served by the visits
// search (ref §6.10).
type Visit struct {
	ID       int64     `json:"id"`
	ClientID int64     `json:"client_id"`
	Date     time.Time `json:"date"`
	Comment  string    `json:"comment,omitempty"`
	// Attendance is -1 no-show, 0 waiting, 1 arrived, 2 confirmed.
	Attendance int `json:"attendance"`
	// PaymentStatus is not_paid, paid_not_full, paid_full or paid_over;
	// default not_paid.
	PaymentStatus string  `json:"payment_status"`
	ServiceID     int64   `json:"service_id,omitempty"`
	ServiceTitle  string  `json:"service_title,omitempty"`
	Cost          float64 `json:"cost,omitempty"`
	StaffID       int64   `json:"staff_id,omitempty"`
	StaffName     string  `json:"staff_name,omitempty"`
}

// location is the state of one location; locations exist implicitly.
type location struct {
	clients    map[int64]*ClientRecord
	comments   map[int64]*Comment
	files      map[int64]*File
	visits     map[int64]*Visit
	unlicensed bool
}

// idCounters allocate IDs in distinct ranges, so a client that swaps a
// client ID for a comment or location ID gets a 404 instead of luck.
type idCounters struct {
	client, comment, file, visit int64
}

func newIDCounters() idCounters {
	return idCounters{client: 1_000_000, comment: 5_000_000, file: 7_000_000, visit: 9_000_000}
}

// loc returns the location, creating it. Callers hold s.mu.
func (s *Server) loc(id int64) *location {
	l, ok := s.locations[id]
	if !ok {
		l = &location{
			clients:  make(map[int64]*ClientRecord),
			comments: make(map[int64]*Comment),
			files:    make(map[int64]*File),
			visits:   make(map[int64]*Visit),
		}
		s.locations[id] = l
	}
	return l
}

func (s *Server) unlicensed(loc int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locations[loc]
	return ok && l.unlicensed
}

// DeleteClient deletes the client with its comments, files and visits, as
// DELETE /client does; like the Seed… methods, it sends no webhook. It
// reports whether the client existed.
func (s *Server) DeleteClient(locationID, id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(locationID)
	if _, ok := l.clients[id]; !ok {
		return false
	}
	l.deleteClient(id)
	s.saveOrLogLocked()
	return true
}

// SkipClientIDs makes every client created from now on get an ID above
// id, as if the IDs up to it had been handed out already (and saves that).
// A sandbox that lost its state uses it so that it does not hand out again
// the IDs an integrator still has mapped.
func (s *Server) SkipClientIDs(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id > s.nextID.client {
		s.nextID.client = id
		s.saveOrLogLocked()
	}
}

// SetUnlicensed marks the location's licence as expired: every call on it
// answers 402 (ref §3) until RenewLicense.
func (s *Server) SetUnlicensed(locationID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loc(locationID).unlicensed = true
	s.saveOrLogLocked()
}

// RenewLicense undoes SetUnlicensed.
func (s *Server) RenewLicense(locationID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loc(locationID).unlicensed = false
	s.saveOrLogLocked()
}

// Client returns a copy of the client, and whether it exists.
func (s *Server) Client(locationID, id int64) (ClientRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.loc(locationID).clients[id]
	if !ok {
		return ClientRecord{}, false
	}
	return c.clone(), true
}

// Clients returns copies of the location's clients ordered by ID.
func (s *Server) Clients(locationID int64) []ClientRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ClientRecord, 0)
	for _, c := range s.sortedClients(s.loc(locationID)) {
		out = append(out, c.clone())
	}
	return out
}

// Comments returns copies of the client's comments, newest first, as the
// list endpoint orders them.
func (s *Server) Comments(locationID, clientID int64) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Comment, 0)
	for _, c := range s.clientComments(s.loc(locationID), clientID) {
		cc := *c
		cc.Files = slices.Clone(c.Files)
		out = append(out, cc)
	}
	return out
}

// Files returns copies of the client's files, newest first.
func (s *Server) Files(locationID, clientID int64) []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]File, 0)
	for _, f := range s.clientFiles(s.loc(locationID), clientID) {
		out = append(out, *f)
	}
	return out
}

// SeedClient stores c in the location without validation and returns its
// ID: c.ID when set, otherwise a new one. Phone is normalized to digits and
// LastChangeDate defaults to now. Tests own the consistency of seeded data
// (for example unique phones).
func (s *Server) SeedClient(locationID int64, c ClientRecord) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c = c.clone()
	c.Phone = normalizePhone(c.Phone)
	if c.ID == 0 {
		s.nextID.client++
		c.ID = s.nextID.client
	}
	s.nextID.client = max(s.nextID.client, c.ID)
	if c.LastChangeDate.IsZero() {
		c.LastChangeDate = s.cfg.Now()
	}
	s.loc(locationID).clients[c.ID] = &c
	s.saveOrLogLocked()
	return c.ID
}

// SeedComment stores a comment for an existing client and returns its ID;
// ok is false when the client does not exist. Type defaults to "default"
// and the dates to now.
func (s *Server) SeedComment(locationID int64, cm Comment) (id int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(locationID)
	if _, exists := l.clients[cm.ClientID]; !exists {
		return 0, false
	}
	if cm.Type == "" {
		cm.Type = "default"
	}
	id = s.storeComment(l, cm).ID
	s.saveOrLogLocked()
	return id, true
}

// SeedFile stores a file for an existing client and returns its ID; ok is
// false when the client does not exist. Like an upload, it also adds a
// "file" comment to the client's comments (ref §6.8: the comment list holds
// the history of uploads); deleting either leaves the other in place.
func (s *Server) SeedFile(locationID int64, f File) (id int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(locationID)
	if _, exists := l.clients[f.ClientID]; !exists {
		return 0, false
	}
	s.nextID.file++
	f.ID = s.nextID.file
	if f.CreateDate.IsZero() {
		f.CreateDate = s.cfg.Now()
	}
	if f.Mime == "" {
		f.Mime = "application/octet-stream"
	}
	l.files[f.ID] = &f
	s.storeComment(l, Comment{
		ClientID:   f.ClientID,
		Type:       "file",
		Files:      []CommentFile{{Link: fileLink(locationID, f.ID), Filename: f.Name}},
		UserName:   f.UserName,
		CreateDate: f.CreateDate,
	})
	s.saveOrLogLocked()
	return f.ID, true
}

// SeedVisit stores a visit for an existing client and returns its ID; ok
// is false when the client does not exist.
func (s *Server) SeedVisit(locationID int64, v Visit) (id int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.loc(locationID)
	if _, exists := l.clients[v.ClientID]; !exists {
		return 0, false
	}
	s.nextID.visit++
	v.ID = s.nextID.visit
	if v.PaymentStatus == "" {
		v.PaymentStatus = "not_paid"
	}
	l.visits[v.ID] = &v
	s.saveOrLogLocked()
	return v.ID, true
}

// storeComment assigns an ID and dates and stores cm. Callers hold s.mu.
func (s *Server) storeComment(l *location, cm Comment) *Comment {
	s.nextID.comment++
	cm.ID = s.nextID.comment
	if cm.CreateDate.IsZero() {
		cm.CreateDate = s.cfg.Now()
	}
	if cm.UpdateDate.IsZero() {
		cm.UpdateDate = cm.CreateDate
	}
	cm.Files = slices.Clone(cm.Files)
	l.comments[cm.ID] = &cm
	return &cm
}

// sortedClients returns the location's clients by ascending ID. Callers
// hold s.mu.
func (s *Server) sortedClients(l *location) []*ClientRecord {
	out := slices.Collect(maps.Values(l.clients))
	slices.SortFunc(out, func(a, b *ClientRecord) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// clientComments returns the client's comments newest first. Callers hold
// s.mu.
func (s *Server) clientComments(l *location, clientID int64) []*Comment {
	var out []*Comment
	for _, c := range l.comments {
		if c.ClientID == clientID {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *Comment) int {
		return cmp.Or(b.CreateDate.Compare(a.CreateDate), cmp.Compare(b.ID, a.ID))
	})
	return out
}

// clientFiles returns the client's files newest first. Callers hold s.mu.
func (s *Server) clientFiles(l *location, clientID int64) []*File {
	var out []*File
	for _, f := range l.files {
		if f.ClientID == clientID {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b *File) int {
		return cmp.Or(b.CreateDate.Compare(a.CreateDate), cmp.Compare(b.ID, a.ID))
	})
	return out
}

// deleteClient removes the client with its comments, files and visits.
// Callers hold s.mu.
func (l *location) deleteClient(id int64) {
	delete(l.clients, id)
	maps.DeleteFunc(l.comments, func(_ int64, c *Comment) bool { return c.ClientID == id })
	maps.DeleteFunc(l.files, func(_ int64, f *File) bool { return f.ClientID == id })
	maps.DeleteFunc(l.visits, func(_ int64, v *Visit) bool { return v.ClientID == id })
}

// phoneTaken reports whether another client of the location has the phone.
func (l *location) phoneTaken(phone string, except int64) bool {
	for id, c := range l.clients {
		if id != except && c.Phone == phone {
			return true
		}
	}
	return false
}
