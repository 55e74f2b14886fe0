package fleet_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestTotalsConcurrentWorkersAddUp(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	ctx := testCtx(t)
	// Two workers, each with its own connection, adding at the same time.
	const workers, adds = 2, 40
	stats := make([]*fleet.Totals, workers)
	for i := range stats {
		_, js := jetstreamtest.Connect(t, ns)
		s, err := fleet.Open(ctx, js, fleet.Config{})
		if err != nil {
			t.Fatalf("open fleet stats %d: %v", i, err)
		}
		stats[i] = s
	}
	var want fleet.Counters
	var wg sync.WaitGroup
	for w, s := range stats {
		for i := range adds {
			d := fleet.Counters{
				Requests: int64(10*w + i + 1), ResultsOK: int64(i), ResultsError: 1, DeadLetters: int64(w),
				APICalls: 1, Batches: 1, Retries: int64(i % 3), InputTokens: int64(100 * (i + 1)), OutputTokens: int64(w + 7),
			}
			want = want.Add(d)
			wg.Go(func() {
				if err := s.Add(ctx, d); err != nil {
					t.Errorf("worker %d add: %v", w, err)
				}
			})
		}
	}
	wg.Wait()
	for i, s := range stats {
		got, err := s.Read(ctx)
		if err != nil {
			t.Fatalf("totals seen by worker %d: %v", i, err)
		}
		if got != want {
			t.Errorf("totals seen by worker %d = %+v, want %+v", i, got, want)
		}
	}
}

func TestTotalsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := jetstreamtest.RunServer(t, dir)
	ctx := testCtx(t)
	cfg := fleet.Config{Bucket: "STATS_RESTART"}
	nc, js := jetstreamtest.Connect(t, ns)
	s, err := fleet.Open(ctx, js, cfg)
	if err != nil {
		t.Fatalf("open fleet stats: %v", err)
	}
	want := fleet.Counters{Requests: 25, ResultsOK: 24, ResultsError: 1, APICalls: 3, Batches: 3, InputTokens: 900, OutputTokens: 450}
	if err := s.Add(ctx, want); err != nil {
		t.Fatalf("add: %v", err)
	}
	nc.Close()

	ns = jetstreamtest.RestartServer(t, ns, dir)
	_, js = jetstreamtest.Connect(t, ns)
	reopened, err := fleet.Open(ctx, js, cfg)
	if err != nil {
		t.Fatalf("reopen fleet stats: %v", err)
	}
	got, err := reopened.Read(ctx)
	if err != nil {
		t.Fatalf("totals after restart: %v", err)
	}
	if got != want {
		t.Errorf("totals after restart = %+v, want %+v", got, want)
	}
	more := fleet.Counters{Requests: 5, APICalls: 1}
	if err := reopened.Add(ctx, more); err != nil {
		t.Fatalf("add after restart: %v", err)
	}
	if got, _ := reopened.Read(ctx); got != want.Add(more) {
		t.Errorf("totals after adding = %+v, want %+v", got, want.Add(more))
	}
}

func TestTotalsReadEmptyBucket(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	ctx := testCtx(t)
	s, err := fleet.Open(ctx, js, fleet.Config{})
	if err != nil {
		t.Fatalf("open fleet stats: %v", err)
	}
	got, err := s.Read(ctx)
	if err != nil || !got.IsZero() {
		t.Errorf("totals of a new bucket = %+v, %v; want zero, nil", got, err)
	}
}

// counterSource is a worker's engine counters as Run reads them.
type counterSource struct {
	mu sync.Mutex
	c  fleet.Counters
}

func (s *counterSource) add(d fleet.Counters) {
	s.mu.Lock()
	s.c = s.c.Add(d)
	s.mu.Unlock()
}

func (s *counterSource) read() fleet.Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func TestTotalsRunSendsDeltasAndFlushesAtStop(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	ctx := testCtx(t)
	s, err := fleet.Open(ctx, js, fleet.Config{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("open fleet stats: %v", err)
	}
	// Another worker's earlier counts stay in the totals.
	earlier := fleet.Counters{Requests: 1000, APICalls: 20}
	if err := s.Add(ctx, earlier); err != nil {
		t.Fatal(err)
	}
	var src counterSource
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx, src.read, func(err error) { t.Errorf("periodic update: %v", err) }) }()

	step := fleet.Counters{Requests: 10, ResultsOK: 10, APICalls: 1, Batches: 1, InputTokens: 50, OutputTokens: 20}
	src.add(step)
	jetstreamtest.Eventually(t, 10*time.Second, "first delta in the totals", func() bool {
		got, err := s.Read(ctx)
		return err == nil && got == earlier.Add(step)
	})
	src.add(step)
	jetstreamtest.Eventually(t, 10*time.Second, "second delta in the totals, added once", func() bool {
		got, err := s.Read(ctx)
		return err == nil && got == earlier.Add(step).Add(step)
	})
	// Counted just before the stop: the final update carries it.
	last := fleet.Counters{Requests: 3, ResultsError: 3, DeadLetters: 3, Retries: 2}
	src.add(last)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := earlier.Add(step).Add(step).Add(last); got != want {
		t.Errorf("totals after stop = %+v, want %+v", got, want)
	}
}

func TestCountersOf(t *testing.T) {
	t.Parallel()
	s := batch.Stats{Requests: 1, ResultsOK: 2, ResultsError: 3, DeadLetters: 4, Retries: 5, APICalls: 6, Batches: 7,
		Usage: provider.Usage{InputTokens: 8, OutputTokens: 9}}
	want := fleet.Counters{Requests: 1, ResultsOK: 2, ResultsError: 3, DeadLetters: 4, Retries: 5, APICalls: 6, Batches: 7, InputTokens: 8, OutputTokens: 9}
	if got := fleet.CountersOf(s); got != want {
		t.Errorf("CountersOf = %+v, want %+v", got, want)
	}
	if got := want.Sub(want); !got.IsZero() {
		t.Errorf("c.Sub(c) = %+v, want zero", got)
	}
}

// An operator starts the totals over with `nats kv rm AI_STATS -f` while
// workers run: they create the bucket again and add what they count from
// then on, instead of failing every update with "no responders".
func TestTotalsRecreateADeletedBucket(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	ctx := testCtx(t)
	// Two workers, each with its own connection: one adds as Run does, the
	// other reads as batch-stats does.
	_, js := jetstreamtest.Connect(t, ns)
	_, otherJS := jetstreamtest.Connect(t, ns)
	worker, err := fleet.Open(ctx, js, fleet.Config{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := fleet.Open(ctx, otherJS, fleet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var src counterSource
	var errs []error
	var errMu sync.Mutex
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(runCtx, src.read, func(err error) { errMu.Lock(); errs = append(errs, err); errMu.Unlock() })
	}()
	before := fleet.Counters{Requests: 100, ResultsOK: 100, APICalls: 2, Batches: 2}
	src.add(before)
	jetstreamtest.Eventually(t, 10*time.Second, "the first counts in the totals", func() bool {
		got, err := reader.Read(ctx)
		return err == nil && got == before
	})

	if err := js.DeleteKeyValue(ctx, fleet.DefaultBucket); err != nil {
		t.Fatalf("delete the bucket: %v", err)
	}
	after := fleet.Counters{Requests: 7, ResultsOK: 6, ResultsError: 1, DeadLetters: 1, APICalls: 1, Batches: 1}
	src.add(after)
	jetstreamtest.Eventually(t, 10*time.Second, "the totals started over with what came after the delete", func() bool {
		got, err := reader.Read(ctx)
		return err == nil && got == after
	})
	// A reader alone recreates it too: an empty bucket, zero totals.
	if err := js.DeleteKeyValue(ctx, fleet.DefaultBucket); err != nil {
		t.Fatalf("delete the bucket again: %v", err)
	}
	// nats-server removes a deleted stream's files after it answers, and
	// a create in that moment can fail ("error creating store"); the next
	// Read tries again.
	jetstreamtest.Eventually(t, 10*time.Second, "a Read after the delete recreates the bucket with zero totals", func() bool {
		got, err := reader.Read(ctx)
		return err == nil && got.IsZero()
	})
	if _, err := js.KeyValue(ctx, fleet.DefaultBucket); err != nil {
		t.Errorf("the bucket was not created again: %v", err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run's final update: %v", err)
	}
	errMu.Lock()
	defer errMu.Unlock()
	if len(errs) > 0 {
		t.Errorf("updates failed after the delete: %v", errs)
	}
}
