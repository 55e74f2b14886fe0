package openaitest

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// What the fake does with the fields that decide what a call costs.
//
// Service tiers: a request's service_tier is answered back in the
// completion's service_tier ("default" when the request names none or
// "auto"). RejectTier makes the fake refuse a tier as a model that does not
// offer it does: HTTP 400 invalid_request_error with param "service_tier".
// FlexUnavailableNext answers the next flex requests with 429
// resource_unavailable, as flex does when its capacity runs out.
//
// Prompt caching, as OpenAI does it on its own: the prefix of a request is
// its messages before the last one (the system message of every call of a
// group); once a prefix of at least 1,024 tokens (the fake's tokens: 4
// bytes each) was seen for a model and prompt_cache_key, later requests
// with it report usage.prompt_tokens_details.cached_tokens, the prefix
// rounded down to 1,024 plus a multiple of 128 tokens. Batch API lines are
// cached the same way.

// Prompt caching's limits, in tokens.
const (
	minCachedPrefix = 1024
	cacheIncrement  = 128
)

// costs holds the fake's tiers and prompt cache.
type costs struct {
	mu           sync.Mutex
	rejected     map[string]bool
	unavailable  int
	seenPrefixes map[[32]byte]bool
}

// RejectTier makes the fake refuse requests with service_tier tier (HTTP
// 400, param service_tier); "" accepts every tier again.
func (s *Server) RejectTier(tier string) {
	s.costs.mu.Lock()
	defer s.costs.mu.Unlock()
	if tier == "" {
		s.costs.rejected = nil
		return
	}
	if s.costs.rejected == nil {
		s.costs.rejected = map[string]bool{}
	}
	s.costs.rejected[tier] = true
}

// FlexUnavailableNext answers the next n chat completions asking for the
// flex tier with 429 resource_unavailable.
func (s *Server) FlexUnavailableNext(n int) {
	s.costs.mu.Lock()
	defer s.costs.mu.Unlock()
	s.costs.unavailable = n
}

// tierFailure is the error the fake answers a request for tier with, or
// status 0 when it serves the tier.
func (s *Server) tierFailure(model, tier string) (int, apiError) {
	s.costs.mu.Lock()
	defer s.costs.mu.Unlock()
	switch {
	case tier != "" && s.costs.rejected[tier]:
		return http.StatusBadRequest, newAPIError(fmt.Sprintf("The service_tier %q is not available for model %s.", tier, model),
			"invalid_request_error", "service_tier", "")
	case tier == "flex" && s.costs.unavailable > 0:
		s.costs.unavailable--
		return http.StatusTooManyRequests, newAPIError("Resource unavailable: flex processing capacity is exhausted. Please retry later.",
			"rate_limit_error", "", "resource_unavailable")
	}
	return 0, apiError{}
}

// answeredTier is the service_tier the fake answers a request for tier with.
func answeredTier(tier string) string {
	if tier == "" || tier == "auto" {
		return "default"
	}
	return tier
}

// cachedTokens is the part of rec's prompt the fake's prompt cache holds,
// remembering rec's prefix for later requests.
func (s *Server) cachedTokens(rec Request) int64 {
	if len(rec.Messages) < 2 {
		return 0
	}
	var prefix int
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", rec.Model, rec.PromptCacheKey)
	for _, m := range rec.Messages[:len(rec.Messages)-1] {
		fmt.Fprintf(h, "%s\x00%s\x00", m.Role, m.Content)
		prefix += len(m.Content)
	}
	tokens := fake.Tokens(prefix)
	if tokens < minCachedPrefix {
		return 0
	}
	var key [32]byte
	copy(key[:], h.Sum(nil))
	s.costs.mu.Lock()
	defer s.costs.mu.Unlock()
	if s.costs.seenPrefixes == nil {
		s.costs.seenPrefixes = map[[32]byte]bool{}
	}
	if !s.costs.seenPrefixes[key] {
		s.costs.seenPrefixes[key] = true
		return 0
	}
	return minCachedPrefix + (tokens-minCachedPrefix)/cacheIncrement*cacheIncrement
}
