package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLatencyOf(t *testing.T) {
	t.Parallel()
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[len(ds)-1-i] = time.Duration(i+1) * time.Millisecond // 100ms .. 1ms, unsorted
	}
	got := latencyOf(ds)
	if want := (Latency{P50: 50, P95: 95, P99: 99, Max: 100}); got != want {
		t.Errorf("latencyOf = %+v, want %+v", got, want)
	}
	if got := latencyOf([]time.Duration{1500 * time.Microsecond}); got != (Latency{P50: 1.5, P95: 1.5, P99: 1.5, Max: 1.5}) {
		t.Errorf("one sample: %+v", got)
	}
	if got := latencyOf(nil); got != (Latency{}) {
		t.Errorf("no samples: %+v", got)
	}
}

func TestProviderLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		sent  int
		calls int64
		want  string
	}{
		{1000, 20, "1000 requests -> 20 API calls (98.0% fewer)"},
		{3, 1, "3 requests -> 1 API calls (66.7% fewer)"},
		{10, 10, "10 requests -> 10 API calls (0.0% fewer)"},
		{10, 15, "10 requests -> 15 API calls (50.0% more)"},
		{0, 2, "0 requests -> 2 API calls"},
	}
	for _, tc := range cases {
		s := Summary{Sent: tc.sent}
		s.setProviderCalls(tc.calls)
		if got := s.providerLine(); got != tc.want {
			t.Errorf("sent %d, calls %d: %q, want %q", tc.sent, tc.calls, got, tc.want)
		}
	}
}

func TestWriteTextWithoutWait(t *testing.T) {
	t.Parallel()
	s := Summary{RunID: "r", Subject: "ai.requests.demo", ReplyTo: "ai.results.demo", Requests: 5, Sent: 4, PublishFailed: 1,
		ElapsedMS: 1234, Throughput: 3.2, ErrorSamples: []string{"r-5: publish: boom"}}
	var buf bytes.Buffer
	if err := s.writeText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"requests sent  4 of 5 (publish failed 1, not sent 0)", "elapsed        1.234s", "3.2 requests/s", "r-5: publish: boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "results ok") || strings.Contains(out, "API calls") {
		t.Errorf("shows results without --wait:\n%s", out)
	}
}
