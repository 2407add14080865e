// Package deploy_test keeps the deployment files in deploy/ from rotting:
// the NATS configs are parsed by the server's own parser and started
// in-process, the users' permissions are exercised by the binaries' code
// (ingest, worker) and checked for each grant and denial, and the compose
// file and Kubernetes manifests are checked against the binaries' settings,
// ports and probes (manifests_test.go).
//
// Everything listens on loopback only.
package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/ingest"
	"github.com/altegio-integrator/integrator/internal/ratelimit"
	"github.com/altegio-integrator/integrator/internal/sandbox"
	"github.com/altegio-integrator/integrator/internal/stack"
	"github.com/altegio-integrator/integrator/internal/testenv"
	"github.com/altegio-integrator/integrator/internal/topology"
	"github.com/altegio-integrator/integrator/internal/worker"
	"github.com/altegio-integrator/integrator/internal/workerstack"
)

// Paths of the NATS configs, relative to this package.
const (
	singleConf   = "nats/nats-server.conf"
	accountsConf = "nats/accounts.conf"
)

var clusterConfs = []string{"nats/cluster/n1.conf", "nats/cluster/n2.conf", "nats/cluster/n3.conf"}

// users maps each NATS user of accounts.conf to the environment variable
// holding its password, and the test value it gets. The values look like
// what `openssl rand -hex 24` prints, including a leading digit, which the
// config parser must keep as a string.
var users = map[string]struct{ env, password string }{
	"ingest":   {"INGEST_PASSWORD", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c"},
	"worker":   {"WORKER_PASSWORD", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934c"},
	"audit":    {"AUDIT_PASSWORD", "test-audit-password"},
	"operator": {"OPERATOR_PASSWORD", "test-operator-password"},
	"producer": {"PRODUCER_PASSWORD", "test-producer-password"},
	"reader":   {"READER_PASSWORD", "test-reader-password"},
	"sys":      {"SYS_PASSWORD", "test-sys-password"},
}

// storeKey is the JetStream encryption key the configs take from JS_KEY.
const storeKey = "test-jetstream-store-key-0123456789abcdef"

// setPasswords sets every password variable the configs reference, and the
// store's encryption key.
func setPasswords(t *testing.T) {
	for _, u := range users {
		t.Setenv(u.env, u.password)
	}
	t.Setenv("JS_KEY", storeKey)
}

// loadConfig parses a config file the way nats-server -c does and fails on
// errors and on warnings.
func loadConfig(t *testing.T, path string) *server.Options {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	o := &server.Options{}
	if err := o.ProcessConfigFile(abs); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return o
}

// appUsers returns the users of account APP by name.
func appUsers(t *testing.T, o *server.Options) map[string]*server.User {
	t.Helper()
	got := map[string]*server.User{}
	for _, u := range o.Users {
		if u.Account == nil || u.Account.Name != "APP" {
			continue
		}
		got[u.Username] = u
	}
	return got
}

func TestNATSConfigsParse(t *testing.T) {
	setPasswords(t)
	for _, path := range append([]string{singleConf}, clusterConfs...) {
		t.Run(path, func(t *testing.T) {
			o := loadConfig(t, path)
			if !o.JetStream || o.StoreDir == "" {
				t.Errorf("JetStream = %v, store dir %q; want JetStream with a store dir", o.JetStream, o.StoreDir)
			}
			if o.JetStreamMaxMemory <= 0 || o.JetStreamMaxStore <= 0 {
				t.Errorf("max memory %d, max file %d; want both set", o.JetStreamMaxMemory, o.JetStreamMaxStore)
			}
			if o.Port != 4222 || o.HTTPPort != 8222 {
				t.Errorf("client port %d, monitoring port %d; want 4222 and 8222", o.Port, o.HTTPPort)
			}
			// The DLQ stream takes 2 MiB records; the server must let them in.
			top, err := topology.Load()
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range top.Streams {
				if s.MaxMsgSize > o.MaxPayload {
					t.Errorf("stream %s takes %d-byte messages, max_payload is %d", s.Name, s.MaxMsgSize, o.MaxPayload)
				}
			}
			if o.SystemAccount != "SYS" {
				t.Errorf("system account %q, want SYS", o.SystemAccount)
			}
			app := appUsers(t, o)
			for _, name := range []string{"ingest", "worker", "audit", "operator"} {
				u, ok := app[name]
				switch {
				case !ok:
					t.Errorf("no user %s in account APP", name)
				case u.Password != users[name].password:
					t.Errorf("user %s has password %q, want the value of $%s", name, u.Password, users[name].env)
				case u.Permissions == nil || u.Permissions.Publish == nil || len(u.Permissions.Publish.Allow) == 0:
					t.Errorf("user %s has no publish allow list: every user must be least privilege", name)
				}
			}
		})
	}
}

// TestNATSConfigsNeedEveryPassword checks that a missing password variable
// stops the server instead of leaving a user without one.
func TestNATSConfigsNeedEveryPassword(t *testing.T) {
	for _, u := range users {
		t.Run(u.env, func(t *testing.T) {
			setPasswords(t)
			os.Unsetenv(u.env) // restored by t.Setenv's cleanup
			o := &server.Options{}
			err := o.ProcessConfigFile(singleConf)
			if err == nil || !strings.Contains(err.Error(), u.env) {
				t.Fatalf("parse without $%s: err = %v, want an error naming it", u.env, err)
			}
		})
	}
}

// TestStoreIsEncrypted: the configs encrypt JetStream's files at rest, with
// the key from the environment.
func TestStoreIsEncrypted(t *testing.T) {
	setPasswords(t)
	for _, path := range []string{singleConf, filepath.Join("nats", "cluster", "n1.conf")} {
		o := loadConfig(t, path)
		if o.JetStreamCipher != server.ChaCha || o.JetStreamKey != storeKey {
			t.Errorf("%s: cipher %v, key set %v; want ChaCha20-Poly1305 under JS_KEY", path, o.JetStreamCipher, o.JetStreamKey == storeKey)
		}
	}
	os.Unsetenv("JS_KEY") // restored by t.Setenv's cleanup
	if err := (&server.Options{}).ProcessConfigFile(singleConf); err == nil || !strings.Contains(err.Error(), "JS_KEY") {
		t.Errorf("parse without $JS_KEY: err = %v, want an error naming it", err)
	}
}

func TestSyncIntervalChoices(t *testing.T) {
	setPasswords(t)
	if o := loadConfig(t, singleConf); !o.SyncAlways {
		t.Errorf("single node: sync_interval is %v, want always (no replica to fall back on)", o.SyncInterval)
	}
	for _, path := range clusterConfs {
		if o := loadConfig(t, path); o.SyncAlways || o.SyncInterval != 2*time.Minute {
			t.Errorf("%s: sync always %v, interval %v; want the documented 2m", path, o.SyncAlways, o.SyncInterval)
		}
	}
}

// TestClusterConfigsAgree checks that the three nodes form one cluster: one
// cluster name, distinct server names, routes to one another, and the same
// JetStream limits and users.
func TestClusterConfigsAgree(t *testing.T) {
	setPasswords(t)
	var opts []*server.Options
	for _, path := range clusterConfs {
		opts = append(opts, loadConfig(t, path))
	}
	names := map[string]bool{}
	for i, o := range opts {
		self := fmt.Sprintf("nats-%d", i+1)
		names[o.ServerName] = true
		if o.Cluster.Name != opts[0].Cluster.Name || o.Cluster.Name == "" {
			t.Errorf("%s: cluster name %q, n1 has %q", clusterConfs[i], o.Cluster.Name, opts[0].Cluster.Name)
		}
		if o.Cluster.Port != 6222 {
			t.Errorf("%s: cluster port %d, want 6222", clusterConfs[i], o.Cluster.Port)
		}
		if want := self + ":4222"; o.ClientAdvertise != want {
			t.Errorf("%s: client_advertise %q, want %q", clusterConfs[i], o.ClientAdvertise, want)
		}
		var hosts []string
		for _, r := range o.Routes {
			hosts = append(hosts, r.Host)
		}
		for j := range opts {
			if other := fmt.Sprintf("nats-%d:6222", j+1); other != self+":6222" && !slices.Contains(hosts, other) {
				t.Errorf("%s: no route to %s (routes %v)", clusterConfs[i], other, hosts)
			}
		}
		if o.JetStreamMaxStore != opts[0].JetStreamMaxStore || o.JetStreamMaxMemory != opts[0].JetStreamMaxMemory ||
			o.SyncInterval != opts[0].SyncInterval || o.MaxPayload != opts[0].MaxPayload {
			t.Errorf("%s: JetStream limits, sync interval or max payload differ from n1", clusterConfs[i])
		}
		if got, want := len(appUsers(t, o)), len(appUsers(t, opts[0])); got != want || got == 0 {
			t.Errorf("%s: %d users in APP, n1 has %d", clusterConfs[i], got, want)
		}
	}
	if len(names) != len(clusterConfs) {
		t.Errorf("server names %v are not distinct", names)
	}
}

// violationLog is a server logger that keeps permission violations.
type violationLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *violationLog) record(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	if strings.Contains(s, "Violation") {
		l.mu.Lock()
		l.lines = append(l.lines, s)
		l.mu.Unlock()
	}
}
func (l *violationLog) Noticef(f string, v ...any) { l.record(f, v...) }
func (l *violationLog) Warnf(f string, v ...any)   { l.record(f, v...) }
func (l *violationLog) Fatalf(f string, v ...any)  { l.record(f, v...) }
func (l *violationLog) Errorf(f string, v ...any)  { l.record(f, v...) }
func (l *violationLog) Debugf(f string, v ...any)  {}
func (l *violationLog) Tracef(f string, v ...any)  {}

// take returns the violations logged so far and forgets them.
func (l *violationLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.lines
	l.lines = nil
	return s
}

// startFromConfig starts a server from the options a config file produced,
// moved to loopback, random ports and a fresh store dir.
func startFromConfig(t *testing.T, o *server.Options, log *violationLog) *server.Server {
	t.Helper()
	o.Host, o.Port = "127.0.0.1", -1
	o.HTTPHost, o.HTTPPort = "127.0.0.1", -1
	o.ClientAdvertise = ""
	o.StoreDir = t.TempDir()
	o.NoSigs = true
	o.SyncAlways, o.SyncInterval = false, 0 // fsync speed is not under test
	srv, err := server.NewServer(o)
	if err != nil {
		t.Fatalf("new server %s: %v", o.ServerName, err)
	}
	srv.SetLogger(log, false, false)
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// client is a connection as one user, with the asynchronous errors the
// server sent it.
type client struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

// connectAs connects to urls (comma-separated) with the user and password
// in each URL, as the binaries do with NATS_URL.
func connectAs(t *testing.T, urls, user string) *client {
	t.Helper()
	var withUser []string
	for _, u := range strings.Split(urls, ",") {
		withUser = append(withUser, strings.Replace(u, "nats://", "nats://"+user+":"+users[user].password+"@", 1))
	}
	c := &client{errs: make(chan error, 64)}
	nc, err := nats.Connect(strings.Join(withUser, ","),
		nats.Name("deploy-test-"+user),
		nats.CustomInboxPrefix("_INBOX_"+user), // as the binaries do with NATS_INBOX_PREFIX
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// denyPublish checks that the server refuses c's publish to subject.
func (c *client) denyPublish(t *testing.T, subject string) {
	t.Helper()
	c.expectViolation(t, "Publish to \""+subject+"\"", func() error { return c.nc.Publish(subject, []byte("{}")) })
}

// denySubscribe checks that the server refuses c's subscription to subject.
func (c *client) denySubscribe(t *testing.T, subject string) {
	t.Helper()
	c.expectViolation(t, "Subscription to \""+subject+"\"", func() error {
		_, err := c.nc.SubscribeSync(subject)
		return err
	})
}

func (c *client) expectViolation(t *testing.T, what string, do func() error) {
	t.Helper()
	if err := do(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := c.nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), what) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation for %s", what)
		}
	}
}

// TestSingleNodeUsersHaveLeastPrivilege starts nats-server.conf and checks
// every user's grants and denials, first one by one, then with the real
// ingest and worker carrying out a command end to end.
func TestSingleNodeUsersHaveLeastPrivilege(t *testing.T) {
	setPasswords(t)
	log := &violationLog{}
	srv := startFromConfig(t, loadConfig(t, singleConf), log)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()

	wk := connectAs(t, url, "worker")
	in := connectAs(t, url, "ingest")
	au := connectAs(t, url, "audit")
	op := connectAs(t, url, "operator")

	// The worker applies the topology, as cmd/worker does at start.
	top, err := stack.ApplyTopology(ctx, wk.js, 1, 10*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("worker applies the topology: %v", err)
	}
	if v := log.take(); len(v) > 0 {
		t.Fatalf("applying the topology as worker hit violations: %v", v)
	}

	t.Run("ingest", func(t *testing.T) {
		msg := &nats.Msg{Subject: "altegio.cmd.1.ref_x.create", Data: []byte(`{}`)}
		ack, err := in.js.PublishMsg(ctx, msg, jetstream.WithMsgID("deploy-test-1"))
		if err != nil || ack.Stream != topology.StreamCommands {
			t.Fatalf("ingest publishes a command: ack %+v, err %v", ack, err)
		}
		for _, name := range []string{topology.StreamCommands, topology.StreamEvents} {
			if _, err := in.js.Stream(ctx, name); err != nil {
				t.Errorf("ingest reads stream %s info: %v", name, err)
			}
		}
		kv, err := in.js.KeyValue(ctx, topology.BucketIdempotency)
		if err != nil {
			t.Fatalf("ingest opens the idempotency bucket: %v", err)
		}
		if _, err := kv.Get(ctx, "deploy-test-1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("ingest reads the idempotency bucket: %v, want key not found", err)
		}
		in.denyPublish(t, "altegio.evt.1.client_create.succeeded")
		in.denyPublish(t, "altegio.dlq.1.client_create")
		in.denyPublish(t, "$KV.altegio_idempotency.deploy-test-1")
		in.denyPublish(t, "$KV.altegio_tokens.token.default")
		in.denyPublish(t, "$JS.API.DIRECT.GET.KV_altegio_tokens.$KV.altegio_tokens.token.default")
		in.denyPublish(t, "$JS.API.STREAM.DELETE.COMMANDS")
		in.denyPublish(t, "$JS.API.STREAM.PURGE.EVENTS")
		in.denyPublish(t, "$JS.API.CONSUMER.MSG.NEXT.COMMANDS.worker-p0")
		// The DLQ is the operator's: ingest's /v1/dlq connects as operator.
		in.denyPublish(t, "$JS.API.STREAM.INFO.DLQ")
		in.denyPublish(t, "$JS.API.CONSUMER.CREATE.DLQ.x")
		in.denyPublish(t, "altegio.evt.1.client_create.replayed")
		in.denyPublish(t, "$KV.altegio_dlq_state.seq.1")
		in.denySubscribe(t, "altegio.>")
		in.denyPublish(t, topology.SubjectWorkers)
	})

	t.Run("producer", func(t *testing.T) {
		pr := connectAs(t, url, "producer")
		msg := &nats.Msg{Subject: "altegio.cmd.1.ref_p.create", Data: []byte(`{}`)}
		ack, err := pr.js.PublishMsg(ctx, msg, jetstream.WithMsgID("deploy-test-producer"))
		if err != nil || ack.Stream != topology.StreamCommands {
			t.Fatalf("producer publishes a command: ack %+v, err %v", ack, err)
		}
		pr.denyPublish(t, "altegio.cmd.3.1.ref_p.create") // only the form COMMANDS takes
		pr.denyPublish(t, "altegio.evt.1.client_create.succeeded")
		pr.denyPublish(t, "altegio.dlq.1.client_create")
		pr.denyPublish(t, "$JS.API.STREAM.INFO.COMMANDS")
		pr.denyPublish(t, "$JS.API.STREAM.MSG.GET.KV_altegio_idempotency")
		pr.denyPublish(t, "$KV.altegio_idempotency.x")
		pr.denySubscribe(t, "altegio.>")
		pr.denySubscribe(t, "_INBOX_worker.>")
		// A forged announcement could make the workers give partitions up.
		pr.denyPublish(t, topology.SubjectWorkers)
		pr.denySubscribe(t, topology.SubjectWorkers)
	})

	t.Run("reader", func(t *testing.T) {
		rd := connectAs(t, url, "reader")
		// Allowed: a read request (nobody answers here: no responders, not
		// a permissions violation).
		log.take()
		if _, err := rd.nc.Request("altegio.read.1.client.get", []byte(`{"client_id":1}`), 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("reader asks a read: %v, want no responders", err)
		}
		if v := log.take(); len(v) > 0 {
			t.Errorf("a read hit violations: %v", v)
		}
		rd.denyPublish(t, "altegio.cmd.1.ref_r.create")
		rd.denyPublish(t, "altegio.evt.1.webhook.client.create")
		rd.denyPublish(t, "$JS.API.STREAM.INFO.EVENTS")
		rd.denyPublish(t, "$KV.altegio_command_history.x")
		rd.denySubscribe(t, "altegio.>")
		rd.denySubscribe(t, "_INBOX_worker.>")
	})

	t.Run("ingest publishes webhook events and reads own changes", func(t *testing.T) {
		msg := &nats.Msg{Subject: "altegio.evt.1.webhook.client.update", Data: []byte(`{}`)}
		if ack, err := in.js.PublishMsg(ctx, msg, jetstream.WithMsgID("deploy-test-webhook")); err != nil || ack.Stream != topology.StreamEvents {
			t.Fatalf("ingest publishes a webhook event: ack %+v, err %v", ack, err)
		}
		kv, err := in.js.KeyValue(ctx, topology.BucketOwnChanges)
		if err != nil {
			t.Fatalf("ingest opens %s: %v", topology.BucketOwnChanges, err)
		}
		if _, err := kv.Get(ctx, "1.1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("ingest reads an own change: %v, want not found", err)
		}
		in.denyPublish(t, "altegio.evt.1.client_create.succeeded")
		in.denyPublish(t, "$KV.altegio_own_changes.1.1")
	})

	t.Run("worker", func(t *testing.T) {
		for _, b := range top.Buckets {
			kv, err := wk.js.KeyValue(ctx, b.Bucket)
			if err != nil {
				t.Fatalf("worker opens bucket %s: %v", b.Bucket, err)
			}
			rev, err := kv.Create(ctx, "deploy-test", []byte("1"))
			if err != nil {
				t.Fatalf("worker creates a key in %s: %v", b.Bucket, err)
			}
			if _, err := kv.Update(ctx, "deploy-test", []byte("2"), rev); err != nil {
				t.Errorf("worker updates a key in %s: %v", b.Bucket, err)
			}
			if e, err := kv.Get(ctx, "deploy-test"); err != nil || string(e.Value()) != "2" {
				t.Errorf("worker reads a key in %s: %v", b.Bucket, err)
			}
			if err := kv.Delete(ctx, "deploy-test"); err != nil {
				t.Errorf("worker deletes a key in %s: %v", b.Bucket, err)
			}
		}
		// The sweeper reads and deletes the command an advisory names (the
		// ingest check above left it at sequence 1).
		cmds, err := wk.js.Stream(ctx, topology.StreamCommands)
		if err != nil {
			t.Fatalf("worker reads COMMANDS info: %v", err)
		}
		if _, err := cmds.GetMsg(ctx, 1); err != nil {
			t.Errorf("worker reads a command by sequence: %v", err)
		}
		if err := cmds.DeleteMsg(ctx, 1); err != nil {
			t.Errorf("worker deletes a command: %v", err)
		}
		if _, err := wk.js.Publish(ctx, "altegio.dlq.1.client_create", []byte(`{}`)); err != nil {
			t.Errorf("worker dead-letters: %v", err)
		}
		wk.denyPublish(t, "altegio.cmd.1.ref_x.create")
		wk.denyPublish(t, "$JS.API.STREAM.DELETE.EVENTS")
		wk.denyPublish(t, "$JS.API.STREAM.PURGE.DLQ")
		wk.denySubscribe(t, "altegio.>")
		// Refused command subjects: counted and answered by one worker.
		for _, subject := range []string{"altegio.cmd.*", "altegio.cmd.*.*.*.>"} {
			if sub, err := wk.nc.QueueSubscribe(subject, "q", func(*nats.Msg) {}); err != nil {
				t.Errorf("worker watches %s: %v", subject, err)
			} else {
				_ = sub.Unsubscribe()
			}
		}
		wk.denySubscribe(t, "altegio.cmd.*.*.*") // the commands themselves only through its consumers
		// Partition sharing: announce and hear the other workers.
		if err := wk.nc.Publish(topology.SubjectWorkers, []byte(`{}`)); err != nil {
			t.Errorf("worker announces itself: %v", err)
		}
		if sub, err := wk.nc.SubscribeSync(topology.SubjectWorkers); err != nil {
			t.Errorf("worker hears the others: %v", err)
		} else {
			_ = sub.Unsubscribe()
		}
	})

	t.Run("audit", func(t *testing.T) {
		if _, err := wk.js.Publish(ctx, "altegio.evt.1.client_create.succeeded", []byte(`{"outcome":"succeeded"}`)); err != nil {
			t.Fatalf("worker publishes an event: %v", err)
		}
		// Results only (webhook events have six tokens).
		oc, err := au.js.OrderedConsumer(ctx, topology.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"altegio.evt.*.*.*"}})
		if err != nil {
			t.Fatalf("audit creates an ordered consumer: %v", err)
		}
		if m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || m.Subject() != "altegio.evt.1.client_create.succeeded" {
			t.Fatalf("audit reads EVENTS with an ordered consumer: %v", err)
		}
		dc, err := au.js.CreateOrUpdateConsumer(ctx, topology.StreamEvents, jetstream.ConsumerConfig{
			Durable: "audit-test", AckPolicy: jetstream.AckExplicitPolicy,
		})
		if err != nil {
			t.Fatalf("audit creates a durable consumer: %v", err)
		}
		m, err := dc.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("audit reads EVENTS with a durable consumer: %v", err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Errorf("audit acks: %v", err)
		}
		au.denyPublish(t, "altegio.cmd.1.ref_x.create")
		au.denyPublish(t, "altegio.evt.1.client_create.succeeded")
		au.denyPublish(t, "$KV.altegio_idempotency.x")
		au.denyPublish(t, "$JS.API.CONSUMER.CREATE.COMMANDS.audit")
		au.denyPublish(t, "$JS.API.STREAM.MSG.GET.COMMANDS")
		au.denyPublish(t, "$JS.API.DIRECT.GET.KV_altegio_tokens.$KV.altegio_tokens.token.default")
		au.denySubscribe(t, "altegio.cmd.>")
		// Nobody reads another user's replies: the worker's token reads
		// and COMMANDS deliveries arrive on _INBOX_worker.
		au.denySubscribe(t, "_INBOX.>")
		au.denySubscribe(t, "_INBOX_worker.>")
		au.denyPublish(t, topology.SubjectWorkers)
		op.denyPublish(t, topology.SubjectWorkers)
		in.denySubscribe(t, "_INBOX_worker.>")
		op.denySubscribe(t, "_INBOX_worker.>")
	})

	t.Run("operator", func(t *testing.T) {
		dlq, err := op.js.Stream(ctx, topology.StreamDLQ)
		if err != nil {
			t.Fatalf("operator reads DLQ info: %v", err)
		}
		if _, err := dlq.GetMsg(ctx, 1); err != nil {
			t.Errorf("operator reads a DLQ record: %v", err)
		}
		oc, err := dlq.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatalf("operator browses the DLQ: %v", err)
		}
		if _, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
			t.Errorf("operator browses the DLQ: %v", err)
		}
		if _, err := op.js.Publish(ctx, "altegio.cmd.1.ref_x.create", []byte(`{}`)); err != nil {
			t.Errorf("operator replays a command: %v", err)
		}
		if _, err := op.js.Publish(ctx, "altegio.evt.1.client_create.replayed", []byte(`{}`)); err != nil {
			t.Errorf("operator records a replay: %v", err)
		}
		if err := dlq.Purge(ctx); err != nil {
			t.Errorf("operator purges the DLQ: %v", err)
		}
		// The console's charts and timelines, and `worker events tail`.
		ev, err := op.js.OrderedConsumer(ctx, topology.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"altegio.evt.*.*.*"}})
		if err != nil {
			t.Fatalf("operator creates an ordered consumer on EVENTS: %v", err)
		}
		if _, err := ev.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
			t.Errorf("operator reads EVENTS with an ordered consumer: %v", err)
		}
		op.denyPublish(t, "altegio.evt.1.client_create.succeeded")
		op.denyPublish(t, "altegio.dlq.1.client_create")
		op.denyPublish(t, "$KV.altegio_idempotency.x")
		op.denyPublish(t, "$JS.API.STREAM.PURGE.COMMANDS")
		op.denyPublish(t, "$JS.API.STREAM.DELETE.DLQ")
	})

	// Everything checked as allowed above went through without a violation;
	// the denials were expected.
	log.take()
	if t.Failed() {
		return
	}

	t.Run("end to end", func(t *testing.T) {
		// The stray "{}" commands published above are dead-lettered as
		// invalid on the way; only the real command is awaited.
		runEndToEnd(ctx, t, url, top)
		if v := log.take(); len(v) > 0 {
			t.Errorf("ingest and worker hit permission violations: %v", v)
		}
	})
}

// runEndToEnd runs the real ingest (as user ingest) and worker (as user
// worker) against the sandbox, sends a command through ingest's HTTP API and
// waits until ingest reports it succeeded, while audit reads the result.
func runEndToEnd(ctx context.Context, t *testing.T, url string, top *topology.Topology) {
	const partner, login, password = "partner", "user@example.com", "secret"
	sb, apiURL := testenv.Sandbox(t, sandbox.Config{
		PartnerToken: partner,
		Users:        []sandbox.User{{Login: login, Password: password, Name: "Deploy"}},
	})
	quiet := slog.New(slog.DiscardHandler)

	wk := connectAs(t, url, "worker")
	w, closeWorker, err := workerstack.NewWorker(ctx, wk.js, top, workerstack.WorkerConfig{
		APIBaseURL: apiURL,
		Accounts:   []auth.Account{{Name: "default", PartnerToken: partner, Login: login, Password: password}},
		RateLimit:  ratelimit.Config{Key: "egress.deploy-test", PerSecond: 50, PerMinute: -1},
		Worker:     worker.Config{WorkerID: "deploy-test"},
		Reads:      true, // its subscriptions must be within the worker's grants
		Logger:     quiet,
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		stop()
		wg.Wait()
		closeWorker()
	})
	wg.Go(func() { _ = w.Run(runCtx) })

	in := connectAs(t, url, "ingest")
	reg := prometheus.NewRegistry()
	srv, err := ingest.New(ingest.Config{AuthDisabled: true, Logger: quiet, Registerer: reg, Gatherer: reg}, in.nc, in.js, nil)
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = srv.Serve(runCtx, ln) })
	base := "http://" + ln.Addr().String()

	au := connectAs(t, url, "audit")
	events, err := au.js.OrderedConsumer(ctx, topology.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"altegio.evt.*.*.succeeded"},
	})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}

	testenv.WaitFor(t, 10*time.Second, func() error { return httpStatus(base+"/readyz", http.StatusOK) })
	id := postCommand(t, base, `{"type":"client.create","location_id":1,"client_ref":"crm-1","payload":{"name":"Ada","phone":"+13155550111"}}`)
	testenv.WaitFor(t, 20*time.Second, func() error {
		st, err := commandStatus(base, id)
		if err != nil {
			return err
		}
		if st != "succeeded" {
			return fmt.Errorf("command %s is %q", id, st)
		}
		return nil
	})
	// The consumer is created on the first Next and reads EVENTS from the
	// start, which also holds the events published by the checks above.
	for {
		m, err := events.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("audit sees no result event for %s: %v", id, err)
		}
		if strings.Contains(string(m.Data()), id) {
			break
		}
	}
	// A read over HTTP: ingest asks the worker's read service.
	if err := httpContains(base+"/v1/locations/1/clients-by-ref/crm-1", `"Ada"`); err != nil {
		t.Errorf("read crm-1 through ingest: %v", err)
	}
	// The client's commands: the worker lists its history bucket's keys
	// (an ordered consumer on it) within its grants (the caller checks the
	// violations).
	// The history is written right after the result event: poll.
	testenv.WaitFor(t, 10*time.Second, func() error {
		return httpContains(base+"/v1/commands?location_id=1&client_ref=crm-1", id)
	})
	if err := w.Ready(context.Background()); err != nil {
		t.Errorf("worker readiness: %v", err)
	}
	if got := len(sb.Clients(1)); got != 1 {
		t.Errorf("sandbox has %d clients, want 1", got)
	}
}

// httpContains checks that GET url answers 200 with want in the body.
func httpContains(url, want string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %d %s, want %q in it", url, resp.StatusCode, body, want)
	}
	return nil
}

func httpStatus(url string, want int) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return nil
}

func postCommand(t *testing.T, base, body string) string {
	t.Helper()
	resp, err := http.Post(base+"/v1/commands", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/commands: %d %s", resp.StatusCode, b)
	}
	const key = `"id":"`
	i := strings.Index(string(b), key)
	if i < 0 {
		t.Fatalf("no id in %s", b)
	}
	id := string(b[i+len(key):])
	return id[:strings.IndexByte(id, '"')]
}

func commandStatus(base, id string) (string, error) {
	resp, err := http.Get(base + "/v1/commands/" + id)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	const key = `"status":"`
	i := strings.Index(string(b), key)
	if i < 0 {
		return "", fmt.Errorf("GET /v1/commands/%s: %d %s", id, resp.StatusCode, b)
	}
	s := string(b[i+len(key):])
	return s[:strings.IndexByte(s, '"')], nil
}

// TestClusterStartsFromConfigs starts n1, n2 and n3 in-process on loopback
// (ports and routes moved, everything else as configured) and has the worker
// apply the topology with three replicas, as the compose file does.
func TestClusterStartsFromConfigs(t *testing.T) {
	setPasswords(t)
	routePorts := make([]int, len(clusterConfs))
	for i := range routePorts {
		routePorts[i] = freePort(t)
	}
	log := &violationLog{}
	var servers []*server.Server
	for i, path := range clusterConfs {
		o := loadConfig(t, path)
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", routePorts[i]
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
			}
		}
		o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		servers = append(servers, startFromConfig(t, o, log))
	}
	var urls []string
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s not ready", s.Name())
		}
		urls = append(urls, s.ClientURL())
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				return nil
			}
		}
		return errors.New("no JetStream meta leader yet")
	})

	// Generous: three replicated streams and five buckets are created while
	// other packages' tests load the machine (CI runs them side by side).
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	wk := connectAs(t, strings.Join(urls, ","), "worker")
	if _, err := stack.ApplyTopology(ctx, wk.js, 3, 60*time.Second, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("worker applies the topology with 3 replicas: %v", err)
	}
	in := connectAs(t, urls[2], "ingest")
	if _, err := in.js.Publish(ctx, "altegio.cmd.1.ref_x.create", []byte(`{}`)); err != nil {
		t.Fatalf("ingest publishes to the cluster: %v", err)
	}
	s, err := in.js.Stream(ctx, topology.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Errorf("COMMANDS: %d replicas, cluster %+v; want R3 on three nodes", info.Config.Replicas, info.Cluster)
	}
	if v := log.take(); len(v) > 0 {
		t.Errorf("permission violations on the cluster: %v", v)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
