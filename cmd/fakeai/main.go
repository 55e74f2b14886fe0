// Command fakeai serves the fake OpenAI API of package openaitest on a real
// port, for trying the worker without an API key or spending tokens.
//
//	fakeai -addr 127.0.0.1:8089
//	OPENAI_BASE_URL=http://127.0.0.1:8089/v1 OPENAI_API_KEY=anything worker
//
// It serves chat completions (with structured outputs and tool calls),
// embeddings (POST /v1/embeddings, deterministic vectors) and the Batch API.
// GET /stats answers {"calls": N, "embedding_calls": M}: the API calls
// served (chat completions and embeddings), and the embeddings calls among
// them.
// SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aibatch/aibatch/provider/openaitest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "fakeai:", err)
		stop()
		os.Exit(1)
	}
}

// run serves the fake API until ctx ends. When ready is not nil it is called
// with the base URL once the server listens.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(baseURL string)) error {
	fs := flag.NewFlagSet("fakeai", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8089", "address to listen on")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}

	// Batch API jobs finish after two polls, so async mode works against it too.
	fake := openaitest.NewUnstartedServer(openaitest.WithCompleteAfter(2))
	mux := http.NewServeMux()
	mux.Handle("/", fake.Handler())
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"calls": fake.Calls(), "embedding_calls": fake.EmbeddingCalls()})
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	baseURL := "http://" + ln.Addr().String() + "/v1"
	log.New(stderr, "", log.LstdFlags).Printf("fakeai: listening; use OPENAI_BASE_URL=%s (stats: GET http://%s/stats)", baseURL, ln.Addr())
	if ready != nil {
		ready(baseURL)
	}

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
