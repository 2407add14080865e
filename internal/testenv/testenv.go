// Package testenv starts the real parts that tests run against: an in-process
// NATS server with JetStream (single node or a small cluster) and helpers to
// wait for a condition with a deadline instead of sleeping.
//
// Everything it starts is stopped in t.Cleanup, so a test only asks for what
// it needs.
package testenv

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS is an in-process NATS server with JetStream enabled. It can be stopped
// and started again on the same port and store directory, which lets a test
// cut NATS away from the code under test and bring it back with its data.
type NATS struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

// RunJetStream starts a NATS server with JetStream on a random loopback port,
// storing its data in a fresh t.TempDir(). The server is shut down in
// t.Cleanup.
func RunJetStream(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{t: t, opts: server.Options{
		ServerName: "test",
		Host:       "127.0.0.1",
		Port:       freePort(t),
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// URL is the client URL of the server, stable across Stop and Start.
func (n *NATS) URL() string {
	return fmt.Sprintf("nats://%s:%d", n.opts.Host, n.opts.Port)
}

// Server returns the running server, or nil while stopped.
func (n *NATS) Server() *server.Server { return n.srv }

// Start starts the server again after Stop, with the same port and data.
// Calling it on a running server does nothing.
func (n *NATS) Start() {
	n.t.Helper()
	if n.srv != nil {
		return
	}
	opts := n.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		n.t.Fatalf("new nats server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		n.t.Fatalf("nats server on %s not ready", n.URL())
	}
	n.srv = srv
}

// Stop shuts the server down and waits until it has stopped. It is safe to
// call on a stopped server.
func (n *NATS) Stop() {
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// Connect opens a client connection to url that keeps reconnecting for as
// long as the test runs, and returns it with a JetStream context. The
// connection is closed in t.Cleanup.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true),
	)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream context: %v", err)
	}
	return nc, js
}

// Cluster is an in-process JetStream cluster of nodes on loopback ports.
type Cluster struct {
	Nodes []*NATS
}

// RunCluster starts a JetStream cluster of size nodes, waits until it has a
// meta leader, and shuts it down in t.Cleanup.
func RunCluster(t testing.TB, size int) *Cluster {
	t.Helper()
	if size < 1 {
		t.Fatalf("cluster size %d", size)
	}
	routePorts := make([]int, size)
	for i := range routePorts {
		routePorts[i] = freePort(t)
	}
	routes := make([]string, size)
	for i, p := range routePorts {
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	c := &Cluster{}
	for i := 0; i < size; i++ {
		n := &NATS{t: t, opts: server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       freePort(t),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "test-cluster",
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: server.RoutesFromStr(joinRoutes(routes, i)),
		}}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		n.startNoWait()
	}
	for _, n := range c.Nodes {
		t.Cleanup(n.Stop)
	}
	for _, n := range c.Nodes {
		if !n.srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("cluster node %s not ready", n.opts.ServerName)
		}
	}
	WaitFor(t, 20*time.Second, func() error {
		for _, n := range c.Nodes {
			if n.srv == nil || !n.srv.JetStreamIsClustered() {
				return fmt.Errorf("node %s not clustered yet", n.opts.ServerName)
			}
			if n.srv.JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no JetStream meta leader yet")
	})
	return c
}

// URLs is a comma-separated list of the client URLs of every node, suitable
// for nats.Connect.
func (c *Cluster) URLs() string {
	s := ""
	for i, n := range c.Nodes {
		if i > 0 {
			s += ","
		}
		s += n.URL()
	}
	return s
}

func (n *NATS) startNoWait() {
	opts := n.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		n.t.Fatalf("new nats server %s: %v", n.opts.ServerName, err)
	}
	go srv.Start()
	n.srv = srv
}

func joinRoutes(routes []string, skip int) string {
	s := ""
	for i, r := range routes {
		if i == skip {
			continue
		}
		if s != "" {
			s += ","
		}
		s += r
	}
	return s
}

// freePort asks the kernel for a free loopback TCP port. A port is needed up
// front (instead of -1) so that a stopped server can come back on it.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
