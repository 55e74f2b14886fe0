package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/provider/ratelimit"
)

// Quota shares one provider account's rate limits between the live
// workers of a fleet: each worker takes 1/N of PROVIDER_RPM and
// PROVIDER_TPM, N counted from heartbeats in the fleet's bucket, and the
// share follows N as workers come and go. It implements ratelimit.Fleet
// (the share, the fleet's pause, the newest reading of the provider's
// headers) and ratelimit.JobQueue (the Batch API jobs the fleet has
// enqueued). Create it with OpenQuota and keep Run running; it is safe for
// concurrent use.
//
// Keys, under quota.<scope>. in the bucket (a scope names one account's
// limits: by default one stream and provider):
//
//   - workers.<worker>: a worker's heartbeat, written every Heartbeat with
//     the newest reading of the provider's rate-limit headers it has. A
//     worker is live while its heartbeats keep coming: one not heard from
//     for two Heartbeats is counted out (a crashed worker gives its share
//     back within two heartbeat periods), and one that stops deletes its
//     key at once.
//   - pause: when the fleet's calls are held back until, written with
//     compare-and-set by the worker whose answer carried a Retry-After; a
//     later pause replaces an earlier one, never the reverse.
//   - jobs.<id>: a Batch API job in the provider's queue: its model and
//     estimated tokens and requests, written when it is submitted and
//     deleted when it ends.
//
// Every worker watches quota.<scope>.> (a JetStream key-value watch), so it
// hears of a worker joining, a pause or a job within a round trip: a new
// worker is counted by the others before it makes its first call, and it
// counts the others before its own (Ready), so the fleet never starts with
// an unshared burst.
type Quota struct {
	kv     jetstream.KeyValue
	bucket string
	prefix string // quota.<scope>.
	worker string
	self   string // this worker's heartbeat key
	period time.Duration
	ttl    time.Duration

	ready     chan struct{}
	readyOnce sync.Once
	wake      chan struct{} // a pause to write

	mu         sync.Mutex
	heartbeats map[string]heartbeat // by key, this worker's included once seen
	own        ratelimit.Reading    // this worker's newest reading
	paused     time.Time            // the fleet's pause, as last seen or asked
	pauseAsked time.Time            // a pause this worker still has to write
	jobs       map[string]ratelimit.Job
}

var (
	_ ratelimit.Fleet    = (*Quota)(nil)
	_ ratelimit.JobQueue = (*Quota)(nil)
)

// heartbeat is what this worker knows of another's last heartbeat.
type heartbeat struct {
	heard    time.Time // when it arrived, by this worker's clock
	revision uint64
	reading  ratelimit.Reading
}

// heartbeatValue is the value of a workers.<worker> key.
type heartbeatValue struct {
	Worker  string            `json:"worker"`
	Reading ratelimit.Reading `json:"reading,omitzero"`
}

// pauseValue is the value of the pause key.
type pauseValue struct {
	Until  time.Time `json:"until"`
	Worker string    `json:"worker"`
}

// QuotaConfig configures a Quota.
type QuotaConfig struct {
	// Scope names the account whose limits are shared: every worker that
	// calls it with the same limits must use the same scope. Letters,
	// digits, - and _ (ValidQuotaScope); required.
	Scope string
	// Worker identifies this worker; required.
	Worker string
	// Heartbeat is how often the worker says it is live. Default
	// DefaultQuotaHeartbeat.
	Heartbeat time.Duration
}

// DefaultQuotaHeartbeat is QuotaConfig.Heartbeat's default.
const DefaultQuotaHeartbeat = time.Second

// quotaScope is what a scope may be: it is one key token.
var quotaScope = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ValidQuotaScope reports whether scope may name a Quota's scope: one or
// more letters, digits, - and _.
func ValidQuotaScope(scope string) bool { return quotaScope.MatchString(scope) }

// keyToken turns s into one key token: characters a key token may not
// hold become _.
func keyToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// OpenQuota returns the Quota of cfg.Scope kept in the fleet's bucket
// (Totals' bucket), with this worker's first heartbeat written. It counts
// the other workers once Run has read the bucket: wait for Ready before
// the first call.
func OpenQuota(ctx context.Context, t *Totals, cfg QuotaConfig) (*Quota, error) {
	if !ValidQuotaScope(cfg.Scope) || cfg.Worker == "" {
		return nil, fmt.Errorf("fleet: quota scope %q: want letters, digits, - and _, and a worker id", cfg.Scope)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultQuotaHeartbeat
	}
	prefix := "quota." + cfg.Scope + "."
	q := &Quota{
		kv: t.bucket(), bucket: t.cfg.Bucket, prefix: prefix, worker: cfg.Worker,
		self: prefix + "workers." + keyToken(cfg.Worker), period: cfg.Heartbeat, ttl: 2 * cfg.Heartbeat,
		ready: make(chan struct{}), wake: make(chan struct{}, 1),
		heartbeats: map[string]heartbeat{}, jobs: map[string]ratelimit.Job{},
	}
	if err := q.beat(ctx); err != nil {
		return nil, err
	}
	return q, nil
}

// Ready is closed once Run has read every worker's heartbeat, the pause
// and the jobs from the bucket: from then on Workers counts the fleet.
func (q *Quota) Ready() <-chan struct{} { return q.ready }

// Workers implements ratelimit.Fleet: the live workers, this one included.
func (q *Quota) Workers() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.heartbeats)
	if _, seen := q.heartbeats[q.self]; !seen {
		n++
	}
	return n
}

// PausedUntil implements ratelimit.Fleet.
func (q *Quota) PausedUntil() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.paused
}

// Pause implements ratelimit.Fleet: this worker pauses at once, and Run
// writes the pause to the bucket for the others.
func (q *Quota) Pause(until time.Time) {
	q.mu.Lock()
	if !until.After(q.paused) {
		q.mu.Unlock()
		return
	}
	q.paused, q.pauseAsked = until, until
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Report implements ratelimit.Fleet: r goes out with the next heartbeat.
func (q *Quota) Report(r ratelimit.Reading) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r.At.After(q.own.At) {
		q.own = r
	}
}

// Reading implements ratelimit.Fleet: the newest of this worker's reading
// and those the live workers' heartbeats carry.
func (q *Quota) Reading() ratelimit.Reading {
	q.mu.Lock()
	defer q.mu.Unlock()
	newest := q.own
	for _, hb := range q.heartbeats {
		if hb.reading.At.After(newest.At) {
			newest = hb.reading
		}
	}
	return newest
}

// Run keeps the heartbeat going and follows the bucket until ctx ends,
// then deletes this worker's heartbeat, so the others take its share at
// once. Errors of the bucket are passed to onError (may be nil) and
// retried.
func (q *Quota) Run(ctx context.Context, onError func(error)) {
	defer q.leave()
	report := func(err error) {
		if err != nil && ctx.Err() == nil && onError != nil {
			onError(err)
		}
	}
	for ctx.Err() == nil {
		w, err := q.kv.Watch(ctx, q.prefix+">")
		if err != nil {
			report(fmt.Errorf("fleet: watch the quota %s/%s>: %w", q.bucket, q.prefix, err))
		} else {
			q.follow(ctx, w, report)
			_ = w.Stop()
		}
		select {
		case <-ctx.Done():
		case <-time.After(q.period):
		}
	}
}

// follow applies the watch's updates, beats, counts out the workers not
// heard from and writes pauses, until ctx ends or the watch stops.
func (q *Quota) follow(ctx context.Context, w jetstream.KeyWatcher, report func(error)) {
	beat := time.NewTicker(q.period)
	defer beat.Stop()
	expire := time.NewTicker(q.period / 4)
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return // the watch ended (the bucket was deleted): watch again
			}
			if e == nil {
				q.readyOnce.Do(func() { close(q.ready) })
				continue
			}
			q.apply(e)
		case <-beat.C:
			report(q.beat(ctx))
		case <-expire.C:
			report(q.expire(ctx))
		case <-q.wake:
			report(q.writePause(ctx))
		}
	}
}

// apply takes one entry of the watch in.
func (q *Quota) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	gone := e.Operation() != jetstream.KeyValuePut
	rest := strings.TrimPrefix(key, q.prefix)
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case strings.HasPrefix(rest, "workers."):
		if gone {
			delete(q.heartbeats, key)
			return
		}
		var v heartbeatValue
		_ = json.Unmarshal(e.Value(), &v) // a value that cannot be read still says the worker lives
		q.heartbeats[key] = heartbeat{heard: time.Now(), revision: e.Revision(), reading: v.Reading}
	case rest == "pause":
		var v pauseValue
		if !gone && json.Unmarshal(e.Value(), &v) == nil && v.Until.After(q.paused) {
			q.paused = v.Until
		}
	case strings.HasPrefix(rest, "jobs."):
		id := strings.TrimPrefix(rest, "jobs.")
		if gone {
			delete(q.jobs, id)
			return
		}
		var j ratelimit.Job
		if json.Unmarshal(e.Value(), &j) == nil {
			q.jobs[id] = j
		}
	}
}

// beat writes this worker's heartbeat.
func (q *Quota) beat(ctx context.Context) error {
	q.mu.Lock()
	v := heartbeatValue{Worker: q.worker, Reading: q.own}
	q.mu.Unlock()
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("fleet: encode heartbeat: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, q.period)
	defer cancel()
	if _, err := q.kv.Put(ctx, q.self, body); err != nil {
		return fmt.Errorf("fleet: write heartbeat %s/%s: %w", q.bucket, q.self, err)
	}
	return nil
}

// expire counts out the workers not heard from for two heartbeat periods,
// and deletes their keys (unless they were written again meanwhile), so
// workers that start later do not count them either.
func (q *Quota) expire(ctx context.Context) error {
	now := time.Now()
	var dead []string
	var revs []uint64
	q.mu.Lock()
	for key, hb := range q.heartbeats {
		if key != q.self && now.Sub(hb.heard) >= q.ttl {
			delete(q.heartbeats, key)
			dead, revs = append(dead, key), append(revs, hb.revision)
		}
	}
	q.mu.Unlock()
	var errs []error
	for i, key := range dead {
		err := q.kv.Delete(ctx, key, jetstream.LastRevision(revs[i]))
		if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !isWrongLastSeq(err) {
			errs = append(errs, fmt.Errorf("fleet: delete the heartbeat of a worker gone %s/%s: %w", q.bucket, key, err))
		}
	}
	return errors.Join(errs...)
}

// isWrongLastSeq reports whether err is a compare-and-set delete that lost
// to a newer write.
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// writePause writes the pause this worker asked for, with compare-and-set,
// unless the bucket already holds a later one.
func (q *Quota) writePause(ctx context.Context) error {
	q.mu.Lock()
	until := q.pauseAsked
	q.pauseAsked = time.Time{}
	q.mu.Unlock()
	if until.IsZero() {
		return nil
	}
	key := q.prefix + "pause"
	body, err := json.Marshal(pauseValue{Until: until.UTC(), Worker: q.worker})
	if err != nil {
		return fmt.Errorf("fleet: encode pause: %w", err)
	}
	for range DefaultMaxConflicts {
		e, err := q.kv.Get(ctx, key)
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("fleet: read the pause %s/%s: %w", q.bucket, key, err)
		default:
			var cur pauseValue
			if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &cur) == nil && !until.After(cur.Until) {
				return nil // a later pause is there
			}
			rev = e.Revision()
		}
		if rev == 0 {
			_, err = q.kv.Create(ctx, key, body)
		} else {
			_, err = q.kv.Update(ctx, key, body, rev)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another worker wrote first: read again
		default:
			return fmt.Errorf("fleet: write the pause %s/%s: %w", q.bucket, key, err)
		}
	}
	return fmt.Errorf("fleet: write the pause %s/%s: still conflicting after %d tries", q.bucket, key, DefaultMaxConflicts)
}

// leave deletes this worker's heartbeat.
func (q *Quota) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = q.kv.Delete(ctx, q.self)
}

// Enqueue implements ratelimit.JobQueue: it records job, which the
// provider has just accepted, for every worker.
func (q *Quota) Enqueue(ctx context.Context, id string, j ratelimit.Job) error {
	key := keyToken(id)
	q.mu.Lock()
	q.jobs[key] = j
	q.mu.Unlock()
	body, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("fleet: encode job: %w", err)
	}
	if _, err := q.kv.Put(ctx, q.prefix+"jobs."+key, body); err != nil {
		return fmt.Errorf("fleet: record job %s/%sjobs.%s: %w", q.bucket, q.prefix, key, err)
	}
	return nil
}

// Dequeue implements ratelimit.JobQueue: job has left the provider's
// queue.
func (q *Quota) Dequeue(ctx context.Context, id string) error {
	key := keyToken(id)
	q.mu.Lock()
	delete(q.jobs, key)
	q.mu.Unlock()
	// Deleted whether or not this worker has seen it: it may have been
	// submitted by another worker, or before a restart.
	if err := q.kv.Delete(ctx, q.prefix+"jobs."+key); err != nil {
		return fmt.Errorf("fleet: forget job %s/%sjobs.%s: %w", q.bucket, q.prefix, key, err)
	}
	return nil
}

// Enqueued implements ratelimit.JobQueue: what the fleet's jobs in the
// provider's queue hold, by model.
func (q *Quota) Enqueued() map[string]ratelimit.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	return ratelimit.SumJobs(q.jobs, time.Now())
}

// Job implements ratelimit.JobQueue.
func (q *Quota) Job(id string) (ratelimit.Job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, ok := q.jobs[keyToken(id)]
	return j, ok
}
