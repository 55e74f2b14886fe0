package openaitest

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// EmbeddingsPath is the path the fake serves embeddings on.
const EmbeddingsPath = "/v1/embeddings"

// MaxEmbeddingInputs is the most inputs one embeddings call may carry, as
// the real API allows; more are refused with HTTP 400.
const MaxEmbeddingInputs = 2048

// EmbeddingDims is the length of the fake's vectors when a call asks for
// no dimensions.
const EmbeddingDims = fake.EmbeddingDims

// Vector is the fake model's embedding of input with dims numbers
// (EmbeddingDims when dims <= 0), as a reader of float32s gets it: the sum
// of a pseudo-random vector per word of input (lower-cased, without
// punctuation), scaled to length 1. Texts with the same words embed
// alike, each shared word adds to two texts' cosine similarity, and texts
// with other words get other vectors.
func Vector(input string, dims int) []float32 { return fake.Embedding(input, dims) }

// Embedding is the fake model's embedding of input of EmbeddingDims
// numbers (a call that asks for no dimensions), as a reader of float64s
// gets it: Vector(input, 0), each number exactly its float32.
func Embedding(input string) []float64 { return fake.Float64s(Vector(input, 0)) }

// EmbeddingRequest is one decoded embeddings request, as
// EmbeddingRequests returns it.
type EmbeddingRequest struct {
	Model string
	// Inputs are the texts to embed, in order.
	Inputs []string
	// Dimensions is the length asked for; 0 when absent.
	Dimensions int
	// EncodingFormat is "float" (also when absent) or "base64".
	EncodingFormat string
	// Body is the raw request body.
	Body []byte
}

// EmbeddingCalls returns how many embeddings calls the server has
// received, including the ones it answered with an error. Calls counts
// them too.
func (s *Server) EmbeddingCalls() int64 { return s.embedCalls.Load() }

// EmbeddingRequests returns the embeddings requests received so far whose
// body could be decoded, oldest first.
func (s *Server) EmbeddingRequests() []EmbeddingRequest { return s.embedRequests.All() }

// NoDataNext makes the next n successful embeddings answers leave out
// "data" altogether (the rest of the answer is as usual).
func (s *Server) NoDataNext(n int) { s.noData.Set(n) }

// WrongDimensionsNext makes the next n successful embeddings answers hold
// vectors one number shorter than asked.
func (s *Server) WrongDimensionsNext(n int) { s.wrongDims.Set(n) }

type wireEmbeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
}

type wireEmbedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

type wireEmbeddingAnswer struct {
	Object string           `json:"object"`
	Data   *[]wireEmbedding `json:"data,omitempty"`
	Model  string           `json:"model"`
	Usage  struct {
		PromptTokens int64 `json:"prompt_tokens"`
		TotalTokens  int64 `json:"total_tokens"`
	} `json:"usage"`
}

// serveEmbeddings answers POST /v1/embeddings as the real API does: an
// input string or array of strings (at most MaxEmbeddingInputs, none
// empty), "dimensions" for text-embedding-3 models, encoding_format float
// or base64, one "embedding" object per input with its index, usage in
// prompt tokens (4 bytes a token). Besides the controls every call has
// (auth, FailNext, FailFor, HangFor, SetDelay), DropItems leaves the last
// inputs out of "data", OmitInput leaves that input out, RejectInput
// refuses the whole call (400 invalid_prompt, or 503 when retryable), as
// the real API refuses a call with one bad input; Shuffle lists "data" out
// of order, SetMalformedNext cuts the body in half, and NoDataNext and
// WrongDimensionsNext spoil the answer as they say. Unknown models get 404
// model_not_found.
func (s *Server) serveEmbeddings(w http.ResponseWriter, _ *http.Request, body []byte) {
	var req wireEmbeddingRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "We could not parse the JSON body of your request.", "invalid_request_error", "", "")
		return
	}
	rec := EmbeddingRequest{Model: req.Model, EncodingFormat: req.EncodingFormat, Body: body}
	if req.Dimensions != nil {
		rec.Dimensions = *req.Dimensions
	}
	var one string
	if err := json.Unmarshal(req.Input, &one); err == nil {
		rec.Inputs = []string{one}
	} else if err := json.Unmarshal(req.Input, &rec.Inputs); err != nil {
		writeError(w, http.StatusBadRequest, "'$.input' is invalid: the fake takes a string or an array of strings.", "invalid_request_error", "input", "")
		return
	}
	s.embedRequests.Add(rec)
	switch {
	case req.Model == "":
		writeError(w, http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", "model", "")
		return
	case s.isUnknownModel(req.Model):
		writeError(w, http.StatusNotFound, fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", req.Model), "invalid_request_error", "", "model_not_found")
		return
	case len(rec.Inputs) == 0 || len(rec.Inputs) > MaxEmbeddingInputs:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("'$.input' is invalid: %d inputs, want 1 to %d.", len(rec.Inputs), MaxEmbeddingInputs), "invalid_request_error", "input", "")
		return
	case req.Dimensions != nil && (*req.Dimensions < 1 || !strings.HasPrefix(req.Model, "text-embedding-3")):
		writeError(w, http.StatusBadRequest, "This model does not support specifying dimensions.", "invalid_request_error", "dimensions", "")
		return
	case req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64":
		writeError(w, http.StatusBadRequest, "encoding_format must be float or base64", "invalid_request_error", "encoding_format", "")
		return
	}
	s.ctl.RecordSize(len(rec.Inputs))
	b := s.ctl.Behaviour()
	for _, in := range rec.Inputs {
		if in == "" {
			writeError(w, http.StatusBadRequest, "'$.input' is invalid: an input is empty.", "invalid_request_error", "input", "")
			return
		}
		if retryable, rejected := b.Reject[in]; rejected {
			if retryable {
				writeFailure(w, http.StatusServiceUnavailable)
			} else {
				writeError(w, http.StatusBadRequest, "Invalid prompt: your prompt was flagged as potentially violating our usage policy.", "invalid_request_error", "", "invalid_prompt")
			}
			return
		}
	}
	dims := rec.Dimensions
	if dims == 0 {
		dims = EmbeddingDims
	}
	if s.wrongDims.Take() {
		dims--
	}
	data := make([]wireEmbedding, 0, len(rec.Inputs))
	var bytes int
	for i, in := range rec.Inputs {
		bytes += len(in)
		if i >= b.Kept(len(rec.Inputs)) || b.Omit[in] {
			continue
		}
		v := Vector(in, dims)
		var enc any = fake.Float64s(v)
		if req.EncodingFormat == "base64" {
			enc = encodeVector(v)
		}
		data = append(data, wireEmbedding{Object: "embedding", Index: i, Embedding: enc})
	}
	if b.Shuffle {
		rand.Shuffle(len(data), func(i, j int) { data[i], data[j] = data[j], data[i] })
	}
	answer := wireEmbeddingAnswer{Object: "list", Data: &data, Model: req.Model}
	if s.noData.Take() {
		answer.Data = nil
	}
	answer.Usage.PromptTokens = fake.Tokens(bytes)
	answer.Usage.TotalTokens = answer.Usage.PromptTokens
	fake.WriteAnswer(w, answer, s.ctl.TakeMalformed())
}

// encodeVector is v as the API's base64 encoding_format writes it: the
// little-endian float32s, base64.
func encodeVector(v []float32) string {
	buf := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(buf)
}
