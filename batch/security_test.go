package batch_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/batch/batchtest"
	"github.com/aibatch/aibatch/wire"
)

// What a producer may ask of the worker, on the real engine: where its
// result goes (REPLY_SUBJECTS), which model it is paid for (ALLOWED_MODELS),
// how long an answer it may ask for (MAX_OUTPUT_TOKENS_LIMIT) and how much
// its topic may spend in a day (TOPIC_BUDGETS). Each refusal happens at
// intake: an error result, a dead letter naming the reason, no call.

// calledInputs are the inputs of every request the provider was called for.
func calledInputs(p *batchtest.Provider) []string {
	var out []string
	for _, b := range p.Batches() {
		for _, r := range b.Requests {
			out = append(out, r.Input)
		}
	}
	return out
}

// oneDeadLetter returns the only dead letter, failing when there is not
// exactly one or it does not name want.
func oneDeadLetter(t *testing.T, b *batchtest.Broker, id, want string) batchtest.Stored {
	t.Helper()
	dead := b.DeadLetters()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(dead), dead)
	}
	d := dead[0]
	if d.Header[wire.HeaderRequestID] != id || !strings.Contains(d.Header[wire.HeaderError], want) {
		t.Fatalf("dead letter of %q with %s %q, want %q's naming %q", d.Header[wire.HeaderRequestID], wire.HeaderError, d.Header[wire.HeaderError], id, want)
	}
	return d
}

func TestEngineSendsResultsOnlyToAllowedReplySubjects(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		mustPublish(t, b, urgentSubject, `{"id":"deputy","input":"confused"}`, map[string]string{wire.HeaderReplyTo: "orders.create"})
		mustPublish(t, b, urgentSubject, `{"id":"inbox","input":"private"}`, map[string]string{wire.HeaderReplyTo: "_INBOX.x.y"})
		mustPublish(t, b, urgentSubject, `{"id":"stored","input":"results"}`, map[string]string{wire.HeaderReplyTo: "ai.results.client.7"})
		startEngine(t, b, p, engineConfig(b))
		synctest.Wait()

		// Nothing at all is published to orders.create.
		for _, m := range b.Plain() {
			if m.Subject != "_INBOX.x.y" {
				t.Errorf("published to %q: %s", m.Subject, m.Data)
			}
		}
		got := results(t, b)
		deputy := got["deputy"]
		if deputy.Status != wire.StatusError || !strings.Contains(deputy.Error, `"orders.create" is not in REPLY_SUBJECTS (ai.results.>,_INBOX.>)`) {
			t.Fatalf("deputy's result: %+v", deputy)
		}
		for _, s := range b.Results() {
			var r wire.Result
			_ = json.Unmarshal(s.Data, &r)
			want := map[string]string{"deputy": "ai.results.t", "stored": "ai.results.client.7"}[r.ID]
			if s.Subject != want {
				t.Errorf("%s's result on %q, want %q", r.ID, s.Subject, want)
			}
		}
		d := oneDeadLetter(t, b, "deputy", "REPLY_SUBJECTS")
		if d.Header[wire.HeaderReplyTo] != "orders.create" {
			t.Errorf("dead letter keeps %s %q, want the refused subject for the record", wire.HeaderReplyTo, d.Header[wire.HeaderReplyTo])
		}
		if slices.Contains(calledInputs(p), "confused") {
			t.Error("the refused request was sent to the provider")
		}

		// The inbox result went out plain, with its Nats-Msg-Id.
		plain := b.Plain()
		if len(plain) != 1 {
			t.Fatalf("%d plain messages, want the inbox result", len(plain))
		}
		if id := plain[0].Header[wire.HeaderMsgID]; id == "" || id != plain[0].MsgID {
			t.Errorf("inbox result's %s = %q, want %q", wire.HeaderMsgID, id, plain[0].MsgID)
		}
		if b.Requests() != 0 {
			t.Errorf("%d requests left", b.Requests())
		}
	})
}

func TestEngineRefusesModelsAndOutputLengthsBeforeAnyCall(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		mustPublish(t, b, urgentSubject, `{"id":"pricey","input":"a","model":"gpt-5-pro"}`, nil)
		mustPublish(t, b, urgentSubject, `{"id":"long","input":"b","max_output_tokens":100000}`, nil)
		mustPublish(t, b, urgentSubject, `{"id":"fine","input":"c","model":"cheap","max_output_tokens":1000}`, nil)
		mustPublish(t, b, urgentSubject, `{"id":"default","input":"d"}`, nil)
		cfg := engineConfig(b)
		cfg.AllowedModels = []string{"cheap"}
		cfg.MaxOutputTokensLimit = 4096
		startEngine(t, b, p, cfg)
		synctest.Wait()

		got := results(t, b)
		if r := got["pricey"]; r.Status != wire.StatusError || !strings.Contains(r.Error, `model "gpt-5-pro" is not in ALLOWED_MODELS (cheap,test-model)`) {
			t.Errorf("pricey: %+v", r)
		}
		if r := got["long"]; r.Status != wire.StatusError || !strings.Contains(r.Error, `"max_output_tokens" is 100000, over MAX_OUTPUT_TOKENS_LIMIT (4096)`) {
			t.Errorf("long: %+v", r)
		}
		for _, id := range []string{"fine", "default"} {
			if r := got[id]; r.Status != wire.StatusOK {
				t.Errorf("%s: %+v, want answered", id, r)
			}
		}
		if called := calledInputs(p); slices.Contains(called, "a") || slices.Contains(called, "b") || len(called) != 2 {
			t.Errorf("provider called for %q, want only the allowed requests", called)
		}
		dead := b.DeadLetters()
		if len(dead) != 2 {
			t.Fatalf("%d dead letters, want 2", len(dead))
		}
		for _, d := range dead {
			if !strings.Contains(d.Header[wire.HeaderError], "ALLOWED_MODELS") && !strings.Contains(d.Header[wire.HeaderError], "MAX_OUTPUT_TOKENS_LIMIT") {
				t.Errorf("dead letter %s: %s", d.Header[wire.HeaderRequestID], d.Header[wire.HeaderError])
			}
		}
	})
}

func TestEngineRefusesATopicOverItsBudget(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		// batchtest's provider reports len(input) input tokens and
		// len("echo: "+input) output tokens: "aaaa" uses 4+10 = 14.
		budget := batchtest.NewBudget(map[string]int64{"t": 20})
		startEngine(t, b, p, engineConfig(b), batch.WithBudget(budget))

		mustPublish(t, b, urgentSubject, `{"id":"first","input":"aaaa"}`, nil)
		synctest.Wait()
		if used := budget.Used("t"); used != 14 {
			t.Fatalf("topic t used %d tokens, want 14", used)
		}
		// Under the budget (14 < 20): still allowed, and it takes the topic
		// over (28), as a budget is checked, not reserved.
		mustPublish(t, b, urgentSubject, `{"id":"second","input":"aaaa"}`, nil)
		synctest.Wait()
		if used := budget.Used("t"); used != 28 {
			t.Fatalf("topic t used %d tokens, want 28", used)
		}
		mustPublish(t, b, urgentSubject, `{"id":"third","input":"aaaa"}`, nil)
		mustPublish(t, b, reqSubject, `{"id":"batched","input":"aaaa"}`, nil)
		// Another topic has no budget.
		mustPublish(t, b, "ai.urgent.other", `{"id":"other","input":"aaaa"}`, nil)
		// The batch lane reads its request at its next poll, and refuses it
		// then, without waiting for its batch to be due.
		time.Sleep(2 * batch.DefaultPollInterval)
		synctest.Wait()
		got := results(t, b)
		for _, id := range []string{"first", "second", "other"} {
			if r := got[id]; r.Status != wire.StatusOK {
				t.Errorf("%s: %+v, want answered", id, r)
			}
		}
		for _, id := range []string{"third", "batched"} {
			r := got[id]
			if r.Status != wire.StatusError || !strings.Contains(r.Error, `budget exceeded: topic "t" has used 28 of its 20 tokens`) {
				t.Errorf("%s: %+v, want refused for the budget", id, r)
			}
		}
		if p.Calls() != 3 {
			t.Errorf("%d calls, want 3 (first, second, other)", p.Calls())
		}
		if n := len(b.DeadLetters()); n != 2 {
			t.Errorf("%d dead letters, want 2", n)
		}
		if used := budget.Used("t"); used != 28 {
			t.Errorf("topic t used %d tokens after the refusals, want 28", used)
		}
		if b.Requests() != 0 {
			t.Errorf("%d requests left", b.Requests())
		}
	})
}

func TestEngineGoesOnWhenTheBudgetCannotBeRead(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, p := batchtest.NewBroker(), batchtest.NewProvider()
		budget := batchtest.NewBudget(map[string]int64{"t": 1000})
		budget.FailNext(1)
		startEngine(t, b, p, engineConfig(b), batch.WithBudget(budget))
		mustPublish(t, b, urgentSubject, `{"id":"r","input":"aaaa"}`, nil)
		synctest.Wait()
		if r := results(t, b)["r"]; r.Status != wire.StatusOK {
			t.Fatalf("r: %+v, want answered", r)
		}
		if used := budget.Used("t"); used != 14 {
			t.Errorf("topic t used %d, want 14", used)
		}
	})
}
