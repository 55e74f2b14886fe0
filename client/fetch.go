package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// scanBatch is how many stored results a scan asks the server for at once.
const scanBatch = 512

// Fetch reads the stored results of the given request ids from the result
// stream, among those sent to this client's reply subject: the way a client
// that restarted (with the same WithName) or gave up waiting collects the
// results it missed. It returns the results found, by id; ids without a
// stored result (not answered yet, or older than the stream's
// RESULTS_MAX_AGE) are absent. With several results for one id it returns
// the oldest.
//
// Cost: results are not indexed by id, so Fetch reads every result stored on
// the reply subject, oldest first, through one temporary consumer in batches
// of 512, until it has found every id or reached the end: O(results stored
// for this client), one pass however many ids are asked for. Ask for many
// ids in one call rather than one call per id.
func (c *Client) Fetch(ctx context.Context, ids ...string) (map[string]wire.Result, error) {
	return c.FetchFrom(ctx, c.cfg.replySubj, ids...)
}

// FetchFrom is Fetch over any subject filter of the result stream, such as
// "ai.results.>" to search every stored result (the cost is then that of
// reading the whole stream) or another client's reply subject. On an error
// it returns what it found so far along with the error.
func (c *Client) FetchFrom(ctx context.Context, filter string, ids ...string) (map[string]wire.Result, error) {
	found := make(map[string]wire.Result, len(ids))
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	if len(want) == 0 {
		return found, nil
	}
	cons, err := c.js.CreateConsumer(ctx, c.resultStream, jetstream.ConsumerConfig{
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return found, fmt.Errorf("client: create consumer to read results on %q: %w", filter, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		// Best effort: the server removes it after a minute of inactivity anyway.
		_ = c.js.DeleteConsumer(dctx, c.resultStream, cons.CachedInfo().Name)
	}()
	if cons.CachedInfo().NumPending == 0 {
		return found, nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(scanBatch))
	if err != nil {
		return found, fmt.Errorf("client: read results on %q: %w", filter, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return found, fmt.Errorf("client: read results on %q: %w", filter, err)
		}
		var r wire.Result
		if json.Unmarshal(m.Data(), &r) == nil && want[r.ID] {
			if _, seen := found[r.ID]; !seen {
				found[r.ID] = r
			}
		}
		if len(found) == len(want) {
			return found, nil
		}
		if meta, err := m.Metadata(); err != nil || meta.NumPending == 0 {
			return found, nil
		}
	}
}
