package openai_test

import (
	"testing"

	sdk "github.com/openai/openai-go/v3"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
)

func TestMaxOutputTokens(t *testing.T) {
	t.Parallel()
	p, err := openai.New(openai.Config{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var _ provider.OutputLimiter = p
	for model, want := range map[string]int{
		sdk.ChatModelGPT4o:            16384,
		sdk.ChatModelGPT4oMini:        16384,
		"gpt-4o-mini-2024-07-18":      16384,
		sdk.ChatModelGPT4o2024_05_13:  4096,
		sdk.ChatModelGPT4_1:           32768,
		sdk.ChatModelGPT4_1Mini:       32768,
		sdk.ChatModelGPT4_1Nano:       32768,
		sdk.ChatModelO1:               100000,
		sdk.ChatModelO1Mini:           65536,
		sdk.ChatModelO3:               100000,
		sdk.ChatModelO3Mini:           100000,
		sdk.ChatModelO4Mini:           100000,
		sdk.ChatModelGPT5:             128000,
		sdk.ChatModelGPT5Mini:         128000,
		sdk.ChatModelGPT5_1:           128000,
		sdk.ChatModelGPT5ChatLatest:   16384,
		sdk.ChatModelGPT5_1ChatLatest: 16384,
		sdk.ChatModelGPT4Turbo:        4096,
		sdk.ChatModelGPT4:             8192,
		sdk.ChatModelGPT3_5Turbo:      4096,
		"GPT-4o":                      16384,
		"my-local-llama":              0,
		"":                            0,
	} {
		if got := p.MaxOutputTokens(model); got != want {
			t.Errorf("MaxOutputTokens(%q) = %d, want %d", model, got, want)
		}
	}
}
