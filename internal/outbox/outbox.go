package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

var (
	// ErrFull is returned by Append when the entries would take the outbox
	// past Config.MaxEntries or Config.MaxBytes. Nothing was stored.
	ErrFull = errors.New("outbox full")

	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("outbox closed")

	// ErrLocked is returned by Open when another connection (in this or
	// another process) holds the outbox file.
	ErrLocked = errors.New("outbox file in use by another connection")

	// ErrInvalidEntry is returned by Append for an entry without Subject or
	// MsgID. Nothing was stored.
	ErrInvalidEntry = errors.New("invalid outbox entry")

	// ErrRelayRunning is returned by Run while another Run is active on the
	// same Outbox: one relay keeps the order.
	ErrRelayRunning = errors.New("outbox relay already running")
)

// Entry is one message waiting to be published.
type Entry struct {
	// Subject is the NATS subject to publish to. Required.
	Subject string
	// MsgID is published as Nats-Msg-Id so JetStream drops re-publishes.
	// Required; for commands it is the command id.
	MsgID string
	// Header is published with the message. A Nats-Msg-Id in it is
	// replaced by MsgID.
	Header nats.Header
	// Data is the message body.
	Data []byte
}

// Size is what the entry counts against Config.MaxBytes: the length of its
// subject, id, data and header keys and values.
func (e Entry) Size() int64 {
	n := len(e.Subject) + len(e.MsgID) + len(e.Data)
	for k, vs := range e.Header {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return int64(n)
}

// Outbox is a durable queue of entries in one SQLite file, drained to
// JetStream by Run. All methods are safe for concurrent use.
type Outbox struct {
	cfg     Config
	db      *sql.DB
	metrics *metrics

	reqs       chan *appendReq // unbuffered: a send succeeds only when the writer takes it
	wake       chan struct{}   // capacity 1: entries were appended
	closing    chan struct{}   // closed by Close
	writerDone chan struct{}

	count atomic.Int64 // waiting entries
	bytes atomic.Int64 // their Entry.Size sum
	// relayedSeq is the last entry the relay published, and undeleted how
	// many published entries up to it still have their row (a delete
	// failed): the relay reads on after relayedSeq, OldestAge looks there
	// too, and a later Run keeps the progress.
	relayedSeq atomic.Int64
	undeleted  atomic.Int64

	mu       sync.Mutex
	closed   bool
	relaying bool
	relayWG  sync.WaitGroup
	changed  chan struct{} // closed and replaced when entries are removed

	closeOnce sync.Once
	closeErr  error
}

// appendReq is one Append call waiting for the writer.
type appendReq struct {
	ctx  context.Context
	rows []row
	size int64
	done chan error // capacity 1
}

// Open opens or creates the outbox file at path, applies cfg's defaults and
// validates it, and starts the writer. Entries left from an earlier run are
// kept and relayed by Run. Close releases the file.
//
// It returns ErrLocked when the file is in use by another Outbox, and an
// error when cfg is invalid, the file cannot be opened or the metrics cannot
// be registered.
func Open(path string, cfg Config) (*Outbox, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.BusyTimeout+10*time.Second)
	defer cancel()
	db, err := openDB(ctx, path, cfg.BusyTimeout)
	if err != nil {
		return nil, err
	}
	n, size, err := totals(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	o := &Outbox{
		cfg:        cfg,
		db:         db,
		reqs:       make(chan *appendReq),
		wake:       make(chan struct{}, 1),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
		changed:    make(chan struct{}),
	}
	o.count.Store(n)
	o.bytes.Store(size)
	o.metrics = newMetrics(o)
	if err := o.metrics.register(cfg.Registerer); err != nil {
		db.Close()
		return nil, err
	}
	if n > 0 {
		o.wake <- struct{}{}
	}
	go o.writeLoop()
	return o, nil
}

// Close stops the writer, waits for a running Run to return (it makes Run
// return ErrClosed), unregisters the metrics and closes the file. Waiting
// entries stay in the file for the next Open. Append calls that were not
// committed yet return ErrClosed. Close is idempotent and safe for
// concurrent use; it returns the error of closing the database.
func (o *Outbox) Close() error {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closed = true
		o.mu.Unlock()
		close(o.closing)
		<-o.writerDone
		o.relayWG.Wait()
		o.metrics.unregister()
		if err := o.db.Close(); err != nil {
			o.closeErr = fmt.Errorf("close outbox: %w", err)
		}
	})
	return o.closeErr
}

// Append stores entries durably: when it returns nil they are committed and
// fsynced, in order, after everything appended before, and will be relayed.
// The entries of one call are stored all or none. Concurrent calls are
// committed together in one transaction.
//
// It returns ErrInvalidEntry, ErrFull or ErrClosed with nothing stored, or
// the error of the commit. If ctx ends first it returns ctx's error; when
// that happens after the writer took the entries, they may or may not be
// stored (a retry with the same MsgID is safe: JetStream drops duplicates).
func (o *Outbox) Append(ctx context.Context, entries ...Entry) error {
	if len(entries) == 0 {
		return nil
	}
	now := o.cfg.now()
	req := &appendReq{ctx: ctx, rows: make([]row, 0, len(entries)), done: make(chan error, 1)}
	for i, e := range entries {
		if e.Subject == "" || e.MsgID == "" {
			return fmt.Errorf("append entry %d: subject and msg id are required: %w", i, ErrInvalidEntry)
		}
		r, err := newRow(e, now)
		if err != nil {
			return fmt.Errorf("append: %w", err)
		}
		req.rows = append(req.rows, r)
		req.size += r.size
	}
	select {
	case o.reqs <- req:
	case <-o.closing:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("append: %w", ctx.Err())
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("append: outcome unknown: %w", ctx.Err())
	}
}

// writeLoop is the only goroutine that inserts: it gathers Append calls into
// batches and commits each batch in one transaction.
func (o *Outbox) writeLoop() {
	defer close(o.writerDone)
	for {
		select {
		case req := <-o.reqs:
			o.commit(o.gather(req))
		case <-o.closing:
			return
		}
	}
}

// gather collects requests after first until the batch holds MaxBatch
// entries, or until no request is waiting (BatchWindow zero) or the window
// has passed.
func (o *Outbox) gather(first *appendReq) []*appendReq {
	batch := []*appendReq{first}
	n := len(first.rows)
	var window <-chan time.Time
	if o.cfg.BatchWindow > 0 {
		t := time.NewTimer(o.cfg.BatchWindow)
		defer t.Stop()
		window = t.C
	}
	for n < o.cfg.MaxBatch {
		if window == nil {
			select {
			case req := <-o.reqs:
				batch = append(batch, req)
				n += len(req.rows)
				continue
			default:
				return batch
			}
		}
		select {
		case req := <-o.reqs:
			batch = append(batch, req)
			n += len(req.rows)
		case <-window:
			return batch
		case <-o.closing:
			return batch
		}
	}
	return batch
}

// commit stores the requests of one batch that still fit and whose callers
// still wait, and answers each of them.
func (o *Outbox) commit(batch []*appendReq) {
	var (
		live  []*appendReq
		n     = o.count.Load()
		size  = o.bytes.Load()
		added int64
		bytes int64
	)
	for _, req := range batch {
		switch {
		case req.ctx.Err() != nil:
			req.done <- fmt.Errorf("append: %w", req.ctx.Err())
		case n+added+int64(len(req.rows)) > int64(o.cfg.MaxEntries) || size+bytes+req.size > o.cfg.MaxBytes:
			o.metrics.rejected.WithLabelValues("full").Add(float64(len(req.rows)))
			req.done <- fmt.Errorf("append %d entries with %d waiting: %w", len(req.rows), n+added, ErrFull)
		default:
			live = append(live, req)
			added += int64(len(req.rows))
			bytes += req.size
		}
	}
	if len(live) == 0 {
		return
	}

	start := time.Now()
	err := o.insert(live)
	if err != nil {
		err = fmt.Errorf("append: %w", err)
	} else {
		o.count.Add(added)
		o.bytes.Add(bytes)
		o.metrics.appended.Add(float64(added))
		o.metrics.batchSize.Observe(float64(added))
		o.metrics.commitSeconds.Observe(time.Since(start).Seconds())
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	for _, req := range live {
		req.done <- err
	}
}

// insert writes the rows of reqs in one transaction. It does not use a
// caller's context: a commit shared by many callers runs to its end.
func (o *Outbox) insert(reqs []*appendReq) error {
	ctx := context.Background()
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, insertEntry)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer stmt.Close()
	for _, req := range reqs {
		for _, r := range req.rows {
			if _, err := stmt.ExecContext(ctx, r.subject, r.msgID, r.header, r.data, r.size, r.created); err != nil {
				return fmt.Errorf("insert %s: %w", r.msgID, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// removed updates the counters after the relay removed n entries of size
// bytes, and wakes Flush.
func (o *Outbox) removed(n, size int64) {
	o.count.Add(-n)
	o.bytes.Add(-size)
	o.mu.Lock()
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

// Depth returns the number of entries waiting to be relayed. It reads a
// counter kept in memory, so it is cheap. It returns ErrClosed after Close.
func (o *Outbox) Depth() (int, error) {
	if o.isClosed() {
		return 0, ErrClosed
	}
	return int(o.count.Load()), nil
}

// OldestAge returns how long the oldest waiting entry has waited, by the
// configured clock, or zero when the outbox is empty. Unless it is empty it
// reads the file, bounded by Config.BusyTimeout. It returns ErrClosed after Close.
func (o *Outbox) OldestAge() (time.Duration, error) {
	if o.isClosed() {
		return 0, ErrClosed
	}
	if o.count.Load() == 0 {
		return 0, nil // empty: no need to queue behind commits on the one connection
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.cfg.BusyTimeout)
	defer cancel()
	created, ok, err := oldestCreated(ctx, o.db, o.relayedSeq.Load())
	if err != nil || !ok {
		return 0, err
	}
	return max(o.cfg.now().Sub(created), 0), nil
}

// Probe checks that the outbox can still commit: it writes one row of its
// own with fsync, as an append would. Use it for readiness checks; it costs
// one commit. It returns ErrClosed after Close, or the write's error (a full
// disk, a read-only file system).
func (o *Outbox) Probe(ctx context.Context) error {
	if o.isClosed() {
		return ErrClosed
	}
	if _, err := o.db.ExecContext(ctx, writeProbe, o.cfg.now().UnixNano()); err != nil {
		return fmt.Errorf("outbox probe: %w", err)
	}
	return nil
}

// Flush waits until no entry is waiting, that is until a concurrent Run has
// relayed or dead-lettered everything, or ctx ends. Use it at shutdown,
// after intake stopped. It does not publish by itself. It returns nil when
// empty, ctx's error (wrapped, with the number left) when ctx ends first, and
// ErrClosed after Close.
func (o *Outbox) Flush(ctx context.Context) error {
	for {
		o.mu.Lock()
		changed, closed := o.changed, o.closed
		o.mu.Unlock()
		if closed {
			return ErrClosed
		}
		n := o.count.Load()
		if n == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-o.closing:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("flush with %d entries left: %w", n, ctx.Err())
		}
	}
}

// DeadEntry is an entry the relay gave up on, with why and when.
type DeadEntry struct {
	Seq      int64     // its sequence in the outbox
	Entry    Entry     // as appended
	Created  time.Time // when it was appended
	FailedAt time.Time // when it was moved to the dead table
	Reason   string    // the publish error
}

// Dead returns up to limit dead-lettered entries (all when limit <= 0),
// oldest first. It is meant for operators; the relay never reads the dead
// table, and nothing removes entries from it. It returns ErrClosed after
// Close.
func (o *Outbox) Dead(ctx context.Context, limit int) ([]DeadEntry, error) {
	if o.isClosed() {
		return nil, ErrClosed
	}
	if limit <= 0 {
		limit = -1 // no limit in SQLite
	}
	rows, err := o.db.QueryContext(ctx,
		`SELECT seq, subject, msg_id, header, data, created_at, failed_at, reason FROM dead ORDER BY seq LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read dead entries: %w", err)
	}
	defer rows.Close()
	var out []DeadEntry
	for rows.Next() {
		var (
			d               DeadEntry
			header          []byte
			created, failed int64
		)
		if err := rows.Scan(&d.Seq, &d.Entry.Subject, &d.Entry.MsgID, &header, &d.Entry.Data, &created, &failed, &d.Reason); err != nil {
			return nil, fmt.Errorf("read dead entry: %w", err)
		}
		if len(header) > 0 {
			if err := json.Unmarshal(header, &d.Entry.Header); err != nil {
				return nil, fmt.Errorf("decode header of dead entry %d: %w", d.Seq, err)
			}
		}
		d.Created, d.FailedAt = time.Unix(0, created), time.Unix(0, failed)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read dead entries: %w", err)
	}
	return out, nil
}

func (o *Outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}
