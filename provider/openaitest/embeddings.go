package openaitest

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// EmbeddingsPath is the path the fake serves embeddings on.
const EmbeddingsPath = "/v1/embeddings"

// EmbeddingDims is the length of the fake's embedding vectors.
const EmbeddingDims = 64

// Embedding is the fake model's deterministic embedding of input: its
// lower-cased words counted into EmbeddingDims buckets by hash (a bag of
// words), scaled to length 1. Texts with the same words embed alike, and
// the cosine similarity of two texts grows with the words they share.
func Embedding(input string) []float64 {
	v := make([]float64, EmbeddingDims)
	for _, w := range strings.FieldsFunc(strings.ToLower(input), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		h := fnv.New32a()
		_, _ = h.Write([]byte(w))
		v[h.Sum32()%EmbeddingDims]++
	}
	var norm float64
	for _, x := range v {
		norm += x * x
	}
	if norm > 0 {
		norm = math.Sqrt(norm)
		for i := range v {
			v[i] /= norm
		}
	}
	return v
}

// embeddingCalls counts the calls to EmbeddingsPath.
type embeddingCalls struct{ n atomic.Int64 }

// EmbeddingCalls returns how many embeddings calls the server has received,
// including the ones it answered with an error. Calls does not count them.
func (s *Server) EmbeddingCalls() int64 { return s.embeddings.n.Load() }

// serveEmbeddings answers POST /v1/embeddings as the real API does: an
// input string or array of strings, one "embedding" object per input with
// its index, float encoding only, usage in prompt tokens (4 bytes a token).
// FailNext, FailFor, RequireKey, HangFor and SetDelay apply (apiCall);
// unknown models get 404 model_not_found.
func (s *Server) serveEmbeddings(w http.ResponseWriter, _ *http.Request, body []byte) {
	var req struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "We could not parse the JSON body of your request.", "invalid_request_error", "", "")
		return
	}
	var inputs []string
	var one string
	if err := json.Unmarshal(req.Input, &one); err == nil {
		inputs = []string{one}
	} else if err := json.Unmarshal(req.Input, &inputs); err != nil || len(inputs) == 0 {
		writeError(w, http.StatusBadRequest, "'input' must be a string or a non-empty array of strings", "invalid_request_error", "input", "")
		return
	}
	switch {
	case req.Model == "":
		writeError(w, http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", "model", "")
		return
	case s.isUnknownModel(req.Model):
		writeError(w, http.StatusNotFound, "The model `"+req.Model+"` does not exist or you do not have access to it.", "invalid_request_error", "", "model_not_found")
		return
	case req.EncodingFormat != "" && req.EncodingFormat != "float":
		writeError(w, http.StatusBadRequest, "the fake serves encoding_format float only", "invalid_request_error", "encoding_format", "")
		return
	}
	type datum struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float64 `json:"embedding"`
	}
	data := make([]datum, len(inputs))
	var tokens int64
	for i, in := range inputs {
		data[i] = datum{Object: "embedding", Index: i, Embedding: Embedding(in)}
		tokens += fake.Tokens(len(in))
	}
	fake.WriteJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": req.Model,
		"usage": map[string]int64{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}

// countEmbedding wraps h so that EmbeddingCalls counts its calls.
func (s *Server) countEmbedding(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.embeddings.n.Add(1)
		h(w, r)
	}
}
