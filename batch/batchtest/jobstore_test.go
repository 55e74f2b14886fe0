package batchtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/batch/batchtest"
)

func TestJobStoreReserveBindLookupDelete(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := batchtest.NewJobStore()
	recs := []batch.JobRecord{
		{BatchID: "b1", Key: "0", Stream: "S", StreamSeq: 7, JobID: "ignored"},
		{BatchID: "b1", Key: "1", Stream: "S", StreamSeq: 3},
	}
	if err := s.Reserve(ctx, recs); err != nil {
		t.Fatal(err)
	}
	r, ok, err := s.Lookup(ctx, "S", 7)
	if err != nil || !ok || r.BatchID != "b1" || r.Key != "0" || r.JobID != "" {
		t.Fatalf("reserved record %+v, %v, %v: want no job before Bind", r, ok, err)
	}
	if _, ok, _ := s.Lookup(ctx, "S", 8); ok {
		t.Fatal("found a record never reserved")
	}
	submitted := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.Bind(ctx, "b1", "job-9", submitted); err != nil {
		t.Fatal(err)
	}
	r, _, _ = s.Lookup(ctx, "S", 3)
	if r.JobID != "job-9" || !r.Submitted.Equal(submitted) {
		t.Fatalf("bound record %+v", r)
	}
	if all := s.Records(); len(all) != 2 || all[0].StreamSeq != 3 || all[1].JobID != "job-9" || s.Len() != 3 {
		t.Fatalf("Records %+v, Len %d", all, s.Len())
	}
	if err := s.Delete(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Lookup(ctx, "S", 7); ok || s.Len() != 0 {
		t.Fatalf("after Delete: found %v, Len %d", ok, s.Len())
	}
}

func TestJobStoreFailures(t *testing.T) {
	t.Parallel()
	s := batchtest.NewJobStore()
	s.FailNext(1)
	rec := []batch.JobRecord{{BatchID: "b", Stream: "S", StreamSeq: 1}}
	if err := s.Reserve(t.Context(), rec); !errors.Is(err, batchtest.ErrInjected) || s.Len() != 0 {
		t.Fatalf("Reserve: %v, Len %d", err, s.Len())
	}
	if err := s.Reserve(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := s.Lookup(ctx, "S", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lookup with an ended context: %v", err)
	}
}
