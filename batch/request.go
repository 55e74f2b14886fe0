package batch

import (
	"strconv"

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
}

func capabilitiesOf(p provider.Provider) capabilities {
	var c capabilities
	if s, ok := p.(provider.Supporter); ok {
		c.supports = s.Supports
	}
	if f, ok := p.(provider.FormatCombiner); ok {
		c.combinesFormat = f.CombinesFormat
	}
	return c
}

// classify fills in it's group key beyond model, instructions and topic,
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
	if !it.alone && r.ResponseFormat != nil && in.can.combinesFormat != nil {
		if err := in.can.combinesFormat(*r.ResponseFormat); err != nil {
			it.alone = true
			in.log.Debug("request sent alone: its response format cannot be combined", zap.String("id", it.id), zap.Error(err))
		}
	}
	return nil
}

// newBatch is the provider batch for items, one group's requests, keyed
// "0", "1", ... in order, and the items by key.
func newBatch(id string, items []*item, maxOutputTokens int) (provider.Batch, map[string]*item) {
	first := items[0].req
	b := provider.Batch{
		ID:              id,
		Model:           first.Model,
		Instructions:    first.Instructions,
		Requests:        make([]provider.Request, len(items)),
		MaxOutputTokens: maxOutputTokens,
		Kind:            first.Kind,
		Params:          provider.Params{Temperature: first.Temperature, TopP: first.TopP, Seed: first.Seed, Stop: first.Stop},
		Format:          first.ResponseFormat,
		Dimensions:      first.Dimensions,
	}
	if first.IsEmbedding() {
		b.MaxOutputTokens = 0
	}
	byKey := make(map[string]*item, len(items))
	for i, it := range items {
		key := strconv.Itoa(i)
		r := provider.Request{Key: key, MaxOutputTokens: it.req.MaxOutputTokens, Options: it.req.ProviderOptions}
		if prompt, ok := it.req.Prompt(); ok {
			r.Input = prompt
		} else {
			r.Messages = it.req.Messages
		}
		b.Requests[i] = r
		byKey[key] = it
	}
	return b, byKey
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
