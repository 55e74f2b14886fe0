package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/sethvargo/go-envconfig"

	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// Example_openaiSDK is the Go snippet of README.md's "Use it from any
// OpenAI SDK", run against a gateway, a worker process and the fake
// provider. TestREADMEGoSnippet checks that README.md shows exactly the
// lines between the markers, with the demo's base URL in place of
// gatewayURL.
func Example_openaiSDK() {
	gatewayURL, stop := exampleSystem()
	defer stop()
	ctx := context.Background()

	// README: begin
	client := openai.NewClient(
		option.WithBaseURL(gatewayURL), // the gateway instead of https://api.openai.com/v1
		option.WithAPIKey("demo-key"),  // a key of GATEWAY_KEYS instead of an OpenAI key
	)
	completion, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is NATS?")},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(completion.Choices[0].Message.Content)
	// README: end

	// Output: processed: What is NATS?
}

// exampleSystem runs what make demo-gateway runs, for the example: an
// embedded JetStream server, the fake provider, a worker process and the
// gateway with the key demo-key. It returns the gateway's base URL and a
// function that stops everything; it panics on a failure.
func exampleSystem() (gatewayURL string, stop func()) {
	dir, err := os.MkdirTemp("", "gateway-example-")
	if err != nil {
		panic(err)
	}
	ns, err := jetstream.RunServer(jetstream.ServerConfig{Port: -1, StoreDir: dir})
	if err != nil {
		panic(err)
	}
	fake := openaitest.NewServer()
	worker := exec.Command(workerBin)
	worker.Dir = dir
	worker.Env = []string{"NATS_URL=" + ns.ClientURL(), "OPENAI_BASE_URL=" + fake.URL, "OPENAI_API_KEY=example",
		"ADMIN_ADDR=", "MAX_WAIT=200ms", "LOG_LEVEL=error"}
	if err := worker.Start(); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := make(chan string, 1), make(chan error, 1)
	env := envconfig.MapLookuper(map[string]string{
		"NATS_URL": ns.ClientURL(), "GATEWAY_ADDR": "127.0.0.1:0", "GATEWAY_KEYS": "demo-key=demo", "LOG_LEVEL": "error",
	})
	go func() { done <- run(ctx, env, func(a string) { addr <- a }) }()
	stop = func() {
		cancel()
		<-done
		_ = worker.Process.Kill()
		_ = worker.Wait()
		fake.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.RemoveAll(dir)
	}
	base := "http://" + <-addr
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := hc.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base + "/v1", stop
			}
		}
		if time.Now().After(deadline) {
			stop()
			panic(errors.New("the example's gateway was not ready within 30s"))
		}
	}
}
