package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/respcache"
)

func TestCachePurgeEmptiesTheBucket(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	_, js := connect(t, srv)
	// No bucket yet: nothing to purge.
	code, stdout, stderr := runCLI(t, "cache-purge", "--server", srv.ClientURL())
	if code != exitOK || !strings.Contains(stdout, "purged 0 answers from AI_CACHE") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	store, err := respcache.Open(ctx, js, respcache.Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if err := store.Put(ctx, k, []byte(`{"v":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr = runCLI(t, "cache-purge", "--server", srv.ClientURL())
	if code != exitOK || !strings.Contains(stdout, "purged 3 answers from AI_CACHE") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := store.Get(ctx, "a"); !errors.Is(err, batch.ErrCacheMiss) {
		t.Fatalf("Get after the purge: %v, want a miss", err)
	}
	// The bucket stays, with its TTL: the worker keeps writing to it.
	if err := store.Put(ctx, "d", []byte(`{"v":1}`)); err != nil {
		t.Fatalf("Put after the purge: %v", err)
	}
	if code, _, stderr := runCLI(t, "cache-purge", "--bucket", "A.B", "--server", srv.ClientURL()); code != exitUsage || !strings.Contains(stderr, "not a bucket name") {
		t.Fatalf("bad bucket: exit %d, stderr %q", code, stderr)
	}
}
