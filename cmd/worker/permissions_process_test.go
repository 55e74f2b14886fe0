package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// permissionsConf is the example server configuration docs/security.md
// documents.
const permissionsConf = "../../docs/nats-permissions.conf"

// serverLog keeps what a server logs at warning level and above.
type serverLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serverLog) add(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
}

func (l *serverLog) Noticef(string, ...any)         {}
func (l *serverLog) Debugf(string, ...any)          {}
func (l *serverLog) Tracef(string, ...any)          {}
func (l *serverLog) Warnf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Errorf(format string, v ...any) { l.add(format, v...) }
func (l *serverLog) Fatalf(format string, v ...any) { l.add(format, v...) }

// violations are the permission violations logged so far.
func (l *serverLog) violations() (out []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(strings.ToLower(line), "violation") {
			out = append(out, line)
		}
	}
	return out
}

// TestProcessLeastPrivilegePermissions runs a server with exactly the
// example configuration of docs/security.md (its port and store directory
// aside), the worker binary as the worker user, and both kinds of producer:
// one taking results on its inbox, and the Go client. Everything the worker
// does (streams, consumers, results, dead letters, inbox replies, the fleet's
// totals, lease and budgets, attempt records, Batch API jobs, the fleet
// flush) works within its permissions: the server logs no violation but the
// one the test provokes, a producer publishing a forged result.
func TestProcessLeastPrivilegePermissions(t *testing.T) {
	// Not parallel: the configuration reads the passwords from the
	// environment.
	passwords := map[string]string{"aibatch-worker": "worker-pw-1d7c", "producer": "producer-pw-88ab", "client": "client-pw-3e0f"}
	t.Setenv("AIBATCH_WORKER_PASSWORD", passwords["aibatch-worker"])
	t.Setenv("AIBATCH_PRODUCER_PASSWORD", passwords["producer"])
	t.Setenv("AIBATCH_CLIENT_PASSWORD", passwords["client"])
	opts, err := server.ProcessConfigFile(permissionsConf)
	if err != nil {
		t.Fatalf("%s: %v", permissionsConf, err)
	}
	opts.Port, opts.StoreDir, opts.NoSigs = -1, t.TempDir(), true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	logs := &serverLog{}
	ns.SetLogger(logs, false, false)
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	connectAs := func(user string) (*nats.Conn, natsjs.JetStream) {
		t.Helper()
		nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(user, passwords[user]),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { logs.add("%s: async error: %v", user, err) }))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		js, err := natsjs.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	fake := newFake(t)
	const adminToken = "admin-tok-perm-44"
	workerEnv := map[string]string{
		"NATS_URL":             ns.ClientURL(),
		"NATS_USER":            "aibatch-worker",
		"NATS_PASSWORD":        passwords["aibatch-worker"],
		"OPENAI_BASE_URL":      fake.URL,
		"OPENAI_API_KEY":       procSecret,
		"ADMIN_TOKEN":          adminToken,
		"MAX_WAIT":             "300ms",
		"STATS_FLUSH_INTERVAL": "100ms",
		"TOPIC_BUDGETS":        "perm=1000000",
		"RESPONSE_CACHE_TTL":   "1h",
	}
	worker := startWorker(t, "", workerEnv)
	api := workerAdmin(t, worker)
	// Readiness reads both lanes' consumers.
	api.waitReady(t, 20*time.Second)

	// A producer with its inbox. The first call fails (HTTP 500): the
	// provider's breaker opens, the request waits in the stream with a free
	// attempt recorded, and a probe brings it back.
	pnc, pjs := connectAs("producer")
	inbox := pnc.NewInbox()
	replies, err := pnc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	fake.FailNext(1, http.StatusInternalServerError)
	publish := func(subject, body string) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = []byte(body)
		m.Header.Set(wire.HeaderReplyTo, inbox)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pjs.PublishMsg(ctx, m); err != nil {
			t.Fatalf("producer: publish to %s: %v", subject, err)
		}
	}
	publish("ai.urgent.perm", `{"id":"p-urgent","input":"urgent via inbox"}`)
	publish("ai.requests.perm", `{"id":"p-batch","input":"batched via inbox"}`)
	publish("ai.requests.perm", `{"id":"p-bad","input":""}`) // a dead letter
	want := map[string]string{"p-urgent": wire.StatusOK, "p-batch": wire.StatusOK, "p-bad": wire.StatusError}
	for range want {
		m, err := replies.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("producer: waiting for results on its inbox: %v", err)
		}
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		if want[r.ID] != r.Status || m.Header.Get(wire.HeaderMsgID) == "" {
			t.Errorf("producer: result %s %s (%s) with Nats-Msg-Id %q", r.ID, r.Status, r.Error, m.Header.Get(wire.HeaderMsgID))
		}
	}
	// The same input again: answered from the response cache (AI_CACHE),
	// written once the first answer's result was stored.
	deadline := time.Now().Add(20 * time.Second)
	for n := 0; ; n++ {
		id := fmt.Sprintf("p-again-%d", n)
		publish("ai.urgent.perm", `{"id":"`+id+`","input":"urgent via inbox"}`)
		m, err := replies.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("producer: waiting for %s: %v", id, err)
		}
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		if r.Status != wire.StatusOK || r.Output != openaitest.Answer("urgent via inbox") {
			t.Fatalf("producer: %s: %+v", id, r)
		}
		if r.Cached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("producer: the repeated input was never answered from the response cache")
		}
	}

	// The Go client, reading results from AI_RESULTS.
	cnc, _ := connectAs("client")
	c, err := client.New(cnc, client.WithTopic("perm"))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r, err := c.Urgent(ctx, wire.Request{ID: "c-urgent", Input: "urgent via client"}); err != nil || r.Status != wire.StatusOK {
		t.Fatalf("client: Urgent = %+v, %v", r, err)
	}
	if r, err := c.Do(ctx, wire.Request{ID: "c-batch", Input: "batched via client"}); err != nil || r.Output != openaitest.Answer("batched via client") {
		t.Fatalf("client: Do = %+v, %v", r, err)
	}
	if got, err := c.Fetch(ctx, "c-urgent"); err != nil || got["c-urgent"].Status != wire.StatusOK {
		t.Fatalf("client: Fetch = %v, %v", got, err)
	}

	// The fleet flush goes through ai.control.flush.
	req, err := http.NewRequest(http.MethodPost, api.base+"/admin/batch-process?scope=all", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := api.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fleet flush = %d", resp.StatusCode)
	}

	// A producer cannot forge a result.
	if err := pnc.Publish("ai.results.perm", []byte(`{"id":"forged","status":"ok"}`)); err != nil {
		t.Fatal(err)
	}
	if err := pnc.Flush(); err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Eventually(t, 5*time.Second, "the server refuses the forged result", func() bool {
		for _, v := range logs.violations() {
			if strings.Contains(v, "ai.results.perm") {
				return true
			}
		}
		return false
	})
	// The fleet's totals and the topic's budget were written.
	jetstreamtest.Eventually(t, 10*time.Second, "fleet totals written", func() bool {
		code, body := api.getWith(t, "/admin/batch-stats", adminToken)
		return code == http.StatusOK && strings.Contains(string(body), `"fleet"`) && !strings.Contains(string(body), `"fleet":null`)
	})
	worker.stop(t)

	// A worker in async mode: its Batch API jobs are recorded in AI_JOBS.
	asyncEnv := map[string]string{"BATCH_MODE": "async", "JOB_POLL_INTERVAL": "50ms", "MAX_WAIT": "1h", "MAX_BATCH_SIZE": "2"}
	for k, v := range workerEnv {
		if _, set := asyncEnv[k]; !set {
			asyncEnv[k] = v
		}
	}
	asyncWorker := startWorker(t, "", asyncEnv)
	workerAdmin(t, asyncWorker)
	publish("ai.requests.jobs", `{"id":"j-1","input":"job one"}`)
	publish("ai.requests.jobs", `{"id":"j-2","input":"job two"}`)
	jetstreamtest.Eventually(t, 20*time.Second, "a Batch API job submitted", func() bool { return fake.Jobs() > 0 })
	fake.CompleteJobs()
	for range 2 {
		m, err := replies.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("producer: waiting for the job's results: %v", err)
		}
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil || r.Status != wire.StatusOK || !strings.HasPrefix(r.ID, "j-") {
			t.Errorf("job result %s (%v)", m.Data, err)
		}
	}
	asyncWorker.stop(t)

	// Every bucket was written to: the totals, the holder lease and the
	// topic's budget; an attempt record (the deferral after the 500); the
	// job's records.
	states := map[string]server.StreamState{}
	jsz, err := ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, acc := range jsz.AccountDetails {
		for _, st := range acc.Streams {
			states[st.Name] = st.State
		}
	}
	if st := states["KV_AI_STATS"]; st.NumSubjects < 3 {
		t.Errorf("AI_STATS holds %d keys, want the totals, the lease and the budget", st.NumSubjects)
	}
	for _, bucket := range []string{"KV_AI_ATTEMPTS", "KV_AI_JOBS"} {
		if st := states[bucket]; st.LastSeq == 0 {
			t.Errorf("%s was never written", bucket)
		}
	}

	var unexpected []string
	for _, v := range logs.violations() {
		if !strings.Contains(v, "ai.results.perm") {
			unexpected = append(unexpected, v)
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("permission violations with the documented permissions:\n%s", strings.Join(unexpected, "\n"))
	}
	for _, w := range []*workerProc{worker, asyncWorker} {
		if out := w.output.String(); strings.Contains(strings.ToLower(out), "permissions violation") {
			t.Errorf("a worker hit a permission violation:\n%s", out)
		}
	}
}

// getWith fetches path with the bearer token.
func (a *adminAPI) getWith(t *testing.T, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, a.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil
	}
	return resp.StatusCode, body
}
