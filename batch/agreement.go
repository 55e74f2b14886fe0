package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"unicode"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Embedder turns texts into embedding vectors; shadow sampling compares two
// free-text answers by the cosine similarity of theirs. provider/openai's
// Provider implements it (the Embeddings API).
type Embedder interface {
	// Embeddings returns one vector per input, in the inputs' order, made
	// by model, and the tokens the call used.
	Embeddings(ctx context.Context, model string, inputs []string) ([][]float64, provider.Usage, error)
}

// answerKind says what a request asked its answer to be, which decides how
// two answers to it are compared.
type answerKind int

const (
	// answerFree: the request asked for nothing in particular. Two JSON
	// objects (or arrays) are compared as JSON, two short answers exactly,
	// free text by similarity.
	answerFree answerKind = iota
	// answerStructured: the request asked for structured output
	// (response_format json_object or json_schema); the answers must be
	// JSON-equal.
	answerStructured
)

// answerKindOf is what req asked its answer to be.
func answerKindOf(req wire.Request) answerKind {
	if f := req.ResponseFormat; f != nil && f.Type != wire.FormatText {
		return answerStructured
	}
	return answerFree
}

// Methods of comparison, as ShadowSample.Method names them.
const (
	MethodExact     = "exact"
	MethodJSON      = "json"
	MethodEmbedding = "embedding"
	MethodTokens    = "tokens"
)

// shortAnswerWords is the most words an answer may have to be compared
// exactly: labels, numbers, names, yes or no. Longer answers are free text.
const shortAnswerWords = 8

// agreement scores how alike two answers to the same request are, from 0
// (nothing in common) to 1 (the same).
type agreement struct {
	// embedder and model score free text; without an embedder, the token
	// overlap does.
	embedder Embedder
	model    string
}

// score compares the answer a combined call gave with the one the request
// got alone, and says how (MethodExact, ...). usage is what an embedding
// call used; err is set only when it failed, and then the token overlap
// scored the answers instead.
func (a agreement) score(ctx context.Context, combined, alone string, kind answerKind) (score float64, method string, usage provider.Usage, err error) {
	x, xJSON := jsonValue(combined)
	y, yJSON := jsonValue(alone)
	switch {
	case kind == answerStructured || (xJSON && yJSON):
		return boolScore(xJSON && yJSON && reflect.DeepEqual(x, y)), MethodJSON, usage, nil
	case isShort(combined) && isShort(alone):
		return boolScore(normalize(combined) == normalize(alone)), MethodExact, usage, nil
	case a.embedder != nil:
		vecs, u, err := a.embedder.Embeddings(ctx, a.model, []string{combined, alone})
		if err == nil && len(vecs) != 2 {
			err = fmt.Errorf("%d embeddings for 2 inputs", len(vecs))
		}
		if err == nil {
			return max(cosine(vecs[0], vecs[1]), 0), MethodEmbedding, u, nil
		}
		return tokenF1(combined, alone), MethodTokens, u, fmt.Errorf("embed the answers with %s: %w", a.model, err)
	default:
		return tokenF1(combined, alone), MethodTokens, usage, nil
	}
}

func boolScore(same bool) float64 {
	if same {
		return 1
	}
	return 0
}

// normalize folds case and runs of white space, and trims the ends.
func normalize(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

func isShort(s string) bool { return len(strings.Fields(s)) <= shortAnswerWords }

// jsonValue decodes s when it is a JSON object or array (numbers, strings
// and literals are answers like any other).
func jsonValue(s string) (any, bool) {
	t := bytes.TrimSpace([]byte(s))
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return nil, false
	}
	var v any
	if err := json.Unmarshal(t, &v); err != nil {
		return nil, false
	}
	return v, true
}

// tokenF1 is the F1 score of the two texts' words, lower-cased, as
// multisets: 1 when they use the same words as often, 0 when they share
// none. Punctuation separates words and is not one.
func tokenF1(x, y string) float64 {
	xs, ys := words(x), words(y)
	if len(xs) == 0 || len(ys) == 0 {
		return boolScore(len(xs) == len(ys))
	}
	counts := make(map[string]int, len(xs))
	for _, w := range xs {
		counts[w]++
	}
	common := 0
	for _, w := range ys {
		if counts[w] > 0 {
			counts[w]--
			common++
		}
	}
	if common == 0 {
		return 0
	}
	precision, recall := float64(common)/float64(len(xs)), float64(common)/float64(len(ys))
	return 2 * precision * recall / (precision + recall)
}

func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// cosine is the cosine similarity of two vectors; 0 when they differ in
// length or one is zero.
func cosine(x, y []float64) float64 {
	if len(x) != len(y) || len(x) == 0 {
		return 0
	}
	var dot, nx, ny float64
	for i := range x {
		dot += x[i] * y[i]
		nx += x[i] * x[i]
		ny += y[i] * y[i]
	}
	if nx == 0 || ny == 0 {
		return 0
	}
	return dot / math.Sqrt(nx*ny)
}
