package batch

import (
	"slices"
	"sort"
	"sync"
	"time"
)

// retryGrace is added to a hand-back's delay before the scheduler looks for
// the request again, so the broker has made it deliverable by then.
const retryGrace = 50 * time.Millisecond

// handBacks remembers when requests this worker handed back become
// deliverable again, earliest first. The settler adds to it; the batch lane
// reads it, so it fetches the requests when they return. Times within retryGrace of each other
// are kept once: a batch's retries come back together.
type handBacks struct {
	mu  sync.Mutex
	due []time.Time
}

func (r *handBacks) add(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := sort.Search(len(r.due), func(i int) bool { return !r.due[i].Before(t) })
	if (i < len(r.due) && r.due[i].Sub(t) < retryGrace) || (i > 0 && t.Sub(r.due[i-1]) < retryGrace) {
		return
	}
	r.due = slices.Insert(r.due, i, t)
}

// next returns the earliest time, or zero.
func (r *handBacks) next() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.due) == 0 {
		return time.Time{}
	}
	return r.due[0]
}

// takeDue forgets every time up to now.
func (r *handBacks) takeDue(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := sort.Search(len(r.due), func(i int) bool { return r.due[i].After(now) })
	r.due = r.due[i:]
}
