package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// The response cache (RESPONSE_CACHE_TTL) answers a request that asks
// exactly what an earlier one asked, without a provider call:
//
//   - A request's key (requestKey, dedupe.go) hashes what decides its
//     answer. Requests that may not share an answer have none and are never
//     looked up.
//   - Lookups are made for a whole fetch at once, concurrently and bounded
//     (cacheConcurrency, cacheTimeout): the batch lane's as it takes a fetch
//     into its window, so a hit does not wait for its group; the eager
//     lanes' as their requests are dispatched.
//   - A hit is answered (status ok, "cached": true, usage 0, trigger
//     cache) and settled like any answer: its result is published, then its
//     message acked. A miss, an entry that cannot be read or decoded, or a
//     cache that does not answer in time, goes on to the provider.
//   - An answer is written to the cache only once its ok result is stored
//     and its message acked, and never one that came from the cache.

// ErrCacheMiss is what a ResponseCache's Get wraps when it holds nothing
// under the key.
var ErrCacheMiss = errors.New("batch: not in the response cache")

// ResponseCache holds answers by request key. The jetstream side keeps them
// in a key-value bucket whose TTL is RESPONSE_CACHE_TTL (internal/respcache);
// batchtest has one in memory.
type ResponseCache interface {
	// Get returns the value stored under key, an error wrapping ErrCacheMiss
	// when there is none, or another error when the cache cannot be read.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put stores value under key, replacing what was there.
	Put(ctx context.Context, key string, value []byte) error
}

// WithResponseCache turns the response cache on: requests whose key is in c
// are answered from it, and ok answers are stored in it. Without one, no
// request is answered from a cache (duplicates inside a call are still sent
// once).
func WithResponseCache(c ResponseCache) Option { return func(e *Engine) { e.cacheStore = c } }

const (
	// cacheConcurrency bounds the lookups or writes of one set of requests
	// made at once.
	cacheConcurrency = 16
	// cacheTimeout bounds the lookups of one set of requests, and the
	// writes: a slow cache costs provider calls, never a stalled lane.
	cacheTimeout = 2 * time.Second
	// cacheEntryVersion is the layout of cacheEntry; entries of another
	// layout are misses. 2: the whole answer (finish_reason, embedding,
	// message), not only its output.
	cacheEntryVersion = 2
)

// cacheEntry is what the cache stores for one answer: all of it, so a hit's
// result is the one the provider's answer gave (an embedding's exact
// vector, a chat answer's finish_reason and message).
type cacheEntry struct {
	Version      int             `json:"v"`
	Model        string          `json:"model"`
	Output       string          `json:"output"`
	FinishReason string          `json:"finish_reason,omitempty"`
	Embedding    []float32       `json:"embedding,omitempty"`
	Message      json.RawMessage `json:"message,omitempty"`
	// Usage is what the answer cost when it was paid for: the saving of
	// each hit.
	Usage  provider.Usage `json:"usage"`
	Stored time.Time      `json:"stored"`
}

// errCorruptEntry marks an entry that cannot be used.
var errCorruptEntry = errors.New("corrupt response cache entry")

func decodeEntry(body []byte, model string) (cacheEntry, error) {
	var e cacheEntry
	if err := json.Unmarshal(body, &e); err != nil {
		return e, fmt.Errorf("%w: %v", errCorruptEntry, err)
	}
	switch {
	case e.Version != cacheEntryVersion:
		return e, fmt.Errorf("%w: layout %d, want %d", errCorruptEntry, e.Version, cacheEntryVersion)
	case e.Model != model:
		return e, fmt.Errorf("%w: stored for model %q, asked for %q", errCorruptEntry, e.Model, model)
	}
	return e, nil
}

// CacheEvent is what happened at one use of the response cache.
type CacheEvent string

// Events of the response cache.
const (
	// CacheHit: a request was answered from the cache.
	CacheHit CacheEvent = "hit"
	// CacheMiss: the cache holds nothing for the request.
	CacheMiss CacheEvent = "miss"
	// CacheStored: an ok answer was written to the cache.
	CacheStored CacheEvent = "stored"
	// CacheFailed: the cache could not be read or written, or held an entry
	// that could not be used; the request went to the provider.
	CacheFailed CacheEvent = "failed"
)

// CacheReport describes one use of the response cache.
type CacheReport struct {
	Model string
	Event CacheEvent
	// Bytes is the entry's size, read (a hit) or written (stored).
	Bytes int
	// Saved is, for a hit, the usage the answer cost when it was paid for;
	// SoloPromptTokens estimates the prompt the request would need sent
	// alone (see CallReport), for the one-by-one cost it avoided.
	Saved            provider.Usage
	SoloPromptTokens int64
}

// responseCache is the engine's side of the cache: the lookups, the writes,
// and what they count.
type responseCache struct {
	store    ResponseCache
	ids      *batchIDs
	stats    *stats
	observer Observer
	log      *zap.Logger
}

// answer looks up every item that has a key, no outcome and no lookup yet,
// answers the hits, and returns them. Lookups of one key are made once.
func (c *responseCache) answer(ctx context.Context, items []*item) []*item {
	byKey := map[string][]*item{}
	var keys []string
	for _, it := range items {
		if it.outcome != outcomeNone || it.key == "" || it.looked {
			continue
		}
		it.looked = true
		if _, seen := byKey[it.key]; !seen {
			keys = append(keys, it.key)
		}
		byKey[it.key] = append(byKey[it.key], it)
	}
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, cacheTimeout)
	defer cancel()
	bodies := make([][]byte, len(keys))
	errs := make([]error, len(keys))
	bounded(len(keys), func(i int) { bodies[i], errs[i] = c.store.Get(ctx, keys[i]) })

	var hits []*item
	batchID := c.ids.next()
	now := time.Now()
	for i, key := range keys {
		group := byKey[key]
		model := group[0].req.Model
		err := errs[i]
		var e cacheEntry
		if err == nil {
			e, err = decodeEntry(bodies[i], model)
		}
		switch {
		case errors.Is(err, ErrCacheMiss):
			c.stats.cacheMisses.Add(int64(len(group)))
			for range group {
				c.observer.CacheUsed(CacheReport{Model: model, Event: CacheMiss})
			}
			continue
		case err != nil:
			c.stats.cacheFailures.Add(int64(len(group)))
			c.observer.CacheUsed(CacheReport{Model: model, Event: CacheFailed})
			c.log.Warn("read the response cache; the request goes to the provider", zap.String("id", group[0].id), zap.Error(err))
			continue
		}
		for _, it := range group {
			it.answered(provider.Result{Output: e.Output, FinishReason: e.FinishReason, Embedding: e.Embedding, Message: e.Message})
			it.cached = true
			it.queued = now.Sub(it.d.Published)
			hits = append(hits, it)
			c.stats.cacheHits.Add(1)
			c.stats.cacheBytesRead.Add(int64(len(bodies[i])))
			c.observer.CacheUsed(CacheReport{Model: model, Event: CacheHit, Bytes: len(bodies[i]), Saved: e.Usage,
				SoloPromptTokens: soloTokens(it.req)})
		}
	}
	for _, it := range hits {
		it.batch = wire.BatchInfo{ID: batchID, Size: len(hits), Trigger: wire.TriggerCache}
	}
	return hits
}

// remember writes the answers of items whose ok result was stored, except
// those that came from the cache; one write a key (a head and its
// duplicates hold one answer).
func (c *responseCache) remember(ctx context.Context, items []*item) {
	var put []*item
	var bodies [][]byte
	written := map[string]bool{}
	for _, it := range items {
		if it.cached || it.key == "" || it.outcome != outcomeAnswered || written[it.key] {
			continue
		}
		written[it.key] = true
		body, err := json.Marshal(cacheEntry{Version: cacheEntryVersion, Model: it.req.Model, Output: it.output,
			FinishReason: it.finishReason, Embedding: it.embedding, Message: it.message, Usage: it.usage, Stored: time.Now().UTC()})
		if err != nil {
			continue // strings, numbers and the provider's checked JSON: cannot fail
		}
		put = append(put, it)
		bodies = append(bodies, body)
	}
	if len(put) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheTimeout)
	defer cancel()
	errs := make([]error, len(put))
	bounded(len(put), func(i int) { errs[i] = c.store.Put(ctx, put[i].key, bodies[i]) })
	for i, it := range put {
		if errs[i] != nil {
			c.stats.cacheFailures.Add(1)
			c.observer.CacheUsed(CacheReport{Model: it.req.Model, Event: CacheFailed})
			c.log.Warn("write the response cache", zap.String("id", it.id), zap.Error(errs[i]))
			continue
		}
		c.stats.cacheWrites.Add(1)
		c.stats.cacheBytesWritten.Add(int64(len(bodies[i])))
		c.observer.CacheUsed(CacheReport{Model: it.req.Model, Event: CacheStored, Bytes: len(bodies[i])})
	}
}

// bounded runs fn(0) to fn(n-1), cacheConcurrency at a time, and returns
// when all have.
func bounded(n int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	sem := make(chan struct{}, cacheConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// uncached returns the items not answered from the cache.
func uncached(items []*item) []*item {
	out := items[:0:0]
	for _, it := range items {
		if !it.cached {
			out = append(out, it)
		}
	}
	return out
}
