package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aibatch/aibatch/provider"
)

// Job is what one Batch API job holds in the provider's queue.
type Job struct {
	// Model is the job's model.
	Model string `json:"model"`
	// Tokens are its estimated prompt tokens (EstimateJobTokens),
	// Requests its requests.
	Tokens   int64 `json:"tokens"`
	Requests int64 `json:"requests"`
	// Submitted is when the provider accepted it.
	Submitted time.Time `json:"submitted"`
}

// EstimateJobTokens is the prompt tokens a Batch API job for b holds in the
// provider's queue: every request is a call of its own there, carrying the
// Instructions and its Input, so each counts the bytes of both divided by
// 4, rounded up (see EstimateTokens).
func EstimateJobTokens(b provider.Batch) int64 {
	var n int64
	for _, r := range b.Requests {
		n += int64(len(b.Instructions)+len(r.Input)+3) / 4
	}
	return n
}

// JobWindow is how long a job counts in the queue at most: the Batch APIs'
// completion window of 24 hours, and an hour to spare. A job nobody saw end
// (every worker was gone when it did) stops counting then.
const JobWindow = 25 * time.Hour

// SumJobs adds up jobs by model, as JobQueue.Enqueued returns them,
// leaving out jobs submitted more than JobWindow before now.
func SumJobs(jobs map[string]Job, now time.Time) map[string]Job {
	out := map[string]Job{}
	for _, j := range jobs {
		if !j.Submitted.IsZero() && now.Sub(j.Submitted) > JobWindow {
			continue
		}
		sum := out[j.Model]
		sum.Model, sum.Tokens, sum.Requests = j.Model, sum.Tokens+j.Tokens, sum.Requests+j.Requests
		sum.Submitted = later(sum.Submitted, j.Submitted)
		out[j.Model] = sum
	}
	return out
}

// JobQueue counts the Batch API jobs a fleet has in the provider's queue.
// *fleet.Quota (internal/fleet) shares it through a key-value bucket;
// LocalJobQueue counts this process's jobs alone.
type JobQueue interface {
	// Enqueue records job id, which the provider has just accepted.
	Enqueue(ctx context.Context, id string, j Job) error
	// Dequeue forgets job id: it has ended, or was cancelled.
	Dequeue(ctx context.Context, id string) error
	// Enqueued returns what the jobs in the queue hold, summed by model
	// (see SumJobs). It answers from memory.
	Enqueued() map[string]Job
	// Job returns job id as Enqueue recorded it, and false when the queue
	// does not hold it.
	Job(id string) (Job, bool)
}

// QueueLimits are the provider's limits on its Batch API queue. A zero
// field is learned from the provider's refusals instead.
type QueueLimits struct {
	// Tokens is the most prompt tokens the jobs of one model may hold
	// (OpenAI's enqueued token limit, per model).
	Tokens int64
	// Requests is the most requests the jobs of every model may hold
	// together (Anthropic's limit on batch requests being processed).
	Requests int64
}

// QueueOption changes how NewQueue builds a Queue.
type QueueOption func(*Queue)

// WithJobQueue makes the Queue count the jobs of the fleet in jq; without
// it a Queue counts its own jobs (LocalJobQueue).
func WithJobQueue(jq JobQueue) QueueOption { return func(q *Queue) { q.jobs = jq } }

// WithQueueClock makes the Queue read the time from c and wait with c.
func WithQueueClock(c Clock) QueueOption { return func(q *Queue) { q.clock = c } }

// queueRecheck is how often a job waiting for room looks at the queue
// again.
const queueRecheck = time.Second

var _ provider.CombinedJobProvider = (*Queue)(nil)

// Queue is a provider.AsyncProvider whose SubmitJob keeps the fleet's jobs
// within the provider's batch queue limits: it waits for room before it
// submits a job the provider would refuse, instead of paying for the
// refusal. Complete and Name go straight to the wrapped provider. It is
// safe for concurrent use.
//
// The limits are the configured QueueLimits, or what the provider's
// refusals teach: OpenAI fails a job whose model's enqueued tokens would
// pass the organization's limit (error code token_limit_exceeded, whose
// message names the limit), Anthropic refuses the creation of a Message
// Batch with 429. Either way the job waits, and so do the jobs after it,
// until enough of the fleet's jobs have ended.
type Queue struct {
	next   provider.AsyncProvider
	limits QueueLimits
	jobs   JobQueue
	clock  Clock

	mu      sync.Mutex
	learned QueueLimits
	tokens  map[string]int64 // learned Tokens limits by model
	waiting int
}

// NewQueue wraps p, whose Batch API has the limits l.
func NewQueue(p provider.AsyncProvider, l QueueLimits, opts ...QueueOption) (*Queue, error) {
	if p == nil {
		return nil, errors.New("ratelimit: async provider is nil")
	}
	if l.Tokens < 0 || l.Requests < 0 {
		return nil, fmt.Errorf("ratelimit: queue limits of %d tokens, %d requests must not be negative", l.Tokens, l.Requests)
	}
	q := &Queue{next: p, limits: l, clock: systemClock{}, tokens: map[string]int64{}}
	for _, o := range opts {
		o(q)
	}
	if q.jobs == nil {
		q.jobs = &LocalJobQueue{}
	}
	return q, nil
}

// Name returns the wrapped provider's name.
func (q *Queue) Name() string { return q.next.Name() }

// Complete calls the wrapped provider.
func (q *Queue) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	return q.next.Complete(ctx, b)
}

// SubmitJob waits until the fleet's queue has room for b, submits it and
// records the job. A refusal that says the queue is full (HTTP 429) is
// learned from and waited out (at least its Retry-After), and b is
// submitted again; other errors are returned as the wrapped provider
// returned them. If ctx ends while waiting, SubmitJob returns a transient
// error wrapping ctx.Err().
func (q *Queue) SubmitJob(ctx context.Context, b provider.Batch) (string, error) {
	job := Job{Model: b.Model, Tokens: EstimateJobTokens(b), Requests: int64(len(b.Requests))}
	return q.submit(ctx, job, func(ctx context.Context) (string, error) { return q.next.SubmitJob(ctx, b) })
}

// SubmitCombinedJob is SubmitJob for a job whose lines are combined calls
// (ASYNC_COMBINE): each line holds its batch's prompt (EstimateTokens, the
// instructions once) and is one request in the provider's queue. The
// wrapped provider must be a provider.CombinedJobProvider; otherwise it
// fails at once, permanent.
func (q *Queue) SubmitCombinedJob(ctx context.Context, lines []provider.Batch) (string, error) {
	cp, ok := q.next.(provider.CombinedJobProvider)
	if !ok {
		return "", fmt.Errorf("ratelimit: submit a combined job to %s: %w", q.next.Name(), provider.Permanent(errors.New("the provider has no combined Batch API jobs")))
	}
	job := Job{Requests: int64(len(lines))}
	for _, l := range lines {
		job.Model = l.Model
		job.Tokens += int64(EstimateTokens(l))
	}
	return q.submit(ctx, job, func(ctx context.Context) (string, error) { return cp.SubmitCombinedJob(ctx, lines) })
}

// submit waits for room for job, submits it with send and records it, as
// SubmitJob says.
func (q *Queue) submit(ctx context.Context, job Job, send func(context.Context) (string, error)) (string, error) {
	q.mu.Lock()
	q.waiting++
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.waiting--
		q.mu.Unlock()
	}()
	for {
		for !q.room(job) {
			if err := q.clock.Sleep(ctx, queueRecheck); err != nil {
				return "", fmt.Errorf("ratelimit: wait for room in the %s batch queue: %w", q.next.Name(), provider.Transient(err))
			}
		}
		enqueued := q.jobs.Enqueued()
		id, err := send(ctx)
		var pe *provider.Error
		if err != nil && errors.As(err, &pe) && pe.StatusCode == http.StatusTooManyRequests && ctx.Err() == nil {
			q.learnRequests(enqueued)
			if err := q.clock.Sleep(ctx, max(pe.RetryAfter, queueRecheck)); err != nil {
				return "", fmt.Errorf("ratelimit: wait for room in the %s batch queue: %w", q.next.Name(), provider.Transient(err))
			}
			continue
		}
		if err != nil {
			return "", err
		}
		job.Submitted = q.clock.Now()
		// A job the fleet cannot record still runs: the next submission
		// only sees the queue a little emptier than it is.
		_ = q.jobs.Enqueue(context.WithoutCancel(ctx), id, job)
		return id, nil
	}
}

// PollJob polls the wrapped provider. A job that is done leaves the
// queue; one that failed because the queue was full teaches its limit.
func (q *Queue) PollJob(ctx context.Context, id string) (provider.JobStatus, error) {
	st, err := q.next.PollJob(ctx, id)
	if err != nil || !st.Done {
		return st, err
	}
	if st.Failed {
		q.learnTokens(id, st.Errors)
	}
	_ = q.jobs.Dequeue(context.WithoutCancel(ctx), id)
	return st, nil
}

// CancelJob cancels the job in the wrapped provider; it leaves the queue.
func (q *Queue) CancelJob(ctx context.Context, id string) error {
	err := q.next.CancelJob(ctx, id)
	_ = q.jobs.Dequeue(context.WithoutCancel(ctx), id)
	return err
}

// room reports whether job fits in the queue now. A job always fits an
// empty queue: only the provider can say whether it is too large alone.
func (q *Queue) room(job Job) bool {
	enqueued := q.jobs.Enqueued()
	tokenLimit, requestLimit := q.limitsFor(job.Model)
	model := enqueued[job.Model]
	if tokenLimit > 0 && model.Tokens > 0 && model.Tokens+job.Tokens > tokenLimit {
		return false
	}
	var requests int64
	for _, j := range enqueued {
		requests += j.Requests
	}
	return requestLimit <= 0 || requests == 0 || requests+job.Requests <= requestLimit
}

// limitsFor returns the limits that apply to a job of model: the
// configured ones, else the learned ones; 0 when neither is known.
func (q *Queue) limitsFor(model string) (tokens, requests int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	tokens, requests = q.limits.Tokens, q.limits.Requests
	if tokens == 0 {
		tokens = q.tokens[model]
	}
	if requests == 0 {
		requests = q.learned.Requests
	}
	return tokens, requests
}

// tokenLimitText finds the limit in OpenAI's token_limit_exceeded message:
// "Enqueued token limit reached for gpt-4o-mini in organization org-x.
// Limit: 90,000 enqueued tokens. ...".
var tokenLimitText = regexp.MustCompile(`(?i)limit:\s*([0-9][0-9,]*)\s*enqueued tokens`)

// learnTokens learns the enqueued token limit of a job's model from the
// errors of job id when they say the queue was full
// (token_limit_exceeded): the limit the message names, else what the
// model's other jobs held when this one was refused.
func (q *Queue) learnTokens(id string, errs []string) {
	for _, e := range errs {
		if !strings.Contains(e, "token_limit_exceeded") {
			continue
		}
		enqueued := q.jobs.Enqueued()
		job, ok := q.jobs.Job(id)
		if !ok {
			return // not one of the fleet's: nothing to learn the model from
		}
		limit := enqueued[job.Model].Tokens - job.Tokens
		if m := tokenLimitText.FindStringSubmatch(e); m != nil {
			if n, err := strconv.ParseInt(strings.ReplaceAll(m[1], ",", ""), 10, 64); err == nil {
				limit = n
			}
		}
		if limit > 0 {
			q.mu.Lock()
			q.tokens[job.Model] = limit
			q.mu.Unlock()
		}
		return
	}
}

// learnRequests learns the requests limit from a refusal: the queue was
// full with what it held before.
func (q *Queue) learnRequests(enqueued map[string]Job) {
	var requests int64
	for _, j := range enqueued {
		requests += j.Requests
	}
	if requests == 0 {
		return // the queue holds jobs that are not the fleet's: nothing to learn
	}
	q.mu.Lock()
	q.learned.Requests = requests
	q.mu.Unlock()
}

// QueueStatus is what a Queue knows of the provider's batch queue, for
// batch-stats and metrics.
type QueueStatus struct {
	// Enqueued is what the fleet's jobs hold, by model.
	Enqueued map[string]Job `json:"enqueued"`
	// Limits are the configured limits; Learned what refusals taught, by
	// model for tokens.
	Limits         QueueLimits      `json:"limits"`
	LearnedTokens  map[string]int64 `json:"learned_tokens"`
	LearnedRequest int64            `json:"learned_requests"`
	// Waiting counts the jobs waiting for room now.
	Waiting int `json:"waiting"`
}

// Status returns what the Queue knows now.
func (q *Queue) Status() QueueStatus {
	enqueued := q.jobs.Enqueued()
	q.mu.Lock()
	defer q.mu.Unlock()
	learned := make(map[string]int64, len(q.tokens))
	for m, n := range q.tokens {
		learned[m] = n
	}
	return QueueStatus{Enqueued: enqueued, Limits: q.limits, LearnedTokens: learned,
		LearnedRequest: q.learned.Requests, Waiting: q.waiting}
}

// LocalJobQueue is the JobQueue of a process alone: what this process
// enqueued. The zero value is ready to use; it is safe for concurrent use.
type LocalJobQueue struct {
	mu   sync.Mutex
	jobs map[string]Job
}

var _ JobQueue = (*LocalJobQueue)(nil)

// Enqueue implements JobQueue.
func (l *LocalJobQueue) Enqueue(_ context.Context, id string, j Job) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.jobs == nil {
		l.jobs = map[string]Job{}
	}
	l.jobs[id] = j
	return nil
}

// Dequeue implements JobQueue.
func (l *LocalJobQueue) Dequeue(_ context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.jobs, id)
	return nil
}

// Enqueued implements JobQueue.
func (l *LocalJobQueue) Enqueued() map[string]Job {
	l.mu.Lock()
	defer l.mu.Unlock()
	return SumJobs(l.jobs, time.Now())
}

// Job implements JobQueue.
func (l *LocalJobQueue) Job(id string) (Job, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j, ok := l.jobs[id]
	return j, ok
}
