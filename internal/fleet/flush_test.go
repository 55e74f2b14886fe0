package fleet_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

// fixedFlusher answers every flush with the same report, and counts them.
type fixedFlusher struct {
	report batch.FlushReport
	err    error
	calls  atomic.Int64
}

func (f *fixedFlusher) Flush(context.Context) (batch.FlushReport, error) {
	f.calls.Add(1)
	return f.report, f.err
}

func TestFlushAllGathersEveryWorker(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	ctx := testCtx(t)
	const subject = "test.control.flush"
	workers := []struct {
		id      string
		flusher *fixedFlusher
		want    fleet.FlushReply
	}{
		{"w1", &fixedFlusher{report: batch.FlushReport{Batches: 1, Requests: 5}}, fleet.FlushReply{Worker: "w1", Batches: 1, Requests: 5}},
		{"w2", &fixedFlusher{report: batch.FlushReport{Batches: 2, Requests: 60}}, fleet.FlushReply{Worker: "w2", Batches: 2, Requests: 60}},
		{"w3", &fixedFlusher{err: batch.ErrStopped}, fleet.FlushReply{Worker: "w3", Error: batch.ErrStopped.Error()}},
	}
	for _, w := range workers {
		nc, _ := jetstreamtest.Connect(t, ns) // each worker has its own connection
		r, err := fleet.ServeFlush(nc, subject, w.id, w.flusher, time.Second)
		if err != nil {
			t.Fatalf("serve flush %s: %v", w.id, err)
		}
		t.Cleanup(func() { _ = r.Stop() })
		if err := nc.Flush(); err != nil { // the subscription reached the server
			t.Fatal(err)
		}
	}
	asker, _ := jetstreamtest.Connect(t, ns)
	replies, err := fleet.FlushAll(ctx, asker, subject, 250*time.Millisecond)
	if err != nil {
		t.Fatalf("FlushAll: %v", err)
	}
	slices.SortFunc(replies, func(a, b fleet.FlushReply) int {
		switch {
		case a.Worker < b.Worker:
			return -1
		case a.Worker > b.Worker:
			return 1
		}
		return 0
	})
	if len(replies) != len(workers) {
		t.Fatalf("got %d replies %+v, want %d", len(replies), replies, len(workers))
	}
	for i, w := range workers {
		if replies[i] != w.want {
			t.Errorf("reply %d = %+v, want %+v", i, replies[i], w.want)
		}
		if n := w.flusher.calls.Load(); n != 1 {
			t.Errorf("worker %s flushed %d times, want 1", w.id, n)
		}
	}
}

func TestFlushAllWithoutWorkersReturnsAtOnce(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	nc, _ := jetstreamtest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	replies, err := fleet.FlushAll(ctx, nc, "nobody.listens", 0)
	if err != nil || len(replies) != 0 {
		t.Fatalf("FlushAll = %v, %v; want no replies and no error", replies, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("FlushAll with no worker took %s; want it to return on the no-responders status", took)
	}
}

func TestFlushResponderStopStopsAnswering(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	nc, _ := jetstreamtest.Connect(t, ns)
	f := &fixedFlusher{}
	r, err := fleet.ServeFlush(nc, "", "w1", f, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if replies, err := fleet.FlushAll(ctx, nc, "", 0); err != nil || len(replies) != 1 {
		t.Fatalf("before Stop: FlushAll = %v, %v; want one reply", replies, err)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	replies, err := fleet.FlushAll(ctx, nc, "", 0)
	if err != nil || len(replies) != 0 {
		t.Fatalf("after Stop: FlushAll = %v, %v; want no replies", replies, err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("flushed %d times, want 1", n)
	}
}

func TestServeFlushNeedsWorkerID(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	nc, _ := jetstreamtest.Connect(t, ns)
	if _, err := fleet.ServeFlush(nc, "", "", &fixedFlusher{}, 0); err == nil {
		t.Fatal("ServeFlush without a worker id returned no error")
	}
}
