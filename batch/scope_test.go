package batch_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// The failure-scope rule: a request's attempts are spent only on failures
// of its own. These tests put the engine through a provider's everyday
// faults, on the fake clock.

func TestOutageLosesNothingAndSpendsNoAttempt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		attempts := batchtest.NewAttemptStore()
		p.FailFor(60*time.Second, nil) // HTTP 500 for every call
		publishInputs(t, b, reqSubject, "out", 200)
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithAttemptStore(attempts))
		synctest.Wait()

		health := e.ProviderHealth()
		if health == nil || !strings.Contains(health.Error(), "provider failing: HTTP 500") {
			t.Fatalf("ProviderHealth during the outage = %v", health)
		}
		s := e.Stats()
		if len(s.Breakers) != 1 || s.Breakers[0].State != batch.BreakerOpen || s.Breakers[0].NextProbe.IsZero() {
			t.Fatalf("breakers %+v", s.Breakers)
		}
		if s.Deferred != 200 || len(b.Results()) != 0 || len(b.DeadLetters()) != 0 {
			t.Fatalf("deferred %d, %d results, %d dead letters", s.Deferred, len(b.Results()), len(b.DeadLetters()))
		}
		callsAtStart := p.Calls()

		// Probes at 1s, 3s, 7s, 15s, 31s after the failure (waits of 1, 2,
		// 4, 8, 16s), and no more; the one at 63s finds the provider back.
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if probes := e.Stats().Probes; probes != 5 || p.Calls() != callsAtStart+5 {
			t.Fatalf("%d probes (%d calls) in the first 59s, want 5 on the schedule", probes, p.Calls()-callsAtStart)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if err := e.ProviderHealth(); err != nil {
			t.Fatalf("ProviderHealth after the outage = %v", err)
		}
		got := results(t, b)
		if len(got) != 200 || len(b.DeadLetters()) != 0 || b.Requests() != 0 {
			t.Fatalf("%d results, %d dead letters, %d requests left", len(got), len(b.DeadLetters()), b.Requests())
		}
		for id, r := range got {
			if r.Status != wire.StatusOK {
				t.Fatalf("%s: %+v", id, r)
			}
		}
		if attempts.Len() != 0 {
			t.Errorf("%d attempt records left after every request ended", attempts.Len())
		}
	})
}

func TestWrongKeyWaitsUntilTheKeyIsFixed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		rejected := &provider.Error{Scope: provider.ScopeProvider, StatusCode: http.StatusUnauthorized, Err: errors.New("incorrect API key")}
		p.FailFor(24*time.Hour, rejected)
		publishInputs(t, b, reqSubject, "key", 120)
		publishInputs(t, b, urgentSubject, "urgent-key", 3)
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithAttemptStore(batchtest.NewAttemptStore()))
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		health := e.ProviderHealth()
		if health == nil || !strings.Contains(health.Error(), "rejected the API key (HTTP 401)") {
			t.Fatalf("ProviderHealth = %v", health)
		}
		if len(b.DeadLetters()) != 0 || len(b.Results()) != 0 {
			t.Fatalf("%d dead letters, %d results with a wrong key", len(b.DeadLetters()), len(b.Results()))
		}
		// Probes slow down to one a minute (ProbeInterval).
		probes := e.Stats().Probes
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n := e.Stats().Probes - probes; n < 9 || n > 11 {
			t.Fatalf("%d probes in 10 minutes, want one a minute", n)
		}

		p.FailFor(0, nil) // the key is rotated in
		time.Sleep(batch.DefaultProbeInterval + time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 123 || len(b.DeadLetters()) != 0 || b.Requests() != 0 || e.ProviderHealth() != nil {
			t.Fatalf("%d results, %d dead letters, %d left, health %v", len(got), len(b.DeadLetters()), b.Requests(), e.ProviderHealth())
		}
	})
}

func TestCutOffAnswersShrinkTheBatch(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.CutOffAbove(20) // the model's answer fits 20 items
		publishInputs(t, b, reqSubject, "cut", 500)
		sizes := &sizeRecorder{}
		startEngine(t, b, p, engineConfig(b), batch.WithAttemptStore(batchtest.NewAttemptStore()), batch.WithObserver(sizes))
		// What does not fill a call of the shrunk size goes at MaxWait.
		time.Sleep(batch.DefaultMaxWait)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 500 || len(b.DeadLetters()) != 0 {
			t.Fatalf("%d results, %d dead letters", len(got), len(b.DeadLetters()))
		}
		for id, r := range got {
			if r.Status != wire.StatusOK || r.Attempts != 1 || r.Batch.Size == 0 {
				t.Fatalf("%s: %+v", id, r)
			}
		}
		if p.Calls() > 40 {
			t.Fatalf("%d calls for 500 requests, want at most 40", p.Calls())
		}
		t.Logf("500 requests in %d calls", p.Calls())
		// The group's size fell below the cap and grew back towards it.
		if low := slices.Min(sizes.all()); low > 20 || low < 2 {
			t.Fatalf("group sizes %v, want one at or below 20", sizes.all())
		}
	})
}

func TestARefusedInputFailsAloneAndKeepsTheSize(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		for i := 7; i < 500; i += 50 {
			p.Refuse("ref " + strconv.Itoa(i))
		}
		publishInputs(t, b, reqSubject, "ref", 500)
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithAttemptStore(batchtest.NewAttemptStore()))
		synctest.Wait()
		got := results(t, b)
		if len(got) != 500 {
			t.Fatalf("%d results", len(got))
		}
		var ok, refused int
		for i := range 500 {
			r := got["ref-"+strconv.Itoa(i)]
			switch {
			case i%50 == 7 && r.Status == wire.StatusError && strings.Contains(r.Error, "refused") && r.Batch.Size == 1:
				refused++
			case i%50 != 7 && r.Status == wire.StatusOK && r.Attempts == 1:
				ok++
			default:
				t.Errorf("ref-%d: %+v", i, r)
			}
		}
		if ok != 490 || refused != 10 || len(b.DeadLetters()) != 10 {
			t.Fatalf("%d ok, %d refused, %d dead letters", ok, refused, len(b.DeadLetters()))
		}
		if p.Calls() > 150 {
			t.Fatalf("%d calls, want at most 150", p.Calls())
		}
		t.Logf("500 requests, 10 refused, in %d calls", p.Calls())
		if g := e.Stats().Groups; len(g) != 1 || g[0].Size != 50 {
			t.Fatalf("groups %+v: a refusal must not shrink the group", g)
		}
	})
}

func TestRequestsPastTheirTTLExpireDuringAnOutage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.FailFor(24*time.Hour, nil)
		publishInputs(t, b, reqSubject, "old", 3)
		cfg := engineConfig(b)
		cfg.RequestTTL = 10 * time.Minute
		e, _ := startEngine(t, b, p, cfg, batch.WithAttemptStore(batchtest.NewAttemptStore()))
		time.Sleep(5 * time.Minute)
		publishInputs(t, b, reqSubject, "young", 2)
		time.Sleep(5*time.Minute + time.Second)
		synctest.Wait()
		if e.ProviderHealth() == nil {
			t.Fatal("the provider is down, yet healthy")
		}
		got := results(t, b)
		if len(got) != 3 || len(b.DeadLetters()) != 3 {
			t.Fatalf("%d results, %d dead letters after 10m; want the 3 old requests expired", len(got), len(b.DeadLetters()))
		}
		for i := range 3 {
			r := got["old-"+strconv.Itoa(i)]
			if r.Status != wire.StatusError || !strings.HasPrefix(r.Error, "expired") {
				t.Fatalf("old-%d: %+v", i, r)
			}
		}
		// The younger ones still wait; they expire in their turn.
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if got := results(t, b); len(got) != 5 || b.Requests() != 0 {
			t.Fatalf("%d results, %d left", len(got), b.Requests())
		}
	})
}

func TestAProviderPanicHandsTheBatchBack(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.PanicNext(1)
		publishInputs(t, b, urgentSubject, "bug", 3)
		startEngine(t, b, p, engineConfig(b))
		time.Sleep(2 * batch.DefaultRetryBackoff)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 3 || b.Requests() != 0 || p.Calls() != 2 {
			t.Fatalf("%d results, %d left, %d calls", len(got), b.Requests(), p.Calls())
		}
	})
}

func TestUnknownModels(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker()
		p := &modelProvider{Provider: batchtest.NewProvider(), unknown: map[string]bool{"test-model": true, "typo-model": true}}
		mustPublish(t, b, urgentSubject, `{"id":"named","input":"x","model":"typo-model"}`, nil)
		mustPublish(t, b, urgentSubject, `{"id":"default","input":"y"}`, nil)
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithAttemptStore(batchtest.NewAttemptStore()))
		synctest.Wait()
		got := results(t, b)
		// A model the request named is the request's own failure.
		if r := got["named"]; r.Status != wire.StatusError || !strings.Contains(r.Error, "does not know") {
			t.Fatalf("named: %+v", r)
		}
		// The worker's default model unknown: nobody can be served with it.
		if _, ok := got["default"]; ok {
			t.Fatalf("default: %+v, want it to wait", got["default"])
		}
		health := e.ProviderHealth()
		if health == nil || !strings.Contains(health.Error(), `model "test-model"`) {
			t.Fatalf("ProviderHealth = %v", health)
		}
		p.setKnown("test-model")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if r := results(t, b)["default"]; r.Status != wire.StatusOK {
			t.Fatalf("default after the model exists: %+v", r)
		}
	})
}

// modelProvider fails calls to unknown models as the APIs do: 404.
type modelProvider struct {
	*batchtest.Provider
	mu      sync.Mutex
	unknown map[string]bool
}

func (p *modelProvider) setKnown(model string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.unknown, model)
}

func (p *modelProvider) Complete(ctx context.Context, b provider.Batch) ([]provider.Result, error) {
	p.mu.Lock()
	unknown := p.unknown[b.Model]
	p.mu.Unlock()
	if unknown {
		return nil, &provider.Error{Permanent: true, StatusCode: http.StatusNotFound, Err: fmt.Errorf("model %s: %w", b.Model, provider.ErrUnknownModel)}
	}
	return p.Provider.Complete(ctx, b)
}

func TestCallsFitTheModelsOutputLimit(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		publishInputs(t, b, reqSubject, "fit", 50)
		mustPublish(t, b, reqSubject, `{"id":"capped","input":"short answer please","max_output_tokens":1}`, nil)
		cfg := engineConfig(b)
		cfg.ModelMaxOutputTokens = map[string]int{"test-model": 1000}
		cfg.DefaultOutputTokens = 100
		startEngine(t, b, p, cfg)
		time.Sleep(batch.DefaultMaxWait)
		synctest.Wait()
		if n := len(results(t, b)); n != 51 {
			t.Fatalf("%d results", n)
		}
		for _, call := range p.Batches() {
			// 1000 tokens hold 8 answers of 100 tokens and their framing.
			if len(call.Requests) > 8 {
				t.Errorf("a call of %d requests: their answers do not fit 1000 tokens", len(call.Requests))
			}
			// The call's budget is the model's limit, never a sum of the
			// requests' own caps.
			if call.MaxOutputTokens != 1000 {
				t.Errorf("call budget %d, want the model's 1000", call.MaxOutputTokens)
			}
		}
	})
}

// sizeRecorder records every group size the engine reports.
type sizeRecorder struct {
	batch.NopObserver
	mu    sync.Mutex
	sizes []int
}

func (r *sizeRecorder) GroupResized(g batch.GroupState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sizes = append(r.sizes, g.Size)
}

func (r *sizeRecorder) all() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int{50}, r.sizes...)
}

func TestALoneFailureDoesNotOpenTheBreaker(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		p.FailNext(1, batchtest.ProviderDown())
		publishInputs(t, b, urgentSubject, "blip", 3)
		changes := &breakerRecorder{}
		e, _ := startEngine(t, b, p, engineConfig(b), batch.WithAttemptStore(batchtest.NewAttemptStore()), batch.WithObserver(changes))
		synctest.Wait()
		if err := e.ProviderHealth(); err != nil {
			t.Fatalf("one 500 opened the breaker: %v", err)
		}
		if s := e.Stats(); s.Deferred != 3 || s.Retries != 0 {
			t.Fatalf("deferred %d, retries %d; want the 3 deferred, no attempt spent", s.Deferred, s.Retries)
		}
		time.Sleep(batch.DefaultRetryBackoff + time.Second)
		synctest.Wait()
		got := results(t, b)
		if len(got) != 3 || e.Stats().Probes != 0 {
			t.Fatalf("%d results, %d probes", len(got), e.Stats().Probes)
		}
		for id, r := range got {
			if r.Status != wire.StatusOK {
				t.Fatalf("%s: %+v", id, r)
			}
		}
		// Three in a row do open it.
		p.FailNext(3, batchtest.ProviderDown())
		publishInputs(t, b, urgentSubject, "storm", 1)
		time.Sleep(5 * batch.DefaultRetryBackoff)
		synctest.Wait()
		if got := changes.states(); len(got) != 2 || got[0] != batch.BreakerOpen || got[1] != batch.BreakerClosed {
			t.Fatalf("breaker changes %v, want it opened by the third failure in a row and closed by a probe", got)
		}
		if r := results(t, b)["storm-0"]; r.Status != wire.StatusOK {
			t.Fatalf("storm-0: %+v", r)
		}
	})
}

// breakerRecorder records every breaker state change.
type breakerRecorder struct {
	batch.NopObserver
	mu      sync.Mutex
	changes []string
}

func (r *breakerRecorder) BreakerChanged(b batch.BreakerState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, b.State)
}

func (r *breakerRecorder) states() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.changes...)
}

// TestNoSecondResultAfterALongOutage: a worker stored a request's result and
// its ack was lost; before the redelivery could be answered the provider
// went down for longer than the result stream's duplicate window. The
// engine finds the stored result instead of storing a second one.
func TestNoSecondResultAfterALongOutage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := batchtest.NewBroker(batchtest.WithOutcomeDedupeWindow(10 * time.Minute))
		p := batchtest.NewProvider()
		cfg := engineConfig(b)
		cfg.CallTimeout, cfg.RetryMaxBackoff = 10*time.Second, 10*time.Second // a window of about 4m
		if w := cfg.WithDefaults().RedeliveryWindow(); w > 10*time.Minute {
			t.Fatalf("the engine's window %v is longer than the stream's", w)
		}
		attempts := batchtest.NewAttemptStore()
		publishInputs(t, b, urgentSubject, "twice", 3)
		b.Inject(batchtest.LoseAck, 3) // stored, acks lost
		startEngine(t, b, p, cfg, batch.WithAttemptStore(attempts))
		synctest.Wait()
		if n := len(b.Results()); n != 3 || b.Requests() != 3 {
			t.Fatalf("%d results, %d requests left; want 3 stored and 3 acks lost", n, b.Requests())
		}
		// The provider goes down before the redeliveries come (after the
		// ack wait), for longer than the stream's duplicate window.
		p.FailFor(30*time.Minute, nil)
		time.Sleep(40 * time.Minute)
		synctest.Wait()
		got := results(t, b) // fails on a second result for any id
		if len(got) != 3 || b.Requests() != 0 || len(b.DeadLetters()) != 0 {
			t.Fatalf("%d results, %d left, %d dead letters", len(got), b.Requests(), len(b.DeadLetters()))
		}
	})
}
