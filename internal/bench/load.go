package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
)

// clientFields is the client payload the bench sends: name and phone only.
type clientFields struct {
	Name  string `json:"name"`
	Phone string `json:"phone"`
}

// phone is the k-th phone of a series: "+1<series><k, 7 digits>", 11 digits.
func phone(series, k int) string { return fmt.Sprintf("+1%03d%07d", series, k) }

// Phone series, so the scenarios' clients never share a phone in a location.
const (
	seriesMain  = 555 // creates of the load
	seriesOther = 666 // the single commands of fairness
	seriesSeed  = 777 // clients created directly at the sandbox
)

// newCommand builds a command with a fresh id.
func newCommand(t commands.Type, loc int64, ref string, clientID int64, payload any) commands.Command {
	c := commands.Command{
		SchemaVersion: commands.SchemaVersion,
		ID:            commands.NewID(),
		Type:          t,
		LocationID:    loc,
		ClientRef:     ref,
		ClientID:      clientID,
	}
	if payload == nil {
		return c // a command without payload, such as client.delete
	}
	if err := c.SetPayload(payload); err != nil {
		panic(err) // the payloads above always encode
	}
	return c
}

// newClient is the k-th client of a series.
func newClient(series, k int) clientFields {
	return clientFields{Name: fmt.Sprintf("Client %d", k), Phone: phone(series, k)}
}

// createCommand creates the k-th client of a series in location loc.
func createCommand(loc int64, ref string, series, k int) commands.Command {
	return newCommand(commands.TypeClientCreate, loc, ref, 0, newClient(series, k))
}

// spreadCreates builds n creates of the main series over locations
// 1..locations, with client_refs prefix-k (see Config.ref).
func spreadCreates(cfg Config, prefix string, n, locations int) []commands.Command {
	cmds := make([]commands.Command, n)
	for k := range cmds {
		cmds[k] = createCommand(int64(1+k%locations), cfg.ref(prefix, k), seriesMain, k)
	}
	return cmds
}

// commandIDs lists the ids of cmds.
func commandIDs(cmds []commands.Command) []string {
	ids := make([]string, len(cmds))
	for i, c := range cmds {
		ids[i] = c.ID
	}
	return ids
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // commands always encode
	}
	return b
}

// ingestClient posts commands to ingest as the bench producer.
type ingestClient struct {
	url  string
	http *http.Client
}

func newIngestClient(url string, conns int) ingestClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	return ingestClient{url: url, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// post sends one command (as an object) or several (as an array) and
// returns how many ingest accepted (accepted or duplicate).
func (c ingestClient) post(ctx context.Context, cmds []commands.Command) (int, error) {
	ids, err := c.send(ctx, cmds, false)
	return len(ids), err
}

// send posts cmds like post and returns the ids ingest accepted. With
// partial, a 503 (NATS down and the outbox full) is an answer, not an
// error: the ids its problem lists, the prefix ingest took; and so is a
// lost connection: nothing counted as accepted.
func (c ingestClient) send(ctx context.Context, cmds []commands.Command, partial bool) ([]string, error) {
	var body []byte
	if len(cmds) == 1 {
		body = mustJSON(cmds[0])
	} else {
		body = mustJSON(cmds)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v1/commands", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+benchProducerKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if partial && ctx.Err() == nil {
			return nil, nil
		}
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		if partial && ctx.Err() == nil {
			return nil, nil
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted && !(partial && resp.StatusCode == http.StatusServiceUnavailable) {
		return nil, fmt.Errorf("POST /v1/commands: status %d: %.500s", resp.StatusCode, b)
	}
	var out struct {
		Commands []struct {
			ID string `json:"id"`
		} `json:"commands"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("POST /v1/commands: status %d: %w", resp.StatusCode, err)
	}
	ids := make([]string, len(out.Commands))
	for i, cs := range out.Commands {
		ids[i] = cs.ID
	}
	return ids, nil
}

// postAll sends cmds in posts of batch commands from producers concurrent
// producers, and returns when every post answered, with the time of the
// first and the last 202.
func (c ingestClient) postAll(ctx context.Context, cmds []commands.Command, batch, producers int) (first, last time.Time, err error) {
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
	)
	for range producers {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next += batch
				failed := err != nil
				mu.Unlock()
				if i >= len(cmds) || failed || ctx.Err() != nil {
					return
				}
				n, perr := c.post(ctx, cmds[i:min(i+batch, len(cmds))])
				now := time.Now()
				mu.Lock()
				switch {
				case perr != nil && err == nil:
					err = perr
				case perr == nil && n != min(batch, len(cmds)-i) && err == nil:
					err = fmt.Errorf("POST /v1/commands: %d of %d commands accepted", n, min(batch, len(cmds)-i))
				}
				if first.IsZero() || now.Before(first) {
					first = now
				}
				if now.After(last) {
					last = now
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return first, last, err
}

// publishAll publishes cmds straight to JetStream, as a producer that
// skips ingest does (same subject, headers and body), with asynchronous
// publishes, and waits for every PubAck.
func publishAll(ctx context.Context, js jetstream.JetStream, cmds []commands.Command) error {
	futures := make([]jetstream.PubAckFuture, 0, len(cmds))
	for _, c := range cmds {
		f, err := js.PublishMsgAsync(&nats.Msg{
			Subject: commands.CommandSubject(c),
			Header:  nats.Header(commands.CommandHeaders(c)),
			Data:    mustJSON(c),
		})
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		futures = append(futures, f)
	}
	return awaitAcks(ctx, js, futures)
}

// awaitAcks waits for every asynchronous publish to be acknowledged.
func awaitAcks(ctx context.Context, js jetstream.JetStream, futures []jetstream.PubAckFuture) error {
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish: %w", err)
		}
	}
	return nil
}

// publishRaw publishes bodies to subject with asynchronous publishes and
// waits for every PubAck.
func publishRaw(ctx context.Context, js jetstream.JetStream, subject string, bodies [][]byte) error {
	futures := make([]jetstream.PubAckFuture, 0, len(bodies))
	for _, b := range bodies {
		f, err := js.PublishAsync(subject, b)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		futures = append(futures, f)
	}
	return awaitAcks(ctx, js, futures)
}

// apiClient calls the sandbox's API directly with the bench user's token,
// for seeding clients and for the references that need no queue.
type apiClient struct {
	base string // …/api/v1
	http *http.Client
}

// bulkCreate creates clients in location loc with one POST
// /clients/{loc}/bulk and returns the new client ids.
func (c apiClient) bulkCreate(ctx context.Context, loc int64, clients []clientFields) ([]int64, error) {
	var out struct {
		Data struct {
			Created []struct {
				ID int64 `json:"id"`
			} `json:"created"`
			Errors []json.RawMessage `json:"errors"`
		} `json:"data"`
	}
	if err := c.do(ctx, http.MethodPost, fmt.Sprintf("/clients/%d/bulk", loc), clients, &out); err != nil {
		return nil, err
	}
	if len(out.Data.Errors) > 0 {
		return nil, fmt.Errorf("bulk create: %d errors, first %s", len(out.Data.Errors), out.Data.Errors[0])
	}
	ids := make([]int64, len(out.Data.Created))
	for i, cr := range out.Data.Created {
		ids[i] = cr.ID
	}
	return ids, nil
}

// bulkCreatePaced creates clients in location loc with bulk calls of
// commands.MaxBulkClients each, spaced to stay within perSecond, and returns
// the new client ids and the number of calls.
func (c apiClient) bulkCreatePaced(ctx context.Context, loc int64, clients []clientFields, perSecond int) ([]int64, int, error) {
	p := newPacer(perSecond)
	var ids []int64
	calls := 0
	for batch := range slices.Chunk(clients, commands.MaxBulkClients) {
		if err := p.wait(ctx); err != nil {
			return nil, calls, err
		}
		got, err := c.bulkCreate(ctx, loc, batch)
		if err != nil {
			return nil, calls, err
		}
		ids = append(ids, got...)
		calls++
	}
	return ids, calls, nil
}

func (c apiClient) do(ctx context.Context, method, path string, in, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(mustJSON(in)))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", apiMediaType)
	req.Header.Set("Authorization", "Bearer "+benchPartnerToken+", User "+benchUserToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: status %d: %.200s", method, path, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// pacer spaces calls to stay inside a per-second budget, with a 2 % margin
// like the worker's limiter.
type pacer struct {
	gap  time.Duration
	next time.Time
}

func newPacer(perSecond int) *pacer {
	if perSecond <= 0 {
		return &pacer{}
	}
	return &pacer{gap: time.Duration(float64(time.Second) * 1.02 / float64(perSecond))}
}

func (p *pacer) wait(ctx context.Context) error {
	now := time.Now()
	if d := p.next.Sub(now); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
		now = p.next
	}
	p.next = now.Add(p.gap)
	return nil
}
