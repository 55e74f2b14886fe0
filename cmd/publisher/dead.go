package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// deadLetter is one message of the dead-letter stream; --json prints it.
type deadLetter struct {
	// Seq is its sequence in the dead-letter stream.
	Seq uint64 `json:"seq"`
	// Time is when it was stored.
	Time time.Time `json:"time"`
	// Subject is its subject, ai.dead.<topic>.
	Subject string `json:"subject"`
	// RequestSubject is where the request was published (Batch-Subject).
	RequestSubject string `json:"request_subject"`
	// ReplyTo is the request's Batch-Reply-To, if it had one.
	ReplyTo string `json:"reply_to,omitempty"`
	// RequestSeq is the request's sequence in the request stream.
	RequestSeq uint64 `json:"request_seq,omitempty"`
	// Attempts is how many times the request was delivered.
	Attempts int `json:"attempts"`
	// Error says why it failed (Batch-Error).
	Error string `json:"error"`
	// ID is the request's id: the body's "id", else the worker's
	// Batch-Request-Id header.
	ID string `json:"id,omitempty"`
	// Body is the original request body.
	Body string `json:"body"`
}

// parseDeadLetter reads a dead letter from a stream message.
func parseDeadLetter(m jetstream.Msg) (deadLetter, error) {
	meta, err := m.Metadata()
	if err != nil {
		return deadLetter{}, fmt.Errorf("read dead letter metadata: %w", err)
	}
	h := m.Headers()
	d := deadLetter{
		Seq:            meta.Sequence.Stream,
		Time:           meta.Timestamp.UTC(),
		Subject:        m.Subject(),
		RequestSubject: h.Get(wire.HeaderSubject),
		ReplyTo:        h.Get(wire.HeaderReplyTo),
		Error:          h.Get(wire.HeaderError),
		Body:           string(m.Data()),
	}
	d.RequestSeq, _ = strconv.ParseUint(h.Get(wire.HeaderStreamSeq), 10, 64)
	d.Attempts, _ = strconv.Atoi(h.Get(wire.HeaderAttempts))
	var body struct {
		ID string `json:"id"`
	}
	d.ID = h.Get(wire.HeaderRequestID)
	if json.Unmarshal(m.Data(), &body) == nil && body.ID != "" {
		d.ID = body.ID
	}
	return d, nil
}

// deadSelection picks dead letters by request id and by error text; both
// must match when both are given, and no selection matches everything.
type deadSelection struct {
	ids       idList
	errorText string
}

func (s *deadSelection) register(fs *flag.FlagSet) {
	fs.Var(&s.ids, "id", "only dead letters of request `ID`s (the body's \"id\"; repeat or comma-separate)")
	fs.StringVar(&s.errorText, "error", "", "only dead letters whose error contains `TEXT` (case-insensitive)")
}

func (s *deadSelection) any() bool { return len(s.ids) > 0 || s.errorText != "" }

func (s *deadSelection) matcher() func(deadLetter) bool {
	ids := s.ids.set()
	text := strings.ToLower(s.errorText)
	return func(d deadLetter) bool {
		return (ids == nil || ids[d.ID]) && strings.Contains(strings.ToLower(d.Error), text)
	}
}

// readDeadLetters returns the dead letters stored on subject in stream that
// match, oldest first.
func readDeadLetters(ctx context.Context, js jetstream.JetStream, stream, subject string, match func(deadLetter) bool) ([]deadLetter, error) {
	var out []deadLetter
	var perr error
	err := readStored(ctx, js, stream, subject, func(m jetstream.Msg) bool {
		d, err := parseDeadLetter(m)
		if err != nil {
			perr = err
			return false
		}
		if match(d) {
			out = append(out, d)
		}
		return true
	})
	if err == nil {
		err = perr
	}
	return out, err
}

// deadConfig is the parsed command line of dead.
type deadConfig struct {
	conn    connFlags
	stream  string
	subject string
	sel     deadSelection
	json    bool
}

func deadFlags(cfg *deadConfig, getenv func(string) string) *flag.FlagSet {
	fs := flag.NewFlagSet("dead", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.conn.register(fs, getenv)
	fs.StringVar(&cfg.stream, "stream", wire.DeadStream, "dead-letter `stream`")
	fs.StringVar(&cfg.subject, "subject", allDead, "subject `filter` to read (ai.dead.<topic> for one topic)")
	cfg.sel.register(fs)
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object per dead letter, with its body")
	return fs
}

func parseDead(args []string, getenv func(string) string) (*deadConfig, error) {
	cfg := &deadConfig{}
	if err := parseCommand(deadFlags(cfg, getenv), args); err != nil {
		return nil, err
	}
	if err := cfg.conn.validate(); err != nil {
		return nil, err
	}
	switch {
	case !validStream(cfg.stream):
		return nil, fmt.Errorf("--stream %q is not a valid stream name", cfg.stream)
	case !validFilter(cfg.subject):
		return nil, fmt.Errorf("--subject %q is not a valid subject filter", cfg.subject)
	}
	return cfg, nil
}

func (a *app) deadUsage(w io.Writer) {
	printUsage(w, `Usage: publisher dead [flags]

List the dead letters in --stream (AI_DEAD): requests that failed for good,
stored with their original body and the reason. Each line shows the dead
letter's sequence, when it was stored, where the request was published, its
attempts, its id and the error. --json prints one object per dead letter,
body included. 'publisher replay' re-publishes them once the cause is fixed.

Exit codes: 0 listed (whether or not there are dead letters), 2 usage or
connection error.

Flags:
`, deadFlags(&deadConfig{}, a.getenv))
}

// dead is the dead command.
func (a *app) dead(ctx context.Context, args []string) int {
	cfg, err := parseDead(args, a.getenv)
	if err != nil {
		return a.badUsage("dead", err, a.deadUsage)
	}
	nc, js, err := waitReady(ctx, readyConfig{server: cfg.conn.server, stream: cfg.stream, subject: cfg.subject, timeout: cfg.conn.readyTimeout})
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher dead: %v\n", err)
		return exitUsage
	}
	defer nc.Close()
	letters, err := readDeadLetters(ctx, js, cfg.stream, cfg.subject, cfg.sel.matcher())
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher dead: %v\n", err)
		return exitUsage
	}
	if cfg.json {
		enc := json.NewEncoder(a.stdout)
		for _, d := range letters {
			if err := enc.Encode(d); err != nil {
				fmt.Fprintf(a.stderr, "publisher dead: write: %v\n", err)
				return exitUsage
			}
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTORED\tREQUEST SUBJECT\tATTEMPTS\tID\tERROR")
	for _, d := range letters {
		id := d.ID
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", d.Seq, d.Time.Format(time.RFC3339), d.RequestSubject, d.Attempts, id, oneLine(d.Error))
	}
	fmt.Fprintln(tw, deadLetters(len(letters)))
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(a.stderr, "publisher dead: write: %v\n", err)
		return exitUsage
	}
	return exitOK
}

// deadLetters says "1 dead letter" or "<n> dead letters".
func deadLetters(n int) string {
	if n == 1 {
		return "1 dead letter"
	}
	return fmt.Sprintf("%d dead letters", n)
}
