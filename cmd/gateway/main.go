// Command gateway serves an OpenAI-compatible HTTP API in front of the
// aibatch request stream: applications keep their OpenAI SDK and change the
// base URL and the key. Configuration comes from the environment; see
// docs/gateway.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-envconfig"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal the gateway stops taking requests and
		// lets the waiting ones be answered for SHUTDOWN_TIMEOUT; a second
		// signal ends it at once. Requests already published are answered
		// either way: their results are stored in AI_RESULTS.
		<-signals
		cancel()
		s := <-signals
		fmt.Fprintf(os.Stderr, "gateway: second signal (%s): exiting at once\n", s)
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
	if err := run(ctx, envconfig.OsLookuper(), nil); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}
