package batch

import (
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// Service tiers: each lane's calls ask for the tier its setting names
// (Config.BatchServiceTier, UrgentServiceTier), and each call's report
// carries the tier that answered, which the cost estimate prices.

// tierOf is the service tier that answered a call: the first its results
// name.
func tierOf(results []provider.Result) string {
	for _, r := range results {
		if r.ServiceTier != "" {
			return r.ServiceTier
		}
	}
	return ""
}

// laneTiers are the service tiers of the lanes' calls.
type laneTiers struct{ batch, urgent string }

// of is the tier of a call sent with trigger.
func (t laneTiers) of(trigger wire.Trigger) string {
	if trigger == wire.TriggerUrgent {
		return t.urgent
	}
	return t.batch
}
