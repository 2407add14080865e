package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/altegio-integrator/integrator/internal/backoff"
)

// Defaults of NewHTTP.
const (
	// DefaultMaxAttempts is how many times Send tries one request.
	DefaultMaxAttempts = 5
	// DefaultBackoffBase and DefaultBackoffMax bound the wait between two
	// attempts: base·2^(n−1), at most max, with jitter.
	DefaultBackoffBase = 250 * time.Millisecond
	DefaultBackoffMax  = 10 * time.Second
	// DefaultMaxRetryAfter is the longest Retry-After Send waits; a longer
	// one is cut to it.
	DefaultMaxRetryAfter = time.Minute
	// DefaultBatchSize and DefaultBatchBytes bound one request; they are
	// ingest's defaults (100 commands, 1 MiB).
	DefaultBatchSize  = 100
	DefaultBatchBytes = 1 << 20
	// DefaultRequestTimeout bounds one attempt of the default client.
	DefaultRequestTimeout = 30 * time.Second
)

// maxResponseBytes bounds what is read of an answer.
const maxResponseBytes = 4 << 20

// maxRetryAfterSeconds bounds a parsed Retry-After (a day), far above any
// wait Send honours, so that the conversion cannot overflow.
const maxRetryAfterSeconds = 24 * 60 * 60

// HTTP sends commands to ingest's POST /v1/commands. It is safe for
// concurrent use.
type HTTP struct {
	endpoint      string // .../v1/commands
	key           string
	client        *http.Client
	maxAttempts   int
	base, max     time.Duration
	maxRetryAfter time.Duration
	batchSize     int
	batchBytes    int
}

// HTTPOption configures NewHTTP.
type HTTPOption func(*HTTP) error

// WithHTTPClient sends through c instead of a client with
// DefaultRequestTimeout per attempt.
func WithHTTPClient(c *http.Client) HTTPOption {
	return func(h *HTTP) error {
		if c == nil {
			return errors.New("nil http client")
		}
		h.client = c
		return nil
	}
}

// WithRetry sets how many times Send tries one request (1: no retry) and
// the bounds of the exponential backoff between attempts. Defaults:
// DefaultMaxAttempts, DefaultBackoffBase, DefaultBackoffMax.
func WithRetry(maxAttempts int, base, max time.Duration) HTTPOption {
	return func(h *HTTP) error {
		if maxAttempts < 1 || base <= 0 || max < base {
			return fmt.Errorf("retry: want attempts >= 1 and 0 < base <= max, got %d, %v, %v", maxAttempts, base, max)
		}
		h.maxAttempts, h.base, h.max = maxAttempts, base, max
		return nil
	}
}

// WithMaxRetryAfter sets the longest Retry-After Send honours (default
// DefaultMaxRetryAfter); a longer one is cut to d.
func WithMaxRetryAfter(d time.Duration) HTTPOption {
	return func(h *HTTP) error {
		if d <= 0 {
			return fmt.Errorf("max retry-after %v: want > 0", d)
		}
		h.maxRetryAfter = d
		return nil
	}
}

// WithBatchLimits sets the most commands and bytes of one request, for an
// ingest configured below its defaults (DefaultBatchSize,
// DefaultBatchBytes). Send splits larger sends into several requests, in
// order.
func WithBatchLimits(commands, bytes int) HTTPOption {
	return func(h *HTTP) error {
		if commands < 1 || bytes < MaxCommandSize+2 {
			return fmt.Errorf("batch limits: want >= 1 command and >= %d bytes, got %d, %d", MaxCommandSize+2, commands, bytes)
		}
		h.batchSize, h.batchBytes = commands, bytes
		return nil
	}
}

// NewHTTP returns a sender to the ingest at baseURL (e.g.
// "http://127.0.0.1:8080") that authenticates with the producer key as
// "Authorization: Bearer <key>". It returns an error for a base URL that is
// not absolute http(s), an empty key or an invalid option.
func NewHTTP(baseURL, key string, opts ...HTTPOption) (*HTTP, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ingest url %q: want http(s)://host[:port]", baseURL)
	}
	if key == "" {
		return nil, errors.New("producer key is empty")
	}
	h := &HTTP{
		endpoint:      strings.TrimRight(u.String(), "/") + "/v1/commands",
		key:           key,
		client:        &http.Client{Timeout: DefaultRequestTimeout},
		maxAttempts:   DefaultMaxAttempts,
		base:          DefaultBackoffBase,
		max:           DefaultBackoffMax,
		maxRetryAfter: DefaultMaxRetryAfter,
		batchSize:     DefaultBatchSize,
		batchBytes:    DefaultBatchBytes,
	}
	for _, o := range opts {
		if err := o(h); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Send validates every command (a *ValidationError before any request)
// and POSTs them to /v1/commands: one command as an object, several as
// arrays of at most the batch limits, in order. It returns one Receipt per
// command, in order, once ingest stored each (HTTP 202).
//
// A request that fails transiently (a network error, 429, or a 5xx other
// than 501) is retried with the same commands up to the attempts of WithRetry,
// after the answer's Retry-After or an exponential backoff with jitter,
// while ctx allows: ingest deduplicates on the command ids, so a command
// stored by an attempt whose answer was lost is not stored twice (its
// receipt then says StatusDuplicate). A 4xx other than 429 is not retried.
//
// The error is a *ValidationError, a *ProblemError (ingest's answer; after
// the retries it matches ErrUnavailable), a network error, or ctx's error;
// the receipts returned with it are those of the commands stored before.
func (h *HTTP) Send(ctx context.Context, cmds ...Command) ([]Receipt, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	bodies, err := encodeAll(cmds)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(cmds))
	for i, c := range cmds {
		ids[i] = c.ID
	}
	receipts := make([]Receipt, 0, len(cmds))
	for start := 0; start < len(cmds); {
		end := h.chunkEnd(bodies, start)
		got, err := h.post(ctx, bodies[start:end], ids[start:end], len(cmds) > 1, start)
		receipts = append(receipts, got...)
		if err != nil {
			return receipts, err
		}
		start = end
	}
	return receipts, nil
}

// chunkEnd returns the end of the request that starts at bodies[start]:
// at most batchSize commands and batchBytes bytes, at least one command.
func (h *HTTP) chunkEnd(bodies [][]byte, start int) int {
	size := 2 // the brackets
	end := start
	for end < len(bodies) && end-start < h.batchSize {
		size += len(bodies[end]) + 1
		if end > start && size > h.batchBytes {
			break
		}
		end++
	}
	return end
}

// post sends one request's commands until ingest stored them all, a
// permanent error, the last attempt or the end of ctx. batch says whether
// the commands go as an array (paths then start with an index, rebased by
// offset, their index in the Send). A 503 in the middle of a batch lists
// the commands stored before it: those are kept and only the rest is sent
// again.
func (h *HTTP) post(ctx context.Context, bodies [][]byte, ids []string, batch bool, offset int) ([]Receipt, error) {
	var done []Receipt
	for attempt := 1; ; attempt++ {
		first := offset + len(done) // the Send index of this request's first command
		got, stored, err := h.attempt(ctx, bodies, ids, batch)
		done = append(done, stored...)
		if err == nil {
			return append(done, got...), nil
		}
		bodies, ids = bodies[len(stored):], ids[len(stored):]
		if len(ids) == 0 {
			return done, nil
		}
		var pe *ProblemError
		isProblem := errors.As(err, &pe)
		if isProblem && batch {
			for i := range pe.Errors {
				pe.Errors[i].Path = rebase(pe.Errors[i].Path, first)
			}
		}
		retry := ctx.Err() == nil && (!isProblem || pe.Temporary())
		if errors.Is(err, errBadAnswer) {
			retry = false
		}
		if !retry || attempt >= h.maxAttempts {
			if attempt > 1 {
				err = fmt.Errorf("post %d commands, %d attempts: %w", len(ids), attempt, err)
			}
			return done, err
		}
		wait := backoff.Delay(h.base, h.max, attempt)
		if isProblem && pe.RetryAfter > 0 {
			wait = min(pe.RetryAfter, h.maxRetryAfter)
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return done, fmt.Errorf("post %d commands, %d attempts, no time for the next (in %v): %w", len(ids), attempt, wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return done, fmt.Errorf("post %d commands, %d attempts: %w (last: %w)", len(ids), attempt, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// errBadAnswer is an answer of ingest that does not fit its contract; not
// retried.
var errBadAnswer = errors.New("unexpected answer")

// accepted is the 202 body of POST /v1/commands, and a problem's list of
// the commands stored before a 503.
type accepted struct {
	Commands []Receipt `json:"commands"`
}

// attempt makes one request. It returns the receipts of a 202; or the
// receipts of the commands stored before a mid-batch failure (a prefix of
// ids) and the error.
func (h *HTTP) attempt(ctx context.Context, bodies [][]byte, ids []string, batch bool) (got, stored []Receipt, err error) {
	var body []byte
	if batch {
		body = append([]byte{'['}, bytes.Join(bodies, []byte{','})...)
		body = append(body, ']')
	} else {
		body = bodies[0]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		// The commands may be stored; a retry is safe.
		return nil, nil, fmt.Errorf("read answer %d: %w", resp.StatusCode, err)
	}
	return readAnswer(resp.StatusCode, resp.Header, data, ids)
}

// readAnswer interprets an answer of POST /v1/commands to the commands
// ids: the receipts of a 202, or a *ProblemError with the receipts of the
// commands stored before it (a 503 in a batch), or an error wrapping
// errBadAnswer.
func readAnswer(status int, h http.Header, data []byte, ids []string) (got, stored []Receipt, err error) {
	if status == http.StatusAccepted {
		var a accepted
		if err := json.Unmarshal(data, &a); err != nil {
			return nil, nil, fmt.Errorf("%w: 202 body: %v", errBadAnswer, err)
		}
		if err := matchReceipts(a.Commands, ids, true); err != nil {
			return nil, nil, err
		}
		return a.Commands, nil, nil
	}
	if status >= 200 && status < 300 {
		return nil, nil, fmt.Errorf("%w: status %d", errBadAnswer, status)
	}
	pe := &ProblemError{Status: status}
	var body struct {
		ProblemError
		Commands []Receipt `json:"commands"`
	}
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt == "application/problem+json" && json.Unmarshal(data, &body) == nil {
		*pe = body.ProblemError
		pe.Status = status // the status line decides
		if matchReceipts(body.Commands, ids, false) == nil {
			stored = body.Commands
		}
	}
	if pe.Title == "" {
		pe.Title = http.StatusText(status)
	}
	if pe.Detail == "" && len(pe.Errors) == 0 {
		pe.Detail = snippet(data)
	}
	pe.RetryAfter = retryAfter(h.Get("Retry-After"), time.Now())
	return nil, stored, pe
}

// matchReceipts checks that rs are receipts of ids, in order: all of them
// when all, else a prefix.
func matchReceipts(rs []Receipt, ids []string, all bool) error {
	if len(rs) > len(ids) || (all && len(rs) != len(ids)) {
		return fmt.Errorf("%w: %d receipts for %d commands", errBadAnswer, len(rs), len(ids))
	}
	for i, r := range rs {
		if r.ID != ids[i] {
			return fmt.Errorf("%w: receipt %d is for %q, not %q", errBadAnswer, i, r.ID, ids[i])
		}
		if r.Status != StatusAccepted && r.Status != StatusDuplicate {
			return fmt.Errorf("%w: receipt %d has status %q", errBadAnswer, i, r.Status)
		}
	}
	return nil
}

// snippet is the start of a body that is not a problem, for the error
// message.
func snippet(data []byte) string {
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// retryAfter parses a Retry-After value, seconds or an HTTP date, as a
// wait from now; 0 when absent or unparsable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, maxRetryAfterSeconds)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
