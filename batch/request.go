package batch

import (
	"strconv"
	"sync"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// What of a request decides the call it goes in (wire format 1.1):
//
//   - Its group key (groups.go): model, instructions, topic (when topics
//     are isolated) and wire.Request.ParamsKey, the kind, the sampling
//     parameters, the response format and the dimensions. Only requests of
//     one group share a call.
//   - Whether it goes alone: a request that cannot share a call (provider
//     options, content other than text, tool turns: not
//     wire.Request.Combinable; a response format the provider cannot
//     combine; stop sequences with structured output, which cannot be cut
//     per answer) is still queued, rate-limited, retried and counted, but
//     its group holds it alone and every call of it is a batch of one.
//   - Embeddings (wire.KindEmbedding) are batched natively: a group of
//     them fills a call at Config.EmbeddingMaxInputs, and every answer is
//     exact.
//
// A request whose Prompt is ok travels as its Input, exactly as a 1.0
// request; other conversations travel as Messages.

// capabilities is what the provider says it serves and combines; the
// zero value serves and combines everything.
type capabilities struct {
	supports       func(kind string) error
	combinesFormat func(wire.ResponseFormat) error
	// verdicts remembers combinesFormat's answers by parameters key: a
	// schema is checked once, not for every request that carries it.
	verdicts *verdicts
}

func capabilitiesOf(p provider.Provider) capabilities {
	c := capabilities{verdicts: &verdicts{m: map[string]error{}}}
	if s, ok := p.(provider.Supporter); ok {
		c.supports = s.Supports
	}
	if f, ok := p.(provider.FormatCombiner); ok {
		c.combinesFormat = f.CombinesFormat
	}
	return c
}

// maxVerdicts bounds the formats remembered: producers may send any
// number of schemas, the memory stays small.
const maxVerdicts = 1024

// verdicts is a bounded memo of CombinesFormat's answers.
type verdicts struct {
	mu sync.Mutex
	m  map[string]error
}

// combines answers whether requests of format f (whose parameters key is
// key) may share a call, asking the provider once per key.
func (c capabilities) combines(key string, f wire.ResponseFormat) error {
	if c.combinesFormat == nil {
		return nil
	}
	c.verdicts.mu.Lock()
	err, known := c.verdicts.m[key]
	c.verdicts.mu.Unlock()
	if known {
		return err
	}
	err = c.combinesFormat(f)
	c.verdicts.mu.Lock()
	if len(c.verdicts.m) < maxVerdicts {
		c.verdicts.m[key] = err
	}
	c.verdicts.mu.Unlock()
	return err
}

// classify fills in its group key beyond model, instructions and topic,
// and refuses a request of a kind the provider does not serve.
func (in intake) classify(it *item) error {
	r := it.req
	kind := r.Kind
	if kind == "" {
		kind = wire.KindChat
	}
	if in.can.supports != nil {
		if err := in.can.supports(kind); err != nil {
			return err
		}
	}
	it.params = r.ParamsKey()
	if r.IsEmbedding() {
		return nil
	}
	structured := r.ResponseFormat != nil && r.ResponseFormat.Type != wire.FormatText
	it.alone = !r.Combinable() || (structured && len(r.Stop) > 0)
	if !it.alone && r.ResponseFormat != nil {
		if err := in.can.combines(it.params, *r.ResponseFormat); err != nil {
			it.alone = true
			in.log.Debug("request sent alone: its response format cannot be combined", zap.String("id", it.id), zap.Error(err))
		}
	}
	return nil
}

// newBatch is the provider batch for items, one group's requests, keyed
// "0", "1", ... in order, and the items by key.
func newBatch(id string, items []*item, maxOutputTokens int) (provider.Batch, map[string]*item) {
	b := withParams(provider.Batch{ID: id, Model: items[0].req.Model, Instructions: items[0].req.Instructions,
		Requests: make([]provider.Request, len(items)), MaxOutputTokens: maxOutputTokens}, items[0].req)
	byKey := make(map[string]*item, len(items))
	for i, it := range items {
		key := strconv.Itoa(i)
		b.Requests[i] = providerRequest(key, it.req)
		byKey[key] = it
	}
	return b, byKey
}

// withParams returns b with the fields every request of req's group
// shares: the kind, the sampling parameters, the response format and the
// dimensions (an embedding call has no output budget).
func withParams(b provider.Batch, req wire.Request) provider.Batch {
	b.Kind, b.Format, b.Dimensions = req.Kind, req.ResponseFormat, req.Dimensions
	b.Params = provider.Params{Temperature: req.Temperature, TopP: req.TopP, Seed: req.Seed, Stop: req.Stop}
	if req.IsEmbedding() {
		b.MaxOutputTokens = 0
	}
	return b
}

// providerRequest is what a call carries of req, under key: its prompt as
// Input when it has one (wire.Request.Prompt), else its Messages; its cap
// and its provider options. A shadow call carries the same.
func providerRequest(key string, req wire.Request) provider.Request {
	r := provider.Request{Key: key, MaxOutputTokens: req.MaxOutputTokens, Options: req.ProviderOptions}
	if prompt, ok := req.Prompt(); ok {
		r.Input = prompt
	} else {
		r.Messages = req.Messages
	}
	return r
}

// promptBytes is the size of the prompt the request adds to a call: its
// input, or the text of its messages (other content counted by its JSON).
func (it *item) promptBytes() int {
	if len(it.req.Messages) == 0 {
		return len(it.req.Input)
	}
	n := 0
	for _, m := range it.req.Messages {
		if text, ok := m.Text(); ok {
			n += len(text)
		} else {
			n += len(m.Content)
		}
		n += len(m.ToolCalls)
	}
	return n
}

// jobCarries reports whether a Batch API job can carry it: embeddings
// (batched natively, and cheap) and requests with provider options (a job
// line has no place for them) are called at once in async mode.
func jobCarries(it *item) bool {
	return !it.req.IsEmbedding() && len(it.req.ProviderOptions) == 0
}
