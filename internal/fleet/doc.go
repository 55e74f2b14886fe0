// Package fleet keeps what a fleet of workers shares beyond the streams:
// the fleet's totals, which every worker adds its engine's counts to in one
// key of a JetStream key-value bucket, so they add up across workers and
// survive restarts; the topics' daily token budgets (TOPIC_BUDGETS), kept
// per topic and UTC day in the same bucket so the fleet shares them; the
// holder lease; and the fleet flush, which every worker answers on
// wire.ControlFlushSubject, so one admin call can flush the whole fleet.
package fleet
