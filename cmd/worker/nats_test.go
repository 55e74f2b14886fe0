package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestCheckServerVersion(t *testing.T) {
	t.Parallel()
	for version, wantOK := range map[string]bool{
		"2.9.10":         false,
		"2.9.25":         false,
		"2.2.0":          false,
		"1.4.1":          false,
		"2.10.0":         true,
		"2.10.0-beta.12": true,
		"v2.11.3":        true,
		"2.15.2":         true,
		"3.0.0":          true,
		"":               true, // unknown: the server's own errors will speak
		"custom":         true,
	} {
		err := checkServerVersion(version)
		if (err == nil) != wantOK {
			t.Errorf("checkServerVersion(%q) = %v, want ok %v", version, err, wantOK)
		}
		if err != nil {
			want := "nats-server " + version + " is too old: aibatch needs 2.10 or newer"
			if err.Error() != want {
				t.Errorf("checkServerVersion(%q) = %q, want %q", version, err, want)
			}
		}
	}
}

func TestRedactURLs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                   "nats://127.0.0.1:4222",
		"nats://aibatch:s3cret@nats.example:4222": "nats://nats.example:4222",
		"tls://tok3n@nats.example:4222":           "tls://nats.example:4222",
		"nats://u:p@a:4222, nats://u:p@b:4222":    "nats://a:4222,nats://b:4222",
		"nats://u:p@ss@host:4222":                 "nats://host:4222",
		"nats://host:4222/path?token=s3cret":      "nats://host:4222",
		"host-without-scheme:4222":                "(a server address that is not a URL)",
		"nats://%zz:s3cret@host:4222":             "(a server address that is not a URL)",
	} {
		got := redactURLs(in)
		if got != want {
			t.Errorf("redactURLs(%q) = %q, want %q", in, got, want)
		}
		for _, secret := range []string{"s3cret", "tok3n", ":p@"} {
			if strings.Contains(got, secret) {
				t.Errorf("redactURLs(%q) = %q shows %q", in, got, secret)
			}
		}
	}
}

// While NATS is down, the worker logs that it waits, naming the URL
// without its credentials: once at once, then less and less often.
func TestConnectWhenUpLogsWithBackoff(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(freePort(t))
	url := "nats://aibatch:s3cret@127.0.0.1:" + port
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	w := connectWait{Retry: time.Millisecond, RetryMax: 2 * time.Millisecond, LogFirst: 20 * time.Millisecond, LogMax: time.Second}
	nc, err := connectWhenUp(ctx, zap.New(core), url, w)
	if nc != nil || err != context.DeadlineExceeded {
		t.Fatalf("connectWhenUp with nothing listening = %v, %v; want the context's end", nc, err)
	}
	entries := logs.FilterMessage("waiting for NATS").All()
	// At 0, 20, 60, 140 and 300ms: four or five lines in 400ms, where one
	// per attempt would be a hundred or more.
	if n := len(entries); n < 3 || n > 6 {
		t.Fatalf("%d log lines in 400ms, want 3 to 6 (0ms, then after 20, 40, 80, 160ms …)", n)
	}
	var last time.Duration = -1
	for i, e := range entries {
		fields := e.ContextMap()
		if fields["url"] != "nats://127.0.0.1:"+port {
			t.Errorf("line %d names url %v", i, fields["url"])
		}
		waited, _ := fields["waited"].(time.Duration)
		if waited <= last {
			t.Errorf("line %d: waited %s after %s", i, waited, last)
		}
		last = waited
		for k, v := range fields {
			if s, ok := v.(string); ok && strings.Contains(s, "s3cret") {
				t.Errorf("line %d field %s shows the password: %s", i, k, s)
			}
		}
	}
}
