package batch

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// fakeEmbedder embeds a text as the counts of a few words, or fails.
type fakeEmbedder struct {
	err    error
	inputs [][]string
}

func (f *fakeEmbedder) Embeddings(_ context.Context, model string, inputs []string) ([][]float64, provider.Usage, error) {
	f.inputs = append(f.inputs, inputs)
	if f.err != nil {
		return nil, provider.Usage{}, f.err
	}
	vocab := []string{"cat", "dog", "sat", "mat", "ran"}
	out := make([][]float64, len(inputs))
	for i, in := range inputs {
		v := make([]float64, len(vocab))
		for _, w := range words(in) {
			for j, word := range vocab {
				if w == word {
					v[j]++
				}
			}
		}
		out[i] = v
	}
	return out, provider.Usage{InputTokens: int64(len(inputs))}, nil
}

func TestAgreementScores(t *testing.T) {
	t.Parallel()
	long := "the cat sat on the mat and looked at the dog for a while"
	tests := []struct {
		name             string
		combined, alone  string
		kind             answerKind
		embed            bool
		wantScore        float64
		wantMethod       string
		wantEmbedderUsed bool
	}{
		{"short, same but for case and spaces", "  Positive ", "positive", answerFree, false, 1, MethodExact, false},
		{"short, different", "positive", "negative", answerFree, false, 0, MethodExact, false},
		{"short, punctuation counts", "Paris.", "Paris", answerFree, false, 0, MethodExact, false},
		{"JSON objects, same value", `{"a":1,"b":[true,"x"]}`, "{ \"b\": [true, \"x\"],\n \"a\": 1.0 }", answerFree, false, 1, MethodJSON, false},
		{"JSON objects, different value", `{"a":1}`, `{"a":2}`, answerFree, false, 0, MethodJSON, false},
		{"JSON arrays", `[1,2]`, `[1, 2]`, answerFree, false, 1, MethodJSON, false},
		{"structured output, one not JSON", `{"a":1}`, `a is 1`, answerStructured, false, 0, MethodJSON, false},
		{"structured output, equal", `{"a":1}`, ` {"a":1} `, answerStructured, true, 1, MethodJSON, false},
		{"one JSON object and text is text", `{"a":1}`, "a is one", answerFree, false, 0, MethodExact, false},
		{"free text, word overlap", long, long + " longer", answerFree, false, 2 * 14 / 29.0, MethodTokens, false},
		{"free text, no words shared", long, strings.Repeat("zz ", 10), answerFree, false, 0, MethodTokens, false},
		{"free text, same words", long, strings.ToUpper(long), answerFree, false, 1, MethodTokens, false},
		{"free text, embeddings", long, "the dog ran off the mat while the cat sat there and then some more", answerFree, true,
			4 / math.Sqrt(4*5), MethodEmbedding, true},
		{"short answers are not embedded", "cat", "dog", answerFree, true, 0, MethodExact, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var a agreement
			emb := &fakeEmbedder{}
			if tt.embed {
				a = agreement{embedder: emb, model: "embed-model"}
			}
			score, method, usage, err := a.score(t.Context(), tt.combined, tt.alone, tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(score-tt.wantScore) > 1e-9 || method != tt.wantMethod {
				t.Fatalf("score %.4f by %s, want %.4f by %s", score, method, tt.wantScore, tt.wantMethod)
			}
			if used := len(emb.inputs) > 0; used != tt.wantEmbedderUsed || (used && usage.InputTokens != 2) {
				t.Fatalf("embedder called %v (usage %+v), want %v", used, usage, tt.wantEmbedderUsed)
			}
		})
	}
}

// A failing embedding call falls back to the word overlap and says why.
func TestAgreementFallsBackWhenEmbeddingFails(t *testing.T) {
	t.Parallel()
	a := agreement{embedder: &fakeEmbedder{err: errors.New("HTTP 500")}, model: "embed-model"}
	text := "a long enough answer to be free text and not a short label"
	score, method, _, err := a.score(t.Context(), text, text, answerFree)
	if err == nil || !strings.Contains(err.Error(), "embed-model") || score != 1 || method != MethodTokens {
		t.Fatalf("score %v by %s, err %v; want 1 by %s and the embedding error", score, method, err, MethodTokens)
	}
}

func TestQualityBuckets(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{1: "1", 2: "2", 3: "3-5", 5: "3-5", 10: "6-10", 11: "11-20", 50: "21-50", 51: "51-100",
		10000: "5001-10000", 10001: "10001+"} {
		if _, _, got := QualityBucketOf(n); got != want {
			t.Errorf("QualityBucketOf(%d) = %q, want %q", n, got, want)
		}
	}
	if from, to, _ := QualityBucketOf(17); from != 11 || to != 20 {
		t.Errorf("QualityBucketOf(17) = %d..%d", from, to)
	}
}

func TestShadowConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (ShadowConfig{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	d := ShadowConfig{}.WithDefaults()
	if d.AgreeAt != DefaultShadowAgreeAt || d.Window != DefaultShadowWindow || d.Rate != DefaultShadowRate || d.QualityFloor != DefaultQualityFloor {
		t.Fatalf("defaults %+v", d)
	}
	tests := []struct {
		c    ShadowConfig
		want string
	}{
		{ShadowConfig{Rate: 1.5}, "Shadow.Rate is 1.5"},
		{ShadowConfig{Rate: math.NaN()}, "Shadow.Rate is NaN"},
		{ShadowConfig{Rate: 0.1, AgreeAt: -1}, "Shadow.AgreeAt is -1"},
		{ShadowConfig{Rate: 0.1, QualityFloor: 2}, "Shadow.QualityFloor is 2"},
		{ShadowConfig{QualityFloor: 0.9}, "needs samples"},
		{ShadowConfig{Rate: 0.1, Window: -3}, "Shadow.Window is -3"},
		{ShadowConfig{Rate: 0.1, QueueSize: -1}, "Shadow.QueueSize is -1"},
		{ShadowConfig{Rate: 0.1, EmbeddingModel: "e"}, "go together"},
	}
	for _, tt := range tests {
		err := tt.c.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.c, err, tt.want)
		}
	}
}

func TestAnswerKindOf(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		format *wire.ResponseFormat
		want   answerKind
	}{
		{nil, answerFree},
		{&wire.ResponseFormat{Type: wire.FormatText}, answerFree},
		{&wire.ResponseFormat{Type: wire.FormatJSONObject}, answerStructured},
	} {
		if got := answerKindOf(wire.Request{Input: "x", ResponseFormat: tt.format}); got != tt.want {
			t.Errorf("answerKindOf(response_format %+v) = %v, want %v", tt.format, got, tt.want)
		}
	}
}
