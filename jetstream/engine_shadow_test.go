package jetstream_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// Shadow sampling on a real NATS server, with the openai provider calling
// the fake over HTTP, whose combined answers go wrong after position 10
// (openaitest's SetWrongAfter) while a plain call is answered right.
// batch/shadow_test.go tests the same on the in-memory doubles.

// startOpenAI runs an engine with cfg and opts on the openai provider
// against the bundle's fake.
func (b *bundle) startOpenAI(t *testing.T, cfg batch.Config, opts ...batch.Option) {
	t.Helper()
	p, err := openai.New(openai.Config{APIKey: "test-key", BaseURL: b.fake.URL})
	if err != nil {
		t.Fatalf("openai provider: %v", err)
	}
	b.startWith(t, cfg, p, opts...)
}

func TestShadowSamplingMeasuresDegradation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetWrongAfter(10)
	// 4 calls of 50 at once (MaxInflight): their 200 samples fit the
	// shadow queue, so none is dropped.
	b.publish(t, inputs("ai.requests.deg", "deg", 200)...)
	b.startOpenAI(t, testConfig(), batch.WithShadow(batch.ShadowConfig{Rate: 1}))

	got := b.waitResults(t, 200, 30*time.Second)
	b.waitDrained(t, 10*time.Second)
	jetstreamtest.Eventually(t, 30*time.Second, "200 shadow samples taken", func() bool {
		s := b.engine.Stats().Shadow
		return s.Picked == 200 && s.Samples+s.Dropped+s.Failed == s.Picked
	})
	// The results are the combined answers: sampling replaced none.
	for i := range 200 {
		r := got["deg-"+strconv.Itoa(i)]
		want := openaitest.Answer("deg " + strconv.Itoa(i))
		if i%50 >= 10 {
			want = openaitest.WrongAnswer
		}
		if r.Status != wire.StatusOK || r.Output != want || r.Batch.Size != 50 || r.Attempts != 1 {
			t.Fatalf("deg-%d: %+v, want ok %q from a call of 50", i, r.Result, want)
		}
	}
	if n := jetstreamtest.Count(t, b.js, b.topo.DeadStream); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	s := b.engine.Stats().Shadow
	if s.Calls != 200 || s.Samples != 200 || b.fake.Calls() != 4+200 {
		t.Fatalf("shadow stats %+v, %d calls at the fake; want 4 combined and 200 alone", s, b.fake.Calls())
	}
	g := s.Groups[0]
	disagreement := 1 - g.Agreement
	t.Logf("measured disagreement %.1f%% (true 80%%)", 100*disagreement)
	if disagreement < 0.7 || disagreement > 0.9 {
		t.Fatalf("disagreement %.3f, want 0.8 ± 0.1", disagreement)
	}
	prev := 1.0
	for _, bk := range g.ByPosition {
		if disagree := 1 - bk.Agreement; disagree < 1-prev || (bk.From > 10) != (disagree == 1) {
			t.Fatalf("positions %s: disagreement %.2f; want none up to 10, all past it (%+v)", bk.Name, disagree, g.ByPosition)
		}
		prev = bk.Agreement
	}
}

func TestQualityGuardShrinksTheBatchOverNATS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.SetWrongAfter(10)
	b.startOpenAI(t, testConfig(), batch.WithShadow(batch.ShadowConfig{Rate: 1, QualityFloor: 0.9}))

	// 300 requests in waves of 50, each answered and sampled before the
	// next; what does not fill a call stays held (MaxWait is an hour).
	var sizes []int
	for wave := range 6 {
		b.publish(t, inputs("ai.requests.guard", fmt.Sprintf("g%d", wave), 50)...)
		jetstreamtest.Eventually(t, 30*time.Second, fmt.Sprintf("wave %d answered and sampled", wave), func() bool {
			st := b.engine.Stats()
			return st.ResultsOK+int64(st.HeldRequests) == int64(50*(wave+1)) && st.Shadow.Samples+st.Shadow.Dropped == st.ResultsOK
		})
		sizes = append(sizes, b.engine.Stats().Groups[0].Size)
	}
	st := b.engine.Stats()
	t.Logf("the group's call size after each 50 requests: %v", sizes)
	g := st.Shadow.Groups[0]
	if sizes[5] > 12 || g.Limit == 0 || g.Limit > 12 {
		t.Fatalf("call size %d (limit %d) after 300 requests, want at most 12", sizes[5], g.Limit)
	}
	if g.Recent.Agreement < 0.9 {
		t.Fatalf("agreement over the last %d samples %.2f: it did not recover", g.Recent.Samples, g.Recent.Agreement)
	}
	if st.Shadow.Dropped != 0 || jetstreamtest.Count(t, b.js, b.topo.DeadStream) != 0 {
		t.Fatalf("shadow stats %+v; dead letters: want none", st.Shadow)
	}
}
