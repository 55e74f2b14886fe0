// Package jetstreamtest runs real embedded NATS servers for tests and reads
// streams back, so tests check what the broker stored rather than what a
// worker says it did.
package jetstreamtest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ajs "github.com/aibatch/aibatch/jetstream"
)

// RunServer starts an embedded JetStream server on a free loopback port,
// storing its files in dir (t.TempDir() when dir is ""). It is shut down when
// the test ends.
func RunServer(t testing.TB, dir string) *server.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ns, err := ajs.RunServer(ajs.ServerConfig{Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatalf("start embedded NATS server: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// RestartServer shuts ns down and starts a new server on the same port with
// the store directory dir (the one ns was started with), as an operator
// restarting the broker would.
func RestartServer(t testing.TB, ns *server.Server, dir string) *server.Server {
	t.Helper()
	port := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	restarted, err := ajs.RunServer(ajs.ServerConfig{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatalf("restart embedded NATS server: %v", err)
	}
	t.Cleanup(func() {
		restarted.Shutdown()
		restarted.WaitForShutdown()
	})
	return restarted
}

// Connect opens a connection to ns that reconnects for ever, and its
// JetStream context; both are closed when the test ends.
func Connect(t testing.TB, ns *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to %s: %v", ns.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("open JetStream: %v", err)
	}
	return nc, js
}

// Eventually polls cond every 10ms until it returns true, failing the test
// with msg when timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Messages reads every message stored in stream, oldest first.
func Messages(t testing.TB, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("open stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("read stream %s: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return out
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, m)
	}
	return out
}

// Count returns how many messages stream holds now.
func Count(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("open stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("read stream %s: %v", stream, err)
	}
	return info.State.Msgs
}
