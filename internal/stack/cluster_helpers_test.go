package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/commands"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
)

// producer posts commands to ingest as an upstream system would: every
// command carries its own id, and a post that fails with 503 or a transport
// error is retried with the same id until it gets a 202 or its deadline
// passes. It records which ids were acknowledged.
type producer struct {
	url    string
	key    string
	client *http.Client
	// patience is how long one command is retried before giving up.
	patience time.Duration

	mu       sync.Mutex
	accepted map[string]bool // command id → got a 202
	retries  int             // posts repeated after a 503 or transport error
	refused  []string        // commands given up on, or answered otherwise
}

func newProducer(url, key string) *producer {
	return &producer{
		url:      url,
		key:      key,
		client:   &http.Client{Timeout: 15 * time.Second},
		patience: 30 * time.Second,
		accepted: make(map[string]bool),
	}
}

// post sends one command (its JSON carries id) until ingest answers 202,
// and reports whether it did.
func (p *producer) post(ctx context.Context, id, body string) bool {
	deadline := time.Now().Add(p.patience)
	backoff := 50 * time.Millisecond
	var last string
	for {
		status, detail, err := p.postOnce(ctx, id, body)
		switch {
		case err == nil && status == http.StatusAccepted:
			p.mu.Lock()
			p.accepted[id] = true
			p.mu.Unlock()
			return true
		case err != nil:
			last = "transport: " + err.Error()
		case status == http.StatusServiceUnavailable:
			last = "503: " + detail
		default:
			// Anything else is final for a producer: the command was refused.
			p.refuse(fmt.Sprintf("%s: status %d: %s", id, status, detail))
			return false
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.refuse(fmt.Sprintf("%s: not accepted within %v; last: %s", id, p.patience, last))
			return false
		}
		p.mu.Lock()
		p.retries++
		p.mu.Unlock()
		// Back off before repeating the same command (a producer's pacing,
		// not synchronisation).
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (p *producer) postOnce(ctx context.Context, id, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/v1/commands", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+p.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, string(bytes.TrimSpace(data)), nil
	}
	var out struct {
		Commands []struct{ ID, Status string } `json:"commands"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return 0, "", fmt.Errorf("decode 202: %w", err)
	}
	if len(out.Commands) != 1 || out.Commands[0].ID != id {
		return resp.StatusCode, string(data), fmt.Errorf("202 names %+v, want command %s", out.Commands, id)
	}
	return resp.StatusCode, "", nil
}

func (p *producer) refuse(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refused = append(p.refused, s)
}

func (p *producer) acceptedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.accepted)
}

func (p *producer) wasAccepted(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted[id]
}

// eventLog is every result event of the EVENTS stream, by command id.
type eventLog struct {
	lastSeq uint64
	byID    map[string][]commands.Result
}

// terminal returns the terminal results of id.
func (l eventLog) terminal(id string) []commands.Result {
	var out []commands.Result
	for _, r := range l.byID[id] {
		if r.Outcome.Terminal() {
			out = append(out, r)
		}
	}
	return out
}

// readEvents reads the EVENTS stream from its first message to its last
// with an ephemeral consumer that it deletes afterwards. It fails rather
// than return a partial read.
func readEvents(ctx context.Context, js jetstream.JetStream) (eventLog, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	log := eventLog{byID: make(map[string][]commands.Result)}
	s, err := js.Stream(ctx, topology.StreamEvents)
	if err != nil {
		return log, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return log, err
	}
	log.lastSeq = info.State.LastSeq
	if info.State.Msgs == 0 {
		return log, nil
	}
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return log, fmt.Errorf("events consumer: %w", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer dcancel()
		_ = s.DeleteConsumer(dctx, c.CachedInfo().Name)
	}()
	var seen uint64
	for seen < log.lastSeq {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			ci, ierr := c.Info(ctx)
			if ierr == nil && ci.Cluster != nil {
				return log, fmt.Errorf("fetch events (consumer %s led by %q, replicas %+v): %w", ci.Name, ci.Cluster.Leader, ci.Cluster.Replicas, err)
			}
			return log, fmt.Errorf("fetch events: %w (consumer info: %v)", err, ierr)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return log, err
			}
			seen = meta.Sequence.Stream
			var r commands.Result
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				return log, fmt.Errorf("event %d on %s: %w", seen, m.Subject(), err)
			}
			log.byID[r.CommandID] = append(log.byID[r.CommandID], r)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return log, fmt.Errorf("fetch events: %w", err)
		}
		if n == 0 {
			return log, fmt.Errorf("events read stalled at %d of %d", seen, log.lastSeq)
		}
	}
	return log, nil
}

// commandsBacklog reports what is still pending in COMMANDS: stored
// messages and, per worker consumer, messages not yet delivered or not yet
// acknowledged. It returns nil when nothing is left.
func commandsBacklog(ctx context.Context, js jetstream.JetStream, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, topology.StreamCommands)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	var problems []string
	if n := info.State.Msgs; n != 0 {
		problems = append(problems, fmt.Sprintf("%d messages stored", n))
	}
	for p := range partitions {
		c, err := s.Consumer(ctx, topology.WorkerConsumer(p))
		if err != nil {
			return err
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if ci.NumPending != 0 || ci.NumAckPending != 0 || ci.NumRedelivered != 0 {
			problems = append(problems, fmt.Sprintf("%s: pending %d, ack pending %d, redelivered %d",
				ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("COMMANDS not drained: %s", strings.Join(problems, "; "))
	}
	return nil
}

// streamLeader returns the name of the server leading stream.
func streamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("stream %s has no leader", stream)
	}
	return info.Cluster.Leader, nil
}

// nodeNamed returns the running cluster node whose server is called name.
func nodeNamed(c *testenv.Cluster, name string) (*testenv.NATS, error) {
	for _, n := range c.Nodes {
		if srv := n.Server(); srv != nil && srv.Name() == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no running node named %q", name)
}

// throttle runs check at most once per every; in between it returns the
// last error, so that testenv.WaitFor does not hammer the cluster.
func throttle(every time.Duration, check func() error) func() error {
	var last time.Time
	var err error = errors.New("not checked yet")
	return func() error {
		if time.Since(last) < every {
			return err
		}
		last = time.Now()
		err = check()
		return err
	}
}

// clusterDiagnostics describes, for a failure report, the worker consumers
// and what is known of the commands ids: their idempotency records and the
// log lines that mention them.
func clusterDiagnostics(ctx context.Context, js jetstream.JetStream, partitions int, logs string, ids []string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var b strings.Builder
	for _, name := range []string{topology.StreamCommands, topology.StreamEvents} {
		if l, err := streamLeader(ctx, js, name); err == nil {
			fmt.Fprintf(&b, "stream %s leader %s\n", name, l)
		}
	}
	for p := range partitions {
		c, err := js.Consumer(ctx, topology.StreamCommands, topology.WorkerConsumer(p))
		if err != nil {
			fmt.Fprintf(&b, "consumer %d: %v\n", p, err)
			continue
		}
		ci, err := c.Info(ctx)
		if err != nil {
			fmt.Fprintf(&b, "consumer %d: %v\n", p, err)
			continue
		}
		leader := ""
		if ci.Cluster != nil {
			leader = ci.Cluster.Leader
		}
		fmt.Fprintf(&b, "%s leader %s: pending %d, ack pending %d, redelivered %d, waiting %d, pins %+v\n",
			ci.Name, leader, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting, ci.PriorityGroups)
	}
	kv, kvErr := js.KeyValue(ctx, topology.BucketIdempotency)
	lines := strings.Split(logs, "\n")
	for i, id := range ids {
		if i == 8 {
			fmt.Fprintf(&b, "… and %d more commands\n", len(ids)-i)
			break
		}
		fmt.Fprintf(&b, "command %s:\n", id)
		if kvErr == nil {
			if e, err := kv.Get(ctx, "cmd."+id); err == nil {
				fmt.Fprintf(&b, "  record rev %d: %s\n", e.Revision(), e.Value())
			} else {
				fmt.Fprintf(&b, "  record: %v\n", err)
			}
		}
		// The subscriber's lane logs (ack not confirmed, parked, nak) name
		// the stream sequence, not the command: find it in ingest's line.
		seqTag := ""
		for _, l := range lines {
			if strings.Contains(l, id) && strings.Contains(l, "command accepted") {
				if i := strings.Index(l, "stream_seq="); i >= 0 {
					seqTag = strings.Fields(l[i:])[0]
				}
				break
			}
		}
		n := 0
		for _, l := range lines {
			if strings.Contains(l, id) || (seqTag != "" && !strings.Contains(l, "command_id=") && hasField(l, seqTag)) {
				if n++; n > 40 {
					break
				}
				fmt.Fprintf(&b, "  %s\n", l)
			}
		}
	}
	return b.String()
}

// hasField reports whether the log line l has the key=value field f.
func hasField(l, f string) bool {
	for _, x := range strings.Fields(l) {
		if x == f {
			return true
		}
	}
	return false
}

// warnLines returns the log lines at WARN or above, at most max bytes of
// the latest ones.
func warnLines(logs string, max int) string {
	var b strings.Builder
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	s := b.String()
	if len(s) > max {
		s = "…" + s[len(s)-max:]
	}
	return s
}

// consumerLeader returns the name of the server leading a consumer.
func consumerLeader(ctx context.Context, js jetstream.JetStream, stream, consumer string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		return "", err
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return "", err
	}
	if ci.Cluster == nil || ci.Cluster.Leader == "" {
		return "", fmt.Errorf("consumer %s has no leader", consumer)
	}
	return ci.Cluster.Leader, nil
}
