package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

// The failure-scope rule, seen from outside the worker process: a provider
// that cannot serve anyone (an outage, a wrong key) dead-letters nothing;
// the worker stays up, says why on /readyz while /healthz stays 200, and
// answers every request once the provider is back, without a restart.

// adminAPI is a worker's admin API, as a test reaches it.
type adminAPI struct {
	base   string
	client *http.Client
}

// workerAdmin waits for the worker's "worker started" log line and returns
// its admin API: startWorker sets ADMIN_ADDR=127.0.0.1:0, so the port is
// the one the line names (admin_addr; the worker logs JSON by default).
func workerAdmin(t *testing.T, w *workerProc) *adminAPI {
	t.Helper()
	var addr string
	jetstreamtest.Eventually(t, 20*time.Second, "the worker logs its admin address", func() bool {
		sc := bufio.NewScanner(strings.NewReader(w.output.String()))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg       string `json:"msg"`
				AdminAddr string `json:"admin_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "worker started" && line.AdminAddr != "" {
				addr = line.AdminAddr
				return true
			}
		}
		return false
	})
	// No keep-alive: an idle connection's goroutines would outlive the
	// test, and TestMain's goleak check would fail the run.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return &adminAPI{base: "http://" + addr, client: client}
}

// get fetches path and returns the status code and body; a request that
// fails returns status 0.
func (a *adminAPI) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := a.client.Get(a.base + path)
	if err != nil {
		t.Logf("GET %s: %v", path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Logf("read GET %s: %v", path, err)
		return 0, nil
	}
	return resp.StatusCode, body
}

// ready returns /readyz's status code and body.
func (a *adminAPI) ready(t *testing.T) (int, admin.ReadyResponse) {
	t.Helper()
	code, body := a.get(t, "/readyz")
	var r admin.ReadyResponse
	if code != 0 {
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("/readyz answered %d with a body that is not its JSON: %v: %s", code, err, body)
		}
	}
	return code, r
}

// waitUnready waits until /readyz answers 503 naming the provider check
// with a reason that contains reason.
func (a *adminAPI) waitUnready(t *testing.T, timeout time.Duration, reason string) admin.ReadyResponse {
	t.Helper()
	var last admin.ReadyResponse
	jetstreamtest.Eventually(t, timeout, "/readyz 503 naming the provider: "+reason, func() bool {
		code, r := a.ready(t)
		last = r
		return code == http.StatusServiceUnavailable && r.Failed == admin.CheckProvider && strings.Contains(r.Error, reason)
	})
	return last
}

// waitReady waits until /readyz answers 200.
func (a *adminAPI) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	jetstreamtest.Eventually(t, timeout, "/readyz 200", func() bool {
		code, r := a.ready(t)
		return code == http.StatusOK && r.Status == "ready"
	})
}

// checkLive fails the test unless /healthz answers 200.
func (a *adminAPI) checkLive(t *testing.T) {
	t.Helper()
	if code, body := a.get(t, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %s, want 200 while the provider is unavailable", code, body)
	}
}

// stats returns the worker's figures from /admin/batch-stats.
func (a *adminAPI) stats(t *testing.T) admin.WorkerStats {
	t.Helper()
	code, body := a.get(t, "/admin/batch-stats")
	if code != http.StatusOK {
		t.Fatalf("/admin/batch-stats = %d %s", code, body)
	}
	var r admin.StatsResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/admin/batch-stats: %v: %s", err, body)
	}
	return r.Worker
}

// A 60-second outage (HTTP 500 to every call) with the worker's default
// settings: MAX_DELIVER=5, RETRY_BACKOFF=1s, PROVIDER_PROBE_INTERVAL=1m,
// MAX_BATCH_SIZE=50, MAX_INFLIGHT_BATCHES=4. Nothing is dead-lettered, the
// worker says why it is not ready, probes follow the schedule, and every
// request is answered once the provider is back.
func TestProcessOutageWithDefaultSettings(t *testing.T) {
	t.Parallel()
	const (
		n      = 200
		outage = 60 * time.Second
	)
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":        ns.ClientURL(),
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
	})
	waitStreams(t, js)
	api := workerAdmin(t, w)
	api.waitReady(t, 20*time.Second)

	// The outage starts before the first request exists, so the first
	// call the worker makes fails.
	fake.FailFor(outage, http.StatusInternalServerError)
	outageEnds := time.Now().Add(outage)
	publishRequests(t, js, "ai.requests.proc", n)

	r := api.waitUnready(t, 20*time.Second, "HTTP 500")
	api.checkLive(t)
	if time.Now().After(outageEnds) {
		t.Fatal("the checks took the whole outage: they did not see it")
	}
	t.Logf("/readyz during the outage: %+v", r)
	if d, res := jetstreamtest.Count(t, js, "AI_DEAD"), jetstreamtest.Count(t, js, "AI_RESULTS"); d != 0 || res != 0 {
		t.Fatalf("during the outage: %d dead letters, %d results; want none", d, res)
	}
	if w.exited() {
		t.Fatalf("the worker exited during the outage: %v", w.state)
	}

	// The first probe after the outage closes the breaker: by the schedule
	// it comes 63s after the breaker opened (see below); give it room.
	waitResults(t, js, n, outage+60*time.Second) // every result ok, no dead letter
	api.waitReady(t, 20*time.Second)

	// Calls during the outage. Every call the fake failed is one made
	// during the outage (FailFor is its only fault), and after it every
	// call reaches the model and is recorded by CallSizes, so the failed
	// calls are Calls() - len(CallSizes()), whatever the timing.
	//
	// The bound, from the design:
	//   - batch calls: the breaker opens on the first failed call; after
	//     that a call checks the breaker before it is made and the lanes
	//     stop fetching. Only the batches already fetched can have been
	//     sent: one per in-flight slot, MAX_INFLIGHT_BATCHES=4 (the urgent
	//     lane has nothing to send). 200 requests are 4 batches of 50
	//     anyway.
	//   - probes: the breaker opens at T, no earlier than the outage's
	//     start t0 (nothing was called before the requests were published).
	//     Probes wait 1, 2, 4, 8, 16, 32s (doubling, under the 1m
	//     PROVIDER_PROBE_INTERVAL), so they come at T+1, T+3, T+7, T+15,
	//     T+31 and T+63 at the earliest (a timer never fires early; a
	//     failed probe sets the next wait from when it failed). The
	//     outage ends at t0+60 <= T+60, so at most 5 probes fail; the
	//     sixth finds the provider back.
	// Hence at most 4 + 5 = 9 failed calls, and at most 5 failed probes.
	const maxFailedBatchCalls, maxFailedProbes = 4, 5
	failed := fake.Calls() - int64(len(fake.CallSizes()))
	probes := api.stats(t).Probes // the failed ones and the one that succeeded
	t.Logf("during the %s outage: %d failed calls, of which %d probes (%d probes in all); %d calls in all",
		outage, failed, probes-1, probes, fake.Calls())
	if failed > maxFailedBatchCalls+maxFailedProbes {
		t.Fatalf("%d calls failed during the outage, want at most %d (%d batch calls, %d probes)",
			failed, maxFailedBatchCalls+maxFailedProbes, maxFailedBatchCalls, maxFailedProbes)
	}
	if probes < 2 || probes-1 > maxFailedProbes {
		t.Fatalf("%d probes, want 1 to %d failed ones and the one that found the provider back", probes, maxFailedProbes)
	}
	if batchCalls := failed - (probes - 1); batchCalls < 1 || batchCalls > maxFailedBatchCalls {
		t.Fatalf("%d failed batch calls, want 1 to %d", batchCalls, maxFailedBatchCalls)
	}
	w.stop(t)
}

// A worker whose OPENAI_API_KEY the provider rejects stays up, says so on
// /readyz, dead-letters nothing, and answers every request once the
// provider accepts the key, without a restart.
func TestProcessWrongKeyWaitsForTheKey(t *testing.T) {
	t.Parallel()
	const n = 100
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	fake.RequireKey("sk-the-one-the-provider-wants") // not the worker's
	w := startWorker(t, "", map[string]string{
		"NATS_URL":                ns.ClientURL(),
		"OPENAI_BASE_URL":         fake.URL,
		"OPENAI_API_KEY":          procSecret,
		"PROVIDER_PROBE_INTERVAL": "2s",
	})
	waitStreams(t, js)
	api := workerAdmin(t, w)
	publishRequests(t, js, "ai.requests.proc", n)

	const reason = "rejected the API key (HTTP 401)"
	r := api.waitUnready(t, 20*time.Second, reason)
	t.Logf("/readyz with a rejected key: %+v", r)
	api.checkLive(t)
	// Probes after 1s, then every 2s: wait for four, several probe
	// intervals, and check nothing was given up meanwhile.
	jetstreamtest.Eventually(t, 30*time.Second, "4 probes", func() bool { return api.stats(t).Probes >= 4 })
	api.waitUnready(t, 5*time.Second, reason)
	api.checkLive(t)
	if w.exited() {
		t.Fatalf("the worker exited with a rejected key: %v", w.state)
	}
	if d, res := jetstreamtest.Count(t, js, "AI_DEAD"), jetstreamtest.Count(t, js, "AI_RESULTS"); d != 0 || res != 0 {
		t.Fatalf("with a rejected key: %d dead letters, %d results; want none", d, res)
	}
	if q := jetstreamtest.Count(t, js, "AI_REQUESTS"); q != n {
		t.Fatalf("%d requests in the stream, want all %d waiting", q, n)
	}
	if s := api.stats(t); s.DeadLetters != 0 || s.Retries != 0 {
		t.Fatalf("worker stats: %d dead letters, %d retries; a rejected key must spend no attempt", s.DeadLetters, s.Retries)
	}

	fake.RequireKey(procSecret)           // the provider now accepts the worker's key
	waitResults(t, js, n, 30*time.Second) // every result ok, no dead letter
	api.waitReady(t, 20*time.Second)
	if w.exited() {
		t.Fatal("the worker exited")
	}
	w.stop(t)
}
