package jobstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/jobstore"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

func TestStoreReserveBindLookupDelete(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := jobstore.Open(ctx, js, jobstore.Config{Bucket: "JOBS_TEST"})
	if err != nil {
		t.Fatal(err)
	}
	recs := []batch.JobRecord{
		{BatchID: "w1-7", Key: "0", Stream: "AI_REQUESTS", StreamSeq: 41},
		{BatchID: "w1-7", Key: "1", Stream: "AI_REQUESTS", StreamSeq: 42},
	}
	if err := store.Reserve(ctx, recs); err != nil {
		t.Fatal(err)
	}
	r, ok, err := store.Lookup(ctx, "AI_REQUESTS", 42)
	if err != nil || !ok || r.BatchID != "w1-7" || r.Key != "1" || r.JobID != "" {
		t.Fatalf("reserved, not bound: %+v %v %v", r, ok, err)
	}
	submitted := time.Date(2026, 11, 28, 1, 2, 3, 0, time.UTC)
	if err := store.Bind(ctx, "w1-7", "batch_abc", submitted); err != nil {
		t.Fatal(err)
	}
	r, ok, err = store.Lookup(ctx, "AI_REQUESTS", 41)
	if err != nil || !ok || r.JobID != "batch_abc" || r.Key != "0" || !r.Submitted.Equal(submitted) {
		t.Fatalf("bound: %+v %v %v", r, ok, err)
	}
	if _, ok, err := store.Lookup(ctx, "AI_REQUESTS", 43); ok || err != nil {
		t.Fatalf("a request never reserved was found: %v %v", ok, err)
	}
	if _, ok, _ := store.Lookup(ctx, "OTHER", 41); ok {
		t.Fatal("the same sequence in another stream was found")
	}
	if err := store.Delete(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, ok, err := store.Lookup(ctx, r.Stream, r.StreamSeq); ok || err != nil {
			t.Fatalf("request %d still recorded after Delete: %v", r.StreamSeq, err)
		}
	}
}
