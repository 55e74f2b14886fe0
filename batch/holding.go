package batch

import (
	"sync"
	"time"
)

// window holds the requests the batch lane fetched, by group, until their
// group is due: a group is sent when it fills a call, not when a fetch in
// arrival order happens to hold enough of it. Held requests stay unacked and
// are kept alive with InProgress; a worker that dies holding them loses
// nothing, the broker redelivers them after AckWait. The window is bounded
// by count and by bytes.
type window struct {
	maxCount, maxBytes int

	mu     sync.Mutex // guards everything below, for Stats
	groups map[groupKey]*heldGroup
	// bySeq finds a held request by its place in its stream: a redelivery
	// of a request still held (its ack wait ran out, say while the server
	// restarted) replaces the older delivery instead of joining it.
	bySeq map[seqKey]*item
	// order is the groups' keys in order of their first held request.
	order        []groupKey
	count, bytes int
}

// heldGroup is the held requests of one group, in arrival order.
type heldGroup struct {
	key   groupKey
	items []*item
	bytes int
	// oldest is when the oldest held request was published.
	oldest time.Time
	// retries counts held requests delivered before (retried): they have
	// waited already, so their group goes at once. A request a follower
	// passed to the holder joins its group like a new one.
	retries int
}

func newWindow(maxCount, maxBytes int) *window {
	return &window{maxCount: maxCount, maxBytes: maxBytes, groups: map[groupKey]*heldGroup{}, bySeq: map[seqKey]*item{}}
}

// room is how many more requests the window takes, by count; bytes are
// checked as requests arrive.
func (w *window) room() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.bytes >= w.maxBytes {
		return 0
	}
	return max(0, w.maxCount-w.count)
}

// empty reports whether the window holds nothing.
func (w *window) empty() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count == 0
}

// full reports whether the window is at its bound.
func (w *window) full() bool { return w.room() == 0 }

type seqKey struct {
	stream string
	seq    uint64
}

// retried reports whether it was delivered before other than passed on by
// a follower to the holder: after a failure of its own, an outage or a
// delivery that ended without an outcome, it has waited already.
func retried(it *item) bool {
	return int(it.d.NumDelivered)-1 > it.attempts.Passed
}

func seqOf(it *item) seqKey { return seqKey{it.d.Stream, it.d.StreamSeq} }

// add holds it in its group. A request already held is replaced by this
// later delivery.
func (w *window) add(it *item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.bySeq[seqOf(it)]; ok {
		g := w.groups[keyOf(old)]
		for i, held := range g.items {
			if held == old {
				g.items[i] = it
				break
			}
		}
		if retried(it) && !retried(old) {
			g.retries++
		}
		w.bySeq[seqOf(it)] = it
		return
	}
	w.bySeq[seqOf(it)] = it
	k := keyOf(it)
	g, ok := w.groups[k]
	if !ok {
		g = &heldGroup{key: k}
		w.groups[k] = g
		w.order = append(w.order, k)
	}
	n := len(it.msg.Data())
	g.items = append(g.items, it)
	g.bytes += n
	if g.oldest.IsZero() || it.d.Published.Before(g.oldest) {
		g.oldest = it.d.Published
	}
	if retried(it) {
		g.retries++
	}
	w.count++
	w.bytes += n
}

// take removes and returns up to n of group k's requests, oldest first.
func (w *window) take(k groupKey, n int) []*item {
	w.mu.Lock()
	defer w.mu.Unlock()
	g, ok := w.groups[k]
	if !ok {
		return nil
	}
	n = min(n, len(g.items))
	out := g.items[:n:n]
	g.items = g.items[n:]
	for _, it := range out {
		delete(w.bySeq, seqOf(it))
		b := len(it.msg.Data())
		g.bytes -= b
		w.bytes -= b
		w.count--
		if retried(it) {
			g.retries--
		}
	}
	if len(g.items) == 0 {
		delete(w.groups, k)
		for i, ok := range w.order {
			if ok == k {
				w.order = append(w.order[:i], w.order[i+1:]...)
				break
			}
		}
		return out
	}
	g.oldest = time.Time{}
	for _, it := range g.items {
		if g.oldest.IsZero() || it.d.Published.Before(g.oldest) {
			g.oldest = it.d.Published
		}
	}
	return out
}

// snapshot returns a copy of every held group's bookkeeping, in order of
// their first held request (items not copied).
func (w *window) snapshot() []heldGroup {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]heldGroup, 0, len(w.order))
	for _, k := range w.order {
		g := w.groups[k]
		out = append(out, heldGroup{key: g.key, bytes: g.bytes, oldest: g.oldest, retries: g.retries, items: g.items[:len(g.items):len(g.items)]})
	}
	return out
}

// messages returns every held request's message.
func (w *window) messages() []Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Message, 0, w.count)
	for _, g := range w.groups {
		for _, it := range g.items {
			out = append(out, it.msg)
		}
	}
	return out
}

// HoldLease says whether this worker is the fleet's holder: the one whose
// batch lane gathers partial groups. A worker that is not fetches new
// requests only once a backlog of two calls' worth builds up, so at a low
// rate each group fills in one worker's window. Without a lease every worker
// holds.
type HoldLease interface {
	Held() bool
}

// WithHoldLease sets the fleet's holder lease.
func WithHoldLease(l HoldLease) Option { return func(e *Engine) { e.lease = l } }

// HeldGroup is one group of requests a worker holds, waiting for the group
// to fill a call.
type HeldGroup struct {
	Model string `json:"model"`
	// Params identifies the parameters (kind, sampling, response format,
	// dimensions) by a short hash; "" for none.
	Params string `json:"params,omitempty"`
	// Alone is true for requests each sent in a call of their own.
	Alone bool `json:"alone,omitempty"`
	// Instructions identifies the instructions by a short hash.
	Instructions string `json:"instructions,omitempty"`
	// Topic is the group's topic; empty when topics may share a call.
	Topic string `json:"topic,omitempty"`
	// Requests is how many requests are held.
	Requests int `json:"requests"`
	// Bytes is the size of their bodies.
	Bytes int `json:"bytes"`
	// Oldest is when the oldest of them was published.
	Oldest time.Time `json:"oldest"`
}

func (w *window) states() []HeldGroup {
	snap := w.snapshot()
	out := make([]HeldGroup, 0, len(snap))
	for _, g := range snap {
		out = append(out, HeldGroup{Model: g.key.model, Params: instructionsID(g.key.params), Alone: g.key.alone,
			Instructions: instructionsID(g.key.instructions), Topic: g.key.topic,
			Requests: len(g.items), Bytes: g.bytes, Oldest: g.oldest})
	}
	return out
}
