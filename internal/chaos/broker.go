package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	ajs "github.com/aibatch/aibatch/jetstream"
)

// broker is the NATS side of a scenario: one embedded JetStream server, or a
// three-node JetStream cluster with routes on loopback ports. Every node
// keeps its ports and store directory across restarts.
type broker struct {
	nodes []*node
}

// node is one embedded server; ns is nil while it is down.
type node struct {
	name string
	cfg  ajs.ServerConfig

	mu sync.Mutex
	ns *server.Server
}

// startBroker starts one node, or three clustered ones named after the
// scenario, storing their files under dir and taking ports from pool.
func startBroker(dir, scenario string, clustered bool, pool *portPool) (*broker, error) {
	n := 1
	if clustered {
		n = 3
	}
	ports, err := pool.take(2 * n)
	if err != nil {
		return nil, err
	}
	b := &broker{}
	for i := range n {
		name := scenario + "-n" + strconv.Itoa(i+1)
		cfg := ajs.ServerConfig{
			Host:         "127.0.0.1",
			Port:         ports[i],
			StoreDir:     filepath.Join(dir, name),
			Name:         name,
			ReadyTimeout: 20 * time.Second,
		}
		if clustered {
			var routes []string
			for j := range n {
				if j != i {
					routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[n+j]))
				}
			}
			cfg.Options = &server.Options{
				NoLog:  true,
				NoSigs: true,
				Cluster: server.ClusterOpts{
					Name: scenario,
					Host: "127.0.0.1",
					Port: ports[n+i],
				},
				Routes: server.RoutesFromStr(strings.Join(routes, ",")),
			}
		}
		b.nodes = append(b.nodes, &node{name: name, cfg: cfg})
	}
	// Clustered nodes start together: each waits for the others' routes.
	errs := make(chan error, n)
	for i := range b.nodes {
		go func() { errs <- b.start(i) }()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		b.close()
		return nil, first
	}
	return b, nil
}

// portPool hands out loopback ports nothing listens on, never the same one
// twice, so brokers of scenarios running at once cannot take each other's
// ports (and join each other's clusters).
type portPool struct {
	mu    sync.Mutex
	given map[int]bool
}

// take returns n ports nothing listened on when it looked. They are chosen
// below the kernel's ephemeral range: a node restarted on its port must find
// it free, and a port in that range can be taken meanwhile as the local end
// of some outgoing connection.
func (p *portPool) take(n int) ([]int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.given == nil {
		p.given = map[int]bool{}
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	low, high := fixedPortRange()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("chaos: no free port found in %d tries", tries)
		}
		port := low + rand.IntN(high-low)
		if p.given[port] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		ls = append(ls, l) // held until all are found: no port twice
		p.given[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}

// fixedPortRange is where take picks ports: the 12,000 ports below the
// kernel's ephemeral range (32768 by default on Linux).
func fixedPortRange() (low, high int) {
	high = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 13000 {
				high = v
			}
		}
	}
	return high - 12000, high
}

// urls returns the client URLs of every node, comma-separated, as NATS_URL
// takes them.
func (b *broker) urls() string {
	urls := make([]string, len(b.nodes))
	for i, n := range b.nodes {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(n.cfg.Port)
	}
	return strings.Join(urls, ",")
}

// start starts node i on its ports and store directory. A port another
// process grabbed in the meantime is retried for a few seconds.
func (b *broker) start(i int) error {
	n := b.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ns != nil {
		return nil
	}
	var err error
	for attempt := range 10 {
		var ns *server.Server
		if ns, err = ajs.RunServer(n.cfg); err == nil {
			n.ns = ns
			return nil
		}
		pause(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	return fmt.Errorf("chaos: start NATS node %s: %w", n.name, err)
}

// stop shuts node i down and waits until it has stopped.
func (b *broker) stop(i int) {
	n := b.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ns == nil {
		return
	}
	n.ns.Shutdown()
	n.ns.WaitForShutdown()
	n.ns = nil
}

// server returns node i's running server, or nil.
func (b *broker) server(i int) *server.Server {
	n := b.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ns
}

// index returns the index of the node named name, or -1.
func (b *broker) index(name string) int {
	for i, n := range b.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// close shuts every node down.
func (b *broker) close() {
	for i := range b.nodes {
		b.stop(i)
	}
}

// waitReady waits until JetStream can serve requests: on a cluster, until a
// meta leader is elected, every running node is current with it and the
// leader counts every running node as an online peer.
func (b *broker) waitReady(ctx context.Context) error {
	if len(b.nodes) == 1 {
		return nil
	}
	return poll(ctx, 50*time.Millisecond, func() bool {
		running, peers, current := 0, 0, true
		for i := range b.nodes {
			ns := b.server(i)
			if ns == nil {
				continue
			}
			running++
			if ns.JetStreamIsLeader() {
				peers = len(ns.JetStreamClusterPeers())
			}
			current = current && ns.JetStreamIsCurrent()
		}
		return current && peers == running
	})
}

// poll calls cond every interval until it returns true (nil) or ctx ends
// (an error saying so).
func poll(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: condition not met: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// wait pauses for d or until ctx ends; it reports whether the whole pause
// passed. Faults use it to space themselves out; it never waits for an
// outcome.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pause waits d whatever happens: the steps of a fault (a node kept down, a
// worker restarted a moment later) finish even when the traffic has ended.
func pause(d time.Duration) { wait(context.Background(), d) }
