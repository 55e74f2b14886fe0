package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/wire"
)

// workerBin is the worker binary TestMain builds, with -race when the tests
// run with it, so a data race in the worker fails its test (exit code 66).
var workerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aibatch-worker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create a directory for the worker binary:", err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	args := []string{"build", "-o", workerBin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot build the worker binary (go %s .): %v\n%s", strings.Join(args, " "), err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	// goleak runs the tests, then fails the run if a goroutine outlives
	// them; Cleanup removes the binary and exits with the result.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// procSecret is the API key the worker processes get; their output must
// never show it.
const procSecret = "sk-proc-do-not-print-9d2e"

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// workerProc is one worker process.
type workerProc struct {
	cmd    *exec.Cmd
	output *lockedBuffer
	done   chan struct{} // closed when the process has exited
	state  *os.ProcessState
}

// startWorker runs the worker binary with exactly env (plus PATH, HOME,
// LOG_LEVEL=debug and ADMIN_ADDR=127.0.0.1:0 unless env sets them) in dir,
// a directory of its own when dir is "". Its stderr and stdout are shown if
// the test fails; it is killed when the test ends, if still running.
func startWorker(t *testing.T, dir string, env map[string]string) *workerProc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir() // no stray .env; STORE_DIR=./data lands here
	}
	full := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "LOG_LEVEL": "debug",
		// The admin API on a port of its own: workers run side by side.
		"ADMIN_ADDR": "127.0.0.1:0",
	}
	for k, v := range env {
		full[k] = v
	}
	cmd := exec.Command(workerBin)
	cmd.Dir = dir
	for k, v := range full {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	slices.Sort(cmd.Env)
	w := &workerProc{cmd: cmd, output: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = w.output, w.output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		w.state = cmd.ProcessState
		close(w.done)
	}()
	t.Cleanup(func() {
		if !w.exited() {
			_ = cmd.Process.Kill()
			<-w.done
		}
		out := w.output.String()
		if strings.Contains(out, procSecret) {
			t.Errorf("worker %d output shows the API key", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("worker %d (%v) output:\n%s", cmd.Process.Pid, cmd.Env, out)
		}
	})
	return w
}

func (w *workerProc) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal ended it).
func (w *workerProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-w.done:
		return w.state.ExitCode()
	case <-time.After(timeout):
		_ = w.cmd.Process.Kill()
		<-w.done
		t.Fatalf("worker %d still running after %s", w.cmd.Process.Pid, timeout)
		return 0
	}
}

// stop sends SIGTERM and expects a clean exit within a few seconds (nothing
// is in a call, so only the drain of the NATS connection is waited for).
func (w *workerProc) stop(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM worker: %v", err)
	}
	if code := w.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("worker exit code after SIGTERM = %d, want 0", code)
	}
}

// kill ends the worker at once, as a crash would.
func (w *workerProc) kill(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatalf("SIGKILL worker: %v", err)
	}
	w.wait(t, 10*time.Second)
}

// connectURL connects to the NATS server at url, retrying until it is up.
// The connection is closed when the test ends.
func connectURL(t *testing.T, url string) (*nats.Conn, natsjs.JetStream) {
	t.Helper()
	var nc *nats.Conn
	jetstreamtest.Eventually(t, 20*time.Second, "worker's NATS server accepts connections at "+url, func() bool {
		var err error
		nc, err = nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		return err == nil
	})
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatalf("open JetStream: %v", err)
	}
	return nc, js
}

// waitStreams waits until the worker has created its streams and both lanes'
// consumers, the last step of its setup.
func waitStreams(t *testing.T, js natsjs.JetStream) {
	t.Helper()
	for _, name := range []string{"AI_REQUESTS", "AI_RESULTS", "AI_DEAD"} {
		jetstreamtest.Eventually(t, 20*time.Second, "worker created stream "+name, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := js.Stream(ctx, name)
			return err == nil
		})
	}
	for _, name := range []string{"aibatch", "aibatch_urgent"} {
		jetstreamtest.Eventually(t, 20*time.Second, "worker created consumer "+name, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := js.Consumer(ctx, "AI_REQUESTS", name)
			return err == nil
		})
	}
}

// publishRequests stores n requests {"id":"r-i","input":"in i"} on subject
// and waits for their PubAcks.
func publishRequests(t *testing.T, js natsjs.JetStream, subject string, n int) {
	t.Helper()
	futures := make([]natsjs.PubAckFuture, 0, n)
	for i := range n {
		body, err := json.Marshal(wire.Request{ID: "r-" + strconv.Itoa(i), Input: "in " + strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		f, err := js.PublishAsync(subject, body)
		if err != nil {
			t.Fatalf("publish to %s: %v", subject, err)
		}
		futures = append(futures, f)
	}
	timeout := time.After(30 * time.Second)
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		case <-timeout:
			t.Fatal("publish: no PubAck")
		}
	}
}

// waitResults waits until AI_RESULTS holds n results and the request stream
// is empty, then checks that requests r-0 … r-(n-1) have exactly one correct
// result each on ai.results.proc, and returns them by id.
func waitResults(t *testing.T, js natsjs.JetStream, n int, timeout time.Duration) map[string]wire.Result {
	t.Helper()
	jetstreamtest.Eventually(t, timeout, fmt.Sprintf("%d results stored", n), func() bool {
		return jetstreamtest.Count(t, js, "AI_RESULTS") >= uint64(n)
	})
	jetstreamtest.Eventually(t, 10*time.Second, "every request acked", func() bool {
		return jetstreamtest.Count(t, js, "AI_REQUESTS") == 0
	})
	byID := make(map[string]wire.Result)
	for _, m := range jetstreamtest.Messages(t, js, "AI_RESULTS") {
		var r wire.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("result %d is not JSON: %v: %s", m.Sequence, err, m.Data)
		}
		if _, dup := byID[r.ID]; dup {
			t.Fatalf("a second result for %s (stream seq %d): %s", r.ID, m.Sequence, m.Data)
		}
		if m.Subject != "ai.results.proc" {
			t.Errorf("result %s on %s, want ai.results.proc", r.ID, m.Subject)
		}
		byID[r.ID] = r
	}
	if len(byID) != n {
		t.Fatalf("results for %d requests, want %d", len(byID), n)
	}
	for i := range n {
		id := "r-" + strconv.Itoa(i)
		r, ok := byID[id]
		if !ok {
			t.Fatalf("no result for %s", id)
		}
		if want := openaitest.Answer("in " + strconv.Itoa(i)); r.Status != wire.StatusOK || r.Output != want {
			t.Fatalf("result %s: status %s output %q error %q, want ok %q", id, r.Status, r.Output, r.Error, want)
		}
	}
	if d := jetstreamtest.Count(t, js, "AI_DEAD"); d != 0 {
		t.Fatalf("dead letters = %d, want 0", d)
	}
	return byID
}

// logQueueOnFailure reports, if the test fails, what the broker holds: the
// streams' sizes and the batch lane consumer's state.
func logQueueOnFailure(t *testing.T, js natsjs.JetStream) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, name := range []string{"AI_REQUESTS", "AI_RESULTS", "AI_DEAD"} {
			if s, err := js.Stream(ctx, name); err == nil {
				if info, err := s.Info(ctx); err == nil {
					t.Logf("stream %s: %d messages", name, info.State.Msgs)
				}
			}
		}
		if c, err := js.Consumer(ctx, "AI_REQUESTS", "aibatch"); err == nil {
			if info, err := c.Info(ctx); err == nil {
				t.Logf("consumer aibatch: pending %d, ack pending %d, redelivered %d, delivered %d, acked %d",
					info.NumPending, info.NumAckPending, info.NumRedelivered, info.Delivered.Stream, info.AckFloor.Stream)
			}
		}
	})
}

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

func newFake(t *testing.T) *openaitest.Server {
	t.Helper()
	fake := openaitest.NewServer()
	t.Cleanup(fake.Close)
	return fake
}

func TestProcessExternalServer(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":        ns.ClientURL(),
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"MAX_BATCH_SIZE":  "50",
	})
	waitStreams(t, js)
	publishRequests(t, js, "ai.requests.proc", 200)

	got := waitResults(t, js, 200, 30*time.Second)
	for id, r := range got {
		if r.Batch.Trigger != wire.TriggerSize || r.Batch.Size != 50 || r.Attempts != 1 {
			t.Fatalf("result %s: batch %+v attempts %d, want a full batch of 50 at the first attempt", id, r.Batch, r.Attempts)
		}
	}
	if calls := fake.Calls(); calls != 4 {
		t.Fatalf("provider calls = %d, want 4", calls)
	}
	w.stop(t)
}

func TestProcessCrashMidBatch(t *testing.T) {
	t.Parallel()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	fake.SetDelay(2 * time.Second)
	env := map[string]string{
		"NATS_URL":        ns.ClientURL(),
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"MAX_BATCH_SIZE":  "10",
		"ACK_WAIT":        "2s",
	}
	first := startWorker(t, "", env)
	waitStreams(t, js)
	publishRequests(t, js, "ai.requests.proc", 50)
	jetstreamtest.Eventually(t, 20*time.Second, "a call reached the provider", func() bool { return fake.Calls() > 0 })
	first.kill(t)
	if n := jetstreamtest.Count(t, js, "AI_RESULTS"); n != 0 {
		t.Fatalf("results before the crash = %d, want 0 (every call was still waiting)", n)
	}

	fake.SetDelay(0)
	second := startWorker(t, "", env)
	got := waitResults(t, js, 50, 20*time.Second)
	redelivered := 0
	for _, r := range got {
		if r.Attempts > 1 {
			redelivered++
		}
	}
	if redelivered == 0 {
		t.Fatal("no result has attempts > 1: the requests in the killed worker's calls were not redelivered")
	}
	second.stop(t)
}

func TestProcessEmbeddedServerRestart(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	env := map[string]string{
		"NATS_LISTEN":     listen,
		"STORE_DIR":       t.TempDir(),
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"BATCH_INTERVAL":  "1h",
		"MAX_WAIT":        "1h",
		"MAX_BATCH_SIZE":  "100",
	}
	first := startWorker(t, "", env)
	nc, js := connectURL(t, "nats://"+listen)
	waitStreams(t, js)
	publishRequests(t, js, "ai.requests.proc", 30)
	nc.Close()
	first.stop(t)
	if calls := fake.Calls(); calls != 0 {
		t.Fatalf("provider calls before the restart = %d, want 0 (30 of 100 is no batch)", calls)
	}

	// Thirty now make a full batch: the requests can only come from the
	// store directory the first server wrote.
	env["MAX_BATCH_SIZE"] = "30"
	second := startWorker(t, "", env)
	_, js = connectURL(t, "nats://"+listen)
	logQueueOnFailure(t, js)
	got := waitResults(t, js, 30, 30*time.Second)
	for id, r := range got {
		if r.Batch.Trigger != wire.TriggerSize || r.Batch.Size != 30 || r.Attempts != 1 {
			t.Fatalf("result %s: batch %+v attempts %d, want one full batch of 30 at the first attempt", id, r.Batch, r.Attempts)
		}
	}
	if calls := fake.Calls(); calls != 1 {
		t.Fatalf("provider calls = %d, want 1", calls)
	}
	second.stop(t)
}

// silentNATS is a NATS server that accepts a connection and answers PINGs
// but never answers a JetStream API request, so a worker connected to it
// stays in setup. jsRequest is closed at the first such request.
func silentNATS(t *testing.T) (url string, jsRequest <-chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range conns {
			_ = c.Close()
		}
	})
	seen := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				_ = conn.Close()
				return
			}
			conns = append(conns, conn)
			mu.Unlock()
			go func() {
				port := l.Addr().(*net.TCPAddr).Port
				fmt.Fprintf(conn, `INFO {"server_id":"silent","version":"2.10.0","proto":1,"host":"127.0.0.1","port":%d,"headers":true,"max_payload":1048576}`+"\r\n", port)
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					f := strings.Fields(line)
					switch {
					case len(f) == 0:
					case f[0] == "PING":
						_, _ = conn.Write([]byte("PONG\r\n"))
					case f[0] == "PUB" || f[0] == "HPUB":
						// Skip the payload: its size is the last field.
						n, _ := strconv.Atoi(f[len(f)-1])
						if _, err := r.Discard(n + 2); err != nil {
							return
						}
						if len(f) > 1 && strings.HasPrefix(f[1], "$JS.API.") {
							once.Do(func() { close(seen) })
						}
					}
				}
			}()
		}
	}()
	return "nats://" + l.Addr().String(), seen
}

func TestProcessStopDuringSetup(t *testing.T) {
	t.Parallel()
	url, jsRequest := silentNATS(t)
	w := startWorker(t, "", map[string]string{
		"NATS_URL":        url,
		"OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
		"OPENAI_API_KEY":  procSecret,
	})
	select {
	case <-jsRequest:
	case <-w.done:
		t.Fatalf("worker exited before it asked for its streams: exit code %d", w.state.ExitCode())
	case <-time.After(20 * time.Second):
		t.Fatal("worker never asked the server for its streams")
	}
	// The worker waits for the server's answer; a stop signal now ends it
	// as cleanly as one after setup.
	w.stop(t)
}

func TestProcessRefusesBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		env    map[string]string
		dotEnv string // written to the worker's directory as .env
		want   []string
	}{
		{
			name: "batch size zero",
			env:  map[string]string{"MAX_BATCH_SIZE": "0", "OPENAI_API_KEY": procSecret},
			want: []string{"worker: configuration:", "MAX_BATCH_SIZE=0", "from 1 to 10000"},
		},
		{
			name:   "bad value in .env",
			dotEnv: "OPENAI_API_KEY=" + procSecret + "\nMAX_BATCH_SIZE=lots\n",
			want:   []string{"MAX_BATCH_SIZE", `"lots"`, "whole number"},
		},
		{
			name:   "malformed .env",
			dotEnv: "MAX-BATCH-SIZE=5\nOPENAI_API_KEY=" + procSecret + "\n",
			want:   []string{".env", "unexpected character"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tt.dotEnv != "" {
				if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(tt.dotEnv), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// NATS_LISTEN on port 1 would fail if the worker got as far
			// as starting its server.
			env := map[string]string{"NATS_LISTEN": "127.0.0.1:1", "STORE_DIR": filepath.Join(dir, "data")}
			for k, v := range tt.env {
				env[k] = v
			}
			w := startWorker(t, dir, env)
			if code := w.wait(t, 10*time.Second); code == 0 || code == -1 {
				t.Fatalf("exit code = %d, want an error exit", code)
			}
			out := w.output.String()
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("output does not contain %q:\n%s", want, out)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
				t.Errorf("the worker created its store directory before refusing its configuration")
			}
		})
	}
}
