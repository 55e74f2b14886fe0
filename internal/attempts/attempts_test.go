package attempts_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/attempts"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, t.TempDir())
	_, js := jetstreamtest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := attempts.Ensure(ctx, js, attempts.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(ctx, "AI_REQUESTS", 7); err != nil || r != (batch.AttemptRecord{}) {
		t.Fatalf("Get of a request never recorded = %+v, %v; want the zero record", r, err)
	}
	want := batch.AttemptRecord{Spent: 2, Free: 3}
	if err := s.Put(ctx, "AI_REQUESTS", 7, want); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "AI_REQUESTS", 8, batch.AttemptRecord{Spent: 1}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(ctx, "AI_REQUESTS", 7); err != nil || r != want {
		t.Fatalf("Get = %+v, %v; want %+v", r, err, want)
	}
	// Stream and sequence both name the record.
	if r, err := s.Get(ctx, "OTHER", 7); err != nil || r != (batch.AttemptRecord{}) {
		t.Fatalf("Get of another stream's request = %+v, %v", r, err)
	}
	if err := s.Delete(ctx, "AI_REQUESTS", 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "AI_REQUESTS", 7); err != nil {
		t.Fatalf("a second Delete: %v", err)
	}
	if r, err := s.Get(ctx, "AI_REQUESTS", 7); err != nil || r != (batch.AttemptRecord{}) {
		t.Fatalf("Get after Delete = %+v, %v", r, err)
	}
	if r, err := s.Get(ctx, "AI_REQUESTS", 8); err != nil || r.Spent != 1 {
		t.Fatalf("the other record = %+v, %v", r, err)
	}

	// A second Ensure opens the same bucket: a restarted worker finds the
	// records.
	again, err := attempts.Ensure(ctx, js, attempts.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := again.Get(ctx, "AI_REQUESTS", 8); err != nil || r.Spent != 1 {
		t.Fatalf("after reopening = %+v, %v", r, err)
	}
}
