package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/sethvargo/go-envconfig"

	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// apiKey is the key the acceptance tests' gateway gives topic "accept";
// the worker's key for the fake provider is another.
const (
	apiKey      = "sk-gateway-test-5f1c"
	providerKey = "sk-provider-test-77aa"
)

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

// system is what the acceptance tests run: an embedded JetStream server,
// the fake OpenAI provider, a worker process and the gateway.
type system struct {
	t    *testing.T
	js   natsjs.JetStream
	fake *openaitest.Server
	base string // the gateway's http://host:port
}

// startSystem runs it all. workerEnv and gatewayEnv add to (or override)
// the defaults below.
func startSystem(t *testing.T, workerEnv, gatewayEnv map[string]string) *system {
	t.Helper()
	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	fake := openaitest.NewServer(openaitest.WithAPIKey(providerKey))
	t.Cleanup(fake.Close)
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "OPENAI_BASE_URL": fake.URL, "OPENAI_API_KEY": providerKey,
		"ADMIN_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug", "PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"),
	}
	for k, v := range workerEnv {
		env[k] = v
	}
	startWorker(t, env)
	waitStreams(t, js)

	genv := map[string]string{
		"NATS_URL": ns.ClientURL(), "GATEWAY_ADDR": "127.0.0.1:0", "GATEWAY_KEYS": apiKey + "=accept",
		"MAX_WAIT": env["MAX_WAIT"], "LOG_LEVEL": "debug",
	}
	for k, v := range gatewayEnv {
		genv[k] = v
	}
	s := &system{t: t, js: js, fake: fake}
	s.base = runGateway(t, genv)
	return s
}

// startWorker runs the worker binary with exactly env in a directory of
// its own; it is killed when the test ends, and its output shown if the
// test failed.
func startWorker(t *testing.T, env map[string]string) {
	t.Helper()
	cmd := exec.Command(workerBin)
	cmd.Dir = t.TempDir()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	slices.Sort(cmd.Env)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("worker output:\n%s", out.String())
		}
	})
}

// waitStreams waits until the worker has created its streams and
// consumers.
func waitStreams(t *testing.T, js natsjs.JetStream) {
	t.Helper()
	for _, name := range []string{"aibatch", "aibatch_urgent"} {
		jetstreamtest.Eventually(t, 30*time.Second, "the worker created consumer "+name, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := js.Consumer(ctx, "AI_REQUESTS", name)
			return err == nil
		})
	}
}

// runGateway runs the gateway in this process with env (its command's own
// run, as main calls it) until the test ends, and returns its address once
// it serves the API.
func runGateway(t *testing.T, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, envconfig.MapLookuper(env), func(a string) { addr <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
	})
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("gateway stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not listen within 30s")
	}
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	jetstreamtest.Eventually(t, 30*time.Second, "the gateway is ready", func() bool {
		resp, err := hc.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

// client is an official openai-go client of the gateway with key: the
// only differences from plain OpenAI use are the base URL and the key.
// Its idle connections close when the test ends.
func (s *system) client(key string, opts ...option.RequestOption) *openai.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 512}
	s.t.Cleanup(tr.CloseIdleConnections)
	c := openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(s.base + "/v1"), option.WithAPIKey(key),
		option.WithHTTPClient(&http.Client{Transport: tr}),
	}, opts...)...)
	return &c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// providerItems is how many requests the provider's calls carried in all.
func (s *system) providerItems() int {
	n := 0
	for _, k := range s.fake.CallSizes() {
		n += k
	}
	return n
}
