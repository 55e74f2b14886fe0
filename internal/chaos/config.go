package chaos

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Scenario is one run: a fresh broker, fresh workers, traffic and the faults
// it names.
type Scenario struct {
	// Name identifies the scenario in the report; letters, digits and -.
	Name string
	// Weight is the scenario's share of Config.Requests against the other
	// scenarios' weights; 0 counts as 1.
	Weight int
	// Cluster runs a three-node JetStream cluster with three replicas per
	// stream instead of one server.
	Cluster bool
	// KillWorkers kills workers with SIGKILL (mid-call, just after an answer
	// reached them, or at a random moment) and restarts them.
	KillWorkers bool
	// RestartServer shuts the single server down and starts it again on the
	// same port and store directory. Not with Cluster.
	RestartServer bool
	// KillLeader shuts the cluster node leading AI_REQUESTS down and starts
	// it again on the same ports and store directory. Only with Cluster.
	KillLeader bool
	// ProviderFaults makes the proxy inject Config.Rates.
	ProviderFaults bool
	// Poison mixes Config.PoisonShare of poison requests into the traffic.
	Poison bool
	// LoseWorker kills worker 0 in the middle of a provider call about a
	// second before the traffic ends, and never restarts it: the requests
	// it held must still be answered by the other workers. Not with
	// KillWorkers; needs two workers or more.
	LoseWorker bool
	// Outage makes the provider answer every call HTTP 500, 503 or 529 (in
	// turn, OpenAI's error JSON) for a while: an outage of the provider.
	// No request may be dead-lettered for it.
	Outage ProviderPeriod
	// KeyRejected makes the provider answer every call HTTP 401
	// invalid_api_key for a while, as when the key was revoked or rotated
	// before the workers' secret was. No request may be dead-lettered for
	// it.
	KeyRejected ProviderPeriod
	// ShadowRate turns the workers' shadow sampling on (SHADOW_RATE): that
	// share of the requests answered in combined calls is sent again alone
	// in the background, among the faults. The samples must change no
	// result and dead-letter nothing. 0: off.
	ShadowRate float64
	// CrashAtOutage SIGKILLs every worker, just as the outage begins, the
	// moment one of them has stored a result and before it acks: the
	// requests of that call come back during the outage, their results
	// stored already, and wait for it to end. Needs Outage; not with
	// LoseWorker.
	CrashAtOutage bool
}

// ProviderPeriod schedules a stretch of time during which the provider
// answers every call with the same failure, besides the random faults of
// ProviderFaults. The traffic goes on until periodTail after the last
// period of a scenario ends, however few requests it has.
type ProviderPeriod struct {
	// At is when the period begins, from the start of the traffic.
	At time.Duration
	// For is how long it lasts; 0 means no period.
	For time.Duration
}

// on reports whether the period is scheduled.
func (p ProviderPeriod) on() bool { return p.For > 0 }

// end is when the period ends, from the start of the traffic; 0 when it is
// not scheduled.
func (p ProviderPeriod) end() time.Duration {
	if !p.on() {
		return 0
	}
	return p.At + p.For
}

// periodTail is how long traffic goes on after a scenario's last provider
// period ends: requests that arrive while the workers' circuit breakers are
// still open, waiting for their next probe.
const periodTail = 2 * time.Second

// periodsEnd is when the scenario's last provider period ends, from the
// start of the traffic; 0 when it has none.
func (s Scenario) periodsEnd() time.Duration { return max(s.Outage.end(), s.KeyRejected.end()) }

// Faults describes what the scenario injects, in words.
func (s Scenario) Faults() string {
	var f []string
	if s.KillWorkers {
		f = append(f, "workers SIGKILLed and restarted")
	}
	if s.RestartServer {
		f = append(f, "server restarted")
	}
	if s.KillLeader {
		f = append(f, "stream leader's node shut down and restarted")
	}
	if s.ProviderFaults {
		f = append(f, "provider faults")
	}
	if s.Poison {
		f = append(f, "poison input")
	}
	if s.LoseWorker {
		f = append(f, "a worker SIGKILLed mid-call and never restarted")
	}
	if s.Outage.on() {
		f = append(f, fmt.Sprintf("provider outage (HTTP %s) for %s from %s", statusList(OutageStatuses()), s.Outage.For, s.Outage.At))
	}
	if s.KeyRejected.on() {
		f = append(f, fmt.Sprintf("API key rejected (HTTP 401) for %s from %s", s.KeyRejected.For, s.KeyRejected.At))
	}
	if s.CrashAtOutage {
		f = append(f, "every worker SIGKILLed as the outage begins, just after a result was stored")
	}
	if s.ShadowRate > 0 {
		f = append(f, fmt.Sprintf("shadow sampling of %g of the requests", s.ShadowRate))
	}
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, ", ")
}

func (s Scenario) validate() error {
	switch {
	case s.Name == "" || strings.Trim(s.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "":
		return fmt.Errorf("chaos: scenario name %q: want letters, digits and -", s.Name)
	case s.Weight < 0:
		return fmt.Errorf("chaos: scenario %s: weight %d: want 0 or more", s.Name, s.Weight)
	case s.RestartServer && s.Cluster:
		return fmt.Errorf("chaos: scenario %s: RestartServer needs a single server; use KillLeader on a cluster", s.Name)
	case s.KillLeader && !s.Cluster:
		return fmt.Errorf("chaos: scenario %s: KillLeader needs Cluster", s.Name)
	case s.LoseWorker && s.KillWorkers:
		return fmt.Errorf("chaos: scenario %s: LoseWorker and KillWorkers do not go together", s.Name)
	case s.Outage.At < 0 || s.Outage.For < 0 || s.KeyRejected.At < 0 || s.KeyRejected.For < 0:
		return fmt.Errorf("chaos: scenario %s: provider periods must not start or last a negative time", s.Name)
	case s.CrashAtOutage && (!s.Outage.on() || s.LoseWorker):
		return fmt.Errorf("chaos: scenario %s: CrashAtOutage needs Outage, and not LoseWorker", s.Name)
	case !(s.ShadowRate >= 0 && s.ShadowRate <= 1):
		return fmt.Errorf("chaos: scenario %s: ShadowRate %g: want 0 to 1", s.Name, s.ShadowRate)
	}
	return nil
}

// DefaultScenarios returns each fault alone, then all of them together: on
// one server (with its restarts) and on the cluster (with the leader's loss).
// It is the long form (`make chaos`): the provider is down for 2 minutes in
// provider-outage and rejects the key for 1 minute in key-rejected; the
// all-* scenarios reject the key for 10s, then have an outage of 40s, longer
// than the results' duplicate window the workers derive from WorkerEnv
// (35s).
func DefaultScenarios() []Scenario {
	allKey := ProviderPeriod{At: 3 * time.Second, For: 10 * time.Second}
	allOutage := ProviderPeriod{At: 25 * time.Second, For: 40 * time.Second}
	return scenarios(periods{
		outage:        ProviderPeriod{At: 2 * time.Second, For: 2 * time.Minute},
		key:           ProviderPeriod{At: 2 * time.Second, For: time.Minute},
		singleOutage:  allOutage,
		singleKey:     allKey,
		clusterOutage: allOutage,
		clusterKey:    allKey,
	})
}

// ShortScenarios returns the scenarios of DefaultScenarios with provider
// periods of seconds, for the short form (TestChaosShort, `make test`): an
// outage of 6s in provider-outage, a key rejected for 3s in key-rejected, an
// outage of 1s in all-single-node and a key rejected for 1s in all-cluster.
// With the workers' PROVIDER_PROBE_INTERVAL of 1s (WorkerEnv) each is over
// within a second of its end. The all-* periods keep those scenarios' fault
// phase near its 3s minimum: a longer phase restarts servers more often,
// and after a restart the workers sometimes wait 30s for a PubAck that
// never comes (docs/reliability.md).
func ShortScenarios() []Scenario {
	return scenarios(periods{
		outage:       ProviderPeriod{At: time.Second, For: 6 * time.Second},
		key:          ProviderPeriod{At: time.Second, For: 3 * time.Second},
		singleOutage: ProviderPeriod{At: 500 * time.Millisecond, For: time.Second},
		clusterKey:   ProviderPeriod{At: 500 * time.Millisecond, For: time.Second},
	})
}

// periods are the provider periods of the scenarios that have them.
type periods struct {
	outage, key               ProviderPeriod // provider-outage, key-rejected
	singleOutage, singleKey   ProviderPeriod // all-single-node
	clusterOutage, clusterKey ProviderPeriod // all-cluster
}

// scenarios returns every fault alone, then all together, with provider
// periods p.
func scenarios(p periods) []Scenario {
	return []Scenario{
		{Name: "workers-killed", Weight: 1, KillWorkers: true},
		{Name: "server-restart", Weight: 1, RestartServer: true},
		{Name: "leader-lost", Weight: 1, Cluster: true, KillLeader: true},
		{Name: "provider-faults", Weight: 1, ProviderFaults: true},
		{Name: "poison", Weight: 1, Poison: true},
		// A worker killed mid-call and never restarted: the workers that
		// remain must pick up what it held with no new traffic to wake them.
		{Name: "worker-lost", Weight: 1, LoseWorker: true},
		// The provider down for everyone, or rejecting the key: requests
		// wait in the stream, without spending attempts, until a probe
		// finds the provider back.
		{Name: "provider-outage", Weight: 1, Outage: p.outage},
		{Name: "key-rejected", Weight: 1, KeyRejected: p.key},
		// Shadow samples of answer quality among the faults: they take
		// provider calls of their own and must leave every result as it
		// was, and dead-letter nothing.
		{Name: "shadow-sampling", Weight: 1, ShadowRate: 0.5, KillWorkers: true, ProviderFaults: true},
		{Name: "all-single-node", Weight: 2, KillWorkers: true, RestartServer: true, ProviderFaults: true, Poison: true, Outage: p.singleOutage, KeyRejected: p.singleKey},
		{Name: "all-cluster", Weight: 2, Cluster: true, KillWorkers: true, KillLeader: true, ProviderFaults: true, Poison: true, Outage: p.clusterOutage, KeyRejected: p.clusterKey},
	}
}

// Config configures Run. The zero value of every field means its default.
type Config struct {
	// Requests is the number of requests over all scenarios, shared by
	// their weights. Default 2000 (the short form; `make chaos` runs
	// 50,000).
	Requests int
	// Scenarios run in order. Default DefaultScenarios(), the long form;
	// the short form runs ShortScenarios().
	Scenarios []Scenario
	// Parallel is how many scenarios run at the same time. Default 1.
	Parallel int
	// Workers is the number of worker processes per scenario. Default 3.
	Workers int
	// Rate is the requests published per second in a scenario; the faults
	// run while they are published. Default 300.
	Rate int
	// MinFaultPhase is the shortest time traffic is published (and faults
	// injected) in a scenario, whatever Rate says. Default 3s.
	MinFaultPhase time.Duration
	// Drain bounds the wait, after the faults stop, for the request stream
	// to empty. Default 60s.
	Drain time.Duration
	// WorkerBin is the worker binary to run; "" builds WorkerPackage into
	// Dir (see BuildWorker).
	WorkerBin string
	// Race builds the worker with the race detector when WorkerBin is "".
	Race bool
	// Dir holds the worker binary, the brokers' files and the workers'
	// logs; "" uses a temporary directory that Run removes unless the
	// report has problems.
	Dir string
	// Seed seeds every random choice; 0 picks one from the clock. The report
	// names the seed used.
	Seed uint64
	// Rates are the provider faults of scenarios with ProviderFaults.
	// Default IssueFaultRates().
	Rates FaultRates
	// PoisonShare is the share of poison requests in scenarios with Poison.
	// Default 0.05.
	PoisonShare float64
	// UrgentShare is the share of requests sent on the urgent lane. Default
	// 0.05.
	UrgentShare float64
	// WorkerEnv overrides the workers' environment (see WorkerEnv for the
	// defaults); NATS_URL and OPENAI_BASE_URL are always the harness's.
	WorkerEnv map[string]string
	// Log receives a line per scenario step and per fault; nil discards.
	Log io.Writer
}

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	if c.Requests == 0 {
		c.Requests = 2000
	}
	if c.Scenarios == nil {
		c.Scenarios = DefaultScenarios()
	}
	if c.Parallel == 0 {
		c.Parallel = 1
	}
	if c.Workers == 0 {
		c.Workers = 3
	}
	if c.Rate == 0 {
		c.Rate = 300
	}
	if c.MinFaultPhase == 0 {
		c.MinFaultPhase = 3 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 60 * time.Second
	}
	if c.Rates == (FaultRates{}) {
		c.Rates = IssueFaultRates()
	}
	if c.PoisonShare == 0 {
		c.PoisonShare = 0.05
	}
	if c.UrgentShare == 0 {
		c.UrgentShare = 0.05
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Validate reports settings that cannot work; it expects defaults filled in.
func (c Config) Validate() error {
	var errs []error
	if c.Requests < len(c.Scenarios) {
		errs = append(errs, fmt.Errorf("chaos: Requests %d: want at least one per scenario (%d)", c.Requests, len(c.Scenarios)))
	}
	if len(c.Scenarios) == 0 {
		errs = append(errs, errors.New("chaos: no scenarios"))
	}
	names := map[string]bool{}
	for _, s := range c.Scenarios {
		if err := s.validate(); err != nil {
			errs = append(errs, err)
		}
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("chaos: two scenarios named %s", s.Name))
		}
		names[s.Name] = true
	}
	for _, s := range c.Scenarios {
		if s.LoseWorker && c.Workers < 2 {
			errs = append(errs, fmt.Errorf("chaos: scenario %s loses a worker: want Workers 2 or more, not %d", s.Name, c.Workers))
		}
	}
	if c.Parallel < 1 || c.Workers < 1 || c.Rate < 1 {
		errs = append(errs, fmt.Errorf("chaos: Parallel %d, Workers %d, Rate %d: want 1 or more", c.Parallel, c.Workers, c.Rate))
	}
	if c.MinFaultPhase < 0 || c.Drain < 0 {
		errs = append(errs, errors.New("chaos: MinFaultPhase and Drain must not be negative"))
	}
	if err := c.Rates.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.PoisonShare < 0 || c.PoisonShare > 1 || c.UrgentShare < 0 || c.UrgentShare > 1 {
		errs = append(errs, fmt.Errorf("chaos: PoisonShare %v, UrgentShare %v: want 0 to 1", c.PoisonShare, c.UrgentShare))
	}
	return errors.Join(errs...)
}

// apiKey is the key the workers send the fake provider; the harness checks
// that no worker ever logs it.
const apiKey = "sk-chaos-never-log-this-5f1c"

// WorkerEnv returns the environment the harness gives every worker besides
// NATS_URL and OPENAI_BASE_URL: short timers so faults resolve within
// seconds, PROVIDER_PROBE_INTERVAL 1s so an open circuit breaker probes the
// provider every second at most (cmd/chaos sets the worker's default, 1m,
// unless told otherwise), and MAX_DELIVER 10: only a request's own failures
// spend attempts, but deliveries whose worker was killed mid-call count
// towards it too. The duplicate window of results the workers derive is
// MAX_DELIVER × (PROVIDER_TIMEOUT + ACK_WAIT + RETRY_MAX_BACKOFF) = 35s.
func WorkerEnv() map[string]string {
	return map[string]string{
		"OPENAI_API_KEY":          apiKey,
		"PROVIDER_PROBE_INTERVAL": "1s",
		"MAX_BATCH_SIZE":          "20",
		"BATCH_INTERVAL":          "250ms",
		"MAX_WAIT":                "500ms",
		"POLL_INTERVAL":           "50ms",
		"ACK_WAIT":                "2s",
		"PROVIDER_TIMEOUT":        "1s",
		"RETRY_BACKOFF":           "50ms",
		"RETRY_MAX_BACKOFF":       "500ms",
		"MAX_DELIVER":             "10",
		"MAX_REQUEST_BYTES":       "16KiB",
		"MAX_INFLIGHT_BATCHES":    "4",
		"SHUTDOWN_TIMEOUT":        "5s",
		"STATS_FLUSH_INTERVAL":    "1s",
		"ADMIN_ADDR":              "127.0.0.1:0",
		"LOG_LEVEL":               "info",
		"LOG_FORMAT":              "json",
	}
}

// statusList prints HTTP statuses as "500/503/529".
func statusList(statuses []int) string {
	parts := make([]string, len(statuses))
	for i, st := range statuses {
		parts[i] = strconv.Itoa(st)
	}
	return strings.Join(parts, "/")
}
