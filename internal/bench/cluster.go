package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// clusterSize is the number of nats-server nodes of a cluster phase.
const clusterSize = 3

// clusterNode is one nats-server of a cluster stack.
type clusterNode struct {
	name       string
	port       int
	config     string
	proc       *proc
	clusterURL string
}

// startCluster starts a three-node JetStream cluster of nats-server
// processes (routes over loopback), connects to all three and applies the
// topology with three replicas. The workers must be told --replicas 3.
func (s *stack) startCluster(ctx context.Context) error {
	nodes := make([]*clusterNode, clusterSize)
	for i := range nodes {
		port, err := freePort()
		if err != nil {
			return err
		}
		cport, err := freePort()
		if err != nil {
			return err
		}
		nodes[i] = &clusterNode{name: fmt.Sprintf("n%d", i+1), port: port, clusterURL: fmt.Sprintf("nats://127.0.0.1:%d", cport)}
	}
	var urls []string
	for i, n := range nodes {
		var routes []string
		for j, o := range nodes {
			if j != i {
				routes = append(routes, o.clusterURL)
			}
		}
		n.config = filepath.Join(s.dir, n.name+".conf")
		conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\n"+
			"cluster { name: bench\n listen: %s\n routes: [%s] }\n",
			n.name, n.port, filepath.Join(s.dir, n.name), strings.TrimPrefix(n.clusterURL, "nats://"), strings.Join(routes, ", "))
		if err := os.WriteFile(n.config, []byte(conf), 0o644); err != nil {
			return err
		}
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	s.cluster = nodes
	for i := range nodes {
		if err := s.startNode(i); err != nil {
			return err
		}
	}
	s.natsURL = strings.Join(urls, ",")
	if err := s.connect(ctx, nodes[0].proc); err != nil {
		return err
	}
	if err := s.applyTopology(ctx, clusterSize); err != nil {
		return fmt.Errorf("the cluster: %w", err)
	}
	s.workerArgs = append(s.workerArgs, "--replicas", fmt.Sprint(clusterSize))
	return nil
}

// startNode starts (or restarts) node i of the cluster.
func (s *stack) startNode(i int) error {
	n := s.cluster[i]
	p, err := s.start(procSpec{name: "nats-" + n.name, path: s.bin(binNATS), env: childEnv(), args: []string{"-c", n.config}})
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// streamLeader returns the index of the node leading stream name.
func (s *stack) streamLeader(ctx context.Context, name string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info := st.CachedInfo()
	if info.Cluster == nil {
		return 0, fmt.Errorf("stream %s has no cluster info", name)
	}
	for i, n := range s.cluster {
		if n.name == info.Cluster.Leader {
			return i, nil
		}
	}
	return 0, fmt.Errorf("stream %s: leader %q is not a node of the stack", name, info.Cluster.Leader)
}
