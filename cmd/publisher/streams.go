package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Subject filters that read every result or dead letter.
const (
	allResults = wire.ResultSubjects
	allDead    = wire.DeadSubjects
)

// connFlags are the connection flags of the commands that read streams.
type connFlags struct {
	server       string
	readyTimeout time.Duration
}

func (c *connFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	server := getenv("NATS_URL")
	if server == "" {
		server = nats.DefaultURL
	}
	fs.StringVar(&c.server, "server", server, "NATS server `URL`; the default comes from $NATS_URL when it is set")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 30*time.Second, "how long to wait at start for NATS and the stream")
}

func (c *connFlags) validate() error {
	switch {
	case c.server == "":
		return errors.New("--server is empty")
	case c.readyTimeout <= 0:
		return fmt.Errorf("--ready-timeout is %s, must be > 0", c.readyTimeout)
	}
	return nil
}

// validStream reports whether name can be a stream name.
func validStream(name string) bool {
	return name != "" && !strings.ContainsAny(name, ".*> \t\r\n")
}

// validFilter reports whether s is a subject or a subject filter.
func validFilter(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		if tok == "" || (strings.ContainsAny(tok, "*>") && tok != "*" && tok != ">") || (tok == ">" && i != len(toks)-1) {
			return false
		}
	}
	return true
}

// idList is a flag that may be given more than once, each time with one id
// or a comma-separated list.
type idList []string

func (l *idList) String() string { return strings.Join(*l, ",") }

func (l *idList) Set(v string) error {
	for id := range strings.SplitSeq(v, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			return errors.New("empty id")
		}
		*l = append(*l, id)
	}
	return nil
}

// set returns the ids as a set; nil when there are none.
func (l idList) set() map[string]bool {
	if len(l) == 0 {
		return nil
	}
	m := make(map[string]bool, len(l))
	for _, id := range l {
		m[id] = true
	}
	return m
}

// parseCommand parses args with fs and refuses positional arguments.
func parseCommand(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// badUsage reports a usage error of command and returns exitUsage, or prints
// the command's help and returns exitOK for flag.ErrHelp.
func (a *app) badUsage(command string, err error, usage func(io.Writer)) int {
	if errors.Is(err, flag.ErrHelp) {
		usage(a.stdout)
		return exitOK
	}
	fmt.Fprintf(a.stderr, "publisher %s: %v\nRun 'publisher %s --help' for usage.\n", command, err, command)
	return exitUsage
}

// printUsage writes text and then fs's flags to w.
func printUsage(w io.Writer, text string, fs *flag.FlagSet) {
	fmt.Fprint(w, text)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// readStored calls fn for each message stored in stream on filter when it
// starts, oldest first, through an ordered consumer; messages stored after
// it reached the end are not read. It stops early when fn returns false.
func readStored(ctx context.Context, js jetstream.JetStream, stream, filter string, fn func(jetstream.Msg) bool) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return fmt.Errorf("read stream %s on %s: %w", stream, filter, err)
	}
	if cons.CachedInfo().NumPending == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read stream %s on %s: %w", stream, filter, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read stream %s on %s: %w", stream, filter, err)
		}
		if !fn(m) {
			return nil
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read stream %s on %s: %w", stream, filter, err)
		}
		if meta.NumPending == 0 {
			return nil
		}
	}
}
