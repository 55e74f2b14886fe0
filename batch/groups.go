package batch

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"sync"
)

// groupKey names the requests that may share a call: the same model,
// instructions and parameters (wire.Request.ParamsKey), and the same topic
// unless topics may mix. A request sent alone (request.go) has a group of
// its own kind; embeddings are told apart by params, and marked to size
// their calls.
type groupKey struct {
	model, instructions, topic, params string
	alone, embedding                   bool
}

func keyOf(it *item) groupKey {
	return groupKey{model: it.req.Model, instructions: it.req.Instructions, topic: it.groupTopic,
		params: it.params, alone: it.alone, embedding: it.req.IsEmbedding()}
}

// fixed reports whether k's call size is fixed rather than learned: one
// for requests sent alone, the provider's native limit for embeddings.
func (k groupKey) fixed() bool { return k.alone || k.embedding }

// GroupState is what the engine has learned about one group of requests
// that share calls (same model and instructions).
type GroupState struct {
	Model string `json:"model"`
	// Params identifies the group's parameters (kind, sampling, response
	// format, dimensions) by the start of a SHA-256 of them ("" for none).
	Params string `json:"params,omitempty"`
	// Topic is the group's topic; empty when topics may share a call.
	Topic string `json:"topic,omitempty"`
	// Instructions identifies the group's instructions by the start of a
	// SHA-256 of them ("" for none), so stats never show a prompt.
	Instructions string `json:"instructions,omitempty"`
	// Size is the most requests one call of the group may carry now: it
	// halves when an answer is cut off at the output limit and grows back
	// towards MaxBatchSize while calls succeed, and stays within
	// QualityLimit.
	Size int `json:"size"`
	// QualityLimit is the most requests the quality guard lets one call of
	// the group carry (ShadowConfig.QualityFloor); 0 when it does not limit
	// the group.
	QualityLimit int `json:"quality_limit,omitempty"`
	// OutputTokens is the learned average answer length, 0 before any.
	OutputTokens int `json:"output_tokens"`
}

// growAgainAfter is how many successful calls in a row at the largest size
// below the last cut-off make a group try larger calls again.
const growAgainAfter = 20

// groups remembers per group the call size that fits the model's output
// limit (additive increase, multiplicative decrease) and the average answer
// length. The caller writes to it; the planner reads it.
type groups struct {
	maxSize int
	// embedSize is the size of every call of an embedding group.
	embedSize int
	changed   func(GroupState)

	mu sync.Mutex
	m  map[groupKey]*groupMemory
}

type groupMemory struct {
	size int
	// lastCut is the size of the last call cut off at the output limit;
	// 0 when no ceiling is known. bestFit is the largest call below it that
	// was answered whole.
	lastCut, bestFit int
	streak           int
	outAvg           float64
	outSamples       int
	// qualityLimit caps size for answer quality (groups_quality.go); 0
	// when it does not.
	qualityLimit int
}

// effective is the group's call size: its adaptive size within its
// quality limit.
func (m *groupMemory) effective() int {
	if m.qualityLimit > 0 {
		return min(m.size, m.qualityLimit)
	}
	return m.size
}

func newGroups(maxSize, embedSize int, changed func(GroupState)) *groups {
	return &groups{maxSize: maxSize, embedSize: embedSize, changed: changed, m: map[groupKey]*groupMemory{}}
}

func (g *groups) get(k groupKey) *groupMemory {
	m, ok := g.m[k]
	if !ok {
		m = &groupMemory{size: g.maxSize}
		g.m[k] = m
	}
	return m
}

// size is the most requests a call of group k may carry now: one for
// requests sent alone, embedSize for embeddings, else what was learned.
func (g *groups) size(k groupKey) int {
	switch {
	case k.alone:
		return 1
	case k.embedding:
		return g.embedSize
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.m[k]; ok {
		return m.effective()
	}
	return g.maxSize
}

// outputTokens is the learned average answer length of group k.
func (g *groups) outputTokens(k groupKey) (float64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m, ok := g.m[k]; ok && m.outSamples > 0 {
		return m.outAvg, true
	}
	return 0, false
}

// cutOff records a call of n requests whose answer was cut off at the
// output limit after completing fit answers: the group's size drops to fit
// when the answer completed some, else to the largest call that fitted below
// n, else to half of n.
func (g *groups) cutOff(k groupKey, n, fit int) {
	if k.fixed() {
		return
	}
	g.mu.Lock()
	m := g.get(k)
	before := m.effective()
	m.streak = 0
	switch {
	case fit > 0:
		m.lastCut, m.bestFit = fit+1, fit
		m.size = min(m.size, fit)
	case m.bestFit > 0 && m.bestFit < n:
		m.lastCut = n
		m.size = min(m.size, m.bestFit)
	default:
		m.lastCut, m.bestFit = n, 0
		m.size = min(m.size, max(1, n/2))
	}
	st := g.state(k, m)
	g.mu.Unlock()
	if st.Size != before {
		g.changed(st)
	}
}

// answered records a call of n requests answered whole, with the output
// tokens its answers used: the group grows back towards maxSize, never to a
// size that was cut off until growAgainAfter calls in a row succeeded.
func (g *groups) answered(k groupKey, n int, outputTokens int64) {
	if k.fixed() {
		return
	}
	g.mu.Lock()
	m := g.get(k)
	before := m.effective()
	if n > 0 && outputTokens > 0 {
		per := float64(outputTokens) / float64(n)
		m.outSamples++
		// An average over the last 20 calls or so: answers drift.
		w := max(1.0/float64(m.outSamples), 0.05)
		m.outAvg += w * (per - m.outAvg)
	}
	if m.lastCut == 0 || n < m.lastCut {
		m.bestFit = max(m.bestFit, n)
	}
	m.streak++
	switch {
	case m.lastCut == 0:
		m.size = min(g.maxSize, m.size+max(1, m.size/4))
	case m.size >= m.lastCut-1 && m.streak >= growAgainAfter:
		// Long enough at the ceiling: try above it again.
		m.lastCut, m.streak = 0, 0
	default:
		m.size = min(m.lastCut-1, m.size+max(1, (m.lastCut-1-m.size)/2))
	}
	st := g.state(k, m)
	g.mu.Unlock()
	if st.Size != before {
		g.changed(st)
	}
}

func (g *groups) state(k groupKey, m *groupMemory) GroupState {
	return GroupState{Model: k.model, Params: instructionsID(k.params), Instructions: instructionsID(k.instructions), Topic: k.topic,
		Size: m.effective(), QualityLimit: m.qualityLimit, OutputTokens: int(m.outAvg + 0.5)}
}

// states returns every group's state, by model and then instructions.
func (g *groups) states() []GroupState {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GroupState, 0, len(g.m))
	for k, m := range g.m {
		out = append(out, g.state(k, m))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Model != out[j].Model {
			return out[i].Model < out[j].Model
		}
		if out[i].Instructions != out[j].Instructions {
			return out[i].Instructions < out[j].Instructions
		}
		if out[i].Params != out[j].Params {
			return out[i].Params < out[j].Params
		}
		return out[i].Topic < out[j].Topic
	})
	return out
}

// instructionsID is a short, stable id of a prompt (or of parameters) that
// does not show it.
func instructionsID(instructions string) string {
	if instructions == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(instructions))
	return hex.EncodeToString(sum[:6])
}
