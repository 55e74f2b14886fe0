package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/aibatch/aibatch/internal/metrics"
)

func TestStoppedBeforeStart(t *testing.T) {
	t.Parallel()
	failure := errors.New("set up streams: no answer")
	running := context.Background()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()

	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	if err := stoppedBeforeStart(running, log, failure); !errors.Is(err, failure) {
		t.Errorf("while running: got %v, want the step's error", err)
	}
	if n := logs.Len(); n != 0 {
		t.Errorf("while running: %d log entries, want none", n)
	}
	if err := stoppedBeforeStart(stopped, log, failure); err != nil {
		t.Errorf("after a stop: got %v, want nil", err)
	}
	if got := logs.FilterMessage("worker stopped before it started").Len(); got != 1 {
		t.Errorf("after a stop: %d entries saying so, want 1", got)
	}
}

func TestSyncMode(t *testing.T) {
	t.Parallel()
	for batchMode, want := range map[string]string{
		"combined": metrics.ModeCombined,
		"single":   metrics.ModeSingle,
		"async":    metrics.ModeCombined, // the MAX_WAIT fallback's calls
	} {
		if got := syncMode(batchMode); got != want {
			t.Errorf("syncMode(%q) = %q, want %q", batchMode, got, want)
		}
	}
}

// Durations in the logs carry their unit: "max_wait":"5m0s", not 300.
func TestLogDurationsCarryTheirUnit(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "console"} {
		zc, err := loggerConfig("info", format)
		if err != nil {
			t.Fatal(err)
		}
		enc := zapcore.NewJSONEncoder(zc.EncoderConfig)
		buf, err := enc.EncodeEntry(zapcore.Entry{Message: "batch sent"}, []zapcore.Field{
			zap.Duration("latency", 1500*time.Millisecond), zap.Duration("max_wait", 5*time.Minute),
		})
		if err != nil {
			t.Fatal(err)
		}
		line := buf.String()
		for _, want := range []string{`"latency":"1.5s"`, `"max_wait":"5m0s"`} {
			if !strings.Contains(line, want) {
				t.Errorf("LOG_FORMAT=%s: %s does not contain %s", format, strings.TrimSpace(line), want)
			}
		}
	}
}
