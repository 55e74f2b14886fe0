package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// The fleet's quota with real worker processes against a fake OpenAI
// server that records when each call arrives. The acceptance asks for the
// calls of a first minute, so each test runs a minute or more: they run in
// parallel.

// quotaWindow is the window the limits are counted in: a minute.
const quotaWindow = time.Minute

// callLog is a fake OpenAI server whose chat completion calls are
// recorded as they arrive, answered or not.
type callLog struct {
	fake *openaitest.Server
	url  string // OPENAI_BASE_URL

	mu       sync.Mutex
	arrivals []time.Time
	// refuse, when set, answers a call itself instead of the fake:
	// returns true when it did.
	refuse func(w http.ResponseWriter, n int) bool
}

func newCallLog(t *testing.T) *callLog {
	t.Helper()
	c := &callLog{fake: openaitest.NewUnstartedServer()}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == openaitest.ChatCompletionsPath {
			c.mu.Lock()
			c.arrivals = append(c.arrivals, time.Now())
			n, refuse := len(c.arrivals), c.refuse
			c.mu.Unlock()
			if refuse != nil && refuse(w, n) {
				return
			}
		}
		c.fake.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL + "/v1"
	return c
}

// calls returns the arrivals so far.
func (c *callLog) calls() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.arrivals)
}

// between counts the calls that arrived in [from, to).
func between(calls []time.Time, from, to time.Time) int {
	n := 0
	for _, at := range calls {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// maxInWindow is the most calls that arrived in any window of length d
// starting at a call.
func maxInWindow(calls []time.Time, d time.Duration) int {
	best := 0
	for i, from := range calls {
		best = max(best, between(calls[i:], from, from.Add(d)))
	}
	return best
}

// sleepUntil waits until t: the test measures what happens in a window of
// time, it does not wait for an outcome.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// quotaFleet starts n workers on a fresh server sharing the fake behind
// log, with env added to each, waits until every one has started, and
// publishes backlog requests of 10 per call (MAX_BATCH_SIZE=10).
func quotaFleet(t *testing.T, log *callLog, n, backlog int, env map[string]string) ([]*workerProc, []string) {
	t.Helper()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	var workers []*workerProc
	var admins []string
	for range n {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		full := map[string]string{
			"NATS_URL":         ns.ClientURL(),
			"OPENAI_BASE_URL":  log.url,
			"OPENAI_API_KEY":   procSecret,
			"MAX_BATCH_SIZE":   "10",
			"POLL_INTERVAL":    "100ms",
			"SHUTDOWN_TIMEOUT": "2s",
			"LOG_LEVEL":        "info",
			"ADMIN_ADDR":       addr,
		}
		maps.Copy(full, env)
		workers = append(workers, startWorker(t, "", full))
		admins = append(admins, addr)
	}
	waitStreams(t, js)
	for i, w := range workers {
		jetstreamtest.Eventually(t, 30*time.Second, fmt.Sprintf("worker %d started", i), func() bool {
			return strings.Contains(w.output.String(), `"worker started"`)
		})
	}
	publishRequests(t, js, "ai.requests.proc", backlog)
	return workers, admins
}

// batchStats reads a worker's batch-stats.
func batchStats(t *testing.T, addr string) admin.StatsResponse {
	t.Helper()
	status, body := get(t, "http://"+addr+"/admin/batch-stats")
	if status != http.StatusOK {
		t.Fatalf("batch-stats: %d %s", status, body)
	}
	var st admin.StatsResponse
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("batch-stats: %v: %s", err, body)
	}
	return st
}

// quotaCalls is the acceptance: PROVIDER_RPM=30 and a backlog that needs
// 100 calls (1,000 requests, 10 per call) make 25 to 33 calls in the
// first minute: within the limit +10%, and at least 85% of it.
const (
	quotaRPM     = 30
	quotaBacklog = 1000
	quotaLow     = 25 // 85% of 30, rounded down
	quotaHigh    = 33 // 30 + 10%
)

// quotaRun is one scenario's fleet as it runs.
type quotaRun struct {
	log     *callLog
	workers []*workerProc
	admins  []string
	t0      time.Time // the first call
	calls   []time.Time
	// problems are what went wrong while it ran, outside the test's
	// goroutine; notes what it measured then.
	problems, notes []string
}

func (r *quotaRun) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// quotaScenario is one fleet of the quota test: its workers and backlog,
// what the fake does, what happens while it runs and what it must show.
type quotaScenario struct {
	name    string
	workers int
	backlog int
	env     map[string]string
	// fake sets the fake up before the workers start.
	fake func(log *callLog)
	// run lasts from the first call to the end of the scenario; it must
	// not call t (it runs beside the others), and may record problems.
	run func(r *quotaRun)
	// check judges the calls, in the test's goroutine.
	check func(t *testing.T, r *quotaRun)
}

// fetchStats reads a worker's batch-stats, without t.
func fetchStats(addr string) (admin.StatsResponse, error) {
	var st admin.StatsResponse
	resp, err := http.Get("http://" + addr + "/admin/batch-stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("batch-stats: HTTP %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// firstMinute checks the calls of the first minute are within [low, high]
// and no minute has more than high.
func firstMinute(t *testing.T, r *quotaRun, low, high int) {
	t.Helper()
	first := between(r.calls, r.t0, r.t0.Add(quotaWindow))
	t.Logf("%d calls in the first minute (%d in all)", first, len(r.calls))
	if first < low || first > high {
		t.Errorf("%d calls in the first minute; want %d to %d", first, low, high)
	}
	if most := maxInWindow(r.calls, quotaWindow); most > high {
		t.Errorf("%d calls in some minute; want at most %d", most, high)
	}
}

// TestProcessQuota runs the fleets of every quota scenario side by side,
// real worker processes against a fake each, for a minute and a bit: the
// acceptance counts the calls of a first minute, and side by side they
// take that minute once, whatever go test's -parallel. Each fleet has a
// server of its own.
func TestProcessQuota(t *testing.T) {
	t.Parallel()
	rpm := map[string]string{"PROVIDER_RPM": strconv.Itoa(quotaRPM)}
	scenarios := []quotaScenario{
		{
			name: "3 workers share the limit", workers: 3, backlog: quotaBacklog, env: rpm,
			run: func(r *quotaRun) {
				// Mid-window every worker sees the fleet and its share.
				sleepUntil(r.t0.Add(10 * time.Second))
				for i, addr := range r.admins {
					st, err := fetchStats(addr)
					q := st.Quota
					if err != nil || q == nil || q.Workers != 3 || q.RPM != quotaRPM || q.RequestsPerMinute == nil || math.Abs(*q.RequestsPerMinute-quotaRPM/3) > 0.01 {
						r.problem("worker %d batch-stats quota = %+v, %v; want 3 workers, RPM %d, %d a minute each", i, q, err, quotaRPM, quotaRPM/3)
					}
				}
				sleepUntil(r.t0.Add(quotaWindow + time.Second))
			},
			check: func(t *testing.T, r *quotaRun) { firstMinute(t, r, quotaLow, quotaHigh) },
		},
		{
			name: "1 worker uses the limit", workers: 1, backlog: quotaBacklog, env: rpm,
			run:   func(r *quotaRun) { sleepUntil(r.t0.Add(quotaWindow + time.Second)) },
			check: func(t *testing.T, r *quotaRun) { firstMinute(t, r, quotaLow, quotaHigh) },
		},
		{
			// One worker crashes (SIGKILL), one stops (SIGTERM): the
			// survivor takes the whole limit. The first minute stays
			// within it, and above 85% of it.
			name: "3 workers then 1", workers: 3, backlog: quotaBacklog, env: rpm,
			run: func(r *quotaRun) {
				sleepUntil(r.t0.Add(25 * time.Second))
				if err := r.workers[0].cmd.Process.Kill(); err != nil {
					r.problem("SIGKILL worker 0: %v", err)
				}
				if err := r.workers[1].cmd.Process.Signal(syscall.SIGTERM); err != nil {
					r.problem("SIGTERM worker 1: %v", err)
				}
				scaled := time.Now()
				// Two heartbeats (1s) after the crash, and the stop's
				// SHUTDOWN_TIMEOUT (2s), the survivor has the whole limit.
				for {
					st, err := fetchStats(r.admins[2])
					if err == nil && st.Quota != nil && st.Quota.Workers == 1 && st.Quota.Share == 1 {
						break
					}
					if time.Since(scaled) > 5*time.Second {
						r.problem("the survivor still shares the limit 5s after the others went: %+v, %v", st.Quota, err)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				r.notes = append(r.notes, fmt.Sprintf("scaled to 1 worker %v after the first call; the survivor had the whole limit %v later",
					scaled.Sub(r.t0).Round(time.Second), time.Since(scaled).Round(100*time.Millisecond)))
				sleepUntil(r.t0.Add(quotaWindow + time.Second))
			},
			check: func(t *testing.T, r *quotaRun) {
				// Above 85% of 30 is 26 or more.
				firstMinute(t, r, quotaLow+1, quotaHigh)
				if code := r.workers[1].wait(t, 10*time.Second); code != 0 {
					t.Errorf("the worker stopped with SIGTERM exited %d", code)
				}
			},
		},
		{
			// The fake's account allows 60 calls a minute; the two workers
			// are told 180 (PROVIDER_RPM above the account's, as a
			// mistaken setting would). The answers' x-ratelimit-* headers
			// slow the fleet down as the account's bucket empties: no call
			// is refused, and the fleet ends up well below the 3 calls a
			// second it was told.
			name: "headers slow the fleet before a 429", workers: 2, backlog: 2000, env: map[string]string{"PROVIDER_RPM": "180"},
			fake: func(log *callLog) { log.fake.SetRateLimit(60, 0) },
			run:  func(r *quotaRun) { sleepUntil(r.t0.Add(45 * time.Second)) },
			check: func(t *testing.T, r *quotaRun) {
				const run = 45 * time.Second
				last := between(r.calls, r.t0.Add(run-15*time.Second), r.t0.Add(run))
				t.Logf("told 180 a minute, the account allows 60: %d calls in %v, %d in the last 15s, 429s %d, fewest left %d",
					len(r.calls), run, last, r.log.fake.RateLimited(), r.log.fake.LowestRemaining())
				if n := r.log.fake.RateLimited(); n != 0 {
					t.Errorf("%d calls refused (429); want the fleet to slow down first", n)
				}
				// Told 3 a second, it would make 45 calls in 15s; the
				// headers hold it near the account's refill of 1 a second.
				if last > 30 {
					t.Errorf("%d calls in the last 15s; want the fleet slowed well below the 45 PROVIDER_RPM allows", last)
				}
				if len(r.calls) <= 60 {
					t.Errorf("%d calls in %v; want more than the account's first minute (60): it kept calling at the refill", len(r.calls), run)
				}
				q := batchStats(t, r.admins[0]).Quota
				if q == nil || q.Remaining == nil || q.Remaining.Requests.Limit != 60 || q.FleetRequestsPerMinute == nil || *q.FleetRequestsPerMinute >= 180 {
					t.Errorf("batch-stats quota = %+v; want what the headers say is left and a fleet pace below 180", q)
				}
				status, body := get(t, "http://"+r.admins[0]+"/metrics")
				for _, want := range []string{`aibatch_quota_remaining{limit="requests"}`, "aibatch_quota_workers 2", "aibatch_quota_share 0.5",
					`aibatch_quota_requests_per_minute{scope="fleet"}`} {
					if status != http.StatusOK || !strings.Contains(body, want) {
						t.Errorf("/metrics has no %s:\n%s", want, body)
					}
				}
			},
		},
		{
			// A Retry-After one worker receives pauses the whole fleet:
			// after the 429, no call arrives from either worker until it
			// has passed. 2 calls a second between them, one each: without
			// the fleet's pause the worker that was not refused would make
			// about 5 calls meanwhile.
			name: "Retry-After pauses the fleet", workers: 2, backlog: quotaBacklog, env: map[string]string{"PROVIDER_RPM": "120"},
			fake: func(log *callLog) {
				log.refuse = func(w http.ResponseWriter, n int) bool {
					if n != 6 {
						return false
					}
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Retry-After", strconv.Itoa(int(retryPause.Seconds())))
					w.WriteHeader(http.StatusTooManyRequests)
					_, _ = w.Write([]byte(`{"error":{"message":"Rate limit reached.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`))
					return true
				}
			},
			run: func(r *quotaRun) {
				for len(r.log.calls()) < 6 && time.Since(r.t0) < time.Minute {
					time.Sleep(50 * time.Millisecond)
				}
				sleepUntil(r.log.calls()[min(5, len(r.log.calls())-1)].Add(retryPause + 3*time.Second))
			},
			check: func(t *testing.T, r *quotaRun) {
				if len(r.calls) < 6 {
					t.Fatalf("%d calls; the 6th was to be refused", len(r.calls))
				}
				at := r.calls[5] // the 429 was answered as it arrived
				// A call already on its way when the 429 was answered may
				// arrive just after it.
				during := between(r.calls, at.Add(100*time.Millisecond), at.Add(retryPause))
				after := between(r.calls, at.Add(retryPause), at.Add(retryPause+3*time.Second))
				t.Logf("429 with Retry-After %v: %d calls during the pause, %d in the 3s after", retryPause, during, after)
				if during != 0 {
					t.Errorf("%d calls during the pause; want none from either worker", during)
				}
				if after == 0 {
					t.Errorf("no call in the 3s after the pause; want the fleet to carry on")
				}
			},
		},
	}
	runs := make([]*quotaRun, len(scenarios))
	for i, sc := range scenarios {
		r := &quotaRun{log: newCallLog(t)}
		if sc.fake != nil {
			sc.fake(r.log)
		}
		r.workers, r.admins = quotaFleet(t, r.log, sc.workers, sc.backlog, sc.env)
		runs[i] = r
	}
	var wg sync.WaitGroup
	for i, sc := range scenarios {
		r := runs[i]
		wg.Go(func() {
			deadline := time.Now().Add(time.Minute)
			for len(r.log.calls()) == 0 {
				if time.Now().After(deadline) {
					r.problem("no call within a minute of the backlog")
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			r.t0 = r.log.calls()[0]
			sc.run(r)
			r.calls = r.log.calls()
		})
	}
	wg.Wait()
	for i, sc := range scenarios {
		r := runs[i]
		t.Run(sc.name, func(t *testing.T) {
			for _, p := range r.problems {
				t.Error(p)
			}
			for _, n := range r.notes {
				t.Log(n)
			}
			sc.check(t, r)
		})
	}
	// Every worker still running stops at once; each exits cleanly.
	var stopping []*workerProc
	for _, r := range runs {
		for _, w := range r.workers {
			if !w.exited() {
				_ = w.cmd.Process.Signal(syscall.SIGTERM)
				stopping = append(stopping, w)
			}
		}
	}
	for _, w := range stopping {
		if code := w.wait(t, 15*time.Second); code != 0 {
			t.Errorf("worker %d exited %d after SIGTERM", w.cmd.Process.Pid, code)
		}
	}
}

// retryPause is the Retry-After of the pause scenario's 429.
const retryPause = 5 * time.Second
