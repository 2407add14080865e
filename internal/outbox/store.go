package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"modernc.org/sqlite" // registers the "sqlite" driver
)

// schema is applied at every Open. seq uses AUTOINCREMENT so a sequence is
// never reused, even after the table was emptied.
const schema = `
CREATE TABLE IF NOT EXISTS entries (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	subject    TEXT    NOT NULL,
	msg_id     TEXT    NOT NULL,
	header     BLOB,
	data       BLOB    NOT NULL,
	size       INTEGER NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
	seq        INTEGER PRIMARY KEY,
	subject    TEXT    NOT NULL,
	msg_id     TEXT    NOT NULL,
	header     BLOB,
	data       BLOB    NOT NULL,
	size       INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	failed_at  INTEGER NOT NULL,
	reason     TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	at INTEGER NOT NULL
);`

const (
	insertEntry = `INSERT INTO entries (subject, msg_id, header, data, size, created_at) VALUES (?, ?, ?, ?, ?, ?)`
	selectHead  = `SELECT seq, subject, msg_id, header, data, size, created_at FROM entries WHERE seq > ? ORDER BY seq LIMIT ?`
	checkpoint  = `PRAGMA wal_checkpoint(TRUNCATE)`
	deleteUpTo  = `DELETE FROM entries WHERE seq <= ?`
	copyToDead  = `INSERT INTO dead (seq, subject, msg_id, header, data, size, created_at, failed_at, reason)
		SELECT seq, subject, msg_id, header, data, size, created_at, ?, ? FROM entries WHERE seq = ?`
	deleteOne  = `DELETE FROM entries WHERE seq = ?`
	writeProbe = `INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)`
)

// openDB opens path with a single connection: WAL journal, fsync on every
// commit, and an exclusive lock held for as long as the connection lives.
func openDB(ctx context.Context, path string, busy time.Duration) (*sql.DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("invalid outbox path %q", path)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "locking_mode(EXCLUSIVE)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and the exclusive lock
	// belongs to the connection, so it must never be closed while in use.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	fail := func(step string, err error) (*sql.DB, error) {
		db.Close()
		if isBusy(err) {
			return nil, fmt.Errorf("%s %s: %w", step, path, ErrLocked)
		}
		return nil, fmt.Errorf("%s %s: %w", step, path, err)
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail("open sqlite", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fail("open sqlite", fmt.Errorf("journal mode is %q, want wal", mode))
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fail("create schema in", err)
	}
	// With locking_mode EXCLUSIVE the write lock taken here is kept for the
	// life of the connection: another Open now fails with SQLITE_BUSY.
	if _, err := db.ExecContext(ctx, "BEGIN IMMEDIATE; COMMIT"); err != nil {
		return fail("lock", err)
	}
	return db, nil
}

// isBusy reports whether err is SQLite's SQLITE_BUSY: another connection
// holds the lock.
func isBusy(err error) bool {
	const sqliteBusy = 5
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqliteBusy
}

// stored is an entry as read back by the relay.
type stored struct {
	seq     int64
	entry   Entry
	size    int64
	created time.Time
}

// row is an entry ready to insert.
type row struct {
	subject, msgID string
	header         []byte
	data           []byte
	size           int64
	created        int64
}

func newRow(e Entry, now time.Time) (row, error) {
	var header []byte
	if len(e.Header) > 0 {
		var err error
		if header, err = json.Marshal(e.Header); err != nil {
			return row{}, fmt.Errorf("encode header of %s: %w", e.MsgID, err)
		}
	}
	data := e.Data
	if data == nil {
		data = []byte{} // the column is NOT NULL
	}
	return row{
		subject: e.Subject,
		msgID:   e.MsgID,
		header:  header,
		data:    data,
		size:    e.Size(),
		created: now.UnixNano(),
	}, nil
}

// totals returns the number of waiting entries and their size.
func totals(ctx context.Context, db *sql.DB) (n, size int64, err error) {
	err = db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries`).Scan(&n, &size)
	if err != nil {
		return 0, 0, fmt.Errorf("count entries: %w", err)
	}
	return n, size, nil
}

// head returns up to limit entries from the front of the queue.
func head(ctx context.Context, db *sql.DB, after int64, limit int) ([]stored, error) {
	rows, err := db.QueryContext(ctx, selectHead, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	defer rows.Close()
	var out []stored
	for rows.Next() {
		var (
			s       stored
			header  []byte
			created int64
		)
		if err := rows.Scan(&s.seq, &s.entry.Subject, &s.entry.MsgID, &header, &s.entry.Data, &s.size, &created); err != nil {
			return nil, fmt.Errorf("read entry: %w", err)
		}
		if len(header) > 0 {
			if err := json.Unmarshal(header, &s.entry.Header); err != nil {
				return nil, fmt.Errorf("decode header of entry %d: %w", s.seq, err)
			}
		}
		s.created = time.Unix(0, created)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	return out, nil
}

// oldestCreated returns when the oldest entry after sequence after (the
// last one relayed) was appended, and false when there is none.
func oldestCreated(ctx context.Context, db *sql.DB, after int64) (time.Time, bool, error) {
	var created int64
	err := db.QueryRowContext(ctx, `SELECT created_at FROM entries WHERE seq > ? ORDER BY seq LIMIT 1`, after).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read oldest entry: %w", err)
	}
	return time.Unix(0, created), true, nil
}

// moveToDead moves one entry to the dead table in one transaction.
func moveToDead(ctx context.Context, db *sql.DB, seq int64, reason string, at time.Time) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("dead-letter entry %d: %w", seq, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, copyToDead, at.UnixNano(), reason, seq); err != nil {
		return fmt.Errorf("dead-letter entry %d: %w", seq, err)
	}
	if _, err := tx.ExecContext(ctx, deleteOne, seq); err != nil {
		return fmt.Errorf("dead-letter entry %d: %w", seq, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("dead-letter entry %d: %w", seq, err)
	}
	return nil
}

// cloneHeader copies h so a published message never aliases stored state.
func cloneHeader(h nats.Header) nats.Header {
	out := make(nats.Header, len(h)+1)
	for k, v := range h {
		out[k] = append([]string(nil), v...)
	}
	return out
}
