package chaos

import (
	"testing"
	"time"
)

// TestProxyPeriodsFollowTheClock drives the periods of a proxy by a clock of
// the test's own: calls in a period fail, calls before or after it do not,
// the key is checked before an outage, and the first answer after a period
// is its recovery.
func TestProxyPeriodsFollowTheClock(t *testing.T) {
	t.Parallel()
	p, err := NewProxy(ProxyConfig{Upstream: "http://127.0.0.1:1/v1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := t0
	p.now = func() time.Time { return clock }

	if err := p.StartOutage(10*time.Second, 502); err != nil {
		t.Fatal(err)
	}
	clock = t0.Add(4 * time.Second)
	if err := p.StartKeyRejection(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		at     time.Duration
		fault  string
		status int
	}{
		{0, FaultOutage, 502},
		{3 * time.Second, FaultOutage, 502},
		{4 * time.Second, FaultKeyRejected, 401}, // both run: the key first
		{5999 * time.Millisecond, FaultKeyRejected, 401},
		{6 * time.Second, FaultOutage, 502},
		{9999 * time.Millisecond, FaultOutage, 502},
		{10 * time.Second, "", 0},
	}
	for _, s := range steps {
		if fault, status := p.decide(0, true, t0.Add(s.at)); fault != s.fault || status != s.status {
			t.Errorf("call at %s: %q %d, want %q %d", s.at, fault, status, s.fault, s.status)
		}
	}
	// A call that is not a chat completion fails in a period too.
	if fault, _ := p.decide(0, false, t0.Add(time.Second)); fault != FaultOutage {
		t.Errorf("a Files call in the outage got %q, want %q", fault, FaultOutage)
	}

	p.answeredOK(t0.Add(7 * time.Second)) // after the key's period, in the outage
	p.answeredOK(t0.Add(12 * time.Second))
	st := p.Stats()
	if len(st.Periods) != 2 {
		t.Fatalf("periods %+v, want 2", st.Periods)
	}
	outage, key := st.Periods[0], st.Periods[1]
	if outage.Failed != 5 || outage.ByStatus[502] != 5 || !outage.Recovered.Equal(t0.Add(12*time.Second)) {
		t.Errorf("outage %+v, want 5 calls failed, recovered at +12s", outage)
	}
	if key.Failed != 2 || !key.Recovered.Equal(t0.Add(7*time.Second)) {
		t.Errorf("key rejection %+v, want 2 calls failed, recovered at +7s", key)
	}
	if st.Calls != 7 || st.Faults[FaultOutage] != 5 || st.Faults[FaultKeyRejected] != 2 {
		t.Errorf("stats %+v, want 7 chat completion calls, 5 outage and 2 key faults", st)
	}
}

// TestProxyPeriodLastsUntilItFailsACall: a period no call met by its
// planned end (workers still starting on a busy machine) fails the next
// call and ends there, so the scenario's fault always happens; the call
// after it is answered.
func TestProxyPeriodLastsUntilItFailsACall(t *testing.T) {
	t.Parallel()
	p, err := NewProxy(ProxyConfig{Upstream: "http://127.0.0.1:1/v1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := t0
	p.now = func() time.Time { return clock }
	if err := p.StartKeyRejection(time.Second); err != nil {
		t.Fatal(err)
	}
	late := t0.Add(5 * time.Second)
	if fault, status := p.decide(0, true, late); fault != FaultKeyRejected || status != 401 {
		t.Fatalf("first call, 4s after the planned end: %q %d, want the key rejection", fault, status)
	}
	if fault, _ := p.decide(0, true, late.Add(time.Millisecond)); fault != "" {
		t.Errorf("the call after the one the period failed got %q, want it answered", fault)
	}
	p.answeredOK(late.Add(time.Millisecond))
	st := p.Stats()
	if len(st.Periods) != 1 {
		t.Fatalf("periods %+v, want 1", st.Periods)
	}
	pd := st.Periods[0]
	if pd.Failed != 1 || !pd.End.Equal(late) || !pd.Recovered.Equal(late.Add(time.Millisecond)) {
		t.Errorf("period %+v, want 1 call failed, ended at +5s, recovered 1ms later", pd)
	}
}
