package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
)

// Budgets keeps per-topic token budgets per UTC day (TOPIC_BUDGETS) in the
// fleet's bucket, so every worker of the fleet counts against the same
// budget. It implements batch.Budget; it is safe for concurrent use.
//
// Each topic's usage of one UTC day is one key, budget.<day>.<topic>,
// holding a BudgetUsage; workers add to it with compare-and-set, as they do
// to the totals. A topic whose usage has reached its budget is refused
// until the day ends (00:00 UTC). Topics without a budget are neither
// checked nor counted.
//
// Allow reads a topic's usage at most once per MaxStale and otherwise uses
// what this worker last read or wrote, so a fleet may pass a budget by what
// its workers spend within MaxStale, besides what calls in flight spend. A
// spend that cannot be stored is kept and added with the next one.
type Budgets struct {
	kv           jetstream.KeyValue
	bucket       string
	limits       map[string]int64
	maxStale     time.Duration
	maxConflicts int
	now          func() time.Time

	mu     sync.Mutex
	known  map[string]knownUsage  // by key: the usage last read or written
	unsent map[string]BudgetUsage // by key: spends not stored yet
}

var _ batch.Budget = (*Budgets)(nil)

// knownUsage is a topic's usage as this worker last saw it.
type knownUsage struct {
	tokens int64
	at     time.Time
}

// BudgetUsage is the value of one topic's key for one day.
type BudgetUsage struct {
	Topic  string `json:"topic"`
	Day    string `json:"day"` // UTC, 2006-01-02
	Tokens int64  `json:"tokens"`
}

// BudgetConfig configures Budgets.
type BudgetConfig struct {
	// Limits are the tokens each topic may use per UTC day.
	Limits map[string]int64
	// MaxStale is the longest Allow goes on what this worker last saw of a
	// topic's usage before reading it again. Default DefaultBudgetMaxStale.
	MaxStale time.Duration
	// Now is the clock; default time.Now. Tests move it across midnight.
	Now func() time.Time
}

// DefaultBudgetMaxStale is BudgetConfig.MaxStale's default.
const DefaultBudgetMaxStale = time.Second

// budgetTopic is what a budgeted topic may be: subject tokens of letters,
// digits, - and _, which are also valid key tokens.
var budgetTopic = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// ValidBudgetTopic reports whether topic may have a budget: one or more
// tokens of letters, digits, - and _, separated by dots ("billing",
// "billing.eu").
func ValidBudgetTopic(topic string) bool { return budgetTopic.MatchString(topic) }

// BudgetKey is the key of topic's usage on the UTC day of t.
func BudgetKey(topic string, t time.Time) string {
	return "budget." + t.UTC().Format(time.DateOnly) + "." + topic
}

// OpenBudgets returns the budgets of cfg.Limits kept in the fleet's bucket
// (Totals' bucket).
func OpenBudgets(t *Totals, cfg BudgetConfig) (*Budgets, error) {
	for topic, limit := range cfg.Limits {
		if !ValidBudgetTopic(topic) || limit < 1 {
			return nil, fmt.Errorf("fleet: budget %q=%d: want a topic of letters, digits, -, _ and dots, and 1 token or more", topic, limit)
		}
	}
	if cfg.MaxStale <= 0 {
		cfg.MaxStale = DefaultBudgetMaxStale
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Budgets{
		kv: t.kv, bucket: t.cfg.Bucket, limits: cfg.Limits, maxStale: cfg.MaxStale, maxConflicts: t.cfg.MaxConflicts,
		now: cfg.Now, known: map[string]knownUsage{}, unsent: map[string]BudgetUsage{},
	}, nil
}

// Allow implements batch.Budget: it refuses a topic whose usage of the day
// has reached its budget, with an error wrapping batch.ErrBudgetExceeded.
func (b *Budgets) Allow(ctx context.Context, topic string) error {
	limit, ok := b.limits[topic]
	if !ok {
		return nil
	}
	now := b.now()
	key := BudgetKey(topic, now)
	b.mu.Lock()
	k, fresh := b.known[key]
	fresh = fresh && now.Sub(k.at) < b.maxStale
	unsent := b.unsent[key].Tokens
	b.mu.Unlock()
	used := k.tokens
	if !fresh {
		u, _, err := b.read(ctx, key)
		if err != nil {
			return err
		}
		b.remember(key, u.Tokens, now)
		used = u.Tokens
	}
	used += unsent
	if used >= limit {
		return fmt.Errorf("%w: topic %q has used %d of its %d tokens for %s (UTC; TOPIC_BUDGETS); it resets at 00:00 UTC",
			batch.ErrBudgetExceeded, topic, used, limit, now.UTC().Format(time.DateOnly))
	}
	return nil
}

// Spend implements batch.Budget: it adds tokens to topic's usage of the
// day, with any earlier spend that could not be stored. On an error the
// tokens are kept for the next Spend.
func (b *Budgets) Spend(ctx context.Context, topic string, tokens int64) error {
	if _, ok := b.limits[topic]; !ok || tokens <= 0 {
		return nil
	}
	now := b.now()
	key := BudgetKey(topic, now)
	b.mu.Lock()
	u := b.unsent[key]
	u.Topic, u.Day, u.Tokens = topic, now.UTC().Format(time.DateOnly), u.Tokens+tokens
	b.unsent[key] = u
	// Take every unsent spend out, so that concurrent Spends never send
	// the same tokens twice.
	sending := b.unsent
	b.unsent = map[string]BudgetUsage{}
	b.mu.Unlock()

	var errs []error
	for k, u := range sending {
		total, err := b.add(ctx, k, u)
		b.mu.Lock()
		if err != nil {
			back := b.unsent[k]
			back.Topic, back.Day, back.Tokens = u.Topic, u.Day, back.Tokens+u.Tokens
			b.unsent[k] = back
			errs = append(errs, err)
		} else {
			b.known[k] = knownUsage{tokens: total, at: now}
		}
		b.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Used returns topic's usage of the UTC day of t, read from the bucket.
func (b *Budgets) Used(ctx context.Context, topic string, t time.Time) (int64, error) {
	u, _, err := b.read(ctx, BudgetKey(topic, t))
	return u.Tokens, err
}

func (b *Budgets) remember(key string, tokens int64, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.known[key] = knownUsage{tokens: tokens, at: at}
}

// read returns the usage at key and its revision; revision 0 when there is
// none yet.
func (b *Budgets) read(ctx context.Context, key string) (BudgetUsage, uint64, error) {
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return BudgetUsage{}, 0, nil
	}
	if err != nil {
		return BudgetUsage{}, 0, fmt.Errorf("fleet: read budget usage %s/%s: %w", b.bucket, key, err)
	}
	var u BudgetUsage
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		return BudgetUsage{}, 0, fmt.Errorf("fleet: budget usage %s/%s is not JSON usage: %w", b.bucket, key, err)
	}
	return u, e.Revision(), nil
}

// add adds d's tokens to the usage at key with compare-and-set, and returns
// the new usage.
func (b *Budgets) add(ctx context.Context, key string, d BudgetUsage) (int64, error) {
	for range b.maxConflicts {
		cur, rev, err := b.read(ctx, key)
		if err != nil {
			return 0, err
		}
		next := BudgetUsage{Topic: d.Topic, Day: d.Day, Tokens: cur.Tokens + d.Tokens}
		body, err := json.Marshal(next)
		if err != nil {
			return 0, fmt.Errorf("fleet: encode budget usage: %w", err)
		}
		if rev == 0 {
			_, err = b.kv.Create(ctx, key, body)
		} else {
			_, err = b.kv.Update(ctx, key, body, rev)
		}
		switch {
		case err == nil:
			return next.Tokens, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another worker was first: read again
		default:
			return 0, fmt.Errorf("fleet: update budget usage %s/%s: %w", b.bucket, key, err)
		}
	}
	return 0, fmt.Errorf("fleet: update budget usage %s/%s: still conflicting after %d tries", b.bucket, key, b.maxConflicts)
}
