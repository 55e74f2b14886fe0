package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	ajs "github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/wire"
)

// publishFrom publishes requests r-from … r-(from+n-1) like publishRequests.
func publishFrom(t *testing.T, js natsjs.JetStream, subject string, from, n int) {
	t.Helper()
	var futures []natsjs.PubAckFuture
	for i := from; i < from+n; i++ {
		body, _ := json.Marshal(wire.Request{ID: "r-" + strconv.Itoa(i), Input: "in " + strconv.Itoa(i)})
		f, err := js.PublishAsync(subject, body)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("publish: no PubAck")
		}
	}
}

func TestProcessThreeWorkersShareTheLoad(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	fake.SetDelay(100 * time.Millisecond) // a call takes a while: one worker cannot take it all
	env := map[string]string{
		"NATS_URL":             ns.ClientURL(),
		"OPENAI_BASE_URL":      fake.URL,
		"OPENAI_API_KEY":       procSecret,
		"MAX_BATCH_SIZE":       "20",
		"MAX_INFLIGHT_BATCHES": "2",
		"POLL_INTERVAL":        "20ms",
		"LOG_LEVEL":            "info",
	}
	workers := []*workerProc{startWorker(t, "", env), startWorker(t, "", env), startWorker(t, "", env)}
	waitStreams(t, js)
	const n = 600
	publishRequests(t, js, "ai.requests.proc", n)

	got := waitResults(t, js, n, 60*time.Second)
	// A batch id is <worker instance>-<counter>: group by both.
	perWorker := map[string]int{}
	perBatch := map[string]int{}
	sizeOf := map[string]int{}
	for _, r := range got {
		instance, _, _ := strings.Cut(r.Batch.ID, "-")
		perWorker[instance]++
		perBatch[r.Batch.ID]++
		sizeOf[r.Batch.ID] = r.Batch.Size
	}
	if len(perWorker) != 3 {
		t.Fatalf("requests answered per worker = %v, want all three workers to take part", perWorker)
	}
	for id, count := range perBatch {
		if count != sizeOf[id] {
			t.Fatalf("batch %s answered %d requests but had %d: a batch was sent twice or split", id, count, sizeOf[id])
		}
	}
	if calls := fake.Calls(); calls != int64(len(perBatch)) {
		t.Fatalf("provider calls = %d for %d batches: some batch was sent twice", calls, len(perBatch))
	}
	t.Logf("requests per worker: %v in %d calls", perWorker, len(perBatch))
	for _, w := range workers {
		w.stop(t)
	}
}

func TestProcessKeepsRunningThroughAServerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := jetstreamtest.RunServer(t, dir)
	_, js := jetstreamtest.Connect(t, ns)
	fake := newFake(t)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":        ns.ClientURL(),
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"MAX_BATCH_SIZE":  "25",
		"POLL_INTERVAL":   "20ms",
	})
	waitStreams(t, js)
	publishFrom(t, js, "ai.requests.proc", 0, 100)
	jetstreamtest.Eventually(t, 30*time.Second, "first 100 results", func() bool {
		return jetstreamtest.Count(t, js, "AI_RESULTS") == 100
	})

	ns = jetstreamtest.RestartServer(t, ns, dir)
	_, js = jetstreamtest.Connect(t, ns)
	publishFrom(t, js, "ai.requests.proc", 100, 100)
	waitResults(t, js, 200, 60*time.Second)
	if !strings.Contains(w.output.String(), "NATS reconnected") {
		t.Errorf("the worker did not log its reconnect")
	}
	w.stop(t)
}

func TestProcessAuthenticatesToNATS(t *testing.T) {
	t.Parallel()
	const password = "s3cret-nats-password"
	ns, err := ajs.RunServer(ajs.ServerConfig{Port: -1, StoreDir: t.TempDir(), Options: &server.Options{
		Username: "aibatch", Password: password, NoLog: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	fake := newFake(t)
	env := map[string]string{
		"NATS_URL":        ns.ClientURL(),
		"NATS_USER":       "aibatch",
		"NATS_PASSWORD":   "wrong-password",
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"MAX_BATCH_SIZE":  "10",
	}

	refused := startWorker(t, "", env)
	if code := refused.wait(t, 20*time.Second); code == 0 {
		t.Fatal("worker with a wrong NATS password exited 0")
	}
	if out := refused.output.String(); !strings.Contains(out, "connect to NATS") || strings.Contains(out, "wrong-password") {
		t.Fatalf("refusal should say it could not connect, without the password:\n%s", out)
	}

	env["NATS_PASSWORD"] = password
	w := startWorker(t, "", env)
	nc := connectAuth(t, ns.ClientURL(), "aibatch", password)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitStreams(t, js)
	publishFrom(t, js, "ai.requests.proc", 0, 10)
	waitResults(t, js, 10, 30*time.Second)
	if strings.Contains(w.output.String(), password) {
		t.Fatal("the worker logged the NATS password")
	}
	w.stop(t)
}

func connectAuth(t *testing.T, url, user, password string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(user, password))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// A worker started before its NATS server (as in a deployment where both
// start together) waits for it instead of exiting.
func TestProcessWaitsForNATSToComeUp(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	fake := newFake(t)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":        url,
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"MAX_BATCH_SIZE":  "10",
	})
	jetstreamtest.Eventually(t, 20*time.Second, "the worker waiting for NATS", func() bool {
		return strings.Contains(w.output.String(), "waiting for NATS")
	})
	ns, err := ajs.RunServer(ajs.ServerConfig{Port: port, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	_, js := jetstreamtest.Connect(t, ns)
	waitStreams(t, js)
	publishFrom(t, js, "ai.requests.proc", 0, 10)
	waitResults(t, js, 10, 30*time.Second)
	w.stop(t)
}
