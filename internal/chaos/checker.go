package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// storedMsg is one message read back from a stream.
type storedMsg struct {
	seq     uint64
	subject string
	header  nats.Header
	data    []byte
}

// readStream reads every message stream holds, oldest first, through an
// ordered consumer. It stops at the last sequence the stream had when it
// started, or once it has read as many messages as the stream held then, and
// fails if ctx ends first.
func readStream(ctx context.Context, js jetstream.JetStream, name string) ([]storedMsg, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("chaos: open stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("chaos: read stream %s: %w", name, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	last := info.State.LastSeq
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("chaos: read stream %s: %w", name, err)
	}
	out := make([]storedMsg, 0, info.State.Msgs)
	for ctx.Err() == nil {
		var done bool
		out, done, err = readBatch(ctx, c, last, info.State.Msgs, out)
		if err != nil {
			return nil, fmt.Errorf("chaos: read stream %s: %w", name, err)
		}
		if done {
			return out, nil
		}
	}
	return nil, fmt.Errorf("chaos: read stream %s: stopped at %d of %d messages: %w", name, len(out), info.State.Msgs, ctx.Err())
}

// readBatch appends the messages of one fetch of up to 1000 to out, and
// reports whether it reached sequence last or want messages in all. The
// fetch waits at most 2s, under a context of its own that ends when
// readBatch returns: nats.go's fetch goroutine waits for the rest of the
// batch until that context ends, so returning at the last message must end
// it rather than leave the goroutine waiting out the 2s (or, on a closed
// connection, 3s).
func readBatch(ctx context.Context, c jetstream.Consumer, last, want uint64, out []storedMsg) ([]storedMsg, bool, error) {
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	batch, err := c.Fetch(1000, jetstream.FetchContext(fctx))
	if err != nil {
		return out, false, fmt.Errorf("fetch: %w", err)
	}
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			return out, false, fmt.Errorf("metadata: %w", err)
		}
		out = append(out, storedMsg{seq: md.Sequence.Stream, subject: m.Subject(), header: m.Headers(), data: m.Data()})
		if md.Sequence.Stream >= last || uint64(len(out)) >= want {
			return out, true, nil
		}
	}
	// A fetch that ends with its own 2s is the end of a batch, not an error.
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && fctx.Err() == nil {
		return out, false, fmt.Errorf("fetch: %w", err)
	}
	return out, false, nil
}

// maxSamples is how many examples of each kind of breach findings keep.
const maxSamples = 5

// findings is what the checker found, by the broker's record.
type findings struct {
	accepted    int // requests that got a PubAck
	unconfirmed int // requests that never did
	poison      int // poison requests accepted
	urgent      int // urgent requests accepted

	resultsOK    int // requests with an ok result
	cached       int // of them, answered from the response cache
	resultsError int // requests with an error result
	deadLetters  int // dead letters stored

	duplicates   int // results or dead letters beyond the first for one request
	lost         int // accepted requests without a result, errors without a dead letter
	phantoms     int // results or dead letters for ids never sent
	wrongOutputs int // ok results whose output or metadata is not their request's
	innocent     int // requests not made poison with an error result or a dead letter
	violations   int // every other breach of the invariant
	leftover     int // requests still in AI_REQUESTS

	// maxQueuedBatch and maxQueuedUrgent are the longest queued_ms of a
	// first result, by the lane its request was published to.
	maxQueuedBatch, maxQueuedUrgent time.Duration

	samples map[string][]string // evidence by kind of breach
}

func (f *findings) note(kind, format string, args ...any) {
	if f.samples == nil {
		f.samples = map[string][]string{}
	}
	if len(f.samples[kind]) < maxSamples {
		f.samples[kind] = append(f.samples[kind], fmt.Sprintf(format, args...))
	}
}

// evidence returns the samples, one line each, sorted by kind.
func (f *findings) evidence() []string {
	kinds := make([]string, 0, len(f.samples))
	for k := range f.samples {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var out []string
	for _, k := range kinds {
		for _, s := range f.samples[k] {
			out = append(out, k+": "+s)
		}
	}
	return out
}

// parsedResult is a stored result with where it was found.
type parsedResult struct {
	wire.Result
	seq       uint64
	streamSeq string
}

// check matches what the broker stored to what the producers sent:
//
//   - every accepted request has exactly one result; an error result has
//     exactly one dead letter, an ok result none (duplicates, lost);
//   - no result or dead letter names an id that was never sent (phantoms);
//   - an ok result's output is openaitest.Answer of its own input, and its
//     metadata is its own request's (wrongOutputs);
//   - a poison request ends as an error (violations); a request the
//     harness did not make poison has no error result and no dead letter
//     (innocent): every poison kind fails by the request's own fault, and
//     every other fault the harness injects (provider outages, a rejected
//     key, 5xx, 429, timeouts, malformed or short answers, killed workers,
//     restarted servers) must end in an ok result, whatever attempts and
//     time it takes;
//   - a dead letter holds its request's body unchanged (violations);
//   - the request stream is empty (leftover; a violation unless the request
//     is counted as lost already).
func check(sent []*sentRequest, results, dead, leftover []storedMsg) findings {
	var f findings
	byID := make(map[string]*sentRequest, len(sent))
	for _, r := range sent {
		byID[r.id] = r
		if r.accepted {
			f.accepted++
			if r.poison != "" {
				f.poison++
			}
			if r.urgent {
				f.urgent++
			}
		} else {
			f.unconfirmed++
		}
	}

	resultsByID := make(map[string][]parsedResult)
	for _, m := range results {
		var r wire.Result
		if err := json.Unmarshal(m.data, &r); err != nil {
			f.violations++
			f.note("unreadable result", "AI_RESULTS seq %d is not a result: %v: %.200q", m.seq, err, m.data)
			continue
		}
		if _, ok := byID[r.ID]; !ok {
			f.phantoms++
			f.note("phantom result", "AI_RESULTS seq %d has id %q, never sent: %.300s", m.seq, r.ID, m.data)
			continue
		}
		resultsByID[r.ID] = append(resultsByID[r.ID], parsedResult{Result: r, seq: m.seq, streamSeq: m.header.Get(wire.HeaderStreamSeq)})
	}
	deadByID := make(map[string][]storedMsg)
	for _, m := range dead {
		f.deadLetters++
		id := m.header.Get(wire.HeaderRequestID)
		if _, ok := byID[id]; !ok {
			f.phantoms++
			f.note("phantom dead letter", "AI_DEAD seq %d has %s %q, never sent (error %q)", m.seq, wire.HeaderRequestID, id, m.header.Get(wire.HeaderError))
			continue
		}
		deadByID[id] = append(deadByID[id], m)
	}

	for _, s := range sent {
		f.checkOne(s, resultsByID[s.id], deadByID[s.id])
	}

	for _, m := range leftover {
		f.leftover++
		id := m.header.Get(wire.HeaderMsgID)
		if len(resultsByID[id]) > 0 || byID[id] == nil {
			// A request without a result is counted as lost already.
			f.violations++
		}
		f.note("left in AI_REQUESTS", "seq %d on %s (Nats-Msg-Id %q) still in the request stream after the drain", m.seq, m.subject, id)
	}
	return f
}

// checkOne checks one request's stored outcome.
func (f *findings) checkOne(s *sentRequest, rs []parsedResult, ds []storedMsg) {
	f.checkInnocent(s, rs, ds)
	if len(rs) == 0 {
		if s.accepted {
			f.lost++
			f.note("lost", "request %s (%s) was accepted (PubAck after %d publishes) but has no result", s.id, kindOf(s), s.attempts)
		}
		if len(ds) > 0 {
			f.violations++
			f.note("dead letter without result", "request %s has %d dead letters (AI_DEAD seq %d) and no result", s.id, len(ds), ds[0].seq)
		}
		return
	}
	if len(rs) > 1 {
		f.duplicates += len(rs) - 1
		seqs := make([]string, len(rs))
		for i, r := range rs {
			seqs[i] = fmt.Sprintf("AI_RESULTS seq %d (%s, request seq %s, attempt %d, batch %s)", r.seq, r.Status, r.streamSeq, r.Attempts, r.Batch.ID)
		}
		f.note("duplicate result", "request %s has %d results: %s", s.id, len(rs), strings.Join(seqs, "; "))
	}
	if len(ds) > 1 {
		f.duplicates += len(ds) - 1
		f.note("duplicate dead letter", "request %s has %d dead letters (AI_DEAD seq %d and %d)", s.id, len(ds), ds[0].seq, ds[1].seq)
	}
	r := rs[0]
	queued := time.Duration(r.QueuedMS) * time.Millisecond
	if s.urgent {
		f.maxQueuedUrgent = max(f.maxQueuedUrgent, queued)
	} else {
		f.maxQueuedBatch = max(f.maxQueuedBatch, queued)
	}
	switch r.Status {
	case wire.StatusOK:
		f.resultsOK++
		if r.Cached {
			f.cached++
		}
		if len(ds) > 0 {
			f.violations++
			f.note("ok with dead letter", "request %s ended ok (AI_RESULTS seq %d) and has a dead letter (AI_DEAD seq %d: %q)", s.id, r.seq, ds[0].seq, ds[0].header.Get(wire.HeaderError))
		}
		if s.poison != "" {
			f.violations++
			f.note("poison ended ok", "request %s (%s) ended ok (AI_RESULTS seq %d): %q", s.id, s.poison, r.seq, r.Output)
			return
		}
		if want := openaitest.Answer(s.input); r.Output != want {
			f.wrongOutputs++
			f.note("wrong output", "request %s (AI_RESULTS seq %d): output %q, want %q", s.id, r.seq, r.Output, want)
		} else if got := compact(r.Metadata); got != s.meta {
			f.wrongOutputs++
			f.note("wrong metadata", "request %s (AI_RESULTS seq %d): metadata %s, want %s", s.id, r.seq, got, s.meta)
		}
	case wire.StatusError:
		f.resultsError++
		if len(ds) == 0 {
			f.lost++
			f.note("dead letter lost", "request %s (%s) has an error result (AI_RESULTS seq %d: %s) and no dead letter", s.id, kindOf(s), r.seq, r.Error)
			return
		}
		d := ds[0]
		if !bytes.Equal(d.data, s.body) {
			f.violations++
			f.note("dead letter body changed", "request %s: AI_DEAD seq %d holds %d bytes, the request had %d", s.id, d.seq, len(d.data), len(s.body))
		}
		if got := d.header.Get(wire.HeaderStreamSeq); got != r.streamSeq {
			f.violations++
			f.note("dead letter for another delivery", "request %s: result says request seq %s, dead letter (AI_DEAD seq %d) says %s", s.id, r.streamSeq, d.seq, got)
		}
	default:
		f.violations++
		f.note("unknown status", "request %s (AI_RESULTS seq %d): status %q", s.id, r.seq, r.Status)
	}
}

// checkInnocent counts a request the harness did not make poison that has
// an error result or a dead letter: an innocent dead letter, once per
// request whatever else is wrong with it.
func (f *findings) checkInnocent(s *sentRequest, rs []parsedResult, ds []storedMsg) {
	if s.poison != "" {
		return
	}
	for _, r := range rs {
		if r.Status == wire.StatusError {
			f.innocent++
			f.note("innocent dead letter"+innocentReason(r.Error), "request %s (not poison) ended as an error (AI_RESULTS seq %d, attempt %d, %d dead letters): %s",
				s.id, r.seq, r.Attempts, len(ds), r.Error)
			return
		}
	}
	if len(ds) > 0 {
		f.innocent++
		f.note("innocent dead letter", "request %s (not poison) has a dead letter (AI_DEAD seq %d: %q) and no error result", s.id, ds[0].seq, ds[0].header.Get(wire.HeaderError))
	}
}

// innocentReason names what ended an innocent request, from its error.
func innocentReason(err string) string {
	switch {
	case strings.HasPrefix(err, "expired"):
		return " (expired: REQUEST_TTL)"
	case strings.Contains(err, "gave up after"):
		return " (attempts used up)"
	}
	return ""
}

func kindOf(s *sentRequest) string {
	if s.poison != "" {
		return "poison " + string(s.poison)
	}
	return "normal"
}

// compact returns raw JSON without insignificant space, or raw itself if it
// is not JSON.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
