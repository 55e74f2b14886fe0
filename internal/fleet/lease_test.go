package fleet_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

// runLease runs a lease until the returned stop is called.
func runLease(t *testing.T, l *fleet.Lease) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { l.Run(ctx, func(err error) { t.Logf("lease: %v", err) }) })
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func TestOneWorkerHoldsTheLease(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	ctx := testCtx(t)
	const ttl = 900 * time.Millisecond
	leases := make([]*fleet.Lease, 3)
	stops := make([]func(), 3)
	for i := range leases {
		_, js := jetstreamtest.Connect(t, ns)
		totals, err := fleet.Open(ctx, js, fleet.Config{})
		if err != nil {
			t.Fatal(err)
		}
		leases[i], err = fleet.OpenLease(totals, fleet.LeaseConfig{Worker: string(rune('a' + i)), TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		stops[i] = runLease(t, leases[i])
	}
	holders := func() (n, who int) {
		for i, l := range leases {
			if l.Held() {
				n, who = n+1, i
			}
		}
		return n, who
	}
	jetstreamtest.Eventually(t, 5*time.Second, "one holder", func() bool { n, _ := holders(); return n == 1 })
	// It stays with one worker while that worker renews it.
	for range 5 {
		if n, _ := holders(); n != 1 {
			t.Fatalf("%d holders", n)
		}
		time.Sleep(ttl / 3) // watching that nothing changes, not waiting for an outcome
	}
	// A holder that stops gives it up; another takes it over.
	_, first := holders()
	stops[first]()
	jetstreamtest.Eventually(t, 5*time.Second, "another holder", func() bool {
		n, who := holders()
		return n == 1 && who != first
	})
}

func TestALeaseThatIsNotRenewedIsTakenOver(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	ctx := testCtx(t)
	_, js := jetstreamtest.Connect(t, ns)
	totals, err := fleet.Open(ctx, js, fleet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// A holder that died: its key is there, never renewed.
	kv, err := js.KeyValue(ctx, fleet.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, fleet.DefaultLeaseKey, []byte("dead-worker")); err != nil {
		t.Fatal(err)
	}
	l, err := fleet.OpenLease(totals, fleet.LeaseConfig{Worker: "alive", TTL: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runLease(t, l)
	jetstreamtest.Eventually(t, 5*time.Second, "the lease taken over", l.Held)
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("took over after %v, before the dead holder's lease ran out", took)
	}
}
