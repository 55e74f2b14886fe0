package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/jetstream"
)

// Subjects the harness publishes on. Results of the batch lane go to
// ai.results.bulk, of the urgent lane to ai.results.urgent.
const (
	bulkSubject   = "ai.requests.bulk"
	urgentSubject = "ai.urgent.urgent"
	bulkResults   = "ai.results.bulk"
	urgentResults = "ai.results.urgent"
	defaultModel  = "bench-model"
)

// broker is one embedded JetStream server with file storage in dir.
type broker struct {
	ns  *server.Server
	dir string
}

// startBroker starts an embedded server on a free loopback port, storing in
// dir.
func startBroker(dir string) (*broker, error) {
	ns, err := jetstream.RunServer(jetstream.ServerConfig{Port: -1, StoreDir: dir})
	if err != nil {
		return nil, fmt.Errorf("start embedded server in %s: %w", dir, err)
	}
	return &broker{ns: ns, dir: dir}, nil
}

// url is where clients connect.
func (b *broker) url() string { return b.ns.ClientURL() }

// stop shuts the server down and, when remove is set, deletes its files.
func (b *broker) stop(remove bool) {
	b.ns.Shutdown()
	b.ns.WaitForShutdown()
	if remove {
		_ = os.RemoveAll(b.dir)
	}
}

// client is one NATS connection with its JetStream context; the harness
// opens one per role (worker, producer, subscriber), as separate processes
// would.
type client struct {
	nc *nats.Conn
	js natsjs.JetStream
	// pubErrs counts async publishes the server refused.
	pubErrs atomic.Int64
}

func connect(url, name string) (*client, error) {
	nc, err := nats.Connect(url, nats.Name(name))
	if err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", name, url, err)
	}
	c := &client{nc: nc}
	c.js, err = natsjs.New(nc,
		natsjs.WithPublishAsyncMaxPending(4096),
		natsjs.WithPublishAsyncErrHandler(func(natsjs.JetStream, *nats.Msg, error) { c.pubErrs.Add(1) }))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("open JetStream for %s: %w", name, err)
	}
	return c, nil
}

func (c *client) close() { c.nc.Close() }

// topology is the worker's default topology.
func topology() jetstream.Topology { return jetstream.Topology{}.WithDefaults() }

// ensure creates or opens the streams and consumers, as a worker does at
// start-up.
func (c *client) ensure(ctx context.Context) (batchLane, urgentLane *jetstream.Queue, pub *jetstream.Publisher, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	bq, uq, p, err := jetstream.Ensure(ctx, c.js, topology())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ensure topology: %w", err)
	}
	return bq, uq, p, nil
}

// requestBody is request i as a producer would publish it: JSON with an id
// and an input padded so the body is size bytes (at least the JSON frame).
func requestBody(prefix string, i, size int) []byte {
	head := `{"id":"` + prefix + strconv.Itoa(i) + `","input":"`
	tail := `"}`
	pad := max(size-len(head)-len(tail), 1)
	var sb strings.Builder
	sb.Grow(len(head) + pad + len(tail))
	sb.WriteString(head)
	const text = "observation: the sensor reported a reading within the expected range; "
	for sb.Len() < len(head)+pad {
		n := min(len(text), len(head)+pad-sb.Len())
		sb.WriteString(text[:n])
	}
	sb.WriteString(tail)
	return []byte(sb.String())
}

// publishMany publishes n requests of size bytes to subject with async
// publish, in windows of the client's pending limit, and waits until the
// server stored all of them.
func (c *client) publishMany(ctx context.Context, subject, prefix string, first, n, size int) error {
	return c.publishBodies(ctx, subject, first, n, func(i int) []byte { return requestBody(prefix, i, size) })
}

// publishBodies publishes body(i) for i from first to first+n-1 to subject
// as publishMany does.
func (c *client) publishBodies(ctx context.Context, subject string, first, n int, body func(i int) []byte) error {
	const window = 2048
	before := c.pubErrs.Load()
	for i := first; i < first+n; i++ {
		if _, err := c.js.PublishAsync(subject, body(i)); err != nil {
			return fmt.Errorf("publish request %d: %w", i, err)
		}
		if (i-first+1)%window == 0 {
			if err := c.waitPublished(ctx); err != nil {
				return err
			}
		}
	}
	if err := c.waitPublished(ctx); err != nil {
		return err
	}
	if failed := c.pubErrs.Load() - before; failed > 0 {
		return fmt.Errorf("publish requests to %s: the server refused %d of %d", subject, failed, n)
	}
	return nil
}

// waitPublished waits until every async publish is acknowledged.
func (c *client) waitPublished(ctx context.Context) error {
	select {
	case <-c.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for publish acks: %w", ctx.Err())
	case <-time.After(time.Minute):
		return errors.New("wait for publish acks: none for a minute")
	}
}

// streamMsgs returns how many messages the named stream holds.
func (c *client) streamMsgs(ctx context.Context, name string) (uint64, error) {
	s, err := c.js.Stream(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("open stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", name, err)
	}
	return info.State.Msgs, nil
}

// verifyDrained checks the end state of a drain of n requests: every request
// acked (the WorkQueue stream is empty) and exactly results results stored
// (n, or 0 for the fetch + ack loop). Acks are sent without waiting for the
// server, so it polls for a while.
func verifyDrained(ctx context.Context, url string, n, results int) error {
	c, err := connect(url, "bench-verify")
	if err != nil {
		return err
	}
	defer c.close()
	t := topology()
	deadline := time.Now().Add(15 * time.Second)
	for {
		reqs, err := c.streamMsgs(ctx, t.RequestStream)
		if err != nil {
			return err
		}
		res, err := c.streamMsgs(ctx, t.ResultStream)
		if err != nil {
			return err
		}
		if reqs == 0 && res == uint64(results) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after the drain of %d: %d requests still in %s (want 0), %d results in %s (want %d)",
				n, reqs, t.RequestStream, res, t.ResultStream, results)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seedStore publishes n requests of size bytes to the batch lane of a new
// server storing in dir, then stops the server, leaving a store every
// measurement starts from a copy of.
func seedStore(ctx context.Context, dir string, n, size int) error {
	b, err := startBroker(dir)
	if err != nil {
		return err
	}
	defer b.stop(false)
	c, err := connect(b.url(), "bench-seed")
	if err != nil {
		return err
	}
	defer c.close()
	if _, _, _, err := c.ensure(ctx); err != nil {
		return err
	}
	if err := c.publishMany(ctx, bulkSubject, "b-", 0, n, size); err != nil {
		return fmt.Errorf("seed %d requests: %w", n, err)
	}
	return nil
}

// copyDir copies the tree at src to dst, which must not exist.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return fmt.Errorf("copy %s: %w", path, err)
		}
		return out.Close()
	})
}

// fromSeed starts a server on a fresh copy of the seeded store under root.
func fromSeed(root, seed, name string) (*broker, error) {
	dir := filepath.Join(root, name)
	_ = os.RemoveAll(dir)
	if err := copyDir(seed, dir); err != nil {
		return nil, fmt.Errorf("copy seeded store: %w", err)
	}
	return startBroker(dir)
}

// freshBroker starts a server on a new empty store under root and creates
// the topology.
func freshBroker(ctx context.Context, root, name string) (*broker, error) {
	dir := filepath.Join(root, name)
	_ = os.RemoveAll(dir)
	b, err := startBroker(dir)
	if err != nil {
		return nil, err
	}
	c, err := connect(b.url(), "bench-setup")
	if err != nil {
		b.stop(true)
		return nil, err
	}
	defer c.close()
	if _, _, _, err := c.ensure(ctx); err != nil {
		b.stop(true)
		return nil, err
	}
	return b, nil
}

// publishPoisson publishes requests to subject at the arrival times of a
// Poisson process with the given rate, for d, and waits until the server
// stored them. onSend, when set, is called with each request's number just
// before it is published. It returns how many it published.
func (c *client) publishPoisson(ctx context.Context, subject, prefix string, rate float64, d time.Duration, size int, seed uint64, onSend func(i int)) (int, error) {
	return c.publishPoissonBodies(ctx, subject, rate, d, seed, func(i int) []byte {
		if onSend != nil {
			onSend(i)
		}
		return requestBody(prefix, i, size)
	})
}
