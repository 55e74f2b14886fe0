package main

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// maxListedIDs caps the ids and messages a summary lists by name.
const maxListedIDs = 10

// noTrigger stands for a result whose batch names no trigger.
const noTrigger = "(none)"

// ackState is where a request's publish stands.
type ackState int

const (
	ackNone    ackState = iota // not published yet
	ackPending                 // published, no PubAck yet
	ackOK                      // stored in the stream
	ackFailed                  // rejected, timed out or not sent
)

// entry is one request of the run.
type entry struct {
	req       wire.Request
	msgID     string
	ack       ackState
	published time.Time
	answered  bool
}

// tracker follows every request of a run from publish to result. Its methods
// are safe for concurrent use: PubAck callbacks and the results subscription
// call them from NATS goroutines. After summarize, late events are ignored.
type tracker struct {
	wait bool
	done chan struct{}

	mu      sync.Mutex
	entries []*entry
	byMsgID map[string]*entry
	byID    map[string]*entry

	attempted   int
	stored      int // acknowledged by JetStream
	pubFailed   int
	pendingAcks int
	outstanding int // published, not failed, no result yet (only with wait)

	ok, failed, dups, unknown, invalid int
	latencies                          []time.Duration
	batchTrigger                       map[string]string
	resultsByTrigger                   map[string]int
	usage                              wire.Usage
	cached                             int
	dupIDs, errSamples                 []string

	first, lastAck, lastResult time.Time
	sendingDone, closed        bool
	doneClosed                 bool
}

// newTracker tracks reqs, whose n-th (from 1) has Nats-Msg-Id
// requestID(runID, n). With wait, the run is done when every published
// request has a result; without, when every publish is acked.
func newTracker(reqs []wire.Request, runID string, wait bool) *tracker {
	t := &tracker{
		wait:             wait,
		done:             make(chan struct{}),
		entries:          make([]*entry, len(reqs)),
		byMsgID:          make(map[string]*entry, len(reqs)),
		byID:             make(map[string]*entry, len(reqs)),
		batchTrigger:     make(map[string]string),
		resultsByTrigger: make(map[string]int),
	}
	for i, r := range reqs {
		e := &entry{req: r, msgID: requestID(runID, i+1)}
		t.entries[i] = e
		t.byMsgID[e.msgID] = e
		t.byID[r.ID] = e
	}
	return t
}

// Done is closed when the run has nothing left to wait for.
func (t *tracker) Done() <-chan struct{} { return t.done }

// published records that request i is about to be published at at.
func (t *tracker) published(i int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[i]
	if t.closed || e.ack != ackNone {
		return
	}
	e.ack, e.published = ackPending, at
	if t.attempted == 0 {
		t.first = at
	}
	t.attempted++
	t.pendingAcks++
	if t.wait {
		t.outstanding++
	}
}

// acked records the PubAck of the request published with msgID.
func (t *tracker) acked(msgID string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.byMsgID[msgID]
	if t.closed || e == nil || e.ack != ackPending {
		return
	}
	e.ack = ackOK
	t.pendingAcks--
	t.stored++
	t.lastAck = at
	t.checkDone()
}

// publishFailed records that the request published with msgID was not stored.
func (t *tracker) publishFailed(msgID string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.byMsgID[msgID]
	if t.closed || e == nil || e.ack != ackPending {
		return
	}
	e.ack = ackFailed
	t.pendingAcks--
	t.pubFailed++
	if t.wait && !e.answered {
		t.outstanding--
	}
	t.sample(fmt.Sprintf("%s: publish: %v", e.req.ID, err))
	t.checkDone()
}

// result records a result that arrived at at.
func (t *tracker) result(r wire.Result, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	e := t.byID[r.ID]
	switch {
	case e == nil || e.ack == ackNone:
		t.unknown++
		return
	case e.answered:
		t.dups++
		if len(t.dupIDs) < maxListedIDs {
			t.dupIDs = append(t.dupIDs, r.ID)
		}
		return
	}
	e.answered = true
	if t.wait && e.ack != ackFailed {
		t.outstanding--
	}
	if r.Status == wire.StatusOK {
		t.ok++
	} else {
		t.failed++
		t.sample(fmt.Sprintf("%s: %s: %s", r.ID, r.Status, r.Error))
	}
	t.latencies = append(t.latencies, at.Sub(e.published))
	if r.Batch.ID != "" {
		t.batchTrigger[r.Batch.ID] = string(r.Batch.Trigger)
	}
	trigger := string(r.Batch.Trigger)
	if trigger == "" {
		trigger = noTrigger
	}
	t.resultsByTrigger[trigger]++
	t.usage.InputTokens += r.Usage.InputTokens
	t.usage.CachedInputTokens += r.Usage.CachedInputTokens
	t.usage.OutputTokens += r.Usage.OutputTokens
	if r.Cached {
		t.cached++
	}
	t.lastResult = at
	t.checkDone()
}

// invalidResult records a message on the reply subject that is not a Result.
func (t *tracker) invalidResult() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.invalid++
	}
}

// sendingFinished records that no more requests will be published.
func (t *tracker) sendingFinished() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sendingDone = true
	t.checkDone()
}

// checkDone closes done once nothing is left to wait for. t.mu must be held.
func (t *tracker) checkDone() {
	if t.doneClosed || !t.sendingDone || t.pendingAcks > 0 || t.outstanding > 0 {
		return
	}
	t.doneClosed = true
	close(t.done)
}

// sample keeps the first few failure messages. t.mu must be held.
func (t *tracker) sample(msg string) {
	if len(t.errSamples) < maxListedIDs {
		t.errSamples = append(t.errSamples, msg)
	}
}

// progress is a snapshot for the periodic progress line.
type progress struct {
	total, published, acked, failed, results int
}

func (t *tracker) progress() progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return progress{
		total:     len(t.entries),
		published: t.attempted,
		acked:     t.stored,
		failed:    t.pubFailed,
		results:   t.ok + t.failed,
	}
}

// summarize stops tracking and returns the counts of the run. A publish still
// waiting for its PubAck counts as sent if its result arrived and as failed
// otherwise.
func (t *tracker) summarize() Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true

	s := Summary{
		Waited:        t.wait,
		Requests:      len(t.entries),
		Sent:          t.stored,
		PublishFailed: t.pubFailed,
		NotSent:       len(t.entries) - t.attempted,
		Duplicates:    t.dups,
		DuplicateIDs:  t.dupIDs,
		Unknown:       t.unknown,
		Invalid:       t.invalid,
		ErrorSamples:  t.errSamples,
	}
	for _, e := range t.entries {
		switch {
		case e.ack == ackPending && e.answered:
			s.Sent++
		case e.ack == ackPending:
			s.PublishFailed++
			if len(s.ErrorSamples) < maxListedIDs {
				s.ErrorSamples = append(s.ErrorSamples, e.req.ID+": publish: no PubAck")
			}
		case e.ack == ackOK && t.wait && !e.answered:
			s.Missing++
			if len(s.MissingIDs) < maxListedIDs {
				s.MissingIDs = append(s.MissingIDs, e.req.ID)
			}
		}
	}

	end := t.lastAck
	completed := s.Sent
	if t.wait {
		s.OK, s.Error = t.ok, t.failed
		s.Usage, s.Cached = t.usage, t.cached
		s.Batches = len(t.batchTrigger)
		s.ResultsByTrigger = t.resultsByTrigger
		s.BatchesByTrigger = make(map[string]int)
		for _, trig := range t.batchTrigger {
			if trig == "" {
				trig = noTrigger
			}
			s.BatchesByTrigger[trig]++
		}
		s.Latency = latencyOf(t.latencies)
		end = t.lastResult
		completed = t.ok + t.failed
	}
	if !t.first.IsZero() && end.After(t.first) {
		elapsed := end.Sub(t.first)
		s.ElapsedMS = ms(elapsed)
		s.Throughput = math.Round(float64(completed)/elapsed.Seconds()*10) / 10
	}
	return s
}
