package dlq

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// The limits of POST /v1/dlq/replay (served by ingest, internal/ingest/dlq.go).
const (
	// DefaultHTTPReplayMax is how many entries one POST /v1/dlq/replay
	// republishes when the body does not say ("max"); at the default rate
	// that is 10 s. The answer's "remaining" tells the caller to call
	// again.
	DefaultHTTPReplayMax = 20
	// MaxHTTPReplayMax is the largest "max" a request may ask for.
	MaxHTTPReplayMax = 500
)

// ListResponse is the body of GET /v1/dlq and GET /v1/dlq/{seq}.
type ListResponse struct {
	// Entries are the selected entries, in DLQ order (never null).
	Entries []Entry `json:"entries"`
	// Summary counts them.
	Summary Summary `json:"summary"`
}

// ReplayRequest is the body of POST /v1/dlq/replay: the selection (the
// fields of Filter: ids, seqs, location_id, type, error_class,
// http_status, since, until, client_id, client_ref, text, status, all),
// dry_run, and max (entries to republish in this request, default
// DefaultHTTPReplayMax, at most MaxHTTPReplayMax).
type ReplayRequest struct {
	Filter
	// DryRun asks for the plan only.
	DryRun bool `json:"dry_run"`
	// Max bounds the entries republished by this request.
	Max int `json:"max,omitempty"`
}

// FilterFromQuery reads a Filter from URL query parameters: location,
// type, class, http_status, since, until (RFC 3339), client_id,
// client_ref, q, status, all, and id and seq (repeatable, or
// comma-separated). Unknown parameters are an error, so that a typo does
// not silently widen the selection.
func FilterFromQuery(q url.Values) (Filter, error) {
	var f Filter
	var errs []error
	num := func(name string, v string) int64 {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not a number", name))
		}
		return n
	}
	at := func(name string, v string) time.Time {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not an RFC 3339 time", name))
		}
		return t
	}
	for name, vals := range q {
		v := vals[len(vals)-1]
		switch name {
		case "location":
			f.LocationID = num(name, v)
		case "type":
			f.Type = commands.Type(v)
		case "class":
			f.Class = commands.ErrorClass(v)
		case "http_status":
			f.HTTPStatus = int(num(name, v))
		case "since":
			f.Since = at(name, v)
		case "until":
			f.Until = at(name, v)
		case "client_id":
			f.ClientID = num(name, v)
		case "client_ref":
			f.ClientRef = v
		case "q":
			f.Text = v
		case "status":
			f.Status = Status(v)
		case "all":
			f.All = v == "" || v == "true" || v == "1"
		case "id":
			for _, v := range vals {
				for id := range strings.SplitSeq(v, ",") {
					if id = strings.TrimSpace(id); id != "" {
						f.IDs = append(f.IDs, id)
					}
				}
			}
		case "seq":
			for _, v := range vals {
				for s := range strings.SplitSeq(v, ",") {
					if s = strings.TrimSpace(s); s != "" {
						n, err := strconv.ParseUint(s, 10, 64)
						if err != nil {
							errs = append(errs, fmt.Errorf("seq: %q is not a sequence", s))
						}
						f.Seqs = append(f.Seqs, n)
					}
				}
			}
		default:
			errs = append(errs, fmt.Errorf("unknown parameter %q", name))
		}
	}
	return f, errors.Join(errs...)
}
