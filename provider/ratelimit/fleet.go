package ratelimit

import "time"

// Fleet is what a Provider shares with the other workers that call the same
// account: *fleet.Quota (internal/fleet) keeps it in a JetStream key-value
// bucket. Its methods are called on the path of every call: they must
// answer from memory, at once.
type Fleet interface {
	// Workers returns how many workers share the account's limits now,
	// this one included: at least 1. Each takes 1/Workers of them.
	Workers() int
	// PausedUntil returns when the fleet's pause ends; zero or past when
	// there is none.
	PausedUntil() time.Time
	// Pause asks every worker of the fleet to hold its calls until until
	// (an answer's Retry-After). A later pause wins; a shorter one never
	// cuts a longer one short. It returns at once; the fleet hears of it
	// shortly after.
	Pause(until time.Time)
	// Report hands the fleet this worker's newest Reading of the
	// provider's headers.
	Report(r Reading)
	// Reading returns the newest Reading any worker of the fleet reported;
	// the zero Reading when none did.
	Reading() Reading
}

// Status is what a Provider paces its calls by now, for batch-stats and
// metrics.
type Status struct {
	// RPM and TPM are the account's limits the Provider was built with;
	// 0 means none of that kind.
	RPM int `json:"rpm"`
	TPM int `json:"tpm"`
	// Workers is how many workers share them (1 without a fleet), and
	// Share this worker's part, 1/Workers.
	Workers int     `json:"workers"`
	Share   float64 `json:"share"`
	// RequestsPerMinute and TokensPerMinute are this worker's pace now:
	// its share of the limits, lowered when the provider's headers say
	// less is left; null when nothing limits them.
	RequestsPerMinute *float64 `json:"requests_per_minute"`
	TokensPerMinute   *float64 `json:"tokens_per_minute"`
	// FleetRequestsPerMinute and FleetTokensPerMinute are the same for the
	// whole fleet.
	FleetRequestsPerMinute *float64 `json:"fleet_requests_per_minute"`
	FleetTokensPerMinute   *float64 `json:"fleet_tokens_per_minute"`
	// PausedUntil is when the pause an answer's Retry-After asked for
	// ends, this worker's or the fleet's; null when there is none.
	PausedUntil *time.Time `json:"paused_until"`
	// Remaining is the newest reading of the provider's rate-limit
	// headers, this worker's or the fleet's: what is left of the
	// account's limits; null before the first.
	Remaining *Reading `json:"remaining"`
}
