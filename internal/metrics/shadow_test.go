package metrics_test

import (
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/metrics"
	"github.com/aibatch/aibatch/wire"
)

// Shadow samples are counted by model and agreement, their scores observed
// by batch-size bucket; shadow calls are API calls of mode shadow, never
// batches; each guard change is counted by direction.
func TestShadowMetrics(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	for _, s := range []batch.ShadowSample{
		{Model: "m", Size: 50, SizeBucket: "21-50", Position: 3, Score: 1, Agree: true},
		{Model: "m", Size: 50, SizeBucket: "21-50", Position: 40, Score: 0.2},
		{Model: "m", Size: 8, SizeBucket: "6-10", Position: 8, Score: 0.95, Agree: true},
	} {
		m.ShadowSampled(s)
	}
	if got := counterValue(t, reg, "aibatch_shadow_samples_total", map[string]string{"model": "m", "agree": "true"}); got != 2 {
		t.Errorf("agreeing samples = %v, want 2", got)
	}
	if got := counterValue(t, reg, "aibatch_shadow_samples_total", map[string]string{"model": "m", "agree": "false"}); got != 1 {
		t.Errorf("disagreeing samples = %v, want 1", got)
	}
	h := series(t, reg, "aibatch_shadow_score", map[string]string{"batch_size": "21-50"}).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 1.2 {
		t.Errorf("scores of batches of 21-50: count %d, sum %v; want 2, 1.2", h.GetSampleCount(), h.GetSampleSum())
	}

	m.CallFinished(batch.CallReport{Provider: "openai", Model: "m", Trigger: wire.TriggerSize, Size: 1, Latency: time.Second, Shadow: true})
	if got := counterValue(t, reg, "aibatch_api_calls_total",
		map[string]string{"provider": "openai", "trigger": "size", "mode": metrics.ModeShadow, "status": "ok"}); got != 1 {
		t.Errorf("shadow calls = %v, want 1", got)
	}
	if _, ok := gather(t, reg)["aibatch_batch_size"]; ok {
		t.Error("a shadow call was observed as a batch")
	}

	m.QualityLimited(batch.QualityChange{Model: "m", From: 50, To: 25, Limit: 25})
	m.QualityLimited(batch.QualityChange{Model: "m", From: 6, To: 8, Limit: 8})
	m.QualityLimited(batch.QualityChange{Model: "m", From: 45, To: 50, Limit: 0})
	if got := counterValue(t, reg, "aibatch_quality_resizes_total", map[string]string{"model": "m", "direction": "shrink"}); got != 1 {
		t.Errorf("shrinks = %v, want 1", got)
	}
	if got := counterValue(t, reg, "aibatch_quality_resizes_total", map[string]string{"model": "m", "direction": "grow"}); got != 2 {
		t.Errorf("grows = %v, want 2", got)
	}
}
