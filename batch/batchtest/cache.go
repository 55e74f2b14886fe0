package batchtest

import (
	"context"
	"errors"
	"sync"

	"github.com/aibatch/aibatch/batch"
)

// Cache is an in-memory batch.ResponseCache without expiry. Entries outlive
// an engine, as the real bucket's do. On command it misbehaves: Corrupt
// replaces an entry with bytes that are not an entry, FailGets makes
// lookups fail. It is safe for concurrent use; create it with NewCache.
type Cache struct {
	mu       sync.Mutex
	entries  map[string][]byte
	gets     int
	puts     int
	failGets error
}

var _ batch.ResponseCache = (*Cache)(nil)

// NewCache returns an empty Cache.
func NewCache() *Cache { return &Cache{entries: map[string][]byte{}} }

// Get returns the entry under key, or an error wrapping batch.ErrCacheMiss.
func (c *Cache) Get(_ context.Context, key string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	if c.failGets != nil {
		return nil, c.failGets
	}
	v, ok := c.entries[key]
	if !ok {
		return nil, batch.ErrCacheMiss
	}
	return append([]byte(nil), v...), nil
}

// Put stores value under key.
func (c *Cache) Put(_ context.Context, key string, value []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.puts++
	c.entries[key] = append([]byte(nil), value...)
	return nil
}

// Len returns the number of entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Counts returns the Gets and Puts made so far.
func (c *Cache) Counts() (gets, puts int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets, c.puts
}

// Corrupt overwrites every entry with body (bytes that are not an entry,
// or an entry of another layout) and returns how many it overwrote.
func (c *Cache) Corrupt(body []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		c.entries[k] = append([]byte(nil), body...)
	}
	return len(c.entries)
}

// Clear deletes every entry, as purging the bucket does.
func (c *Cache) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}

// FailGets makes every later Get return err (nil: answer again).
func (c *Cache) FailGets(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failGets = err
}

// ErrCacheDown is an error FailGets can return: the cache cannot be read.
var ErrCacheDown = errors.New("batchtest: cache unreachable")
