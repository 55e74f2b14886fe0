package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// resultsConfig is the parsed command line of results.
type resultsConfig struct {
	conn      connFlags
	stream    string
	subject   string
	fromStart bool
	follow    bool
	ids       idList
	timeout   time.Duration
	json      bool
}

func resultsFlags(cfg *resultsConfig, getenv func(string) string) *flag.FlagSet {
	fs := flag.NewFlagSet("results", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.conn.register(fs, getenv)
	fs.StringVar(&cfg.stream, "stream", wire.ResultStream, "result `stream`")
	fs.StringVar(&cfg.subject, "subject", allResults, "subject `filter` to read (a send --wait run's is ai.results.publisher.<run-id>)")
	fs.BoolVar(&cfg.fromStart, "from-start", false, "print the stored results first, oldest first (default: only results stored from now on)")
	fs.BoolVar(&cfg.follow, "follow", true, "keep printing new results; --follow=false stops at the end of the stream")
	fs.Var(&cfg.ids, "id", "print only the results of request `ID`s (repeat or comma-separate); implies --from-start, and ends once all are printed")
	fs.DurationVar(&cfg.timeout, "timeout", 0, "stop after this long (0 = until interrupted, or until every --id is printed)")
	fs.BoolVar(&cfg.json, "json", false, "print each result's JSON body as is, one per line")
	return fs
}

func parseResults(args []string, getenv func(string) string) (*resultsConfig, error) {
	cfg := &resultsConfig{}
	if err := parseCommand(resultsFlags(cfg, getenv), args); err != nil {
		return nil, err
	}
	if len(cfg.ids) > 0 {
		cfg.fromStart = true
	}
	if err := cfg.conn.validate(); err != nil {
		return nil, err
	}
	switch {
	case !validStream(cfg.stream):
		return nil, fmt.Errorf("--stream %q is not a valid stream name", cfg.stream)
	case !validFilter(cfg.subject):
		return nil, fmt.Errorf("--subject %q is not a valid subject filter", cfg.subject)
	case cfg.timeout < 0:
		return nil, fmt.Errorf("--timeout is %s, must be >= 0", cfg.timeout)
	case !cfg.follow && !cfg.fromStart:
		return nil, errors.New("--follow=false needs --from-start or --id: there is nothing to print otherwise")
	}
	return cfg, nil
}

func (a *app) resultsUsage(w io.Writer) {
	printUsage(w, `Usage: publisher results [flags]

Print results as the worker stores them in --stream (AI_RESULTS), one line
each: stored time, subject, id, status, and the output or the error.
--from-start prints the stored ones first; --id looks for given requests'
results, stored or still to come, and ends once all are printed. Reading
by id reads every stored result on --subject (results are not indexed by
id); narrow --subject to the reply subject when you know it.

Exit codes: 0 all printed results ok, 1 a printed result is an error or an
--id has no result (at --timeout, interrupt, or the end with --follow=false),
2 usage or connection error.

Flags:
`, resultsFlags(&resultsConfig{}, a.getenv))
}

// results is the results command.
func (a *app) results(ctx context.Context, args []string) int {
	cfg, err := parseResults(args, a.getenv)
	if err != nil {
		return a.badUsage("results", err, a.resultsUsage)
	}
	nc, js, err := waitReady(ctx, readyConfig{server: cfg.conn.server, stream: cfg.stream, subject: cfg.subject, timeout: cfg.conn.readyTimeout})
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher results: %v\n", err)
		return exitUsage
	}
	defer nc.Close()
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}

	want := cfg.ids.set()
	printed := make(map[string]bool)
	failed := false
	handle := func(m jetstream.Msg) (more bool) {
		var r wire.Result
		if err := json.Unmarshal(m.Data(), &r); err != nil || r.ID == "" {
			fmt.Fprintf(a.stderr, "publisher results: skipping a message on %s that is not a result: %.80q\n", m.Subject(), m.Data())
			return true
		}
		if want != nil && (!want[r.ID] || printed[r.ID]) {
			return true
		}
		printed[r.ID] = true
		failed = failed || r.Status != wire.StatusOK
		if err := a.printResult(m, r, cfg.json); err != nil {
			fmt.Fprintf(a.stderr, "publisher results: %v\n", err)
			return false
		}
		return want == nil || len(printed) < len(want)
	}

	err = followResults(ctx, js, cfg, handle)
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(a.stderr, "publisher results: %v\n", err)
		return exitUsage
	}
	if want != nil && len(printed) < len(want) {
		var missing []string
		for _, id := range cfg.ids {
			if !printed[id] {
				missing = append(missing, id)
			}
		}
		slices.Sort(missing)
		fmt.Fprintf(a.stderr, "publisher results: no result for %d of %d ids: %s\n", len(missing), len(want), listed(missing[:min(len(missing), maxListedIDs)], len(missing)))
		return exitFailed
	}
	if failed {
		return exitFailed
	}
	return exitOK
}

// followResults reads cfg.stream on cfg.subject, from the start or from now,
// calling handle for each message until it returns false, ctx ends, or (with
// --follow=false) the end of the stream is reached.
func followResults(ctx context.Context, js jetstream.JetStream, cfg *resultsConfig, handle func(jetstream.Msg) bool) error {
	if !cfg.follow {
		return readStored(ctx, js, cfg.stream, cfg.subject, handle)
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{cfg.subject}}
	if !cfg.fromStart {
		s, err := js.Stream(ctx, cfg.stream)
		if err != nil {
			return fmt.Errorf("open stream %s: %w", cfg.stream, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("read stream %s: %w", cfg.stream, err)
		}
		occ.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		occ.OptStartSeq = info.State.LastSeq + 1
	}
	cons, err := js.OrderedConsumer(ctx, cfg.stream, occ)
	if err != nil {
		return fmt.Errorf("read stream %s on %s: %w", cfg.stream, cfg.subject, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read stream %s on %s: %w", cfg.stream, cfg.subject, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read stream %s on %s: %w", cfg.stream, cfg.subject, err)
		}
		if !handle(m) {
			return nil
		}
	}
}

// printResult writes one result: its body with --json, else a line.
func (a *app) printResult(m jetstream.Msg, r wire.Result, asJSON bool) error {
	var err error
	if asJSON {
		_, err = fmt.Fprintf(a.stdout, "%s\n", m.Data())
	} else {
		stored := "-"
		if meta, merr := m.Metadata(); merr == nil {
			stored = meta.Timestamp.UTC().Format(time.RFC3339Nano)
		}
		text := r.Output
		if r.Status != wire.StatusOK {
			text = r.Error
		}
		_, err = fmt.Fprintf(a.stdout, "%s %s %s %s %s\n", stored, m.Subject(), r.ID, r.Status, oneLine(text))
	}
	if err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// oneLine shows line breaks as \n so that one record stays on one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}
