package batch

import (
	"errors"
	"fmt"
	"math"
)

// ShadowConfig turns on shadow sampling (WithShadow): a fraction of the
// requests answered in combined calls is sent again, alone, in the
// background, and the two answers are compared, to measure whether
// combining changes answers. With QualityFloor set, a group whose answers
// agree too rarely gets smaller calls. The zero value of every field means
// its default; sampling is off until Rate is above 0.
//
// Sampling measures what combined calls do: with a provider that answers a
// batch with one call per request (openai's and anthropic's ModeSingle)
// both answers come from plain calls, and the figures say nothing.
type ShadowConfig struct {
	// Rate is the fraction of the requests answered in combined calls that
	// are sampled (SHADOW_RATE), from 0 (off) to 1. Each costs one more
	// call, of one request. Default 0.
	Rate float64
	// AgreeAt is the score from which a sample agrees (SHADOW_AGREE_AT),
	// above 0 and at most 1. Default 0.9.
	AgreeAt float64
	// Embedder, with EmbeddingModel (SHADOW_EMBEDDING_MODEL), scores free
	// text by the cosine similarity of its embeddings; without them, by the
	// overlap of its words. Short answers are compared exactly and JSON as
	// JSON either way. Default none.
	Embedder       Embedder
	EmbeddingModel string
	// QualityFloor turns the quality guard on (QUALITY_FLOOR): a group whose
	// agreement over the last Window samples falls below it gets its call
	// size halved, and grows back only while its agreement stays at or
	// above it. From 0 (off) to 1. Default 0.
	QualityFloor float64
	// Window is the number of samples the guard judges a group's agreement
	// over, and that batch-stats' recent figures cover (SHADOW_WINDOW).
	// Default 50.
	Window int
	// Random returns numbers from 0 up to 1 that pick the samples: a request
	// is sampled when one is below Rate. Calls are serialised. Default
	// math/rand/v2's Float64; tests pass a seeded source.
	Random func() float64
	// QueueSize is how many picked samples wait for a shadow call at most;
	// more are dropped (counted in ShadowStats.Dropped), so sampling never
	// holds up the real work. Default 256.
	QueueSize int
}

// Defaults of ShadowConfig's fields.
const (
	DefaultShadowRate    = 0.0
	DefaultShadowAgreeAt = 0.9
	DefaultQualityFloor  = 0.0
	DefaultShadowWindow  = 50
	DefaultShadowQueue   = 256
)

// WithShadow turns on shadow sampling as c says (see ShadowConfig). New
// refuses a c out of range.
func WithShadow(c ShadowConfig) Option { return func(e *Engine) { e.shadowCfg = c } }

// WithDefaults returns c with every unset field given its default.
func (c ShadowConfig) WithDefaults() ShadowConfig {
	setDefault(&c.AgreeAt, DefaultShadowAgreeAt)
	setDefault(&c.Window, DefaultShadowWindow)
	setDefault(&c.QueueSize, DefaultShadowQueue)
	return c
}

// Validate reports every setting out of range, naming the field and what is
// allowed. It expects defaults to be filled in.
func (c ShadowConfig) Validate() error {
	var errs []error
	fraction := func(name string, v float64, zeroOK bool) {
		if math.IsNaN(v) || v < 0 || v > 1 || (!zeroOK && v == 0) {
			low := "above 0"
			if zeroOK {
				low = "from 0"
			}
			errs = append(errs, fmt.Errorf("%s is %g, want a fraction %s up to 1", name, v, low))
		}
	}
	fraction("Shadow.Rate", c.Rate, true)
	fraction("Shadow.AgreeAt", c.AgreeAt, false)
	fraction("Shadow.QualityFloor", c.QualityFloor, true)
	if c.Window < 1 {
		errs = append(errs, fmt.Errorf("Shadow.Window is %d, want a whole number of 1 or more", c.Window))
	}
	if c.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("Shadow.QueueSize is %d, want a whole number of 1 or more", c.QueueSize))
	}
	if (c.Embedder == nil) != (c.EmbeddingModel == "") {
		errs = append(errs, errors.New("Shadow.Embedder and Shadow.EmbeddingModel go together: set both or neither"))
	}
	if c.QualityFloor > 0 && c.Rate == 0 {
		errs = append(errs, errors.New("Shadow.QualityFloor needs samples: set Shadow.Rate above 0"))
	}
	return errors.Join(errs...)
}
