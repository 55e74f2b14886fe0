package fake

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// Embedding is the fakes' embedding of input: a vector of dims numbers,
// drawn from a generator seeded with the SHA-256 of input and scaled to
// length 1 (as real embedding models answer), so that a test can compute
// the vector every input must get. dims <= 0 gives nil.
func Embedding(input string, dims int) []float32 {
	if dims <= 0 {
		return nil
	}
	sum := sha256.Sum256([]byte(input))
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[:8]), binary.LittleEndian.Uint64(sum[8:16])))
	v := make([]float32, dims)
	var norm float64
	for i := range v {
		x := rng.NormFloat64()
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}

// DefaultDimensions is the length of an embedding model's vectors when a
// call asks for none: OpenAI's text-embedding-3-large has 3072, the other
// models the fakes know 1536.
func DefaultDimensions(model string) int {
	if model == "text-embedding-3-large" {
		return 3072
	}
	return 1536
}
