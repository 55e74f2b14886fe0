package fleet_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/fleet"
	ajs "github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

// clock is a settable time for Budgets.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

func TestBudgetsAreSharedByTheFleet(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	ctx := testCtx(t)
	day := newClock(time.Date(2026, 3, 14, 23, 0, 0, 0, time.UTC))
	limits := map[string]int64{"billing": 1000, "ops.eu": 50}
	// Two workers, each with its own connection. MaxStale is 10 minutes and
	// the clock stands still: Allow reads the bucket once, then goes on
	// what this worker saw, so the refusal below comes from the bucket.
	workers := make([]*fleet.Budgets, 2)
	for i := range workers {
		_, js := jetstreamtest.Connect(t, ns)
		totals, err := fleet.Open(ctx, js, fleet.Config{Bucket: "BUDGETS"})
		if err != nil {
			t.Fatal(err)
		}
		workers[i], err = fleet.OpenBudgets(totals, fleet.BudgetConfig{Limits: limits, MaxStale: 10 * time.Minute, Now: day.now})
		if err != nil {
			t.Fatal(err)
		}
	}
	a, b := workers[0], workers[1]

	// Both spend at once: every token counts, once.
	var wg sync.WaitGroup
	for i := range 40 {
		w := workers[i%2]
		wg.Go(func() {
			if err := w.Spend(ctx, "billing", 20); err != nil {
				t.Errorf("spend: %v", err)
			}
		})
	}
	wg.Wait()
	if used, err := b.Used(ctx, "billing", day.now()); err != nil || used != 800 {
		t.Fatalf("billing used %d (%v), want 800", used, err)
	}
	if err := b.Allow(ctx, "billing"); err != nil {
		t.Fatalf("billing at 800 of 1000: %v", err)
	}
	// Worker a spends the rest; worker b has not read the bucket since, but
	// a fresh worker b' (no cache) is refused at once, and b after
	// MaxStale.
	if err := a.Spend(ctx, "billing", 200); err != nil {
		t.Fatal(err)
	}
	err := a.Allow(ctx, "billing")
	if !errors.Is(err, batch.ErrBudgetExceeded) || !strings.Contains(err.Error(), `budget exceeded: topic "billing" has used 1000 of its 1000 tokens for 2026-03-14`) {
		t.Fatalf("a: Allow at 1000 of 1000 = %v", err)
	}
	_, js := jetstreamtest.Connect(t, ns)
	totals, err := fleet.Open(ctx, js, fleet.Config{Bucket: "BUDGETS"})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := fleet.OpenBudgets(totals, fleet.BudgetConfig{Limits: limits, Now: day.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Allow(ctx, "billing"); !errors.Is(err, batch.ErrBudgetExceeded) {
		t.Fatalf("another worker: Allow = %v, want budget exceeded", err)
	}
	day.add(30 * time.Minute)
	if err := b.Allow(ctx, "billing"); !errors.Is(err, batch.ErrBudgetExceeded) {
		t.Fatalf("b after MaxStale: Allow = %v, want budget exceeded", err)
	}
	// Other topics are not touched; topics without a budget are not kept.
	if err := a.Allow(ctx, "ops.eu"); err != nil {
		t.Errorf("ops.eu: %v", err)
	}
	if err := a.Spend(ctx, "unbudgeted", 1_000_000); err != nil {
		t.Fatal(err)
	}
	if err := a.Allow(ctx, "unbudgeted"); err != nil {
		t.Errorf("unbudgeted: %v", err)
	}
	if used, _ := a.Used(ctx, "unbudgeted", day.now()); used != 0 {
		t.Errorf("a topic without a budget was counted: %d", used)
	}

	// At 00:00 UTC the day's budget starts again; the last day's stays.
	day.add(31 * time.Minute)
	if err := b.Allow(ctx, "billing"); err != nil {
		t.Fatalf("the next day: Allow = %v", err)
	}
	if err := b.Spend(ctx, "billing", 5); err != nil {
		t.Fatal(err)
	}
	if used, _ := a.Used(ctx, "billing", day.now()); used != 5 {
		t.Errorf("billing used %d on 2026-03-15, want 5", used)
	}
	if used, _ := a.Used(ctx, "billing", day.now().Add(-24*time.Hour)); used != 1000 {
		t.Errorf("billing used %d on 2026-03-14, want 1000", used)
	}
}

func TestBudgetsKeepSpendsTheBucketRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := jetstreamtest.RunServer(t, dir)
	ctx := testCtx(t)
	nc, js := jetstreamtest.Connect(t, ns)
	totals, err := fleet.Open(ctx, js, fleet.Config{Bucket: "BUDGETS"})
	if err != nil {
		t.Fatal(err)
	}
	budgets, err := fleet.OpenBudgets(totals, fleet.BudgetConfig{Limits: map[string]int64{"t": 100}, MaxStale: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := budgets.Spend(ctx, "t", 30); err != nil {
		t.Fatal(err)
	}
	// The server goes away: the spend fails, and is kept.
	port := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	down, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := budgets.Spend(down, "t", 40); err == nil {
		t.Fatal("Spend with the server down succeeded")
	}
	// Allow counts it even so, with what the worker saw: 70 of 100.
	if err := budgets.Allow(ctx, "t"); err != nil {
		t.Fatalf("Allow at 70 of 100: %v", err)
	}
	if err := budgets.Spend(down, "t", 30); err == nil {
		t.Fatal("Spend with the server down succeeded")
	}
	if err := budgets.Allow(ctx, "t"); !errors.Is(err, batch.ErrBudgetExceeded) || !strings.Contains(err.Error(), "used 100 of its 100") {
		t.Fatalf("Allow at 100 of 100 (70 unsent) = %v", err)
	}

	// Back up: the kept spends go with the next one.
	restarted, err := ajs.RunServer(ajs.ServerConfig{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restarted.Shutdown(); restarted.WaitForShutdown() })
	jetstreamtest.Eventually(t, 10*time.Second, "reconnected", nc.IsConnected)
	if err := budgets.Spend(ctx, "t", 5); err != nil {
		t.Fatal(err)
	}
	if used, err := budgets.Used(ctx, "t", time.Now()); err != nil || used != 105 {
		t.Fatalf("used %d (%v), want 30 + 40 + 30 kept + 5", used, err)
	}
}

func TestOpenBudgetsRefusesBadLimits(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	ctx := testCtx(t)
	_, js := jetstreamtest.Connect(t, ns)
	totals, err := fleet.Open(ctx, js, fleet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, limits := range []map[string]int64{
		{"": 10}, {"a..b": 10}, {"a.*": 10}, {"a b": 10}, {"t": 0}, {"t": -5},
	} {
		if _, err := fleet.OpenBudgets(totals, fleet.BudgetConfig{Limits: limits}); err == nil {
			t.Errorf("OpenBudgets(%v) = nil error", limits)
		}
	}
	for _, topic := range []string{"billing", "billing.eu", "team_a-1"} {
		if !fleet.ValidBudgetTopic(topic) {
			t.Errorf("ValidBudgetTopic(%q) = false", topic)
		}
	}
}
