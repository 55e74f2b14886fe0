package batch

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"

	"github.com/aibatch/aibatch/wire"
)

// Requests that ask the same thing share one answer: inside a call, the
// requests of a group with the same key go as one item and each gets the
// answer (collapse, spread); with the response cache on, a later request
// with that key is answered from the cache (cache.go).
//
// A request has a key unless its answer may differ from another's asked
// the same way:
//
//   - provider_options: never. What they ask (tools, n, logprobs, ...) is
//     outside the wire format, and such a request is sent alone anyway.
//   - embeddings: a key. The vector is the answer, kept and shared exactly
//     as a chat answer's output, finish_reason and message are (cacheEntry,
//     copyOutcome).
//   - temperature above 0: only with RESPONSE_CACHE_NONDETERMINISTIC=true.
//     A producer that sets a temperature above 0 asks for a sample, and two
//     samples should be two answers.
//   - temperature unset: a key. The provider's default temperature is 1
//     (OpenAI, Anthropic), so answers vary a little, but the producer did
//     not ask for variety, and the operator opted in to the cache; a
//     producer that wants a fresh sample sets a temperature above 0.

// requestKeyer computes request keys.
type requestKeyer struct {
	// nondeterministic gives requests with a temperature above 0 a key.
	nondeterministic bool
}

// key returns r's key: a SHA-256 over everything that decides its answer
// (kind, model, instructions, the prompt or the messages, the
// answer-changing parameters and max_output_tokens), hex-encoded. It
// returns "" when r may not share an answer.
func (k requestKeyer) key(r wire.Request) string {
	if len(r.ProviderOptions) > 0 {
		return ""
	}
	if t := r.Temperature; t != nil && *t > 0 && !k.nondeterministic {
		return ""
	}
	// Each field goes into the hash with its length first, so no two
	// requests hash the same text; encoding a canonical JSON object first
	// cost about 8% of the worker's CPU per request.
	kind := r.Kind
	if kind == wire.KindChat {
		kind = ""
	}
	// A single user message of text asks what the same Input asks.
	form, prompt := "p", ""
	if p, ok := r.Prompt(); ok {
		prompt = p
	} else {
		msgs, err := json.Marshal(r.Messages)
		if err != nil {
			return "" // Messages hold checked JSON: cannot fail
		}
		form, prompt = "m", string(msgs)
	}
	fields := [...]string{keyLayout, kind, r.Model, r.Instructions, form, prompt, r.ParamsKey(), strconv.Itoa(r.MaxOutputTokens)}
	bufp := keyBuffers.get(0)
	buf := *bufp
	for _, f := range fields {
		buf = binary.AppendUvarint(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	sum := sha256.Sum256(buf)
	*bufp = buf
	keyBuffers.put(bufp)
	return hex.EncodeToString(sum[:])
}

// keyBuffers holds the buffers key lays requests out in before hashing:
// allocating one per request was a tenth of the worker's allocations.
var keyBuffers = bufferPool{max: 64 << 10}

// keyLayout names the way key hashes a request; a change to it makes every
// stored cache entry a miss rather than a wrong answer.
const keyLayout = "aibatch-request-key-2"

// collapse returns items less every duplicate: an item without an outcome
// whose group and key are those of an earlier one (its head). The
// duplicates are kept on their heads, for spread to answer.
func collapse(items []*item) []*item {
	type dupKey struct {
		group groupKey
		key   string
	}
	heads := map[dupKey]*item{}
	out := items[:0:0]
	for _, it := range items {
		if it.outcome != outcomeNone || it.key == "" {
			out = append(out, it)
			continue
		}
		k := dupKey{keyOf(it), it.key}
		if head, ok := heads[k]; ok {
			head.dupes = append(head.dupes, it)
			continue
		}
		heads[k] = it
		out = append(out, it)
	}
	return out
}

// spread gives each duplicate its head's outcome and splits the head's
// usage evenly over the head and its duplicates: together they cost what
// the one item cost.
func spread(heads []*item) {
	for _, h := range heads {
		if len(h.dupes) == 0 {
			continue
		}
		shares := h.usage.Split(1 + len(h.dupes))
		h.usage = shares[0]
		for i, d := range h.dupes {
			d.copyOutcome(h)
			d.usage = shares[i+1]
			d.queued = h.queued + h.d.Published.Sub(d.d.Published)
		}
	}
}

// copyOutcome gives it h's outcome and the whole of h's answer (output,
// finish_reason, embedding, message), the call that answered it and its
// place there; not h's usage.
func (it *item) copyOutcome(h *item) {
	it.outcome, it.err, it.retryAfter = h.outcome, h.err, h.retryAfter
	it.output, it.finishReason, it.embedding, it.message = h.output, h.finishReason, h.embedding, h.message
	it.batch, it.position = h.batch, h.position
}

// served is how many requests the items answer, duplicates included.
func served(items []*item) int {
	n := 0
	for _, it := range items {
		n += 1 + len(it.dupes)
	}
	return n
}

// soloTokens estimates the prompt tokens of req sent alone, as
// soloPromptTokens does for a batch of one.
func soloTokens(req wire.Request) int64 {
	n := int64(EstimateTokens(req.Input))
	for _, m := range req.Messages {
		n += int64(EstimateTokens(string(m.Content)))
	}
	if !req.IsEmbedding() {
		n += int64(soloCallOverheadTokens + EstimateTokens(req.Instructions))
	}
	return n
}

// soloPromptTokensOf is soloPromptTokens for the items of a call, each
// counted once per request it answers.
func soloPromptTokensOf(items []*item) int64 {
	var n int64
	for _, it := range items {
		n += int64(1+len(it.dupes)) * soloTokens(it.req)
	}
	return n
}

// follow gives each duplicate its head's outcome once the head was settled
// (async mode, where a head's result is stored as its job answers it,
// with the whole item's usage) and returns the duplicates. They report no
// usage of their own: their heads' results did.
func follow(heads []*item) []*item {
	var out []*item
	for _, h := range heads {
		for _, d := range h.dupes {
			d.copyOutcome(h)
			d.queued = h.queued + h.d.Published.Sub(d.d.Published)
			out = append(out, d)
		}
	}
	return out
}
