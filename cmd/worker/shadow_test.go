package main

import (
	"strings"
	"testing"
)

func TestShadowSettings(t *testing.T) {
	t.Parallel()
	c, err := load(t, map[string]string{"SHADOW_RATE": "0.01", "SHADOW_AGREE_AT": "0.8", "QUALITY_FLOOR": "0.9",
		"SHADOW_WINDOW": "100", "SHADOW_EMBEDDING_MODEL": "text-embedding-3-small"})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := c.shadow()
	if err != nil {
		t.Fatal(err)
	}
	if sc.Rate != 0.01 || sc.AgreeAt != 0.8 || sc.QualityFloor != 0.9 || sc.Window != 100 ||
		sc.Embedder == nil || sc.EmbeddingModel != "text-embedding-3-small" {
		t.Fatalf("shadow config %+v", sc)
	}
	if err := sc.WithDefaults().Validate(); err != nil {
		t.Fatalf("the engine refuses it: %v", err)
	}
	// Off by default, and then no embedder.
	c, err = load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sc, err := c.shadow(); err != nil || sc.Rate != 0 || sc.QualityFloor != 0 || sc.Embedder != nil {
		t.Fatalf("default shadow config %+v, %v", sc, err)
	}
}

func TestShadowSettingErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SHADOW_RATE": "1.5"}, "SHADOW_RATE=1.5: want a fraction from 0 (off) up to 1"},
		{map[string]string{"SHADOW_RATE": "-0.1"}, "SHADOW_RATE=-0.1"},
		{map[string]string{"SHADOW_RATE": "NaN"}, "SHADOW_RATE=NaN"},
		{map[string]string{"SHADOW_AGREE_AT": "0"}, "SHADOW_AGREE_AT=0: want a fraction above 0"},
		{map[string]string{"QUALITY_FLOOR": "2", "SHADOW_RATE": "0.1"}, "QUALITY_FLOOR=2"},
		{map[string]string{"QUALITY_FLOOR": "0.9"}, "QUALITY_FLOOR=0.9 needs samples"},
		{map[string]string{"SHADOW_WINDOW": "0"}, "SHADOW_WINDOW=0: want a whole number from 1"},
		{map[string]string{"SHADOW_RATE": "0.1", "BATCH_MODE": "single"}, "BATCH_MODE=single sends every request alone"},
		{map[string]string{"SHADOW_EMBEDDING_MODEL": "e", "PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "k"}, "PROVIDER=anthropic has no embeddings API"},
		{map[string]string{"SHADOW_RATE": "often"}, "SHADOW_RATE"},
	}
	for _, tt := range tests {
		_, err := load(t, tt.env)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", tt.env, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%v: the error shows the key", tt.env)
		}
	}
}
