package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// replayConfig is the parsed command line of replay.
type replayConfig struct {
	conn          connFlags
	stream        string
	subject       string
	requestStream string
	all           bool
	sel           deadSelection
	dryRun        bool
	timeout       time.Duration
}

func replayFlags(cfg *replayConfig, getenv func(string) string) *flag.FlagSet {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.conn.register(fs, getenv)
	fs.StringVar(&cfg.stream, "stream", wire.DeadStream, "dead-letter `stream`")
	fs.StringVar(&cfg.subject, "subject", allDead, "subject `filter` of the dead letters to consider")
	fs.StringVar(&cfg.requestStream, "request-stream", wire.RequestStream, "`stream` the re-published requests must land in")
	fs.BoolVar(&cfg.all, "all", false, "replay every dead letter on --subject")
	cfg.sel.register(fs)
	fs.BoolVar(&cfg.dryRun, "dry-run", false, "list what would be replayed, change nothing")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "how long each re-publish waits for its PubAck")
	return fs
}

func parseReplay(args []string, getenv func(string) string) (*replayConfig, error) {
	cfg := &replayConfig{}
	if err := parseCommand(replayFlags(cfg, getenv), args); err != nil {
		return nil, err
	}
	if err := cfg.conn.validate(); err != nil {
		return nil, err
	}
	switch {
	case !cfg.all && !cfg.sel.any():
		return nil, errors.New("say which dead letters to replay: --all, --id or --error")
	case cfg.all && cfg.sel.any():
		return nil, errors.New("--all cannot be used with --id or --error")
	case !validStream(cfg.stream):
		return nil, fmt.Errorf("--stream %q is not a valid stream name", cfg.stream)
	case !validStream(cfg.requestStream):
		return nil, fmt.Errorf("--request-stream %q is not a valid stream name", cfg.requestStream)
	case !validFilter(cfg.subject):
		return nil, fmt.Errorf("--subject %q is not a valid subject filter", cfg.subject)
	case cfg.timeout <= 0:
		return nil, fmt.Errorf("--timeout is %s, must be > 0", cfg.timeout)
	}
	return cfg, nil
}

func (a *app) replayUsage(w io.Writer) {
	printUsage(w, `Usage: publisher replay (--all | --id ID... | --error TEXT) [flags]

Re-publish dead letters, after the cause of their failure is fixed: each
one's original body goes back to the subject it was first published to
(Batch-Subject), with its original Batch-Reply-To, so its new result reaches
the same place. A dead letter is removed from --stream only once the
request stream has acknowledged storing the re-published request; one that
fails to re-publish stays.

Each re-published request has Nats-Msg-Id "replay:<stream>:<seq>", new to
the request stream's duplicate window, so it is not dropped as a repeat of
the original; running replay again after a crash between the re-publish and
the removal, within the request stream's duplicate window (DEDUPE_WINDOW),
does not store it twice. The re-published request carries the original
request's id in Batch-Request-Id, so its new result has the same id even
when the body has none.

--id and --error together select dead letters matching both.

Exit codes: 0 every selected dead letter replayed (or none selected),
1 some could not be replayed, 2 usage or connection error.

Flags:
`, replayFlags(&replayConfig{}, a.getenv))
}

// replayMsgID is the Nats-Msg-Id of a replayed dead letter.
func replayMsgID(stream string, seq uint64) string {
	return "replay:" + stream + ":" + strconv.FormatUint(seq, 10)
}

// replay is the replay command.
func (a *app) replay(ctx context.Context, args []string) int {
	cfg, err := parseReplay(args, a.getenv)
	if err != nil {
		return a.badUsage("replay", err, a.replayUsage)
	}
	nc, js, err := waitReady(ctx, readyConfig{server: cfg.conn.server, stream: cfg.stream, subject: cfg.subject, timeout: cfg.conn.readyTimeout})
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher replay: %v\n", err)
		return exitUsage
	}
	defer nc.Close()
	dead, err := js.Stream(ctx, cfg.stream)
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher replay: open stream %s: %v\n", cfg.stream, err)
		return exitUsage
	}
	letters, err := readDeadLetters(ctx, js, cfg.stream, cfg.subject, cfg.sel.matcher())
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher replay: %v\n", err)
		return exitUsage
	}

	replayed, failed := 0, 0
	for _, d := range letters {
		if ctx.Err() != nil {
			break
		}
		what := fmt.Sprintf("dead letter %d (id %q)", d.Seq, d.ID)
		if cfg.dryRun {
			fmt.Fprintf(a.stdout, "would replay %s to %s: %s\n", what, d.RequestSubject, oneLine(d.Error))
			continue
		}
		seq, err := a.replayOne(ctx, js, dead, cfg, d)
		if err != nil {
			failed++
			fmt.Fprintf(a.stderr, "publisher replay: %s: %v\n", what, err)
			continue
		}
		replayed++
		fmt.Fprintf(a.stdout, "replayed %s to %s as request %d\n", what, d.RequestSubject, seq)
	}
	switch {
	case cfg.dryRun:
		fmt.Fprintf(a.stdout, "%s would be replayed\n", deadLetters(len(letters)))
	default:
		fmt.Fprintf(a.stdout, "replayed %d of %s", replayed, deadLetters(len(letters)))
		if failed > 0 {
			fmt.Fprintf(a.stdout, " (%d failed)", failed)
		}
		fmt.Fprintln(a.stdout)
	}
	if replayed+failed < len(letters) && !cfg.dryRun {
		fmt.Fprintf(a.stderr, "publisher replay: interrupted; %s left as they were\n", deadLetters(len(letters)-replayed-failed))
		return exitFailed
	}
	if failed > 0 {
		return exitFailed
	}
	return exitOK
}

// replayOne re-publishes d and, once the request stream has stored it,
// removes d from the dead-letter stream. It returns the new request's
// sequence.
func (a *app) replayOne(ctx context.Context, js jetstream.JetStream, dead jetstream.Stream, cfg *replayConfig, d deadLetter) (uint64, error) {
	if !validSubject(d.RequestSubject) {
		return 0, fmt.Errorf("its %s header %q is not a subject to publish to", wire.HeaderSubject, d.RequestSubject)
	}
	m := nats.NewMsg(d.RequestSubject)
	m.Data = []byte(d.Body)
	if d.ReplyTo != "" {
		m.Header.Set(wire.HeaderReplyTo, d.ReplyTo)
	}
	if d.ID != "" {
		// The new result keeps the original id even when the body has none.
		m.Header.Set(wire.HeaderRequestID, d.ID)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	ack, err := js.PublishMsg(pctx, m,
		jetstream.WithMsgID(replayMsgID(cfg.stream, d.Seq)),
		jetstream.WithExpectStream(cfg.requestStream))
	if err != nil {
		return 0, fmt.Errorf("re-publish to %s: %w (the dead letter is kept)", d.RequestSubject, err)
	}
	if err := dead.DeleteMsg(pctx, d.Seq); err != nil {
		return ack.Sequence, fmt.Errorf("re-published as request %d, but removing the dead letter failed: %w", ack.Sequence, err)
	}
	return ack.Sequence, nil
}
