package respcache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/respcache"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStoreRoundTripAndPurge(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, t.TempDir())
	_, js := jetstreamtest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := respcache.Open(ctx, js, respcache.Config{}); !errors.Is(err, respcache.ErrNoTTL) {
		t.Fatalf("Open without a TTL: %v, want ErrNoTTL", err)
	}
	s, err := respcache.Open(ctx, js, respcache.Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "abc"); !errors.Is(err, batch.ErrCacheMiss) {
		t.Fatalf("Get of a key never stored: %v, want ErrCacheMiss", err)
	}
	for _, k := range []string{"abc", "def"} {
		if err := s.Put(ctx, k, []byte(`{"v":1,"output":"`+k+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Get(ctx, "abc"); err != nil || string(v) != `{"v":1,"output":"abc"}` {
		t.Fatalf("Get = %s, %v", v, err)
	}
	// A second Open finds the entries: a restarted worker keeps its cache.
	again, err := respcache.Open(ctx, js, respcache.Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Get(ctx, "def"); err != nil {
		t.Fatalf("Get after reopening: %v", err)
	}
	n, err := respcache.Purge(ctx, js, "")
	if err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want the 2 entries", n, err)
	}
	if _, err := s.Get(ctx, "abc"); !errors.Is(err, batch.ErrCacheMiss) {
		t.Fatalf("Get after Purge: %v, want ErrCacheMiss", err)
	}
	if n, err := respcache.Purge(ctx, js, "NO_SUCH_BUCKET"); err != nil || n != 0 {
		t.Fatalf("Purge of a bucket that does not exist = %d, %v", n, err)
	}
}

func TestEntriesExpireWithTheTTL(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, t.TempDir())
	_, js := jetstreamtest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := respcache.Open(ctx, js, respcache.Config{Bucket: "SHORT", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", []byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Get(ctx, "k")
		if errors.Is(err, batch.ErrCacheMiss) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry still there 10s after a 1s TTL: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
