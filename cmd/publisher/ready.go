package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readyPoll is how often waitReady retries the connection and the stream lookup.
const readyPoll = 250 * time.Millisecond

// readyConfig says what waitReady waits for.
type readyConfig struct {
	server  string
	stream  string
	subject string
	timeout time.Duration
	natsOpt []nats.Option
	jsOpt   []jetstream.JetStreamOpt
}

// waitReady connects to cfg.server and waits until stream cfg.stream exists,
// retrying both every readyPoll until cfg.timeout has passed: the worker that
// creates the stream may start at the same moment as the publisher. It then
// checks that cfg.subject is bound to that stream. On success the caller owns
// the returned connection.
func waitReady(ctx context.Context, cfg readyConfig) (*nats.Conn, jetstream.JetStream, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	var (
		nc      *nats.Conn
		js      jetstream.JetStream
		lastErr error
	)
	fail := func(err error) (*nats.Conn, jetstream.JetStream, error) {
		if nc != nil {
			nc.Close()
		}
		return nil, nil, err
	}
	for {
		if nc == nil {
			opts := append([]nats.Option{nats.Timeout(min(2*time.Second, cfg.timeout))}, cfg.natsOpt...)
			c, err := nats.Connect(cfg.server, opts...)
			if err != nil {
				lastErr = fmt.Errorf("connect to %s: %w", cfg.server, err)
			} else if js, err = jetstream.New(c, cfg.jsOpt...); err != nil {
				c.Close()
				return fail(fmt.Errorf("set up jetstream: %w", err))
			} else {
				nc = c
			}
		}
		if nc != nil {
			_, err := js.Stream(ctx, cfg.stream)
			if err == nil {
				break
			}
			if ctx.Err() == nil { // keep the reason, not the deadline that cut the call short
				lastErr = fmt.Errorf("look up stream %q: %w", cfg.stream, err)
			}
		}

		t := time.NewTimer(readyPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return fail(fmt.Errorf("not ready after %s (--ready-timeout): %w", cfg.timeout, lastErr))
			}
			return fail(fmt.Errorf("wait for stream %q: %w", cfg.stream, context.Cause(ctx)))
		case <-t.C:
		}
	}

	name, err := js.StreamNameBySubject(ctx, cfg.subject)
	if err != nil {
		return fail(fmt.Errorf("find the stream bound to subject %q: %w", cfg.subject, err))
	}
	if name != cfg.stream {
		return fail(fmt.Errorf("subject %q is bound to stream %q, not %q", cfg.subject, name, cfg.stream))
	}
	return nc, js, nil
}
