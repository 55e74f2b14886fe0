package chaos

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"fewer requests than scenarios", Config{Requests: 3}, "at least one per scenario"},
		{"unnamed scenario", Config{Scenarios: []Scenario{{}}}, "scenario name"},
		{"two scenarios with one name", Config{Scenarios: []Scenario{{Name: "a"}, {Name: "a"}}}, "two scenarios named a"},
		{"server restart on a cluster", Config{Scenarios: []Scenario{{Name: "x", Cluster: true, RestartServer: true}}}, "RestartServer needs a single server"},
		{"leader loss without a cluster", Config{Scenarios: []Scenario{{Name: "x", KillLeader: true}}}, "KillLeader needs Cluster"},
		{"lose a worker while killing workers", Config{Scenarios: []Scenario{{Name: "x", LoseWorker: true, KillWorkers: true}}}, "do not go together"},
		{"lose the only worker", Config{Workers: 1, Scenarios: []Scenario{{Name: "worker-lost", Weight: 1, LoseWorker: true}}}, "want Workers 2 or more"},
		{"rates over 1", Config{Rates: FaultRates{ServerError: 0.9, RateLimit: 0.2}}, "add up to"},
		{"poison share over 1", Config{PoisonShare: 2}, "PoisonShare"},
		{"negative drain", Config{Drain: -time.Second}, "must not be negative"},
		{"outage before the traffic", Config{Scenarios: []Scenario{{Name: "x", Outage: ProviderPeriod{At: -time.Second, For: time.Second}}}}, "provider periods"},
		{"negative key rejection", Config{Scenarios: []Scenario{{Name: "x", KeyRejected: ProviderPeriod{For: -time.Second}}}}, "provider periods"},
		{"short scenarios", Config{Scenarios: ShortScenarios()}, ""},
		{"crash at no outage", Config{Scenarios: []Scenario{{Name: "x", CrashAtOutage: true}}}, "CrashAtOutage needs Outage"},
		{"shadow rate over 1", Config{Scenarios: []Scenario{{Name: "x", ShadowRate: 1.5}}}, "ShadowRate 1.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.WithDefaults().Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestScenarioPeriods checks the provider periods of the long and the short
// form: the long form's standalone outage lasts 2 minutes and its key
// rejection 1, the short form's stay within seconds, and every period is
// named in Faults.
func TestScenarioPeriods(t *testing.T) {
	t.Parallel()
	byName := func(scs []Scenario) map[string]Scenario {
		m := map[string]Scenario{}
		for _, s := range scs {
			m[s.Name] = s
		}
		return m
	}
	long, short := byName(DefaultScenarios()), byName(ShortScenarios())
	if len(long) != len(short) {
		t.Fatalf("long form has %d scenarios, short form %d", len(long), len(short))
	}
	if got := long["provider-outage"].Outage.For; got != 2*time.Minute {
		t.Errorf("long provider-outage lasts %s, want 2m", got)
	}
	if got := long["key-rejected"].KeyRejected.For; got != time.Minute {
		t.Errorf("long key-rejected lasts %s, want 1m", got)
	}
	for _, name := range []string{"all-single-node", "all-cluster"} {
		if s := long[name]; !s.Outage.on() || !s.KeyRejected.on() || s.Outage.At < s.KeyRejected.end() {
			t.Errorf("long %s: outage %+v, key rejection %+v; want both, one after the other", name, s.Outage, s.KeyRejected)
		}
	}
	if s := short["provider-outage"]; s.Outage.For < 5*time.Second || s.Outage.For > 8*time.Second {
		t.Errorf("short provider-outage lasts %s, want 5-8s", s.Outage.For)
	}
	for name, s := range short {
		if end := s.periodsEnd(); end > 10*time.Second {
			t.Errorf("short %s: periods end at %s, want seconds", name, end)
		}
		l := long[name]
		l.Outage, l.KeyRejected, s.Outage, s.KeyRejected = ProviderPeriod{}, ProviderPeriod{}, ProviderPeriod{}, ProviderPeriod{}
		if l != s {
			t.Errorf("%s differs between the forms beyond its periods: %+v, %+v", name, l, s)
		}
	}
	for _, s := range DefaultScenarios() {
		f := s.Faults()
		if s.Outage.on() != strings.Contains(f, "provider outage") || s.KeyRejected.on() != strings.Contains(f, "API key rejected (HTTP 401)") {
			t.Errorf("%s: Faults() = %q does not name its periods", s.Name, f)
		}
	}
}

func TestShareOut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n       int
		weights []int
		want    []int
	}{
		{2000, []int{1, 1, 1, 1, 1, 2, 2}, []int{222, 222, 222, 222, 222, 444, 446}},
		{10, []int{0, 1}, []int{5, 5}},
		{3, []int{1, 100}, []int{1, 2}},
	}
	for _, tt := range tests {
		scs := make([]Scenario, len(tt.weights))
		for i, w := range tt.weights {
			scs[i].Weight = w
		}
		got := shareOut(tt.n, scs)
		sum := 0
		for i := range got {
			sum += got[i]
			if got[i] != tt.want[i] {
				t.Fatalf("shareOut(%d, %v) = %v, want %v", tt.n, tt.weights, got, tt.want)
			}
		}
		if sum != tt.n {
			t.Fatalf("shareOut(%d, %v) adds up to %d", tt.n, tt.weights, sum)
		}
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
		bad  bool
	}{
		{"65536", 65536, false}, {"16KiB", 16384, false}, {"1MiB", 1 << 20, false},
		{"64KB", 64000, false}, {"2MB", 2000000, false}, {"100B", 100, false}, {" 8 KiB ", 8192, false},
		{"", 0, true}, {"big", 0, true}, {"-1", 0, true}, {"1GiB", 0, true},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestReportWrite(t *testing.T) {
	t.Parallel()
	clean := ScenarioReport{Name: "calm", Faults: "none", Sent: 10, Accepted: 10, ResultsOK: 9, Errors: 1, DeadLetters: 1,
		ProviderCalls: 3, WorkerKills: map[string]int{KillMidCall: 2}, WorkerRestarts: 2, ServerRestarts: 1, Wall: time.Second,
		Periods: []PeriodReport{
			{Kind: PeriodOutage, Statuses: []int{500, 503}, At: time.Second, For: 6 * time.Second, Failed: 3, ByStatus: map[int]int64{500: 2, 503: 1}, Recovery: 250 * time.Millisecond},
			{Kind: PeriodKeyRejected, Statuses: []int{401}, At: 2 * time.Second, For: time.Second, Failed: 1, ByStatus: map[int]int64{401: 1}, Recovery: -1},
		}}
	broken := ScenarioReport{Name: "broken", Sent: 5, Accepted: 5, ResultsOK: 2, Errors: 1, Duplicates: 1, Lost: 2, Innocent: 1,
		Evidence: []string{"lost: request x"}, Err: errors.New("node would not start")}
	tests := []struct {
		name     string
		report   Report
		problems int
		want     []string
	}{
		{"pass", Report{Seed: 7, Scenarios: []ScenarioReport{clean}}, 0, []string{
			"== calm (one server): none", "requests sent", "results ok", "dead letters", "duplicates found  0 (must be 0)",
			"lost              0 (must be 0)", "provider calls    3", "worker restarts   2", "server restarts   1", "wall time",
			"mid-call 2", "PASS", "seed 7", "innocent dead     0 (requests not made poison",
			"provider outage (HTTP 500/503) from 1s for 6s: 3 calls failed (HTTP 500 2, HTTP 503 1); first call answered 250ms after it ended",
			"API key rejected (HTTP 401) from 2s for 1s: 1 calls failed (HTTP 401 1); no call answered after it",
		}},
		{"fail", Report{Seed: 8, Scenarios: []ScenarioReport{clean, broken}, Dir: "/tmp/kept"}, 5, []string{
			"innocent dead     1 (", "evidence: lost: request x", "HARNESS ERROR: node would not start", "FAIL: 5 breaches", "logs in /tmp/kept",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.report.Problems(); got != tt.problems {
				t.Fatalf("Problems() = %d, want %d", got, tt.problems)
			}
			var b strings.Builder
			if err := tt.report.Write(&b); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
