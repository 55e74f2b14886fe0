package main

import (
	"fmt"
	"math"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/provider/openai"
)

// validateShadow checks the shadow sampling and quality guard settings.
func (c config) validateShadow() []error {
	var errs []error
	fraction := func(name string, v float64, low string, ok bool) {
		if !ok || math.IsNaN(v) || v > 1 {
			errs = append(errs, fmt.Errorf("%s=%g: want a fraction %s up to 1, such as 0.9", name, v, low))
		}
	}
	fraction("SHADOW_RATE", c.ShadowRate, "from 0 (off)", c.ShadowRate >= 0)
	fraction("SHADOW_AGREE_AT", c.ShadowAgreeAt, "above 0", c.ShadowAgreeAt > 0)
	fraction("QUALITY_FLOOR", c.QualityFloor, "from 0 (off)", c.QualityFloor >= 0)
	if c.ShadowWindow < 1 || c.ShadowWindow > 100_000 {
		errs = append(errs, fmt.Errorf("SHADOW_WINDOW=%d: want a whole number from 1 to 100000", c.ShadowWindow))
	}
	if c.QualityFloor > 0 && c.ShadowRate == 0 {
		errs = append(errs, fmt.Errorf("QUALITY_FLOOR=%g needs samples to judge by: set SHADOW_RATE above 0, such as 0.01", c.QualityFloor))
	}
	if c.ShadowRate > 0 && c.BatchMode == "single" {
		errs = append(errs, fmt.Errorf("SHADOW_RATE=%g: BATCH_MODE=single sends every request alone, so no answer comes from a combined call to compare; use BATCH_MODE=combined", c.ShadowRate))
	}
	if c.ShadowEmbeddingModel != "" && c.Provider != "openai" {
		errs = append(errs, fmt.Errorf("SHADOW_EMBEDDING_MODEL=%s: PROVIDER=%s has no embeddings API; leave it empty (answers are then compared by their words) or use PROVIDER=openai", c.ShadowEmbeddingModel, c.Provider))
	}
	return errs
}

// shadow returns the shadow sampling settings, with an embedder for
// SHADOW_EMBEDDING_MODEL: the OpenAI API (or OPENAI_BASE_URL's server)
// with the worker's key. validate has refused it for other providers.
func (c config) shadow() (batch.ShadowConfig, error) {
	sc := batch.ShadowConfig{Rate: c.ShadowRate, AgreeAt: c.ShadowAgreeAt, QualityFloor: c.QualityFloor, Window: c.ShadowWindow}
	if c.ShadowEmbeddingModel == "" {
		return sc, nil
	}
	key := c.OpenAIAPIKey
	if key == "" {
		key = "unused" // an OpenAI-compatible server that needs no key
	}
	embedder, err := openai.New(openai.Config{APIKey: key, BaseURL: openai.NormalizeBaseURL(c.OpenAIBaseURL)})
	if err != nil {
		return sc, fmt.Errorf("set up SHADOW_EMBEDDING_MODEL=%s: %w", c.ShadowEmbeddingModel, err)
	}
	sc.Embedder, sc.EmbeddingModel = embedder, c.ShadowEmbeddingModel
	return sc, nil
}
