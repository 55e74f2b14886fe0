package gateway

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"

	"github.com/aibatch/aibatch/wire"
)

// embeddingRequest is an embeddings request as the gateway carries it: one
// wire request per input, and how to answer.
type embeddingRequest struct {
	reqs   []wire.Request
	base64 bool
	model  string
}

// decodeEmbeddings reads an embeddings request body: input (a string or an
// array of at most MaxEmbeddingInputs strings), model, dimensions and
// encoding_format. Token arrays and user are refused: the wire format
// carries text, and a provider call carries many callers' inputs.
func decodeEmbeddings(body []byte) (embeddingRequest, *apiError) {
	var er embeddingRequest
	f, e := decodeObject(body)
	if e != nil {
		return er, e
	}
	var (
		inputs     []string
		dimensions int64
	)
	for _, name := range f.names() {
		raw := f[name]
		if isNull(raw) {
			continue
		}
		switch name {
		case "model":
			e = decodeField(name, raw, &er.model, "a model name")
		case "input":
			inputs, e = decodeInputs(raw)
		case "dimensions":
			dimensions, e = wholeNumber(name, raw, 1)
		case "encoding_format":
			var format string
			e = decodeField(name, raw, &format, `"float" or "base64"`)
			switch {
			case e != nil:
			case format == "base64":
				er.base64 = true
			case format != "float":
				e = badRequest(name, codeInvalidValue, `Invalid value for encoding_format: want "float" or "base64", got %q.`, format)
			}
		case "user":
			e = unsupported(name, "inputs of many callers share a provider call, which carries no user of its own. Leave user out.")
		default:
			e = unknownField(name)
		}
		if e != nil {
			return er, e
		}
	}
	if inputs == nil {
		return er, badRequest("input", codeInvalidValue, "Missing required parameter: 'input'.")
	}
	for i, in := range inputs {
		r := wire.Request{Kind: wire.KindEmbedding, Input: in, Model: er.model, Dimensions: int(dimensions)}
		if err := r.Validate(); err != nil {
			param := "input"
			if len(inputs) > 1 {
				param = "input[" + strconv.Itoa(i) + "]"
			}
			return er, badRequest(param, codeInvalidValue, "Invalid value for %s: %s", param, wireMessage(err))
		}
		er.reqs = append(er.reqs, r)
	}
	return er, nil
}

// decodeInputs reads input: a string or a non-empty array of strings.
func decodeInputs(raw json.RawMessage) ([]string, *apiError) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, unsupported("input", "want a string or an array of strings; token arrays are not carried.")
	}
	switch {
	case len(many) == 0:
		return nil, badRequest("input", codeInvalidValue, "Invalid value for input: the array is empty.")
	case len(many) > MaxEmbeddingInputs:
		return nil, badRequest("input", codeInvalidValue, "Invalid value for input: %d inputs, at most %d in one request.", len(many), MaxEmbeddingInputs)
	}
	return many, nil
}

// embeddingList is OpenAI's answer to an embeddings request.
type embeddingList struct {
	Object string          `json:"object"`
	Data   []embeddingItem `json:"data"`
	Model  string          `json:"model"`
	Usage  embeddingUsage  `json:"usage"`
}

type embeddingItem struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

type embeddingUsage struct {
	PromptTokens int64 `json:"prompt_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}

// embeddings is the answer to er from its results, in input order.
func embeddings(er embeddingRequest, results []wire.Result) embeddingList {
	out := embeddingList{Object: "list", Data: make([]embeddingItem, len(results)), Model: er.model}
	for i, r := range results {
		var vec any = r.Embedding
		if er.base64 {
			vec = base64Vector(r.Embedding)
		}
		out.Data[i] = embeddingItem{Object: "embedding", Index: i, Embedding: vec}
		out.Usage.PromptTokens += r.Usage.InputTokens
		if r.Model != "" {
			out.Model = r.Model
		}
	}
	out.Usage.TotalTokens = out.Usage.PromptTokens
	return out
}

// base64Vector is v as OpenAI's encoding_format "base64" has it: the
// little-endian float32 values, base64-encoded.
func base64Vector(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}
