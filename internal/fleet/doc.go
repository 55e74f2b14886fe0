// Package fleet keeps what a fleet of workers shares beyond the streams:
// the fleet's totals, which every worker adds its engine's counts to in one
// key of a JetStream key-value bucket, so they add up across workers and
// survive restarts; the topics' daily token budgets (TOPIC_BUDGETS), kept
// per topic and UTC day in the same bucket so the fleet shares them; the
// holder lease; the quota, which shares one provider account's rate limits
// between the live workers (1/N each, N from heartbeats), pauses the fleet
// on a Retry-After and counts its Batch API jobs; and the fleet flush,
// which every worker answers on wire.ControlFlushSubject, so one admin call
// can flush the whole fleet.
package fleet
