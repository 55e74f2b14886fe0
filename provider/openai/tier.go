package openai

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aibatch/aibatch/provider"
)

// Service tiers. A batch's ServiceTier is sent as service_tier ("flex" is
// half the price of "default" and slower; "priority" costs more). The tier
// that answered comes back in the response and in each result's
// ServiceTier, where the cost estimate prices it.
//
// A tier the model does not offer is refused with HTTP 400 naming the
// service_tier parameter. The call is then made again at once without
// service_tier (the default tier), and the Provider remembers the model
// refuses the tier: later calls of that model go to the default tier
// without asking, and Config.TierRejected is told once.
//
// Flex capacity runs out at times: the API answers 429 "resource
// unavailable", a transient provider-scope failure like any 429 (callError),
// so the caller waits and tries again rather than spending attempts.

// paramServiceTier is the param an error names when it refuses the tier.
const paramServiceTier = "service_tier"

// tiers remembers the tiers models refused.
type tiers struct {
	refused func(model, tier, reason string)

	mu      sync.Mutex
	refusal map[[2]string]bool
}

// tierFor is the tier to ask model for: tier, unless model refused it.
func (t *tiers) tierFor(model, tier string) string {
	if tier == "" {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.refusal[[2]string{model, tier}] {
		return ""
	}
	return tier
}

// refuse records that model refused tier, telling Config.TierRejected the
// first time.
func (t *tiers) refuse(model, tier, reason string) {
	t.mu.Lock()
	first := !t.refusal[[2]string{model, tier}]
	if t.refusal == nil {
		t.refusal = map[[2]string]bool{}
	}
	t.refusal[[2]string{model, tier}] = true
	t.mu.Unlock()
	if first && t.refused != nil {
		t.refused(model, tier, reason)
	}
}

// tierRefused reports whether err is the API refusing the call's
// service_tier, and why.
func tierRefused(err error) (string, bool) {
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != paramServiceTier {
		return "", false
	}
	reason := apiErr.Code
	if reason == "" {
		reason = "invalid service_tier"
	}
	return shorten(reason), true
}

// create makes a Chat Completions call with b's service tier (see tiers),
// decoding the answer into resp (a *chatAnswer or a *keptAnswer); raw is
// the HTTP response of the last attempt, for callError. The SDK decodes a
// body only when the call succeeded, so a refused first attempt leaves resp
// as it was.
func (p *Provider) create(ctx context.Context, params openai.ChatCompletionNewParams, b provider.Batch, resp any) (raw *http.Response, err error) {
	tier := p.tiers.tierFor(b.Model, b.ServiceTier)
	if tier != "" {
		params.ServiceTier = openai.ChatCompletionNewParamsServiceTier(tier)
	}
	_, err = p.chat.New(ctx, params, option.WithResponseInto(&raw), option.WithResponseBodyInto(resp))
	if err == nil || tier == "" {
		return raw, err
	}
	reason, refused := tierRefused(err)
	if !refused {
		return raw, err
	}
	p.tiers.refuse(b.Model, tier, reason)
	params.ServiceTier = ""
	raw = nil
	_, err = p.chat.New(ctx, params, option.WithResponseInto(&raw), option.WithResponseBodyInto(resp))
	return raw, err
}
