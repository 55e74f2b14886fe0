// Command publisher sends AI requests to the aibatch worker through NATS
// JetStream and reports what came back.
//
//	publisher send --synthetic 1000 --wait --stats-url http://127.0.0.1:8080/admin/batch-stats
//	publisher send --file requests.jsonl --urgent
//	publisher results --id r-1 --id r-2
//	publisher dead --error "model_not_found"
//	publisher replay --error "HTTP 503"
//	publisher quality --stats-url http://127.0.0.1:8080/admin/batch-stats
//
// Run "publisher --help" for the commands and "publisher <command> --help" for
// their flags. Exit codes: 0 all ok, 1 some requests failed or timed out,
// 2 usage or connection error.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

// Exit codes.
const (
	exitOK     = 0 // every request succeeded
	exitFailed = 1 // some requests failed, timed out or were not sent
	exitUsage  = 2 // bad usage, unreadable input, or NATS/stream not reachable
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default so that a second one kills.
	go func() { <-ctx.Done(); stop() }()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args (without the program name) and returns the
// exit code. Cancelling ctx interrupts the command, which still reports what
// it has.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := newApp(os.Stdin, stdout, stderr, os.Getenv)
	defer a.stderr.close()
	return a.run(ctx, args)
}

// app holds what commands read and write, so that tests can supply their own.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr *syncWriter
	getenv func(string) string
	// stderrTTY is true when stderr is a terminal: progress is then a bar
	// rather than periodic lines.
	stderrTTY bool
}

func newApp(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: &syncWriter{w: stderr}, getenv: getenv, stderrTTY: isTerminal(stderr)}
}

// command is one subcommand; run gets the arguments after its name.
type command struct {
	name    string
	summary string
	run     func(a *app, ctx context.Context, args []string) int
}

// commands lists the subcommands in the order usage shows them. To add one,
// write a method like (*app).send and list it here.
func commands() []command {
	return []command{
		{name: "send", summary: "publish requests (JSONL or synthetic), optionally wait for results", run: (*app).send},
		{name: "results", summary: "print results as they are stored (or stored ones, by id)", run: (*app).results},
		{name: "dead", summary: "list dead letters with their error", run: (*app).dead},
		{name: "replay", summary: "re-publish dead letters once their cause is fixed", run: (*app).replay},
		{name: "quality", summary: "print how often combined answers agree with answers alone (SHADOW_RATE)", run: (*app).quality},
	}
}

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		a.usage(a.stderr)
		return exitUsage
	}
	switch name := args[0]; name {
	case "-h", "-help", "--help":
		a.usage(a.stdout)
		return exitOK
	case "help":
		if len(args) == 1 {
			a.usage(a.stdout)
			return exitOK
		}
		return a.run(ctx, []string{args[1], "--help"})
	default:
		for _, c := range commands() {
			if c.name == name {
				return c.run(a, ctx, args[1:])
			}
		}
		if strings.HasPrefix(name, "-") {
			fmt.Fprintf(a.stderr, "publisher: unknown flag %s (flags go after the command)\n", name)
		} else {
			fmt.Fprintf(a.stderr, "publisher: unknown command %q\n", name)
		}
		fmt.Fprintln(a.stderr, "Run 'publisher --help' for usage.")
		return exitUsage
	}
}

func (a *app) usage(w io.Writer) {
	fmt.Fprint(w, `Usage: publisher <command> [flags]

publisher feeds the aibatch worker: it publishes AI requests to NATS JetStream
and reports the results the worker sends back.

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'publisher <command> --help' for a command's flags.
Exit codes: 0 all ok, 1 some requests failed or timed out (send, results) or
some dead letters were not replayed (replay), 2 usage or connection error.
`)
}

// syncWriter serializes writes from the progress ticker, NATS callbacks and
// the command; after close it drops them, so that no late callback writes to
// a writer the caller has taken back.
type syncWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return len(p), nil
	}
	return s.w.Write(p)
}

func (s *syncWriter) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}
