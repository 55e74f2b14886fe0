package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/internal/admin"
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

// get answers GET url's status and body, or 0 when nothing answers.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// With NATS unreachable, the worker's probes answer within 5 s: /healthz
// 200 (the process runs, do not restart it), /readyz 503 naming the URL it
// waits for, without the credentials in it.
func TestProcessAnswersProbesWithoutNATS(t *testing.T) {
	t.Parallel()
	natsPort := strconv.Itoa(freePort(t))
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	w := startWorker(t, "", map[string]string{
		"NATS_URL":        "nats://aibatch:pw-do-not-show@127.0.0.1:" + natsPort,
		"ADMIN_ADDR":      adminAddr,
		"OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
		"OPENAI_API_KEY":  procSecret,
	})
	deadline := time.Now().Add(5 * time.Second)
	want := "waiting for NATS at nats://127.0.0.1:" + natsPort
	var health, ready int
	var readyBody string
	for time.Now().Before(deadline) {
		health, _ = get(t, "http://"+adminAddr+"/healthz")
		ready, readyBody = get(t, "http://"+adminAddr+"/readyz")
		if health == http.StatusOK && ready == http.StatusServiceUnavailable && strings.Contains(readyBody, want) {
			break
		}
		select {
		case <-w.done:
			t.Fatalf("worker exited while waiting for NATS: code %d", w.state.ExitCode())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if health != http.StatusOK || ready != http.StatusServiceUnavailable || !strings.Contains(readyBody, want) {
		t.Fatalf("after 5s: /healthz %d, /readyz %d %s; want 200, and 503 saying %q", health, ready, readyBody, want)
	}
	var body admin.ReadyResponse
	if err := json.Unmarshal([]byte(readyBody), &body); err != nil || body.Failed != admin.CheckNATS {
		t.Errorf("/readyz body %s: want the nats check failed (%v)", readyBody, err)
	}
	line := logEntry(t, w, "waiting for NATS", 5*time.Second)
	if line["url"] != "nats://127.0.0.1:"+natsPort {
		t.Errorf("waiting line names url %v, want nats://127.0.0.1:%s", line["url"], natsPort)
	}
	for _, s := range []string{readyBody, w.output.String()} {
		if strings.Contains(s, "pw-do-not-show") || strings.Contains(s, "aibatch:") {
			t.Errorf("the NATS credentials are shown: %s", s)
		}
	}
	w.stop(t) // a stop while waiting is a clean stop
}

// debianNATSServer returns the path of a nats-server binary older than
// 2.10 (Debian 12 ships 2.9.10) and its version, or skips the test.
func debianNATSServer(t *testing.T) (string, string) {
	t.Helper()
	path, err := exec.LookPath("nats-server")
	if err != nil {
		path = "/usr/sbin/nats-server" // not on a non-root PATH
		if _, err := os.Stat(path); err != nil {
			t.Skip("no nats-server binary (apt-get install nats-server gives Debian's 2.9.x): the version check is tested against the real old server only where it is installed")
		}
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", path, err, out)
	}
	// "nats-server: v2.9.10"
	version := strings.TrimPrefix(strings.TrimSpace(string(out[strings.LastIndex(string(out), " ")+1:])), "v")
	if checkServerVersion(version) == nil {
		t.Skipf("%s is nats-server %s, not older than 2.10: nothing to refuse", path, version)
	}
	return path, version
}

// Against a nats-server older than 2.10, the worker exits non-zero within
// 15 s naming 2.10, and creates nothing on the server.
func TestProcessRefusesATooOldServer(t *testing.T) {
	t.Parallel()
	bin, version := debianNATSServer(t)
	port := strconv.Itoa(freePort(t))
	srv := exec.Command(bin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", t.TempDir())
	srvOut := &lockedBuffer{}
	srv.Stdout, srv.Stderr = srvOut, srvOut
	if err := srv.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("nats-server %s output:\n%s", version, srvOut.String())
		}
	})
	url := "nats://127.0.0.1:" + port
	_, js := connectURL(t, url)

	w := startWorker(t, "", map[string]string{
		"NATS_URL":        url,
		"OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
		"OPENAI_API_KEY":  procSecret,
	})
	if code := w.wait(t, 15*time.Second); code == 0 || code == -1 {
		t.Fatalf("exit code %d against nats-server %s, want an error exit", code, version)
	}
	want := "nats-server " + version + " is too old: aibatch needs 2.10 or newer"
	if out := w.output.String(); !strings.Contains(out, want) {
		t.Errorf("output does not say %q:\n%s", want, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var streams []string
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	if len(streams) != 0 {
		t.Errorf("the server holds streams %v; the worker must refuse before creating anything", streams)
	}
	kvs := js.KeyValueStoreNames(ctx)
	for n := range kvs.Name() {
		t.Errorf("the server holds key-value bucket %s", n)
	}
}
