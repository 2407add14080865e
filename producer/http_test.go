package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/altegio-integrator/integrator/internal/testenv/poll"
)

// recorder is a small stand-in for ingest on a real HTTP server: it
// records every request and answers with the function of the test.
type recorder struct {
	mu     sync.Mutex
	bodies []string
	at     []time.Time
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

// serve starts a server whose n-th request (from 0) is answered by answer.
// It checks the request as ingest would.
func serve(t *testing.T, answer func(n int, body []byte, w http.ResponseWriter)) (*recorder, string) {
	t.Helper()
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		n := len(rec.bodies)
		rec.bodies = append(rec.bodies, string(body))
		rec.at = append(rec.at, time.Now())
		rec.mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/v1/commands" || r.Header.Get("Authorization") != "Bearer k" ||
			r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %s %s, headers %v", r.Method, r.URL.Path, r.Header)
		}
		answer(n, body, w)
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

// acceptAll answers 202 with a receipt for every command of the body.
func acceptAll(body []byte, w http.ResponseWriter) {
	var cmds []Command
	if len(body) > 0 && body[0] == '[' {
		_ = json.Unmarshal(body, &cmds)
	} else {
		var c Command
		_ = json.Unmarshal(body, &c)
		cmds = []Command{c}
	}
	var a accepted
	for i, c := range cmds {
		a.Commands = append(a.Commands, Receipt{ID: c.ID, Status: StatusAccepted, StreamSeq: uint64(i + 1)})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(a)
}

func problem(w http.ResponseWriter, status int, retryAfter string, body string) {
	w.Header().Set("Content-Type", "application/problem+json")
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func newFastHTTP(t *testing.T, url string, opts ...HTTPOption) *HTTP {
	t.Helper()
	h, err := NewHTTP(url, "k", append([]HTTPOption{WithRetry(4, time.Millisecond, 5*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func comment(ref string) Command { return AddComment(1, ByRef(ref), "hello") }

func TestHTTPRetriesTransientAnswers(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) {
				if n < 2 {
					problem(w, status, "0", `{"type":"urn:altegio-integrator:problem:unavailable","title":"x","status":`+fmt.Sprint(status)+`}`)
					return
				}
				acceptAll(body, w)
			})
			c := comment("a")
			got, err := newFastHTTP(t, url).Send(context.Background(), c)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if len(got) != 1 || got[0].ID != c.ID || got[0].Status != StatusAccepted {
				t.Errorf("receipts %+v", got)
			}
			reqs := rec.requests()
			if len(reqs) != 3 || reqs[0] != reqs[2] {
				t.Errorf("%d requests, want 3 with the same body: %q", len(reqs), reqs)
			}
		})
	}
}

func TestHTTPDoesNotRetryClientErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		is     error
	}{
		{http.StatusBadRequest, nil},
		{http.StatusUnauthorized, ErrUnauthenticated},
		{http.StatusForbidden, ErrForbidden},
		{http.StatusRequestEntityTooLarge, ErrTooLarge},
		{http.StatusUnprocessableEntity, ErrInvalidCommand},
		{http.StatusNotImplemented, nil},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) {
				problem(w, tc.status, "", fmt.Sprintf(`{"type":"urn:altegio-integrator:problem:x","title":"T","status":%d,"detail":"D","instance":"urn:uuid:1",`+
					`"errors":[{"path":"payload.phone","reason":"bad"}]}`, tc.status))
			})
			_, err := newFastHTTP(t, url).Send(context.Background(), comment("a"))
			var pe *ProblemError
			if !errors.As(err, &pe) {
				t.Fatalf("Send = %v, want a *ProblemError", err)
			}
			want := ProblemError{Status: tc.status, Type: "urn:altegio-integrator:problem:x", Title: "T", Detail: "D", Instance: "urn:uuid:1",
				Errors: []FieldError{{Path: "payload.phone", Reason: "bad"}}}
			if fmt.Sprint(*pe) != fmt.Sprint(want) {
				t.Errorf("problem %+v, want %+v", *pe, want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("%v matches ErrUnavailable", err)
			}
			if n := len(rec.requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func TestHTTPGivesUpAfterTheLastAttempt(t *testing.T) {
	rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) {
		w.WriteHeader(http.StatusBadGateway) // a proxy's answer, not a problem
		_, _ = io.WriteString(w, "<html>bad gateway</html>")
	})
	got, err := newFastHTTP(t, url).Send(context.Background(), comment("a"))
	var pe *ProblemError
	if !errors.As(err, &pe) || !errors.Is(err, ErrUnavailable) || pe.Status != http.StatusBadGateway || pe.Title != "Bad Gateway" ||
		!strings.Contains(pe.Detail, "bad gateway") {
		t.Errorf("Send = %v (%+v), want a 502 ProblemError", err, pe)
	}
	if len(got) != 0 {
		t.Errorf("receipts %+v, want none", got)
	}
	if n := len(rec.requests()); n != 4 {
		t.Errorf("%d requests, want 4 (the attempts)", n)
	}
}

func TestHTTPRetriesNetworkErrors(t *testing.T) {
	rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) {
		if n == 0 {
			// The connection breaks before any answer: did ingest store
			// the command? Only a retry with the same id can tell.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		acceptAll(body, w)
	})
	if _, err := newFastHTTP(t, url).Send(context.Background(), comment("a")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if reqs := rec.requests(); len(reqs) != 2 || reqs[0] != reqs[1] {
		t.Errorf("requests %q, want the same twice", reqs)
	}
}

func TestHTTPNetworkErrorAfterTheLastAttempt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = newFastHTTP(t, url).Send(context.Background(), comment("a"))
	var ne net.Error
	if !errors.As(err, &ne) || !strings.Contains(err.Error(), "4 attempts") {
		t.Errorf("Send = %v, want a network error after 4 attempts", err)
	}
}

func TestHTTPHonoursRetryAfterWithinTheDeadline(t *testing.T) {
	rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) {
		problem(w, http.StatusServiceUnavailable, "60", `{"type":"urn:altegio-integrator:problem:stream-full","title":"Command stream full","status":503}`)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := newFastHTTP(t, url).Send(ctx, comment("a"))
	var pe *ProblemError
	if !errors.As(err, &pe) || pe.RetryAfter != time.Minute || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Send = %v, want the 503 with Retry-After 60s", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Send took %v; a wait past the deadline should end it at once", took)
	}
	if n := len(rec.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestHTTPStopsWaitingWhenTheContextEnds(t *testing.T) {
	rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) {
		problem(w, http.StatusServiceUnavailable, "30", `{"type":"urn:altegio-integrator:problem:unavailable","title":"x","status":503}`)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := newFastHTTP(t, url).Send(ctx, comment("a"))
		done <- err
	}()
	// Cancel once the first answer came back, while Send waits out its
	// Retry-After.
	poll.Until(t, 5*time.Second, func() error {
		if len(rec.requests()) == 0 {
			return errors.New("no request yet")
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
			t.Errorf("Send = %v, want the cancellation and the last 503", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send did not return after cancel")
	}
}

func TestHTTPMidBatch503SendsOnlyTheRest(t *testing.T) {
	cmds := []Command{comment("a"), comment("b"), comment("c")}
	rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) {
		if n == 0 {
			problem(w, http.StatusServiceUnavailable, "0", fmt.Sprintf(`{"type":"urn:altegio-integrator:problem:stream-full","title":"x","status":503,`+
				`"commands":[{"id":%q,"status":"accepted","stream_seq":41}]}`, cmds[0].ID))
			return
		}
		acceptAll(body, w)
	})
	got, err := newFastHTTP(t, url).Send(context.Background(), cmds...)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(got) != 3 || got[0].StreamSeq != 41 || got[1].ID != cmds[1].ID || got[2].ID != cmds[2].ID {
		t.Errorf("receipts %+v", got)
	}
	var second []Command
	reqs := rec.requests()
	if len(reqs) != 2 || json.Unmarshal([]byte(reqs[1]), &second) != nil || len(second) != 2 || second[0].ID != cmds[1].ID {
		t.Errorf("requests %q, want the last two commands again as an array", reqs)
	}
}

func TestHTTPSplitsASendIntoBatches(t *testing.T) {
	var cmds []Command
	for i := range 5 {
		cmds = append(cmds, comment(fmt.Sprint("r", i)))
	}
	rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) {
		if n == 1 {
			// The second request's second command, [3] of the Send.
			problem(w, http.StatusUnprocessableEntity, "", `{"type":"urn:altegio-integrator:problem:invalid-command","title":"Invalid command","status":422,`+
				`"errors":[{"path":"[1].payload.text","reason":"no"},{"path":"","reason":"more problems not shown"}]}`)
			return
		}
		acceptAll(body, w)
	})
	got, err := newFastHTTP(t, url, WithBatchLimits(2, DefaultBatchBytes)).Send(context.Background(), cmds...)
	var pe *ProblemError
	if !errors.As(err, &pe) || len(pe.Errors) != 2 || pe.Errors[0].Path != "[3].payload.text" || pe.Errors[1].Path != "" {
		t.Fatalf("Send = %v (%+v), want the 422 with the path of [3]", err, pe)
	}
	if len(got) != 2 || got[1].ID != cmds[1].ID {
		t.Errorf("receipts %+v, want those of the first request", got)
	}
	if reqs := rec.requests(); len(reqs) != 2 || !strings.HasPrefix(reqs[0], "[") {
		t.Errorf("requests %q", reqs)
	}
}

func TestHTTPSendsNothingForAnInvalidCommand(t *testing.T) {
	rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) { acceptAll(body, w) })
	_, err := newFastHTTP(t, url).Send(context.Background(), comment("a"), CreateClient(1, "", Client{Name: "J", Phone: "12"}))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Path != "[1].payload.phone" {
		t.Errorf("Send = %v, want the problem of [1].payload.phone", err)
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("%d requests, want none", n)
	}
}

func TestHTTPRefusesAnswersThatDoNotFit(t *testing.T) {
	for name, answer := range map[string]string{
		"other ids":     `{"commands":[{"id":"0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7d","status":"accepted","stream_seq":1}]}`,
		"no receipts":   `{"commands":[]}`,
		"not json":      `accepted`,
		"bad status":    `{"commands":[{"id":"%s","status":"maybe"}]}`,
		"more receipts": `{"commands":[{"id":"%[1]s","status":"accepted"},{"id":"%[1]s","status":"accepted"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			c := comment("a")
			rec, url := serve(t, func(n int, body []byte, w http.ResponseWriter) {
				w.WriteHeader(http.StatusAccepted)
				if strings.Contains(answer, "%") {
					fmt.Fprintf(w, answer, c.ID)
					return
				}
				_, _ = io.WriteString(w, answer)
			})
			if _, err := newFastHTTP(t, url).Send(context.Background(), c); !errors.Is(err, errBadAnswer) {
				t.Errorf("Send = %v, want errBadAnswer", err)
			}
			if n := len(rec.requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func TestNewHTTPRefusesBadSettings(t *testing.T) {
	for name, tc := range map[string]struct {
		url, key string
		opts     []HTTPOption
	}{
		"relative url": {"/v1", "k", nil},
		"ftp url":      {"ftp://h", "k", nil},
		"no key":       {"http://h", "", nil},
		"no attempts":  {"http://h", "k", []HTTPOption{WithRetry(0, time.Second, time.Second)}},
		"max < base":   {"http://h", "k", []HTTPOption{WithRetry(2, time.Second, time.Millisecond)}},
		"nil client":   {"http://h", "k", []HTTPOption{WithHTTPClient(nil)}},
		"tiny batch":   {"http://h", "k", []HTTPOption{WithBatchLimits(10, 1000)}},
		"no wait":      {"http://h", "k", []HTTPOption{WithMaxRetryAfter(0)}},
	} {
		if _, err := NewHTTP(tc.url, tc.key, tc.opts...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := NewNATS(nil); err == nil {
		t.Error("NewNATS(nil): no error")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"7", 7 * time.Second}, {" 2 ", 2 * time.Second}, {"-1", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"99999999999999999999", 0},
		{"9999999999", 24 * time.Hour},
	} {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzReadAnswer(f *testing.F) {
	id := "0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7d"
	f.Add(202, "application/json", `{"commands":[{"id":"`+id+`","status":"accepted","stream_seq":1}]}`)
	f.Add(503, "application/problem+json", `{"type":"t","status":503,"commands":[{"id":"`+id+`","status":"duplicate"}]}`)
	f.Add(422, "application/problem+json", `{"errors":[{"path":"[0].x","reason":"y"}]}`)
	f.Add(500, "text/html", `<html>`)
	f.Fuzz(func(t *testing.T, status int, contentType, body string) {
		if status < 100 || status > 999 {
			return
		}
		ids := []string{id, "0193f3c2-7d4e-7b6a-9c1d-2f3e4a5b6c7e"}
		got, stored, err := readAnswer(status, http.Header{"Content-Type": {contentType}}, []byte(body), ids)
		switch {
		case err == nil && (status != http.StatusAccepted || len(got) != len(ids)):
			t.Fatalf("status %d: no error with %d receipts", status, len(got))
		case err != nil && len(got) > 0:
			t.Fatalf("receipts with an error: %v", err)
		case len(stored) > len(ids) || (len(stored) > 0 && stored[0].ID != id):
			t.Fatalf("stored %+v is not a prefix of the commands", stored)
		}
	})
}
