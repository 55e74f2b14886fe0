package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

// logEntry waits up to timeout for w to log a JSON line whose "msg" is msg
// and returns it.
func logEntry(t *testing.T, w *workerProc, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	var entry map[string]any
	jetstreamtest.Eventually(t, timeout, "the worker logs "+strconv.Quote(msg), func() bool {
		for _, line := range strings.Split(w.output.String(), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == msg {
				entry = e
				return true
			}
		}
		return false
	})
	return entry
}

// MAX_BATCH_SIZE= and MAX_WAIT= (set, empty) start the worker with the
// defaults.
func TestProcessEmptyVariablesMeanDefaults(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	w := startWorker(t, "", map[string]string{
		"NATS_LISTEN":     "127.0.0.1:" + strconv.Itoa(freePort(t)),
		"STORE_DIR":       t.TempDir(),
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"MAX_BATCH_SIZE":  "",
		"MAX_WAIT":        "",
		"BATCH_INTERVAL":  "",
	})
	started := logEntry(t, w, "worker started", 20*time.Second)
	if started["max_batch_size"] != float64(50) || started["max_wait"] != "5m0s" || started["batch_interval"] != "1h0m0s" {
		t.Errorf("started with max_batch_size %v, max_wait %v, batch_interval %v; want the defaults 50, 5m0s, 1h0m0s",
			started["max_batch_size"], started["max_wait"], started["batch_interval"])
	}
	w.stop(t)
}
