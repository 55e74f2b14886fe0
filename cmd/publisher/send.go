package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aibatch/aibatch/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"golang.org/x/time/rate"
)

// pubAckTimeout is how long a publish waits for its PubAck before it counts
// as failed.
const pubAckTimeout = 10 * time.Second

// flushTimeout bounds the round trip that registers the results subscription.
const flushTimeout = 10 * time.Second

// sendConfig is the parsed command line of send.
type sendConfig struct {
	server        string
	stream        string
	subject       string
	urgent        bool
	replyTo       string
	file          string
	synthetic     int
	instructions  string
	model         string
	rate          float64
	maxPending    int
	wait          bool
	timeout       time.Duration
	readyTimeout  time.Duration
	progress      time.Duration
	providerStats string
	statsURL      string
	json          bool
}

// sendFlags defines send's flags on a new FlagSet that writes nothing itself.
func sendFlags(cfg *sendConfig, getenv func(string) string) *flag.FlagSet {
	server := getenv("NATS_URL")
	if server == "" {
		server = nats.DefaultURL
	}
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.server, "server", server, "NATS server `URL`; the default comes from $NATS_URL when it is set")
	fs.StringVar(&cfg.stream, "stream", wire.RequestStream, "JetStream `stream` that must capture --subject (the worker creates it)")
	fs.StringVar(&cfg.subject, "subject", requestsPrefix+"demo", "`subject` to publish requests to; --urgent makes the default "+urgentPrefix+"demo")
	fs.BoolVar(&cfg.urgent, "urgent", false, "publish to "+urgentPrefix+"demo unless --subject is given")
	fs.StringVar(&cfg.replyTo, "reply-to", "", "Batch-Reply-To `subject` without --wait (default "+wire.ResultPrefix+".<topic> of --subject)")
	fs.StringVar(&cfg.file, "file", "", "read JSONL requests from `path` (- = stdin)")
	fs.IntVar(&cfg.synthetic, "synthetic", 0, "generate `N` synthetic observations instead of reading --file")
	fs.StringVar(&cfg.instructions, "instructions", "", "instructions for requests that set none")
	fs.StringVar(&cfg.model, "model", "", "model for requests that set none")
	fs.Float64Var(&cfg.rate, "rate", 0, "publish at most `R` requests per second (0 = as fast as possible)")
	fs.IntVar(&cfg.maxPending, "max-pending", 256, "most publishes waiting for their PubAck at once")
	fs.BoolVar(&cfg.wait, "wait", false, "collect results on "+publisherReplyBase+"<run-id> and report them")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "with --wait, how long to wait for results after the last publish; without, for PubAcks")
	fs.DurationVar(&cfg.readyTimeout, "ready-timeout", 30*time.Second, "how long to wait at start for NATS and --stream")
	fs.DurationVar(&cfg.progress, "progress", time.Second, "interval of progress lines on stderr when it is not a terminal; on a terminal a bar is drawn instead (0 = no progress at all)")
	fs.StringVar(&cfg.providerStats, "provider-stats", "", "with --wait, GET this `URL` ({\"calls\": N}) at the end and report the API calls saved")
	fs.StringVar(&cfg.statsURL, "stats-url", "", "with --wait, GET the worker's stats `URL` (/admin/batch-stats) before and after the run and report the API calls made during the run (fleet.api_calls or worker.api_calls, whichever grew more); unreachable stats are only noted")
	fs.BoolVar(&cfg.json, "json", false, "print the summary as one JSON object")
	return fs
}

// parseSend parses send's args into a validated config whose replyTo is set.
// It returns flag.ErrHelp for --help.
func parseSend(args []string, getenv func(string) string, runID string) (*sendConfig, error) {
	cfg := &sendConfig{}
	fs := sendFlags(cfg, getenv)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if cfg.urgent && !set["subject"] {
		cfg.subject = urgentPrefix + "demo"
	}
	switch {
	case cfg.wait && set["reply-to"]:
		return nil, errors.New("--reply-to cannot be used with --wait, which sets a per-run reply subject")
	case cfg.wait:
		cfg.replyTo = publisherReplyBase + runID
	case cfg.replyTo == "":
		var ok bool
		if cfg.replyTo, ok = defaultReplyTo(cfg.subject); !ok {
			return nil, fmt.Errorf("--reply-to is required: --subject %q is not under %s or %s", cfg.subject, requestsPrefix, urgentPrefix)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// validate reports the first flag that is wrong, by name.
func (c *sendConfig) validate() error {
	switch {
	case c.file == "" && c.synthetic == 0:
		return errors.New("one of --file or --synthetic is required")
	case c.file != "" && c.synthetic != 0:
		return errors.New("--file and --synthetic cannot be used together")
	case c.synthetic < 0:
		return fmt.Errorf("--synthetic is %d, must be > 0", c.synthetic)
	case c.server == "":
		return errors.New("--server is empty")
	case c.stream == "" || strings.ContainsAny(c.stream, ".*> \t\r\n"):
		return fmt.Errorf("--stream %q is not a valid stream name", c.stream)
	case !validSubject(c.subject):
		return fmt.Errorf("--subject %q is not a valid subject to publish to", c.subject)
	case !validSubject(c.replyTo):
		return fmt.Errorf("--reply-to %q is not a valid subject to publish to", c.replyTo)
	case c.rate < 0 || math.IsNaN(c.rate) || math.IsInf(c.rate, 0):
		return fmt.Errorf("--rate is %v, must be >= 0", c.rate)
	case c.maxPending < 1:
		return fmt.Errorf("--max-pending is %d, must be >= 1", c.maxPending)
	case c.timeout <= 0:
		return fmt.Errorf("--timeout is %s, must be > 0", c.timeout)
	case c.readyTimeout <= 0:
		return fmt.Errorf("--ready-timeout is %s, must be > 0", c.readyTimeout)
	case c.progress < 0:
		return fmt.Errorf("--progress is %s, must be >= 0", c.progress)
	case c.providerStats != "" && !c.wait:
		return errors.New("--provider-stats needs --wait: the call count means something only once all results are in")
	case c.statsURL != "" && !c.wait:
		return errors.New("--stats-url needs --wait: the call count means something only once all results are in")
	}
	for _, f := range []struct{ name, value string }{{"--provider-stats", c.providerStats}, {"--stats-url", c.statsURL}} {
		if f.value == "" {
			continue
		}
		u, err := url.Parse(f.value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s %q is not an http(s) URL", f.name, f.value)
		}
	}
	return nil
}

// send is the send command.
func (a *app) send(ctx context.Context, args []string) int {
	runID := nuid.Next()
	cfg, err := parseSend(args, a.getenv, runID)
	if errors.Is(err, flag.ErrHelp) {
		a.sendUsage(a.stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher send: %v\nRun 'publisher send --help' for usage.\n", err)
		return exitUsage
	}

	reqs, err := a.loadRequests(cfg, runID)
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher send: %v\n", err)
		return exitUsage
	}

	sum, err := a.sendRequests(ctx, cfg, runID, reqs)
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher send: %v\n", err)
		return exitUsage
	}

	code := exitOK
	if sum.failed() {
		code = exitFailed
	}
	var statsErr error
	if cfg.providerStats != "" && !sum.Interrupted {
		calls, err := fetchProviderCalls(ctx, http.DefaultClient, cfg.providerStats)
		if err != nil {
			statsErr = err
			code = exitUsage
		} else {
			sum.setProviderCalls(calls)
		}
	}

	if cfg.json {
		err = sum.writeJSON(a.stdout)
	} else {
		err = sum.writeText(a.stdout)
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher send: %v\n", err)
		return exitUsage
	}
	if statsErr != nil {
		fmt.Fprintf(a.stderr, "publisher send: %v\n", statsErr)
	}
	return code
}

func (a *app) sendUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: publisher send (--file PATH | --synthetic N) [flags]

Publish AI requests to --subject with JetStream. At start, wait up to
--ready-timeout for NATS and for --stream, which the worker creates. With
--wait, collect one result per request on a per-run subject until all are in
or --timeout passes, then print a summary (--json for one JSON object).

--file has one JSON request per line:
  {"id":"optional","input":"required text","instructions":"optional","model":"optional","max_output_tokens":0,"metadata":{}}
A line without "id" gets "<run-id>-<n>". Every request carries the headers
Nats-Msg-Id: <run-id>-<n> and Batch-Reply-To: <subject>.

Progress goes to stderr: a progress bar when stderr is a terminal, otherwise a
plain line every --progress. With --stats-url, the summary adds the API calls
the worker made during the run, read from its stats before and after.

Exit codes: 0 all ok, 1 some requests failed or timed out, 2 usage or connection error.

Flags:
`)
	fs := sendFlags(&sendConfig{}, a.getenv)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// loadRequests reads --file or generates --synthetic requests.
func (a *app) loadRequests(cfg *sendConfig, runID string) ([]wire.Request, error) {
	defaults := requestDefaults{instructions: cfg.instructions, model: cfg.model}
	if cfg.synthetic > 0 {
		return syntheticRequests(cfg.synthetic, runID, defaults), nil
	}
	var r io.Reader = a.stdin
	if cfg.file != "-" {
		f, err := os.Open(cfg.file)
		if err != nil {
			return nil, fmt.Errorf("open requests: %w", err)
		}
		defer f.Close()
		r = f
	}
	reqs, err := readRequests(r, runID, defaults)
	if err != nil {
		return nil, fmt.Errorf("read requests from %s: %w", cfg.file, err)
	}
	return reqs, nil
}

// sendRequests waits for NATS and the stream, publishes reqs, waits for their
// PubAcks (and with cfg.wait their results) and summarizes the run. An error
// means nothing was published.
func (a *app) sendRequests(ctx context.Context, cfg *sendConfig, runID string, reqs []wire.Request) (Summary, error) {
	tr := newTracker(reqs, runID, cfg.wait)
	// slots bounds the publishes waiting for a PubAck; a PubAck or a publish
	// error frees one.
	slots := make(chan struct{}, cfg.maxPending)
	release := func() {
		select {
		case <-slots:
		default:
		}
	}
	nc, js, err := waitReady(ctx, readyConfig{
		server:  cfg.server,
		stream:  cfg.stream,
		subject: cfg.subject,
		timeout: cfg.readyTimeout,
		natsOpt: []nats.Option{
			nats.Name("aibatch-publisher"),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				fmt.Fprintf(a.stderr, "publisher send: nats: %v\n", err)
			}),
		},
		jsOpt: []jetstream.JetStreamOpt{
			jetstream.WithPublishAsyncTimeout(pubAckTimeout),
			jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
				tr.acked(m.Header.Get(wire.HeaderMsgID), time.Now())
				release()
			}),
			jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
				tr.publishFailed(m.Header.Get(wire.HeaderMsgID), err)
				release()
			}),
		},
	})
	if err != nil {
		return Summary{}, err
	}
	defer nc.Close()

	if cfg.wait {
		sub, err := nc.Subscribe(cfg.replyTo, func(m *nats.Msg) {
			at := time.Now()
			var r wire.Result
			if err := json.Unmarshal(m.Data, &r); err != nil || r.ID == "" {
				tr.invalidResult()
				return
			}
			tr.result(r, at)
		})
		if err != nil {
			return Summary{}, fmt.Errorf("subscribe to results on %s: %w", cfg.replyTo, err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			return Summary{}, fmt.Errorf("lift pending limits of %s: %w", cfg.replyTo, err)
		}
		// The server must know the subscription before the first request goes out.
		if err := nc.FlushTimeout(flushTimeout); err != nil {
			return Summary{}, fmt.Errorf("subscribe to results on %s: %w", cfg.replyTo, err)
		}
	}

	var before workerCalls
	var beforeErr error
	if cfg.statsURL != "" {
		before, beforeErr = fetchWorkerCalls(ctx, http.DefaultClient, cfg.statsURL)
	}

	stopProgress := a.startProgress(cfg.progress, tr, cfg.wait)
	interrupted := publishAll(ctx, js, cfg, runID, reqs, tr, slots, release)
	tr.sendingFinished()
	if !interrupted {
		timer := time.NewTimer(cfg.timeout)
		select {
		case <-tr.Done():
		case <-timer.C:
		case <-ctx.Done():
			interrupted = true
		}
		timer.Stop()
	}
	stopProgress()

	sum := tr.summarize()
	sum.RunID, sum.Subject, sum.ReplyTo, sum.Interrupted = runID, cfg.subject, cfg.replyTo, interrupted
	if cfg.statsURL != "" && !interrupted {
		after, err := fetchWorkerCalls(ctx, http.DefaultClient, cfg.statsURL)
		if err == nil {
			err = sum.setWorkerCalls(before, beforeErr, after)
		}
		if err != nil {
			fmt.Fprintf(a.stderr, "publisher send: %v (API calls not reported)\n", err)
		}
	}
	return sum, nil
}

// publishAll publishes reqs in order, paced by cfg.rate, with at most
// cap(slots) PubAcks outstanding. It reports whether ctx ended it early.
func publishAll(ctx context.Context, js jetstream.JetStream, cfg *sendConfig, runID string, reqs []wire.Request, tr *tracker, slots chan struct{}, release func()) (interrupted bool) {
	var limiter *rate.Limiter
	if cfg.rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(cfg.rate), 1)
	}
	for i := range reqs {
		if ctx.Err() != nil {
			return true
		}
		if limiter != nil {
			if err := limiter.Wait(ctx); err != nil {
				return true
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return true
		}
		msgID := requestID(runID, i+1)
		body, err := json.Marshal(&reqs[i])
		tr.published(i, time.Now())
		if err != nil {
			tr.publishFailed(msgID, fmt.Errorf("encode request: %w", err))
			release()
			continue
		}
		msg := &nats.Msg{Subject: cfg.subject, Data: body, Header: nats.Header{}}
		msg.Header.Set(wire.HeaderMsgID, msgID)
		msg.Header.Set(wire.HeaderReplyTo, cfg.replyTo)
		if _, err := js.PublishMsgAsync(msg, jetstream.WithExpectStream(cfg.stream)); err != nil {
			tr.publishFailed(msgID, err)
			release()
		}
	}
	return false
}
