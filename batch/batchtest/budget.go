package batchtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aibatch/aibatch/batch"
)

// Budget is an in-memory batch.Budget: per-topic token budgets per UTC day,
// as the fleet's key-value budget keeps them. Topics without a budget are
// always allowed and their usage is not kept. It is safe for concurrent use.
type Budget struct {
	limits map[string]int64

	mu    sync.Mutex
	used  map[string]int64 // by budgetKey
	fails int              // Allow calls left to fail with errBudgetStore
}

var _ batch.Budget = (*Budget)(nil)

// NewBudget returns a Budget with limits, tokens per UTC day by topic.
func NewBudget(limits map[string]int64) *Budget {
	return &Budget{limits: limits, used: map[string]int64{}}
}

// budgetKey is where a topic's usage of the day of now is kept.
func budgetKey(topic string, now time.Time) string {
	return now.UTC().Format(time.DateOnly) + "/" + topic
}

// FailNext makes the next n Allow calls fail as an unreadable store does.
func (b *Budget) FailNext(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails = n
}

// Allow implements batch.Budget.
func (b *Budget) Allow(ctx context.Context, topic string) error {
	limit, ok := b.limits[topic]
	if !ok {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fails > 0 {
		b.fails--
		return errors.New("batchtest: budget store unavailable")
	}
	now := time.Now()
	if used := b.used[budgetKey(topic, now)]; used >= limit {
		return fmt.Errorf("%w: topic %q has used %d of its %d tokens for %s (UTC, TOPIC_BUDGETS)",
			batch.ErrBudgetExceeded, topic, used, limit, now.UTC().Format(time.DateOnly))
	}
	return nil
}

// Spend implements batch.Budget.
func (b *Budget) Spend(ctx context.Context, topic string, tokens int64) error {
	if _, ok := b.limits[topic]; !ok {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used[budgetKey(topic, time.Now())] += tokens
	return nil
}

// Used returns what topic has spent today (UTC).
func (b *Budget) Used(topic string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used[budgetKey(topic, time.Now())]
}
