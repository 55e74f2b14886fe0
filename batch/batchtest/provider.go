package batchtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Provider is a provider.Provider that answers every request of a call
// itself, by a function of its input ("echo: " + input unless SetAnswer says
// otherwise), counts its calls and records each call's batch. On command it
// misbehaves: it fails whole calls, leaves requests out of its answer, fails
// single requests, answers a combined call's later requests wrongly, is
// slow, holds calls until released, or panics. It is safe
// for concurrent use; create it with NewProvider.
//
// A call does, in order: record the batch; panic if PanicNext says so; wait
// for SetDelay's delay and for any Hold to be released (returning a
// transient error if ctx ends first); fail as FailNext, FailFor, CutOffAbove
// and Refuse say; answer each request, except those Omit leaves out and
// those FailItem fails, wrongly past WrongAfter's position. The usage
// of an answer counts one token per byte of input and of output.
type Provider struct {
	mu      sync.Mutex
	answer  func(input string) string
	vector  func(input string) []float32
	calls   int
	batches []provider.Batch
	failing []error
	panics  int
	delay   time.Duration
	// hold is closed when the current Hold is released; nil when none.
	hold    chan struct{}
	held    int
	omit    map[string]int
	itemErr map[string]itemFault
	// failUntil and failErr: every call fails with failErr until then.
	failUntil time.Time
	failErr   error
	cutOff    int
	refuse    map[string]bool
	// unsupported maps the kinds Supports refuses to its error.
	unsupported map[string]error
	// wrongAfter: a combined call's answers past this position are
	// WrongAnswer; 0 when off.
	wrongAfter int
}

type itemFault struct {
	err   error
	times int
}

var (
	_ provider.Provider  = (*Provider)(nil)
	_ provider.Supporter = (*Provider)(nil)
)

// ProviderName is the Name of every Provider.
const ProviderName = "batchtest"

// NewProvider returns a Provider that answers every request with
// "echo: " + its input.
func NewProvider() *Provider {
	return &Provider{omit: map[string]int{}, itemErr: map[string]itemFault{}, refuse: map[string]bool{}}
}

// Echo is the Provider's default answer to input.
func Echo(input string) string { return "echo: " + input }

// Vector is the Provider's embedding of input: its length in bytes, the
// sum of its bytes and their mean, so that each input has a vector of its
// own, and one with a fraction in it (a vector that loses precision on its
// way shows).
func Vector(input string) []float32 {
	var sum float32
	for i := range len(input) {
		sum += float32(input[i])
	}
	return []float32{float32(len(input)), sum, sum / float32(max(len(input), 1))}
}

// RefuseKind makes Supports answer err for requests of kind (an
// embedding, say: a provider without an embeddings API), and calls of it
// fail each request with err; nil err serves the kind again.
func (p *Provider) RefuseKind(kind string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.unsupported == nil {
		p.unsupported = map[string]error{}
	}
	if err == nil {
		delete(p.unsupported, kind)
		return
	}
	p.unsupported[kind] = err
}

// Supports returns what RefuseKind set for kind; nil by default.
func (p *Provider) Supports(kind string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unsupported[kind]
}

// Name returns ProviderName.
func (p *Provider) Name() string { return ProviderName }

// SetAnswer makes later calls answer each request with f(input); nil
// restores Echo.
func (p *Provider) SetAnswer(f func(input string) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer = f
}

// SetVector makes later calls answer each embedding request with
// f(input), which may return what a broken provider would (NaN, say); nil
// restores Vector.
func (p *Provider) SetVector(f func(input string) []float32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.vector = f
}

// FailNext makes the next n calls return err instead of answers. Wrap err
// with provider.Permanent, provider.Transient or a *provider.Error to say
// whether a retry can help; a nil err is a transient failure.
func (p *Provider) FailNext(n int, err error) {
	if err == nil {
		err = provider.Transient(fmt.Errorf("batchtest: call failed: %w", ErrInjected))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.failing = append(p.failing, err)
	}
}

// Omit makes the next times answers that include a request with this input
// leave it out, so the engine sees it as missing; times < 0 means always.
func (p *Provider) Omit(input string, times int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.omit[input] = times
}

// FailItem makes the next times answers that include a request with this
// input answer it with err (its Result.Err) while the others succeed; times
// < 0 means always. Wrap err with provider.Permanent to make it final.
func (p *Provider) FailItem(input string, err error, times int) {
	if err == nil {
		err = provider.Transient(fmt.Errorf("batchtest: request failed: %w", ErrInjected))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.itemErr[input] = itemFault{err: err, times: times}
}

// ProviderDown is the default error of FailFor: an HTTP 500 the provider
// answers every caller with.
func ProviderDown() error {
	return &provider.Error{Scope: provider.ScopeProvider, StatusCode: 500, Err: fmt.Errorf("batchtest: provider down: %w", ErrInjected)}
}

// FailFor makes every call fail with err until d has passed (on the
// clock the caller sees, so a synctest bubble's); nil err is ProviderDown.
// An outage, a rejected API key (a *provider.Error with StatusCode 401 and
// ScopeProvider), a storm of 5xx.
func (p *Provider) FailFor(d time.Duration, err error) {
	if err == nil {
		err = ProviderDown()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failUntil, p.failErr = time.Now().Add(d), err
}

// CutOffAbove makes a call of more than n requests end as a real answer
// cut off at the model's output limit does: the first n requests answered,
// and a transient ScopeBatch error wrapping provider.ErrCutOff. 0 turns it
// off.
func (p *Provider) CutOffAbove(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOff = n
}

// Refuse makes the model refuse any call that carries a request with this
// input: a combined call fails with a transient ScopeBatch error wrapping
// provider.ErrRefused, and a one-request call answers that request with a
// permanent ScopeRequest error, as the real providers' plain calls do.
func (p *Provider) Refuse(input string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse[input] = true
}

// WrongAnswer is the answer WrongAfter gives the requests of a combined
// call past its position.
const WrongAnswer = "an answer meant for another request of the call"

// WrongAfter makes every call of several requests answer those after
// position n (positions count from 1, in the call's order) with
// WrongAnswer, as a model that lost track of the items of a long prompt
// does; a call of one request stays right. 0 turns it off.
func (p *Provider) WrongAfter(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wrongAfter = max(n, 0)
}

// PanicNext makes the next n calls panic, as a bug in a provider would.
func (p *Provider) PanicNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.panics += n
}

// SetDelay makes every later call take d before it answers, or end with a
// transient error when its ctx ends first.
func (p *Provider) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Hold makes every call that has not got past its delay yet wait, before it
// answers, until release is called (once or more) or until its ctx ends, in
// which case it returns a transient error. Held counts the calls waiting.
func (p *Provider) Hold() (release func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == nil {
		p.hold = make(chan struct{})
	}
	h := p.hold
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			close(h)
			if p.hold == h {
				p.hold = nil
			}
		})
	}
}

// Held returns how many calls wait for a Hold to be released now.
func (p *Provider) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// Calls returns how many calls were made, failed and panicked ones included.
func (p *Provider) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// Batches returns the batch of every call so far, in the order the calls
// were made.
func (p *Provider) Batches() []provider.Batch {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]provider.Batch, len(p.batches))
	for i, b := range p.batches {
		b.Requests = slices.Clone(b.Requests)
		out[i] = b
	}
	return out
}

// Complete answers b as the Provider's settings say. A request's input is
// its Input, or the text of its last message; an embedding batch is
// answered with each input's Vector instead of an output.
func (p *Provider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	p.mu.Lock()
	p.calls++
	rec := b
	rec.Requests = slices.Clone(b.Requests)
	p.batches = append(p.batches, rec)
	if p.panics > 0 {
		p.panics--
		p.mu.Unlock()
		panic(fmt.Sprintf("batchtest: provider told to panic in call %s", b.ID))
	}
	delay := p.delay
	p.mu.Unlock()

	if err := p.wait(ctx, delay); err != nil {
		return nil, err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failing) > 0 {
		err := p.failing[0]
		p.failing = p.failing[1:]
		return nil, err
	}
	if time.Now().Before(p.failUntil) {
		return nil, p.failErr
	}
	cutOff := p.cutOff > 0 && len(b.Requests) > p.cutOff
	requests := b.Requests
	if cutOff {
		requests = requests[:p.cutOff]
	}
	refused := false
	for _, r := range requests {
		refused = refused || p.refuse[r.Input]
	}
	if refused && len(b.Requests) > 1 {
		return nil, &provider.Error{Scope: provider.ScopeBatch, Err: fmt.Errorf("batchtest: the combined call: %w", provider.ErrRefused)}
	}
	answer, vector := p.answer, p.vector
	if vector == nil {
		vector = Vector
	}
	if answer == nil {
		answer = Echo
	}
	kind := b.Kind
	if kind == "" {
		kind = wire.KindChat
	}
	out := make([]provider.Result, 0, len(requests))
	for i, r := range requests {
		if err := p.unsupported[kind]; err != nil {
			out = append(out, provider.Result{Key: r.Key, Err: &provider.Error{Permanent: true, Scope: provider.ScopeRequest, Err: err}})
			continue
		}
		if len(r.Messages) > 0 {
			r.Input, _ = r.Messages[len(r.Messages)-1].Text()
		}
		if n, ok := p.omit[r.Input]; ok && n != 0 {
			p.omit[r.Input] = n - 1
			continue
		}
		if p.refuse[r.Input] {
			out = append(out, provider.Result{Key: r.Key, Err: &provider.Error{Permanent: true, Scope: provider.ScopeRequest,
				Err: fmt.Errorf("batchtest: %q: %w", r.Input, provider.ErrRefused)}})
			continue
		}
		if f, ok := p.itemErr[r.Input]; ok && f.times != 0 {
			f.times--
			p.itemErr[r.Input] = f
			out = append(out, provider.Result{Key: r.Key, Err: f.err})
			continue
		}
		if kind == wire.KindEmbedding {
			out = append(out, provider.Result{Key: r.Key, Embedding: vector(r.Input), Usage: provider.Usage{InputTokens: int64(len(r.Input))}})
			continue
		}
		output := answer(r.Input)
		if p.wrongAfter > 0 && len(b.Requests) > 1 && i >= p.wrongAfter {
			output = WrongAnswer
		}
		out = append(out, provider.Result{Key: r.Key, Output: output,
			Usage: provider.Usage{InputTokens: int64(len(r.Input)), OutputTokens: int64(len(output))}})
	}
	if cutOff {
		return out, &provider.Error{Scope: provider.ScopeBatch, Err: fmt.Errorf("batchtest: %d answers of %d fit: %w", p.cutOff, len(b.Requests), provider.ErrCutOff)}
	}
	return out, nil
}

// errEnded is the cause of a call whose ctx ended while it waited.
var errEnded = errors.New("batchtest: call ended before the provider answered")

// wait sleeps for delay and while a Hold is on, until ctx ends.
func (p *Provider) wait(ctx context.Context, delay time.Duration) error {
	ended := func() error {
		return provider.Transient(fmt.Errorf("%w: %w", errEnded, ctx.Err()))
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ended()
		case <-t.C:
		}
	}
	for {
		p.mu.Lock()
		h := p.hold
		if h == nil {
			p.mu.Unlock()
			return nil
		}
		p.held++
		p.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-h:
		}
		p.mu.Lock()
		p.held--
		p.mu.Unlock()
		if ctx.Err() != nil {
			return ended()
		}
	}
}
