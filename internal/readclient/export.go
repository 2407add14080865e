// Package readclient is the callers' side of the workers' read service
// (internal/reads): the requests, one request-reply (Ask) and the export
// loop (Export). It links neither the API client nor the worker, so ingest
// and the CLI can ask without them.
package readclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// Exports are driven by the caller (ingest's HTTP export, the worker CLI),
// one clients.export page at a time, so that they run at the export share
// of whichever workers answer, and a caller that goes away stops asking.
//
// The deprecated list orders cards by ascending id, so the last id
// exported is the cursor: an export resumed after id N finds the first
// page holding a larger id by a binary search over the pages (about
// log2(pages) requests) and skips what it already has. Cards created
// during an export are exported when their id is above the cursor; a
// card deleted during one shifts the later ones back one place, so a page
// boundary may skip a card: follow an export with the client webhooks or a
// changed_after list.

// ExportProgress is where an export stands, after each page.
type ExportProgress struct {
	Page, Pages int   // pages read and the total known (0: unknown)
	Exported    int   // cards emitted so far
	LastID      int64 // the id of the last card emitted: the cursor to resume from
}

// ReadError is an error answer of the read service: an HTTP-like code,
// the reason, and for a 503 when to retry.
type ReadError struct {
	Code       int
	Reason     string
	RetryAfter time.Duration
}

func (e *ReadError) Error() string { return fmt.Sprintf("read service: %d %s", e.Code, e.Reason) }

// ErrNoReadService is Export's error when no worker runs the read service.
var ErrNoReadService = errors.New("no read service is running (start a worker with --reads)")

// pageTimeout bounds one page's request, the wait for the export share
// included.
const pageTimeout = 15 * time.Second

// Export emits every client card of location with an id above afterID, in
// ascending id, read through the read service over nc, and calls progress
// (if not nil) after each page. A page answered 503 is asked again after
// its Retry-After until ctx ends; another error answer ends the export
// with a *ReadError. emit's error ends it too.
func Export(ctx context.Context, nc *nats.Conn, location, afterID int64, emit func(card json.RawMessage) error, progress func(ExportProgress)) error {
	x := exporter{nc: nc, loc: location}
	page, res, err := x.start(ctx, afterID)
	if err != nil {
		return err
	}
	p := ExportProgress{LastID: afterID, Pages: pages(res.TotalCount)}
	for {
		for _, c := range res.Clients {
			id := cardID(c)
			if id <= p.LastID {
				continue
			}
			if err := emit(c); err != nil {
				return err
			}
			p.Exported++
			p.LastID = id
		}
		p.Page = page
		if progress != nil {
			progress(p)
		}
		if len(res.Clients) < ExportPageSize {
			return nil
		}
		page++
		if res, err = x.page(ctx, page); err != nil {
			return err
		}
	}
}

// pages is the number of pages of total cards; 0 when unknown.
func pages(total int) int {
	if total < 0 {
		return 0
	}
	return (total + ExportPageSize - 1) / ExportPageSize
}

// exporter asks the read service for export pages.
type exporter struct {
	nc  *nats.Conn
	loc int64
}

// start finds the first page holding an id above afterID: page 1 when
// afterID is 0, else a binary search over the pages, whose last ids
// ascend.
func (x exporter) start(ctx context.Context, afterID int64) (int, Page, error) {
	first, err := x.page(ctx, 1)
	if err != nil || afterID <= 0 || len(first.Clients) == 0 || last(first) > afterID || first.TotalCount < 0 {
		return 1, first, err
	}
	lo, hi := 2, max(2, pages(first.TotalCount))
	var found *Page
	for lo < hi {
		mid := (lo + hi) / 2
		res, err := x.page(ctx, mid)
		if err != nil {
			return 0, Page{}, err
		}
		if len(res.Clients) == 0 || last(res) > afterID {
			hi, found = mid, &res
		} else {
			lo = mid + 1
		}
	}
	if found != nil && hi == lo {
		return lo, *found, nil
	}
	res, err := x.page(ctx, lo)
	return lo, res, err
}

func last(r Page) int64 { return cardID(r.Clients[len(r.Clients)-1]) }

// cardID reads the id of a client card; 0 when it has none.
func cardID(card json.RawMessage) int64 {
	var c struct {
		ID int64 `json:"id"`
	}
	_ = json.Unmarshal(card, &c)
	return c.ID
}

// Page is a page of clients.list or clients.export as the caller reads it:
// the cards as the service sent them (the API's field names), in
// ascending id.
type Page struct {
	Clients       []json.RawMessage `json:"clients"`
	Page          int               `json:"page"`
	TotalCount    int               `json:"total_count"`
	FilterIgnored bool              `json:"filter_ignored,omitempty"`
}

// page asks for one page, again after each 503's Retry-After.
func (x exporter) page(ctx context.Context, page int) (Page, error) {
	body, _ := json.Marshal(ExportRequest{Page: page, Count: ExportPageSize})
	for {
		res, retry, err := x.ask(ctx, body)
		if retry == 0 {
			return res, err
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return Page{}, ctx.Err()
		case <-t.C:
		}
	}
}

// ask makes one request; retry > 0 when it should be asked again then.
func (x exporter) ask(ctx context.Context, body []byte) (Page, time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, pageTimeout)
	defer cancel()
	var res Page
	err := Ask(rctx, x.nc, x.loc, commands.ReadExport, body, &res)
	var re *ReadError
	switch {
	case err == nil:
		return res, 0, nil
	case ctx.Err() != nil:
		return Page{}, 0, ctx.Err()
	case errors.As(err, &re) && re.Code == 503:
		return Page{}, max(re.RetryAfter, time.Second), nil
	case errors.Is(err, context.DeadlineExceeded):
		return Page{}, time.Second, nil // the worker did not answer in time: ask again
	}
	return Page{}, 0, fmt.Errorf("export page: %w", err)
}

// Ask sends one read, query in location with the JSON request body, to the
// read service over nc, and decodes its answer into out. The service is
// told to give up a second before ctx's deadline. An error answer is a
// *ReadError; no worker running the service is ErrNoReadService.
func Ask(ctx context.Context, nc *nats.Conn, location int64, query string, body []byte, out any) error {
	m := &nats.Msg{Subject: commands.ReadSubject(location, query), Data: body, Header: nats.Header{}}
	if deadline, ok := ctx.Deadline(); ok {
		m.Header.Set(commands.HeaderReadTimeout, max(time.Until(deadline)-time.Second, 100*time.Millisecond).String())
	}
	msg, err := nc.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return ErrNoReadService
	case err != nil:
		return err
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		n, _ := strconv.Atoi(code)
		secs, _ := strconv.Atoi(msg.Header.Get(commands.HeaderRetryAfter))
		return &ReadError{Code: n, Reason: msg.Header.Get(micro.ErrorHeader), RetryAfter: time.Duration(secs) * time.Second}
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		return fmt.Errorf("decode the answer of %s: %w", query, err)
	}
	return nil
}
