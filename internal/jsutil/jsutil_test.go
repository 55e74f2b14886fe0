package jsutil_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/aibatch/aibatch/internal/jsutil"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOpenKeyValue: the first open creates the bucket, an open with the
// same configuration leaves the stream as it is (no update: its
// configuration's last change stays put), and one with another TTL updates
// it.
func TestOpenKeyValue(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, t.TempDir())
	nc, js := jetstreamtest.Connect(t, ns)
	ctx := t.Context()
	updates, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.KV_B")
	if err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.KeyValueConfig{Bucket: "B", TTL: time.Hour, Storage: jetstream.FileStorage}
	kv, err := jsutil.OpenKeyValue(ctx, js, cfg)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := jsutil.OpenKeyValue(ctx, js, cfg); err != nil {
		t.Fatalf("open the same: %v", err)
	}
	cfg.TTL = 2 * time.Hour
	kv, err = jsutil.OpenKeyValue(ctx, js, cfg)
	if err != nil {
		t.Fatalf("open with another TTL: %v", err)
	}
	if got := streamInfo(t, js, "KV_B").Config.MaxAge; got != 2*time.Hour {
		t.Errorf("TTL after the update: %v, want 2h", got)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Errorf("the bucket's value after the update: %v, %v", e, err)
	}
	// The server announces every update: one, for the TTL, and none for
	// the open with the same configuration before it.
	if _, err := updates.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no update advisory for the TTL change: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := updates.Pending(); n != 0 {
		t.Errorf("%d more update advisories: opening with the same configuration updated the stream", n)
	}
}

// TestOpenStream: create, open unchanged, update on a change.
func TestOpenStream(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, t.TempDir())
	_, js := jetstreamtest.Connect(t, ns)
	ctx := t.Context()
	cfg := jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, MaxAge: time.Hour}
	if _, err := jsutil.OpenStream(ctx, js, cfg); err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := jsutil.OpenStream(ctx, js, cfg); err != nil {
		t.Fatalf("open the same: %v", err)
	}
	cfg.Subjects = []string{"s.>", "t.>"}
	s, err := jsutil.OpenStream(ctx, js, cfg)
	if err != nil {
		t.Fatalf("open with another subject: %v", err)
	}
	if got := s.CachedInfo().Config.Subjects; len(got) != 2 {
		t.Errorf("subjects after the update: %v, want s.> and t.>", got)
	}
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}
