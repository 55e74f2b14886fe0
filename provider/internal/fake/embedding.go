package fake

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"unicode"
)

// EmbeddingDims is the length of the fakes' vectors when a call asks for
// no dimensions.
const EmbeddingDims = 64

// Embedding is the fakes' embedding of input: dims numbers (EmbeddingDims
// when dims <= 0), each a float32. It is the sum, over input's lower-cased
// words (runs of letters and digits; a text without any counts as one word,
// itself), of a vector drawn for the word from a generator seeded with its
// SHA-256, scaled to length 1. So texts with the same words embed alike
// whatever their case and punctuation, each shared word adds to two texts'
// cosine similarity, and texts with other words get other vectors: a test
// can compute the vector every input must get.
func Embedding(input string, dims int) []float32 {
	if dims <= 0 {
		dims = EmbeddingDims
	}
	words := strings.FieldsFunc(strings.ToLower(input), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	if len(words) == 0 {
		words = []string{input}
	}
	sum := make([]float64, dims)
	for _, w := range words {
		h := sha256.Sum256([]byte(w))
		rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(h[:8]), binary.LittleEndian.Uint64(h[8:16])))
		for i := range sum {
			sum[i] += rng.NormFloat64()
		}
	}
	var norm float64
	for _, x := range sum {
		norm += x * x
	}
	norm = math.Sqrt(norm)
	v := make([]float32, dims)
	for i, x := range sum {
		v[i] = float32(x / norm)
	}
	return v
}

// Float64s is v as float64s, each exactly its float32: what the fakes
// write in JSON, so that a reader of float64s gets these values and a
// reader of float32s gets v exactly.
func Float64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
