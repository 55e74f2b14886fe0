// Command gateway is make demo-gateway's client: the official openai-go SDK
// pointed at the aibatch gateway (only the base URL and the key differ
// from plain OpenAI use). It sends concurrent chat completions and
// embeddings, and prints how many provider calls they took, read from the
// fake provider's /stats.
//
//	go run ./examples/gateway -base-url http://127.0.0.1:8090/v1 -key demo-key -stats-url http://127.0.0.1:8089/stats
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func main() {
	baseURL := flag.String("base-url", "http://127.0.0.1:8090/v1", "the gateway's OpenAI base URL")
	key := flag.String("key", "demo-key", "a key of the gateway's GATEWAY_KEYS")
	statsURL := flag.String("stats-url", "http://127.0.0.1:8089/stats", "the fake provider's call counts")
	chats := flag.Int("chats", 200, "concurrent chat completions")
	embeddings := flag.Int("embeddings", 500, "embedding inputs, in requests of -per-request")
	perRequest := flag.Int("per-request", 100, "embedding inputs per request")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, *baseURL, *key, *statsURL, *chats, *embeddings, max(*perRequest, 1)); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, baseURL, key, statsURL string, chats, embeddings, perRequest int) error {
	if err := waitReady(ctx, baseURL); err != nil {
		return err
	}
	before, err := stats(ctx, statsURL)
	if err != nil {
		return err
	}
	client := openai.NewClient(option.WithBaseURL(baseURL), option.WithAPIKey(key))

	start := time.Now()
	latencies, failed, firstErr := chatCompletions(ctx, client, chats)
	report("chat completions", chats, failed, firstErr, time.Since(start), latencies)

	start = time.Now()
	failed, firstErr = embed(ctx, client, embeddings, perRequest)
	report(fmt.Sprintf("embeddings (%d requests of up to %d inputs)", (embeddings+perRequest-1)/perRequest, perRequest),
		embeddings, failed, firstErr, time.Since(start), nil)

	after, err := stats(ctx, statsURL)
	if err != nil {
		return err
	}
	// /stats: "calls" counts every API call, "embedding_calls" those of
	// the embeddings endpoint among them.
	calls := after["calls"] - before["calls"]
	embeddingCalls := after["embedding_calls"] - before["embedding_calls"]
	fmt.Printf("provider calls (the fake provider's /stats): %d chat completions, %d embeddings\n", calls-embeddingCalls, embeddingCalls)
	fmt.Printf("%d requests -> %d provider calls\n", chats+embeddings, calls)
	return nil
}

// chatCompletions sends n chat completions at once.
func chatCompletions(ctx context.Context, client openai.Client, n int) ([]time.Duration, int, error) {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failed    int
		firstErr  error
		wg        sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			t0 := time.Now()
			input := "Observation " + strconv.Itoa(i) + ": the sensor reading is within range."
			got, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model: "gpt-4o-mini",
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("Summarize the observation in one line."),
					openai.UserMessage(input),
				},
			})
			if err == nil && (len(got.Choices) == 0 || got.Choices[0].Message.Content == "") {
				err = errors.New("an empty answer")
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			latencies = append(latencies, time.Since(t0))
		})
	}
	wg.Wait()
	return latencies, failed, firstErr
}

// embed sends n inputs, perRequest at a time, all requests at once.
func embed(ctx context.Context, client openai.Client, n, perRequest int) (int, error) {
	var (
		mu       sync.Mutex
		failed   int
		firstErr error
		wg       sync.WaitGroup
	)
	for first := 0; first < n; first += perRequest {
		inputs := make([]string, 0, perRequest)
		for i := first; i < min(first+perRequest, n); i++ {
			inputs = append(inputs, "document "+strconv.Itoa(i))
		}
		wg.Go(func() {
			got, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model: openai.EmbeddingModelTextEmbedding3Small,
				Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
			})
			if err == nil && len(got.Data) != len(inputs) {
				err = fmt.Errorf("%d vectors for %d inputs", len(got.Data), len(inputs))
			}
			if err == nil {
				for _, d := range got.Data {
					if len(d.Embedding) == 0 {
						err = errors.New("an empty vector")
						break
					}
				}
			}
			if err != nil {
				mu.Lock()
				failed += len(inputs)
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed, firstErr
}

func report(what string, n, failed int, firstErr error, took time.Duration, latencies []time.Duration) {
	fmt.Printf("%d %s: %d ok, %d failed in %s", n, what, n-failed, failed, took.Round(time.Millisecond))
	if len(latencies) > 0 {
		slices.Sort(latencies)
		fmt.Printf(" (latency p50 %s, max %s)", latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond))
	}
	fmt.Println()
	if firstErr != nil {
		fmt.Printf("  first error: %v\n", firstErr)
	}
}

// stats reads the fake provider's call counts.
func stats(ctx context.Context, url string) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the provider's stats: %w", err)
	}
	defer resp.Body.Close()
	var out map[string]int
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("read the provider's stats at %s: %w", url, err)
	}
	return out, nil
}

// waitReady waits until the gateway answers /readyz with 200.
func waitReady(ctx context.Context, baseURL string) error {
	u := baseURL
	if n := len(u); n >= 3 && u[n-3:] == "/v1" {
		u = u[:n-3]
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the gateway at %s was not ready: %w", u, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
