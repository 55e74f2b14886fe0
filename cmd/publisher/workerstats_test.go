package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// TestSendStatsURL runs send --wait against a real worker whose stats are
// served the way /admin/batch-stats may serve them, and checks the API calls
// reported against the fake provider's own count.
func TestSendStatsURL(t *testing.T) {
	t.Parallel()
	w := startWorker(t, workerConfig())
	// Calls made before the run must not be counted.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := w.newClient(t, "warm-up").Do(ctx, wire.Request{Input: "warm up"}); err != nil {
		t.Fatal(err)
	}

	calls := func() int64 { return w.engine.Stats().APICalls }
	cases := []struct {
		name string
		// body renders the stats JSON for the n-th GET (from 1); "" answers 503.
		body       func(n int32) string
		wantSource string
		wantFactor int64 // the served counter is this many times the worker's (0 means 1)
		sinceStart bool
		wantNote   string
	}{
		{name: "worker counter", wantSource: "worker.api_calls",
			body: func(int32) string {
				return fmt.Sprintf(`{"worker":{"api_calls":%d,"batches":1},"other":true}`, calls())
			}},
		{name: "fleet counter ahead", wantSource: "fleet.api_calls", wantFactor: 2, // other workers were busy too
			body: func(int32) string {
				return fmt.Sprintf(`{"worker":{"api_calls":%d},"fleet":{"api_calls":%d}}`, calls(), 2*calls())
			}},
		{name: "fleet counter lagging", wantSource: "worker.api_calls", // not updated since the run
			body: func(int32) string { return fmt.Sprintf(`{"worker":{"api_calls":%d},"fleet":{"api_calls":7}}`, calls()) }},
		{name: "first reading fails", wantSource: "worker.api_calls since the worker started", sinceStart: true,
			body: func(n int32) string {
				if n == 1 {
					return ""
				}
				return fmt.Sprintf(`{"worker":{"api_calls":%d}}`, calls())
			}},
		{name: "stats unreachable", wantNote: "status 503 Service Unavailable (API calls not reported)",
			body: func(int32) string { return "" }},
		{name: "no counter", wantNote: "has neither fleet.api_calls nor worker.api_calls (API calls not reported)",
			body: func(int32) string { return `{"worker":{"batches":3}}` }},
	}
	// One after another: each run's calls must be its own.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var gets atomic.Int32
			stats := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				body := tc.body(gets.Add(1))
				if body == "" {
					http.Error(rw, "not yet", http.StatusServiceUnavailable)
					return
				}
				fmt.Fprint(rw, body)
			}))
			t.Cleanup(stats.Close)

			before := w.fake.Calls()
			code, stdout, stderr := runCLI(t, "send", "--server", w.url(), "--synthetic", "120", "--wait", "--json", "--stats-url", stats.URL+"/admin/batch-stats")
			if code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			s := decodeSummary(t, stdout)
			if s.OK != 120 {
				t.Fatalf("summary: %+v", s)
			}
			if n := gets.Load(); n != 2 {
				t.Errorf("stats read %d times, want 2 (before and after)", n)
			}
			if tc.wantNote != "" {
				if s.APICalls != nil || !strings.Contains(stderr, tc.wantNote) {
					t.Errorf("api calls %v, stderr %q; want none and %q", s.APICalls, stderr, tc.wantNote)
				}
				return
			}
			want := w.fake.Calls() - before
			if tc.sinceStart {
				want = w.fake.Calls()
			}
			if tc.wantFactor > 0 {
				want *= tc.wantFactor
			}
			if s.APICalls == nil || *s.APICalls != want || s.APICallsSource != tc.wantSource {
				t.Errorf("api calls %v from %q, want %d from %q", s.APICalls, s.APICallsSource, want, tc.wantSource)
			}
			if n := w.fake.Calls() - before; n < 3 || n > 20 { // 120 requests, batches of up to 50
				t.Errorf("the worker made %d calls for 120 requests", n)
			}
		})
	}

	t.Run("text summary", func(t *testing.T) {
		stats := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, `{"worker":{"api_calls":%d}}`, calls())
		}))
		t.Cleanup(stats.Close)
		before := w.fake.Calls()
		code, stdout, stderr := runCLI(t, "send", "--server", w.url(), "--synthetic", "100", "--wait", "--stats-url", stats.URL)
		if code != exitOK {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		n := w.fake.Calls() - before
		want := fmt.Sprintf("\n100 requests -> %d API calls (%.1f%% fewer; worker stats: worker.api_calls)\n", n, 100-float64(n))
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	})
	t.Run("cost estimate", func(t *testing.T) {
		// The worker's estimate before and after the run; null before any
		// priced call, absent without PRICES.
		for _, tc := range []struct {
			name           string
			before, after  string
			wantLine       string
			wantCost, save float64
		}{
			{"grew during the run", `"estimated_cost":0.01,"estimated_saving":0.1`, `"estimated_cost":0.03,"estimated_saving":0.5`,
				"estimated cost $0.0200, saving $0.4000 (95.2%) against one call per request (worker stats)", 0.02, 0.4},
			{"first priced call in the run", `"estimated_cost":null,"estimated_saving":null`, `"estimated_cost":0.002,"estimated_saving":0.018`,
				"estimated cost $0.0020, saving $0.0180 (90.0%)", 0.002, 0.018},
			{"no PRICES", `"estimated_cost":null,"estimated_saving":null`, `"estimated_cost":null,"estimated_saving":null`, "", 0, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var gets atomic.Int32
				stats := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
					est := tc.after
					if gets.Add(1) == 1 {
						est = tc.before
					}
					fmt.Fprintf(rw, `{"worker":{"api_calls":%d},%s}`, calls(), est)
				}))
				t.Cleanup(stats.Close)
				code, stdout, stderr := runCLI(t, "send", "--server", w.url(), "--synthetic", "20", "--wait", "--stats-url", stats.URL)
				if code != exitOK {
					t.Fatalf("exit %d, stderr:\n%s", code, stderr)
				}
				if tc.wantLine == "" {
					if strings.Contains(stdout, "estimated cost") {
						t.Fatalf("a cost line without an estimate:\n%s", stdout)
					}
					return
				}
				if !strings.Contains(stdout, tc.wantLine) {
					t.Fatalf("summary lacks %q:\n%s", tc.wantLine, stdout)
				}
				_, js, _ := runCLI(t, "send", "--server", w.url(), "--synthetic", "2", "--wait", "--json", "--stats-url", stats.URL)
				if s := decodeSummary(t, js); s.EstimatedCost == nil || s.EstimatedSaving == nil {
					t.Fatalf("JSON summary without the estimate: %s", js)
				}
			})
		}
	})
}

func TestProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	startResponder(t, b, answerOK)
	cases := []struct {
		name     string
		terminal bool
		args     []string
		want     []string
		wantNot  []string
	}{
		{name: "bar on a terminal", terminal: true, args: []string{"--synthetic", "200"},
			want:    []string{"100%", "200/200", "results", "sent 200"},
			wantNot: []string{"acked"}},
		{name: "lines otherwise", args: []string{"--synthetic", "50", "--rate", "500", "--progress", "10ms"},
			want:    []string{`(?m)^sent \d+/50, acked \d+, results \d+$`},
			wantNot: []string{"%"}},
		{name: "none", terminal: true, args: []string{"--synthetic", "50", "--progress", "0"},
			wantNot: []string{"sent", "%"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			a := newApp(strings.NewReader(""), &out, &errOut, func(string) string { return "" })
			a.stderrTTY = tc.terminal
			args := append([]string{"send", "--server", b.srv.ClientURL(), "--wait", "--json"}, tc.args...)
			if code := a.run(t.Context(), args); code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
			}
			for _, want := range tc.want {
				if !regexp.MustCompile(want).MatchString(errOut.String()) {
					t.Errorf("stderr does not match %s:\n%q", want, errOut.String())
				}
			}
			for _, not := range tc.wantNot {
				if strings.Contains(errOut.String(), not) {
					t.Errorf("stderr contains %q:\n%q", not, errOut.String())
				}
			}
		})
	}

}
