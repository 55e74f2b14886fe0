package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// partitionsConf is the example server configuration docs/scaling.md
// documents.
const partitionsConf = "../../docs/nats-partitions.conf"

// partitionEnv is the worker of partition n as docs/scaling.md sets it up:
// its own request stream on the mapped subjects; results, dead letters,
// the fleet bucket and the quota shared by every partition.
func partitionEnv(n int) map[string]string {
	p := strconv.Itoa(n)
	return map[string]string{
		"STREAM":           "AI_REQUESTS_" + p,
		"REQUEST_SUBJECTS": "ai.requests." + p + ".>",
		"URGENT_SUBJECTS":  "ai.urgent." + p + ".>",
		"QUOTA_SCOPE":      "openai-main",
	}
}

// TestProcessPartitionsExample runs a server with exactly the example
// configuration of docs/scaling.md (its port and store directory aside)
// and one worker process per partition: producers publish to
// ai.requests.<topic> as ever, every request is answered once on
// ai.results.<topic>, every topic is served by one partition's worker
// alone (its groups never split), and both partitions serve.
func TestProcessPartitionsExample(t *testing.T) {
	t.Parallel()
	opts, err := server.ProcessConfigFile(partitionsConf)
	if err != nil {
		t.Fatalf("%s: %v", partitionsConf, err)
	}
	opts.Port, opts.StoreDir, opts.NoSigs = -1, t.TempDir(), true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	_, js := jetstreamtest.Connect(t, ns)
	fake := newFake(t)
	var workers []*workerProc
	for n := range 2 {
		env := partitionEnv(n)
		env["NATS_URL"], env["OPENAI_BASE_URL"], env["OPENAI_API_KEY"] = ns.ClientURL(), fake.URL, procSecret
		env["MAX_BATCH_SIZE"], env["MAX_WAIT"], env["LOG_LEVEL"] = "10", "300ms", "info"
		workers = append(workers, startWorker(t, "", env))
	}
	for n := range 2 {
		jetstreamtest.Eventually(t, 20*time.Second, "partition "+strconv.Itoa(n)+"'s consumer", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := js.Consumer(ctx, "AI_REQUESTS_"+strconv.Itoa(n), "aibatch")
			return err == nil
		})
	}
	const topics, n = 16, 160
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		body, _ := json.Marshal(wire.Request{ID: "r-" + strconv.Itoa(i), Input: "in " + strconv.Itoa(i)})
		if _, err := js.Publish(ctx, "ai.requests.t"+strconv.Itoa(i%topics), body); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	jetstreamtest.Eventually(t, 30*time.Second, "every result", func() bool { return jetstreamtest.Count(t, js, "AI_RESULTS") >= n })
	workerOf := map[string]string{} // topic -> the worker instance that answered it
	seen := map[string]bool{}
	for _, m := range jetstreamtest.Messages(t, js, "AI_RESULTS") {
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil || r.Status != wire.StatusOK {
			t.Fatalf("result %s: %v %+v", m.Data, err, r)
		}
		if seen[r.ID] {
			t.Fatalf("a second result for %s", r.ID)
		}
		seen[r.ID] = true
		topic := strings.TrimPrefix(m.Subject, "ai.results.")
		i, _ := strconv.Atoi(strings.TrimPrefix(r.ID, "r-"))
		if want := "t" + strconv.Itoa(i%topics); topic != want {
			t.Errorf("result %s on %s, want ai.results.%s: readers see the topic as published", r.ID, m.Subject, want)
		}
		instance, _, _ := strings.Cut(r.Batch.ID, "-")
		if w, ok := workerOf[topic]; ok && w != instance {
			t.Errorf("topic %s answered by two workers (%s, %s): it was split across partitions", topic, w, instance)
		}
		workerOf[topic] = instance
	}
	if len(seen) != n {
		t.Fatalf("%d results, want %d", len(seen), n)
	}
	instances := map[string]bool{}
	for _, w := range workerOf {
		instances[w] = true
	}
	if len(instances) != 2 {
		t.Errorf("topics answered by %d workers, want both partitions' (%v)", len(instances), workerOf)
	}
	for _, s := range []string{"AI_REQUESTS_0", "AI_REQUESTS_1"} {
		jetstreamtest.Eventually(t, 10*time.Second, s+" empty", func() bool { return jetstreamtest.Count(t, js, s) == 0 })
	}
	for _, w := range workers {
		w.stop(t)
	}
}
