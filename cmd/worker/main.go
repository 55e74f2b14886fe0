// Command worker runs the aibatch batching worker: it reads AI requests from
// a JetStream stream, sends them to the provider in combined calls, and
// publishes one result per request. Configuration comes from the environment
// (and a .env file); see README.md.
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal the worker drains; a second one gets the
		// default behaviour and ends the process at once. Nothing is lost:
		// the broker still holds every request not acked.
		<-ctx.Done()
		stop()
	}()
	lookup, err := withDotEnv(envconfig.OsLookuper(), ".env")
	if err == nil {
		err = run(ctx, lookup)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
