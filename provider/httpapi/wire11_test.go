package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/httpapi"
	"github.com/aibatch/aibatch/provider/httpapitest"
	"github.com/aibatch/aibatch/wire"
)

// Wire format 1.1 through the http provider: the call carries the
// parameters, the format, messages and options; embeddings use "kind".

func newHTTP(t *testing.T) (*httpapitest.Server, *httpapi.Provider) {
	t.Helper()
	srv := httpapitest.NewServer()
	t.Cleanup(srv.Close)
	p, err := httpapi.New(httpapi.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return srv, p
}

func TestCallCarriesParametersMessagesAndFormat(t *testing.T) {
	t.Parallel()
	srv, p := newHTTP(t)
	temp, seed := 0.4, int64(9)
	format := &wire.ResponseFormat{Type: wire.FormatJSONSchema, JSONSchema: &wire.JSONSchema{Name: "s",
		Schema: json.RawMessage(`{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"],"additionalProperties":false}`)}}
	b := provider.Batch{ID: "b", Model: "m", Instructions: "i", Params: provider.Params{Temperature: &temp, Seed: &seed, Stop: []string{"x"}}, Format: format,
		Requests: []provider.Request{
			{Key: "0", Input: "first"},
			{Key: "1", Messages: []wire.Message{wire.TextMessage(wire.RoleUser, "hi"), wire.TextMessage(wire.RoleAssistant, "hello"), wire.TextMessage(wire.RoleUser, "second")}},
		}}
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 2 {
		t.Fatalf("results %+v, error %v", results, err)
	}
	for _, r := range results {
		want := map[string]string{"0": "first", "1": "second"}[r.Key]
		var v struct{ Answer string }
		if r.Err != nil || json.Unmarshal([]byte(r.Output), &v) != nil || v.Answer != httpapitest.Answer(want) || r.FinishReason != "stop" {
			t.Fatalf("result %+v, want the JSON answer to %q", r, want)
		}
	}
	sent := srv.Requests()[0]
	if *sent.Temperature != temp || *sent.Seed != seed || !slices.Equal(sent.Stop, []string{"x"}) || sent.Kind != "" ||
		!bytes.Contains(sent.ResponseFormat, []byte(`"json_schema"`)) || len(sent.Items[1].Messages) != 3 || sent.Items[1].Input != "" {
		t.Fatalf("sent %+v", sent)
	}
}

func TestCallCarriesProviderOptions(t *testing.T) {
	t.Parallel()
	srv, p := newHTTP(t)
	b := provider.Batch{ID: "b", Model: "m", Requests: []provider.Request{{Key: "0", Input: "x", Options: json.RawMessage(`{"tools":[]}`)}}}
	if _, err := p.Complete(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if got := string(srv.Requests()[0].Items[0].ProviderOptions); got != `{"tools":[]}` {
		t.Fatalf("provider_options %s", got)
	}
}

func TestEmbeddingsThroughKind(t *testing.T) {
	t.Parallel()
	srv, p := newHTTP(t)
	b := provider.Batch{ID: "e", Model: "emb", Kind: wire.KindEmbedding, Dimensions: 12}
	for i := range 40 {
		b.Requests = append(b.Requests, provider.Request{Key: strconv.Itoa(i), Input: "text " + strconv.Itoa(i)})
	}
	srv.Shuffle(true)
	srv.OmitInput("text 7")
	srv.RejectInput("text 9", false)
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 39 || srv.Calls() != 1 {
		t.Fatalf("%d results in %d calls, error %v", len(results), srv.Calls(), err)
	}
	for _, r := range results {
		i, _ := strconv.Atoi(r.Key)
		switch {
		case i == 9:
			if !provider.IsPermanent(r.Err) || provider.ScopeOf(r.Err) != provider.ScopeRequest {
				t.Fatalf("rejected input: %+v", r)
			}
		case r.Err != nil || !slices.Equal(r.Embedding, httpapitest.Vector(b.Requests[i].Input, 12)):
			t.Fatalf("result %s: %d numbers, error %v", r.Key, len(r.Embedding), r.Err)
		}
	}
	if sent := srv.Requests()[0]; sent.Kind != wire.KindEmbedding || sent.Dimensions != 12 || sent.MaxOutputTokens != 0 {
		t.Fatalf("sent %+v", sent)
	}

	srv.WrongDimensionsNext(1)
	results, err = p.Complete(t.Context(), b)
	if err != nil || len(results) == 0 {
		t.Fatalf("results %+v, error %v", results, err)
	}
	for _, r := range results {
		if r.Key == "9" {
			continue // still rejected
		}
		if r.Err == nil || provider.IsPermanent(r.Err) || !strings.Contains(r.Err.Error(), "11 dimensions, 12 were asked") {
			t.Fatalf("result %+v, want a transient error of its own", r)
		}
	}
}

func TestEmbeddingAnsweredAsChatIsUnsupported(t *testing.T) {
	t.Parallel()
	srv, p := newHTTP(t)
	// An endpoint that knows nothing of "kind" answers outputs.
	srv.SetResultsFunc(func(rs []httpapitest.Result) []httpapitest.Result {
		for i := range rs {
			out := "text"
			rs[i].Embedding, rs[i].Output = nil, &out
		}
		return rs
	})
	b := provider.Batch{ID: "e", Model: "emb", Kind: wire.KindEmbedding, Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}}}
	results, err := p.Complete(t.Context(), b)
	if err != nil || len(results) != 2 {
		t.Fatalf("results %+v, error %v", results, err)
	}
	for _, r := range results {
		if !errors.Is(r.Err, provider.ErrUnsupported) || !provider.IsPermanent(r.Err) || !strings.Contains(r.Err.Error(), `"kind": "embedding"`) {
			t.Fatalf("result %+v", r)
		}
	}
}
