package provider

import (
	"errors"

	"github.com/aibatch/aibatch/wire"
)

// Params are the sampling parameters of a chat batch, as the wire format
// names them; nil and empty fields leave the provider's default.
type Params struct {
	// Temperature, between 0 and 2.
	Temperature *float64
	// TopP, between 0 and 1.
	TopP *float64
	// Seed asks for a deterministic sample where the API supports it.
	Seed *int64
	// Stop holds up to 4 sequences that end an answer. A combined call
	// cannot stop one item's answer alone: providers do not send the
	// sequences in a combined call and cut each answer at the first of
	// them instead, as the API would have.
	Stop []string
}

// IsZero reports whether p sets nothing.
func (p Params) IsZero() bool {
	return p.Temperature == nil && p.TopP == nil && p.Seed == nil && len(p.Stop) == 0
}

// ErrUnsupported is wrapped by the error of a request a provider cannot
// serve at all (an embedding for a provider without an embeddings API, a
// provider option it cannot express): permanent, ScopeRequest.
var ErrUnsupported = errors.New("not supported by the provider")

// Supporter is implemented by providers that cannot serve every kind of
// request (wire.KindChat, wire.KindEmbedding). The engine asks it before
// any call: a request of a kind the provider does not serve ends at once,
// as an error result and a dead letter that say why. A provider given such
// a batch anyway fails each of its requests with that error, without a
// call.
type Supporter interface {
	// Supports returns nil when the provider serves requests of kind, and
	// otherwise an error wrapping ErrUnsupported that says so. It makes no
	// call and is safe for concurrent use.
	Supports(kind string) error
}

// FormatCombiner is implemented by providers that cannot combine every
// structured-output format in one call (a schema the API's strict mode
// refuses, or one too large once combined). The engine sends each request
// of such a format alone (a batch of one, which carries the format as the
// request gave it). A provider given a batch of several such requests
// anyway sends each alone itself.
type FormatCombiner interface {
	// CombinesFormat returns nil when requests asking for f may share one
	// call, and otherwise why not (for logs). It makes no call and is safe
	// for concurrent use.
	CombinesFormat(f wire.ResponseFormat) error
}
