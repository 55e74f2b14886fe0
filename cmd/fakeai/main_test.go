package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs syncBuffer
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, &logs, func(u string) { urls <- u })
	}()
	var baseURL string
	select {
	case baseURL = <-urls:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(logs.String(), "OPENAI_BASE_URL="+baseURL) {
		t.Errorf("start log %q does not give OPENAI_BASE_URL", logs.String())
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/chat/completions",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer k")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("chat completion status = %d", res.StatusCode)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/embeddings",
		strings.NewReader(`{"model":"text-embedding-3-small","input":["a","b"],"dimensions":4}`))
	req.Header.Set("Authorization", "Bearer k")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var embeddings struct {
		Data []struct{ Embedding []float32 }
	}
	err = json.NewDecoder(res.Body).Decode(&embeddings)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || len(embeddings.Data) != 2 || len(embeddings.Data[0].Embedding) != 4 {
		t.Fatalf("embeddings status = %d, data %+v (%v)", res.StatusCode, embeddings.Data, err)
	}

	res, err = http.Get(strings.TrimSuffix(baseURL, "/v1") + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var stats struct {
		Calls          int64
		EmbeddingCalls int64 `json:"embedding_calls"`
	}
	if err := json.NewDecoder(res.Body).Decode(&stats); err != nil || stats.Calls != 2 || stats.EmbeddingCalls != 1 {
		t.Errorf("stats = %+v (%v), want 2 calls, 1 of them embeddings", stats, err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancel: %v", err)
	}
}

func TestRunBadFlag(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	if err := run(t.Context(), []string{"-nope"}, &logs, nil); err == nil {
		t.Error("run with an unknown flag: want an error")
	}
}
