package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// Scenario 13: partitions. One request stream is one stream leader: every
// request is stored, delivered and acked through it. Past what it carries,
// requests are partitioned by subject mapping: the server rewrites a
// producer's ai.requests.<topic> to ai.requests.<N>.<topic>, N =
// partition(P, topic) (a hash of the topic), and each partition has a
// stream (AI_REQUESTS_P<N>), consumers and workers of its own. A topic
// always maps to the same partition, and a group (model, instructions,
// topic) lives within its topic, so groups never fragment across
// partitions. Producers do not change: they publish to ai.requests.<topic>
// as before. See docs/scaling.md.
//
// On one server it measures the ceiling of 1, 2 and 4 partitions (fetch +
// ack loops, one per partition, side by side; and worker processes end to
// end, one per partition), that no topic lands in two partitions, and how
// well a fleet keeps one provider quota (PROVIDER_RPM, shared through
// QUOTA_SCOPE) as partitions and workers grow.

// partitionTopics is how many topics the requests are spread over.
const partitionTopics = 64

// partitionMappings are the server's subject mappings for p partitions:
// the topic's first token picks the partition.
func partitionMappings(p int) map[string]string {
	return map[string]string{
		"ai.requests.*": fmt.Sprintf("ai.requests.{{partition(%d,1)}}.{{wildcard(1)}}", p),
		"ai.urgent.*":   fmt.Sprintf("ai.urgent.{{partition(%d,1)}}.{{wildcard(1)}}", p),
	}
}

// partTopology is partition i's streams: requests, results and dead
// letters of its own, so no stream carries more than one partition.
func partTopology(i int) jetstream.Topology {
	p := strconv.Itoa(i)
	return jetstream.Topology{
		RequestStream: "AI_REQUESTS_P" + strconv.Itoa(i), RequestSubjects: []string{"ai.requests." + p + ".>"},
		UrgentSubjects: []string{"ai.urgent." + p + ".>"},
		ResultStream:   "AI_RESULTS_P" + strconv.Itoa(i), ResultSubjects: []string{"ai.results." + p + ".>"},
		DeadStream: "AI_DEAD_P" + strconv.Itoa(i), DeadSubjects: []string{"ai.dead." + p + ".>"},
	}.WithDefaults()
}

// partEnv is the environment of a worker of partition i: partTopology's
// settings.
func partEnv(i int) map[string]string {
	t := partTopology(i)
	p := strconv.Itoa(i)
	return map[string]string{
		"STREAM": t.RequestStream, "REQUEST_SUBJECTS": t.RequestSubjects[0], "URGENT_SUBJECTS": t.UrgentSubjects[0],
		"RESULTS_STREAM": t.ResultStream, "RESULTS_PREFIX": "ai.results." + p,
		"DEAD_STREAM": t.DeadStream, "DEAD_PREFIX": "ai.dead." + p,
	}
}

// partitioned is a server with p partitions (p 0: one stream, the default
// topology, no mapping) and the topologies of its streams.
type partitioned struct {
	*broker
	topologies []jetstream.Topology
}

// startPartitioned starts a server on a new store under root with p
// partitions and creates their streams and consumers.
func startPartitioned(ctx context.Context, root, name string, p int) (*partitioned, error) {
	dir := filepath.Join(root, name)
	_ = os.RemoveAll(dir)
	b, err := startBroker(dir)
	if err != nil {
		return nil, err
	}
	pt := &partitioned{broker: b, topologies: []jetstream.Topology{topology()}}
	if p > 0 {
		pt.topologies = nil
		for src, dest := range partitionMappings(p) {
			if err := b.ns.GlobalAccount().AddMapping(src, dest); err != nil {
				b.stop(true)
				return nil, fmt.Errorf("map %s to %s: %w", src, dest, err)
			}
		}
		for i := range p {
			pt.topologies = append(pt.topologies, partTopology(i))
		}
	}
	c, err := connect(b.url(), "bench-setup")
	if err != nil {
		b.stop(true)
		return nil, err
	}
	defer c.close()
	for _, t := range pt.topologies {
		if _, _, _, err := jetstream.Ensure(ctx, c.js, t); err != nil {
			b.stop(true)
			return nil, fmt.Errorf("set up %s: %w", t.RequestStream, err)
		}
	}
	return pt, nil
}

// publishTopics publishes n requests of size bytes round-robin over
// partitionTopics topics, ai.requests.t<k>, as producers would, and waits
// until the server stored them.
func (c *client) publishTopics(ctx context.Context, prefix string, n, size int) error {
	const window = 2048
	before := c.pubErrs.Load()
	for i := range n {
		subject := "ai.requests.t" + strconv.Itoa(i%partitionTopics)
		if _, err := c.js.PublishAsync(subject, requestBody(prefix, i, size)); err != nil {
			return fmt.Errorf("publish request %d: %w", i, err)
		}
		if (i+1)%window == 0 {
			if err := c.waitPublished(ctx); err != nil {
				return err
			}
		}
	}
	if err := c.waitPublished(ctx); err != nil {
		return err
	}
	if failed := c.pubErrs.Load() - before; failed > 0 {
		return fmt.Errorf("publish requests: the server refused %d of %d", failed, n)
	}
	return nil
}

// spread returns how many requests each partition's stream holds, and how
// many topics were found in more than one partition (a fragmented group).
func (pt *partitioned) spread(ctx context.Context) (counts []int, split int, err error) {
	c, err := connect(pt.url(), "bench-spread")
	if err != nil {
		return nil, 0, err
	}
	defer c.close()
	seen := map[string]int{}
	for _, t := range pt.topologies {
		s, err := c.js.Stream(ctx, t.RequestStream)
		if err != nil {
			return nil, 0, fmt.Errorf("open stream %s: %w", t.RequestStream, err)
		}
		info, err := s.Info(ctx, natsjs.WithSubjectFilter(">"))
		if err != nil {
			return nil, 0, fmt.Errorf("read stream %s: %w", t.RequestStream, err)
		}
		counts = append(counts, int(info.State.Msgs))
		for subject := range info.State.Subjects {
			parts := strings.Split(subject, ".")
			seen[parts[len(parts)-1]]++
		}
	}
	for _, n := range seen {
		if n > 1 {
			split++
		}
	}
	return counts, split, nil
}

// empty reports whether every partition's request stream is empty.
func (pt *partitioned) empty(ctx context.Context, c *client) (bool, error) {
	for _, t := range pt.topologies {
		n, err := c.streamMsgs(ctx, t.RequestStream)
		if err != nil || n > 0 {
			return false, err
		}
	}
	return true, nil
}

// partCounts are the partition counts measured; 0 is one stream without a
// mapping, for the mapping's cost.
var partCounts = []int{0, 1, 2, 4}

func partName(p int) string {
	if p == 0 {
		return "1 stream, no mapping"
	}
	if p == 1 {
		return "1 partition"
	}
	return strconv.Itoa(p) + " partitions"
}

// scenarioPartition is scenario 13.
func scenarioPartition(ctx context.Context, o *options, r *report) error {
	root := filepath.Join(o.TmpDir, "partition")
	defer os.RemoveAll(root)
	const sc = "13 partitions"
	// Every topic gets whole calls: the end-to-end drain is not left
	// waiting for MAX_WAIT with a partial group per topic.
	whole := partitionTopics * o.TPBatches[0]
	o.PartE2ERequests = (o.PartE2ERequests + whole - 1) / whole * whole
	detail := map[string]any{"topics": partitionTopics, "requests": o.PartRequests, "e2e_requests": o.PartE2ERequests}

	// The ceiling: fetch + ack loops, one per partition, side by side.
	rates := map[int][]float64{}
	for run := range o.Runs {
		// Rotate the order every run so no count always goes first.
		for k := range partCounts {
			p := partCounts[(k+run)%len(partCounts)]
			rate, counts, split, err := partitionCeiling(ctx, o, root, p)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", partName(p), run+1, err)
			}
			rates[p] = append(rates[p], rate)
			r.progress("13 partitions: run %d %-22s fetch + ack %8.0f req/s; requests per partition %v, topics in two partitions %d", run+1, partName(p), rate, counts, split)
			if run == 0 && p > 1 { // the spread is the same every run
				detail[fmt.Sprintf("spread_%d", p)] = counts
				r.add(row{Scenario: sc, Measure: fmt.Sprintf("%d partitions: topics found in more than one partition (groups split)", p), Unit: "count", summary: summarize([]float64{float64(split)}), Target: exactly(0)})
				r.add(row{Scenario: sc, Measure: fmt.Sprintf("%d partitions: largest partition / mean (%d topics)", p, partitionTopics), Unit: "ratio", summary: summarize([]float64{imbalance(counts)})})
			}
		}
	}
	for _, p := range partCounts {
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("fetch + ack, %s, one loop each (fetch %d, %d in flight), %s x %d B", partName(p), o.TPBatches[0], o.Inflight, countLabel(o.PartRequests), o.TPSize), Unit: "req/s", summary: summarize(rates[p])})
	}
	detail["fetch_ack_req_per_s"] = rates

	// End to end: one worker process per partition.
	bin, err := buildWorker(ctx, o.TmpDir, false)
	if err != nil {
		return err
	}
	e2e := map[int][]float64{}
	for run := range o.Runs {
		counts := partCounts[1:]
		for k := range counts {
			p := counts[(k+run)%len(counts)]
			rate, err := partitionE2E(ctx, o, bin, root, p, run)
			if err != nil {
				return fmt.Errorf("%s end to end run %d: %w", partName(p), run+1, err)
			}
			e2e[p] = append(e2e[p], rate)
			r.progress("13 partitions: run %d %-22s end to end %8.0f req/s", run+1, partName(p), rate)
		}
	}
	for _, p := range partCounts[1:] {
		r.add(row{Scenario: sc, Measure: fmt.Sprintf("end to end, %s, a worker process each (openai to the fake, batch %d), %s x %d B", partName(p), o.TPBatches[0], countLabel(o.PartE2ERequests), o.E2ESize), Unit: "req/s", summary: summarize(e2e[p])})
	}
	detail["e2e_req_per_s"] = e2e

	// The quota as partitions and workers grow.
	var cells []map[string]any
	for _, cell := range quotaCells {
		res, err := partitionQuota(ctx, o, bin, root, cell)
		if err != nil {
			return fmt.Errorf("quota %dx%d: %w", cell.partitions, cell.workers, err)
		}
		cells = append(cells, res.detail())
		r.progress("13 partitions: quota, %d partitions x %d workers: %d calls in %s against %.0f allowed (%.2f), at most %d in any %s (%.2f of its share)",
			cell.partitions, cell.workers, res.calls, o.PartQuotaWindow, res.allowed, res.fill(), res.most, quotaBurstWindow, res.burst())
		label := fmt.Sprintf("quota, %d partition(s) x %d worker(s) = %d, PROVIDER_RPM %d shared", cell.partitions, cell.workers, cell.partitions*cell.workers, o.PartQuotaRPM)
		r.add(row{Scenario: sc, Measure: label + fmt.Sprintf(": calls in %s / allowed", o.PartQuotaWindow), Unit: "ratio", summary: summarize([]float64{res.fill()}), Target: atLeast(0.85)})
		r.add(row{Scenario: sc, Measure: label + fmt.Sprintf(": most calls in any %s / allowed", quotaBurstWindow), Unit: "ratio", summary: summarize([]float64{res.burst()}), Target: never(1.1)})
	}
	detail["quota"] = cells
	r.detail("partition", detail)
	return nil
}

// imbalance is the largest count over the mean.
func imbalance(counts []int) float64 {
	sum, most := 0, 0
	for _, n := range counts {
		sum += n
		most = max(most, n)
	}
	if sum == 0 {
		return 0
	}
	return float64(most) * float64(len(counts)) / float64(sum)
}

// partitionCeiling preloads o.PartRequests requests over the topics into p
// partitions and drains every partition with a fetch + ack loop of its
// own, all at once; it returns the requests per second of the whole.
func partitionCeiling(ctx context.Context, o *options, root string, p int) (float64, []int, int, error) {
	pt, err := startPartitioned(ctx, root, "ceiling", p)
	if err != nil {
		return 0, nil, 0, err
	}
	defer pt.stop(true)
	c, err := connect(pt.url(), "bench-producer")
	if err != nil {
		return 0, nil, 0, err
	}
	err = c.publishTopics(ctx, "c-", o.PartRequests, o.TPSize)
	c.close()
	if err != nil {
		return 0, nil, 0, err
	}
	counts, split, err := pt.spread(ctx)
	if err != nil {
		return 0, nil, 0, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(pt.topologies))
	start := time.Now()
	for i, t := range pt.topologies {
		wg.Go(func() {
			lc, err := connect(pt.url(), "bench-fetch-ack")
			if err != nil {
				errs[i] = err
				return
			}
			defer lc.close()
			bq, _, _, err := jetstream.Ensure(ctx, lc.js, t)
			if err != nil {
				errs[i] = err
				return
			}
			if _, err := drainLoop(ctx, lc, bq.Consumer(), loopFetchAck, counts[i], o.TPBatches[0], o.Inflight, nil); err != nil {
				errs[i] = err
				return
			}
			errs[i] = lc.nc.FlushTimeout(10 * time.Second)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, nil, 0, err
	}
	vc, err := connect(pt.url(), "bench-verify")
	if err != nil {
		return 0, nil, 0, err
	}
	defer vc.close()
	for deadline := time.Now().Add(15 * time.Second); ; {
		done, err := pt.empty(ctx, vc)
		if err != nil {
			return 0, nil, 0, err
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			return 0, nil, 0, errors.New("requests left after the drain")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return float64(o.PartRequests) / elapsed.Seconds(), counts, split, nil
}

// partitionE2E preloads o.PartE2ERequests requests into p partitions and
// drains them with one worker process per partition, against a fake
// OpenAI server in the harness; it returns the requests per second of the
// whole, from the workers' start to every partition's stream empty.
func partitionE2E(ctx context.Context, o *options, bin, root string, p, run int) (float64, error) {
	pt, err := startPartitioned(ctx, root, "e2e", p)
	if err != nil {
		return 0, err
	}
	defer pt.stop(true)
	c, err := connect(pt.url(), "bench-producer")
	if err != nil {
		return 0, err
	}
	defer c.close()
	if err := c.publishTopics(ctx, "e-", o.PartE2ERequests, o.E2ESize); err != nil {
		return 0, err
	}
	fake := openaitest.NewServer()
	defer fake.Close()
	var workers []*workerProcess
	defer func() {
		for _, w := range workers {
			_ = w.stop()
		}
	}()
	start := time.Now()
	for i := range p {
		env := partEnv(i)
		env["NATS_URL"], env["OPENAI_BASE_URL"], env["OPENAI_API_KEY"] = pt.url(), fake.URL, "bench-key-not-secret"
		env["MAX_BATCH_SIZE"], env["MAX_INFLIGHT_BATCHES"] = strconv.Itoa(o.TPBatches[0]), strconv.Itoa(o.Inflight)
		env["ADMIN_ADDR"] = ""
		w, err := startWorkerProcess(bin, filepath.Join(root, fmt.Sprintf("e2e-work-%d", i)), env,
			filepath.Join(o.TmpDir, fmt.Sprintf("partition-e2e-%d-%d-%d.log", p, run+1, i)), "")
		if err != nil {
			return 0, err
		}
		workers = append(workers, w)
	}
	for deadline := time.Now().Add(10 * time.Minute); ; {
		done, err := pt.empty(ctx, c)
		if err != nil {
			return 0, err
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			return 0, errors.New("requests left after 10 minutes")
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	var results uint64
	for _, t := range pt.topologies {
		n, err := c.streamMsgs(ctx, t.ResultStream)
		if err != nil {
			return 0, err
		}
		results += n
	}
	if results != uint64(o.PartE2ERequests) {
		return 0, fmt.Errorf("%d results for %d requests", results, o.PartE2ERequests)
	}
	return float64(o.PartE2ERequests) / elapsed.Seconds(), nil
}

// quotaCell is one fleet of the quota measurement: partitions, and worker
// processes per partition.
type quotaCell struct{ partitions, workers int }

// quotaCells grow from 1 worker to 10 on one stream, and to 8 over 4
// partitions.
var quotaCells = []quotaCell{{1, 1}, {1, 10}, {2, 2}, {4, 2}}

// quotaBurstWindow is the shorter window the evenness of the calls is
// judged in.
const quotaBurstWindow = 10 * time.Second

// quotaResult is what one quota cell measured.
type quotaResult struct {
	cell    quotaCell
	window  time.Duration
	calls   int     // in the window from the first call
	allowed float64 // PROVIDER_RPM over the window
	most    int     // in any quotaBurstWindow
	rpm     int
}

func (q quotaResult) fill() float64 { return float64(q.calls) / q.allowed }

func (q quotaResult) burst() float64 {
	return float64(q.most) / (float64(q.rpm) * quotaBurstWindow.Minutes())
}

func (q quotaResult) detail() map[string]any {
	return map[string]any{"partitions": q.cell.partitions, "workers_per_partition": q.cell.workers, "calls": q.calls,
		"window": q.window.String(), "allowed": q.allowed, "most_in_burst_window": q.most, "rpm": q.rpm}
}

// partitionQuota runs a cell's workers, all sharing PROVIDER_RPM through
// one QUOTA_SCOPE, on a backlog in every partition, and counts the calls
// that reach the fake in o.PartQuotaWindow from the first.
func partitionQuota(ctx context.Context, o *options, bin, root string, cell quotaCell) (quotaResult, error) {
	res := quotaResult{cell: cell, window: o.PartQuotaWindow, rpm: o.PartQuotaRPM, allowed: float64(o.PartQuotaRPM) * o.PartQuotaWindow.Minutes()}
	pt, err := startPartitioned(ctx, root, "quota", cell.partitions)
	if err != nil {
		return res, err
	}
	defer pt.stop(true)
	var mu sync.Mutex
	var arrivals []time.Time
	fake := openaitest.NewUnstartedServer()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == openaitest.ChatCompletionsPath {
			mu.Lock()
			arrivals = append(arrivals, time.Now())
			mu.Unlock()
		}
		fake.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	var workers []*workerProcess
	defer func() {
		for _, w := range workers {
			_ = w.stop()
		}
	}()
	for i := range cell.partitions {
		for k := range cell.workers {
			env := partEnv(i)
			env["NATS_URL"], env["OPENAI_BASE_URL"], env["OPENAI_API_KEY"] = pt.url(), srv.URL+"/v1", "bench-key-not-secret"
			env["MAX_BATCH_SIZE"], env["PROVIDER_RPM"], env["QUOTA_SCOPE"] = "10", strconv.Itoa(o.PartQuotaRPM), "bench-account"
			env["ADMIN_ADDR"], env["SHUTDOWN_TIMEOUT"] = "", "2s"
			w, err := startWorkerProcess(bin, filepath.Join(root, fmt.Sprintf("quota-work-%d-%d", i, k)), env,
				filepath.Join(o.TmpDir, fmt.Sprintf("partition-quota-%dx%d-%d-%d.log", cell.partitions, cell.workers, i, k)), "")
			if err != nil {
				return res, err
			}
			workers = append(workers, w)
		}
	}
	c, err := connect(pt.url(), "bench-producer")
	if err != nil {
		return res, err
	}
	defer c.close()
	if err := waitWorkersReady(ctx, c, workers, false); err != nil {
		return res, err
	}
	// Twice what the window needs at 10 requests a call, in every
	// partition.
	need := int(2 * res.allowed * 10)
	if err := c.publishTopics(ctx, "q-", need, 200); err != nil {
		return res, err
	}
	var first time.Time
	for deadline := time.Now().Add(time.Minute); first.IsZero(); {
		mu.Lock()
		if len(arrivals) > 0 {
			first = arrivals[0]
		}
		mu.Unlock()
		if time.Now().After(deadline) {
			return res, errors.New("no call within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(time.Until(first.Add(o.PartQuotaWindow))):
	}
	mu.Lock()
	calls := slices.Clone(arrivals)
	mu.Unlock()
	end := first.Add(o.PartQuotaWindow)
	for i, at := range calls {
		if at.Before(end) {
			res.calls++
		}
		n := 0
		for _, b := range calls[i:] {
			if b.Before(at.Add(quotaBurstWindow)) && b.Before(end) {
				n++
			}
		}
		res.most = max(res.most, n)
	}
	return res, nil
}
