package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/internal/respcache"
)

// cacheConfig holds the cache-purge command's flags.
type cacheConfig struct {
	conn   connFlags
	bucket string
}

func cacheFlags(cfg *cacheConfig, getenv func(string) string) *flag.FlagSet {
	fs := flag.NewFlagSet("cache-purge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.conn.register(fs, getenv)
	fs.StringVar(&cfg.bucket, "bucket", respcache.DefaultBucket, "the response cache's key-value `bucket` (the worker's CACHE_BUCKET)")
	return fs
}

func parseCache(args []string, getenv func(string) string) (*cacheConfig, error) {
	cfg := &cacheConfig{}
	fs := cacheFlags(cfg, getenv)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := cfg.conn.validate(); err != nil {
		return nil, err
	}
	if !validStream(cfg.bucket) {
		return nil, fmt.Errorf("--bucket %q is not a bucket name", cfg.bucket)
	}
	return cfg, nil
}

func (a *app) cacheUsage(w io.Writer) {
	printUsage(w, `Usage: publisher cache-purge [flags]

Empty the workers' response cache (RESPONSE_CACHE_TTL): every stored answer
is removed, and the next request asking the same is sent to the provider.
The workers may run meanwhile. Answers stored by calls in flight at that
moment may still land in the cache.

Exit codes: 0 purged (or no cache bucket), 2 usage or connection error.

Flags:
`, cacheFlags(&cacheConfig{}, a.getenv))
}

// cachePurge is the cache-purge command.
func (a *app) cachePurge(ctx context.Context, args []string) int {
	cfg, err := parseCache(args, a.getenv)
	if err != nil {
		return a.badUsage("cache-purge", err, a.cacheUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.conn.readyTimeout)
	defer cancel()
	nc, err := nats.Connect(cfg.conn.server, nats.Timeout(cfg.conn.readyTimeout))
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher cache-purge: connect to %s: %v\n", cfg.conn.server, err)
		return exitUsage
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher cache-purge: %v\n", err)
		return exitUsage
	}
	n, err := respcache.Purge(ctx, js, cfg.bucket)
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher cache-purge: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(a.stdout, "purged %d answers from %s\n", n, cfg.bucket)
	return exitOK
}
