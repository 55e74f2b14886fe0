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
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal the worker drains; a second one ends the
		// process at once. Nothing is lost: the broker still holds every
		// request not acked. Both signals are caught by one channel, so a
		// second one that comes right after the first is not missed.
		<-signals
		cancel()
		s := <-signals
		fmt.Fprintf(os.Stderr, "worker: second signal (%s): exiting at once\n", s)
		os.Exit(128 + int(s.(syscall.Signal)))
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
