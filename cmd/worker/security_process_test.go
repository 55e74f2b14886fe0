package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/internal/admin"
	ajs "github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// TestProcessRefusesWhatAProducerMayNotAsk runs the worker binary with the
// security settings from its environment: the default REPLY_SUBJECTS and
// ALLOWED_MODELS (MODEL and the models in PRICES), MAX_OUTPUT_TOKENS_LIMIT
// and TOPIC_BUDGETS. Each refused request gets an error result naming the
// setting and a dead letter, and never reaches the provider.
func TestProcessRefusesWhatAProducerMayNotAsk(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	nc, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":                ns.ClientURL(),
		"OPENAI_BASE_URL":         fake.URL,
		"OPENAI_API_KEY":          procSecret,
		"PRICES":                  "gpt-4o=2.5/10",
		"MAX_OUTPUT_TOKENS_LIMIT": "1000",
		"TOPIC_BUDGETS":           "capped=1",
	})
	waitStreams(t, js)
	orders, err := nc.SubscribeSync("orders.create")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	send := func(subject, body string, header map[string]string) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = []byte(body)
		for k, v := range header {
			m.Header.Set(k, v)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	send("ai.urgent.proc", `{"id":"pricey","input":"input-of-pricey","model":"o1-pro"}`, nil)
	send("ai.urgent.proc", `{"id":"priced","input":"input-of-priced","model":"gpt-4o"}`, nil)
	send("ai.urgent.proc", `{"id":"long","input":"input-of-long","max_output_tokens":5000}`, nil)
	send("ai.urgent.proc", `{"id":"deputy","input":"input-of-deputy"}`, map[string]string{wire.HeaderReplyTo: "orders.create"})
	send("ai.urgent.capped", `{"id":"capped-1","input":"input-of-capped-1"}`, nil)
	waitOutcomes(t, js, 5)
	// The topic's first request spent its budget; the next is refused.
	send("ai.urgent.capped", `{"id":"capped-2","input":"input-of-capped-2"}`, nil)
	got := waitOutcomes(t, js, 6)

	wantError := map[string]string{
		"pricey":   `model "o1-pro" is not in ALLOWED_MODELS (gpt-4o-mini,gpt-4o)`,
		"long":     `"max_output_tokens" is 5000, over MAX_OUTPUT_TOKENS_LIMIT (1000)`,
		"deputy":   `Batch-Reply-To "orders.create" is not in REPLY_SUBJECTS (ai.results.>,_INBOX.>)`,
		"capped-2": `budget exceeded: topic "capped" has used`,
	}
	for id, r := range got {
		want, refused := wantError[id]
		switch {
		case refused && (r.Status != wire.StatusError || !strings.Contains(r.Error, want)):
			t.Errorf("%s: status %q error %q, want an error naming %q", id, r.Status, r.Error, want)
		case !refused && r.Status != wire.StatusOK:
			t.Errorf("%s: status %q error %q, want answered", id, r.Status, r.Error)
		}
	}
	if d := jetstreamtest.Count(t, js, "AI_DEAD"); d != uint64(len(wantError)) {
		t.Errorf("%d dead letters, want %d", d, len(wantError))
	}
	for _, req := range fake.Requests() {
		for id := range wantError {
			if bytes.Contains(req.Body, []byte("input-of-"+id+`"`)) {
				t.Errorf("the provider was called for %s: %s", id, req.Body)
			}
		}
	}
	// Anything the worker published on orders.create came before this.
	if err := nc.Publish("orders.create", []byte("sentinel")); err != nil {
		t.Fatal(err)
	}
	if m, err := orders.NextMsg(10 * time.Second); err != nil || string(m.Data) != "sentinel" {
		t.Errorf("first message on orders.create: %v, %v; want the sentinel", m, err)
	}
	w.stop(t)
}

// waitOutcomes waits until AI_RESULTS holds n results and every request is
// acked, and returns the results by id.
func waitOutcomes(t *testing.T, js natsjs.JetStream, n int) map[string]wire.Result {
	t.Helper()
	jetstreamtest.Eventually(t, 30*time.Second, fmt.Sprintf("%d results stored", n), func() bool {
		return jetstreamtest.Count(t, js, "AI_RESULTS") >= uint64(n)
	})
	jetstreamtest.Eventually(t, 10*time.Second, "every request acked", func() bool {
		return jetstreamtest.Count(t, js, "AI_REQUESTS") == 0
	})
	out := map[string]wire.Result{}
	for _, m := range jetstreamtest.Messages(t, js, "AI_RESULTS") {
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("result %d: %v", m.Sequence, err)
		}
		if _, dup := out[r.ID]; dup {
			t.Fatalf("two results for %s", r.ID)
		}
		out[r.ID] = r
	}
	if len(out) != n {
		t.Fatalf("%d results, want %d", len(out), n)
	}
	return out
}

// TestProcessBatchStatsShowsNonSecrets asks a running worker's batch-stats
// for its settings: the secrets it was given (the API key, the admin token,
// the NATS password) are redacted, and settings merely named like secrets
// (MAX_BATCH_TOKENS and the rest) are shown.
func TestProcessBatchStatsShowsNonSecrets(t *testing.T) {
	t.Parallel()
	const user, password, adminToken = "worker", "nats-pw-7f3a91c2", "admin-tok-5be1d0"
	ns, err := ajs.RunServer(ajs.ServerConfig{Port: -1, StoreDir: t.TempDir(),
		Options: &server.Options{Users: []*server.User{{Username: user, Password: password}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	fake := newFake(t)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":                ns.ClientURL(),
		"NATS_USER":               user,
		"NATS_PASSWORD":           password,
		"OPENAI_BASE_URL":         fake.URL,
		"OPENAI_API_KEY":          procSecret,
		"ADMIN_TOKEN":             adminToken,
		"MAX_BATCH_TOKENS":        "90000",
		"PROVIDER_TPM":            "200000",
		"MODEL_MAX_OUTPUT_TOKENS": "gpt-4o-mini=16384",
		"MAX_OUTPUT_TOKENS_LIMIT": "4096",
		"TOPIC_BUDGETS":           "billing=1000000",
	})
	api := workerAdmin(t, w)
	req, err := http.NewRequest(http.MethodGet, api.base+"/admin/batch-stats", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := api.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/admin/batch-stats = %d %s (%v)", resp.StatusCode, body, err)
	}
	for _, secret := range []string{procSecret, adminToken, password} {
		if strings.Contains(string(body), secret) {
			t.Errorf("batch-stats shows a secret: %s", body)
		}
	}
	var st admin.StatsResponse
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"OPENAI_API_KEY":          admin.Redacted,
		"ADMIN_TOKEN":             admin.Redacted,
		"NATS_PASSWORD":           admin.Redacted,
		"NATS_TOKEN":              "",
		"NATS_USER":               user,
		"MAX_BATCH_TOKENS":        "90000",
		"PROVIDER_TPM":            "200000",
		"DEFAULT_OUTPUT_TOKENS":   "256",
		"MODEL_MAX_OUTPUT_TOKENS": "gpt-4o-mini=16384",
		"MAX_OUTPUT_TOKENS_LIMIT": "4096",
		"TOPIC_BUDGETS":           "billing=1000000",
		"ALLOWED_MODELS":          "gpt-4o-mini",
		"REPLY_SUBJECTS":          "ai.results.>,_INBOX.>",
	}
	for name, v := range want {
		if got, ok := st.Config[name]; !ok || got != v {
			t.Errorf("batch-stats %s = %q, want %q", name, got, v)
		}
	}
	w.stop(t)
}
