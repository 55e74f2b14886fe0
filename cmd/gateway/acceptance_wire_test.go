package main

// The acceptance tests of wire format 1.1 through the gateway: native
// embedding batching and structured output combined in shared calls.

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/aibatch/aibatch/provider/openaitest"
)

// fakeEmbedding is the fake provider's vector for input, at the default
// length.
func fakeEmbedding(input string) []float32 { return openaitest.Vector(input, 0) }

func TestAcceptanceEmbeddings(t *testing.T) {
	t.Parallel()
	s := startSystem(t, map[string]string{"MAX_BATCH_SIZE": "500", "EMBEDDING_MAX_INPUTS": "500", "MAX_WAIT": "2s"}, nil)
	c := s.client(apiKey)
	// 500 inputs: ten concurrent requests of 50.
	const perRequest, requests = 50, 10
	var wg sync.WaitGroup
	for r := range requests {
		wg.Go(func() {
			inputs := make([]string, perRequest)
			for i := range inputs {
				inputs[i] = "text " + strconv.Itoa(r*perRequest+i)
			}
			got, err := c.Embeddings.New(testCtx(t), openai.EmbeddingNewParams{
				Model: openai.EmbeddingModelTextEmbedding3Small, Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
			})
			if err != nil {
				t.Errorf("request %d: %v", r, err)
				return
			}
			if len(got.Data) != perRequest {
				t.Errorf("request %d: %d vectors, want %d", r, len(got.Data), perRequest)
				return
			}
			for i, d := range got.Data {
				want := fakeEmbedding(inputs[i])
				if d.Index != int64(i) || len(d.Embedding) != len(want) {
					t.Errorf("request %d vector %d: index %d, %d values, want %d", r, i, d.Index, len(d.Embedding), len(want))
					return
				}
				for j := range want {
					if float32(d.Embedding[j]) != want[j] {
						t.Errorf("request %d vector %d is not the embedding of %q", r, i, inputs[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if calls := s.fake.Calls(); calls > 2 {
		t.Errorf("500 embedding inputs took %d provider calls, want at most 2", calls)
	}
}

func TestAcceptanceStructuredOutput(t *testing.T) {
	t.Parallel()
	s := startSystem(t, map[string]string{"MAX_BATCH_SIZE": "50", "MAX_WAIT": "2s"}, nil)
	c := s.client(apiKey)
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"label": map[string]any{"type": "string", "enum": []string{"positive", "negative", "neutral"}},
			"score": map[string]any{"type": "number"},
		},
		"required":             []string{"label", "score"},
		"additionalProperties": false,
	}
	raw, _ := json.Marshal(schema)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	if err := comp.AddResource("sentiment.json", doc); err != nil {
		t.Fatal(err)
	}
	compiled, err := comp.Compile("sentiment.json")
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got, err := c.Chat.Completions.New(testCtx(t), openai.ChatCompletionNewParams{
				Model:    "gpt-4o-mini",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Review " + strconv.Itoa(i) + ": fine.")},
				ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
					JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "sentiment", Schema: schema, Strict: openai.Bool(true)},
				}},
			})
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			answer, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(got.Choices[0].Message.Content)))
			if err != nil {
				t.Errorf("request %d: the answer %q is not JSON: %v", i, got.Choices[0].Message.Content, err)
				return
			}
			if err := compiled.Validate(answer); err != nil {
				t.Errorf("request %d: the answer %q does not match its schema: %v", i, got.Choices[0].Message.Content, err)
			}
		})
	}
	wg.Wait()
	if calls := s.fake.Calls(); calls > 10 {
		t.Errorf("%d structured requests sharing a schema took %d provider calls, want them combined (at most 10)", n, calls)
	}
}
