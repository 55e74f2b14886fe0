package openaitest_test

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider/openaitest"
)

// embed posts body to the embeddings endpoint with a valid key.
func embed(t *testing.T, srv *openaitest.Server, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, strings.TrimSuffix(srv.URL, "/v1")+openaitest.EmbeddingsPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

func TestEmbeddingsEndpoint(t *testing.T) {
	t.Parallel()
	srv := openaitest.NewServer()
	t.Cleanup(srv.Close)
	status, body := embed(t, srv, `{"model":"e","input":"Hello, world"}`)
	var a struct {
		Object string
		Model  string
		Data   []struct {
			Object    string
			Index     int
			Embedding []float64
		}
		Usage struct{ PromptTokens, TotalTokens int64 } `json:"usage"`
	}
	if err := json.Unmarshal(body, &a); err != nil || status != http.StatusOK {
		t.Fatalf("%d %s: %v", status, body, err)
	}
	if a.Object != "list" || a.Model != "e" || len(a.Data) != 1 || a.Data[0].Object != "embedding" || a.Data[0].Index != 0 ||
		!slices.Equal(a.Data[0].Embedding, openaitest.Embedding("Hello, world")) {
		t.Fatalf("answer %s", body)
	}
	// The fake's vectors: unit length, alike for the same words whatever
	// their case and punctuation, nearly orthogonal for texts with none in
	// common, closer the more words they share.
	dot := func(x, y []float64) (s float64) {
		for i := range x {
			s += x[i] * y[i]
		}
		return s
	}
	v := openaitest.Embedding("hello world")
	if math.Abs(dot(v, v)-1) > 1e-6 || !slices.Equal(v, openaitest.Embedding("HELLO... world!")) {
		t.Errorf("embeddings of the same words differ")
	}
	if d := dot(openaitest.Embedding("cat"), openaitest.Embedding("dog")); math.Abs(d) > 0.5 {
		t.Errorf("cat·dog = %v, want about 0", d)
	}
	if s, d := dot(openaitest.Embedding("the cat sat"), openaitest.Embedding("the cat ran")), dot(openaitest.Embedding("the cat sat"), openaitest.Embedding("a dog ran")); s <= d {
		t.Errorf("two texts sharing two words are less alike (%v) than two sharing none (%v)", s, d)
	}

	for _, bad := range []string{`{"model":"e","input":[]}`, `{"model":"e","input":"x","encoding_format":"hex"}`, `{"input":"x"}`} {
		if status, body := embed(t, srv, bad); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad, status, body)
		}
	}
	if status, _ := embed(t, srv, `{"model":"unknown-e","input":"x"}`); status != http.StatusNotFound {
		t.Errorf("unknown model: %d, want 404", status)
	}
	if srv.EmbeddingCalls() != 5 || srv.Calls() != 5 || len(srv.Requests()) != 0 {
		t.Errorf("%d embeddings calls, %d calls, %d chat requests; want 5, 5 and 0", srv.EmbeddingCalls(), srv.Calls(), len(srv.Requests()))
	}
}
