package ratelimit_test

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/anthropic"
	"github.com/aibatch/aibatch/provider/anthropictest"
	"github.com/aibatch/aibatch/provider/httpapi"
	"github.com/aibatch/aibatch/provider/httpapitest"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
	"github.com/aibatch/aibatch/provider/ratelimit"
)

func TestParseHeaders(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		name         string
		header       http.Header
		ok           bool
		req, tok     ratelimit.Window
		wantRequests bool
	}{
		{"OpenAI", h("x-ratelimit-limit-requests", "60", "x-ratelimit-remaining-requests", "59", "x-ratelimit-reset-requests", "1s",
			"x-ratelimit-limit-tokens", "150000", "x-ratelimit-remaining-tokens", "149984", "x-ratelimit-reset-tokens", "6m0s"),
			true, ratelimit.Window{Limit: 60, Remaining: 59, Reset: now.Add(time.Second)},
			ratelimit.Window{Limit: 150000, Remaining: 149984, Reset: now.Add(6 * time.Minute)}, true},
		{"OpenAI milliseconds and fractions", h("x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "250ms",
			"x-ratelimit-remaining-tokens", "10", "x-ratelimit-reset-tokens", "1m30.5s"),
			true, ratelimit.Window{Remaining: 0, Reset: now.Add(250 * time.Millisecond)},
			ratelimit.Window{Remaining: 10, Reset: now.Add(90*time.Second + 500*time.Millisecond)}, true},
		{"Anthropic", h("anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "49",
			"anthropic-ratelimit-requests-reset", "2026-01-02T03:04:06Z",
			"anthropic-ratelimit-tokens-limit", "40000", "anthropic-ratelimit-tokens-remaining", "39000",
			"anthropic-ratelimit-tokens-reset", "2026-01-02T03:04:35Z"),
			true, ratelimit.Window{Limit: 50, Remaining: 49, Reset: now.Add(time.Second)},
			ratelimit.Window{Limit: 40000, Remaining: 39000, Reset: now.Add(30 * time.Second)}, true},
		{"Anthropic input tokens only", h("anthropic-ratelimit-input-tokens-remaining", "7",
			"anthropic-ratelimit-input-tokens-reset", "2026-01-02T03:04:15Z"),
			true, ratelimit.Window{}, ratelimit.Window{Remaining: 7, Reset: now.Add(10 * time.Second)}, false},
		{"none", h("retry-after", "1"), false, ratelimit.Window{}, ratelimit.Window{}, false},
		{"remaining without reset", h("x-ratelimit-remaining-requests", "5"), false, ratelimit.Window{}, ratelimit.Window{}, false},
		{"malformed", h("x-ratelimit-remaining-requests", "-1", "x-ratelimit-reset-requests", "1s",
			"x-ratelimit-remaining-tokens", "5", "x-ratelimit-reset-tokens", "soon",
			"anthropic-ratelimit-requests-remaining", "3", "anthropic-ratelimit-requests-reset", "tomorrow"),
			false, ratelimit.Window{}, ratelimit.Window{}, false},
		{"a reset over a day is not believed", h("x-ratelimit-remaining-requests", "1", "x-ratelimit-reset-requests", "48h"),
			false, ratelimit.Window{}, ratelimit.Window{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, ok := ratelimit.ParseHeaders(tt.header, now)
			if ok != tt.ok {
				t.Fatalf("ParseHeaders ok = %v, want %v (%+v)", ok, tt.ok, r)
			}
			if r.Requests != tt.req || r.Tokens != tt.tok {
				t.Errorf("ParseHeaders = requests %+v, tokens %+v; want %+v, %+v", r.Requests, r.Tokens, tt.req, tt.tok)
			}
			if ok && !r.At.Equal(now) {
				t.Errorf("At = %v, want %v", r.At, now)
			}
		})
	}
}

// limitedFake is a fake of one provider with an account's rate limit, and
// a provider for it whose HTTP client reads the headers into readings.
type limitedFake struct {
	name     string
	p        provider.Provider
	refused  func() int64
	calls    func() int64
	readings *ratelimit.Readings
}

// limitedFakes starts each fake with a limit of rpm requests a minute.
func limitedFakes(t *testing.T, rpm int) []limitedFake {
	t.Helper()
	var out []limitedFake
	{
		srv := openaitest.NewServer()
		t.Cleanup(srv.Close)
		srv.SetRateLimit(rpm, 0)
		r := &ratelimit.Readings{}
		p, err := openai.New(openai.Config{APIKey: "sk-test", BaseURL: srv.URL, HTTPClient: &http.Client{Transport: r.Transport(nil)}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, limitedFake{"openai", p, srv.RateLimited, srv.Calls, r})
	}
	{
		srv := anthropictest.NewServer()
		t.Cleanup(srv.Close)
		srv.SetRateLimit(rpm, 0)
		r := &ratelimit.Readings{}
		p, err := anthropic.New(anthropic.Config{APIKey: "sk-ant-test", BaseURL: srv.URL, HTTPClient: &http.Client{Transport: r.Transport(nil)}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, limitedFake{"anthropic", p, srv.RateLimited, srv.Calls, r})
	}
	for _, style := range []string{"http", "http-anthropic-headers"} {
		var opts []httpapitest.Option
		if style != "http" {
			opts = append(opts, httpapitest.WithAnthropicRateHeaders())
		}
		srv := httpapitest.NewServer(opts...)
		t.Cleanup(srv.Close)
		srv.SetRateLimit(rpm, 0)
		r := &ratelimit.Readings{}
		p, err := httpapi.New(httpapi.Config{URL: srv.URL, HTTPClient: &http.Client{Transport: r.Transport(nil)}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, limitedFake{style, p, srv.RateLimited, srv.Calls, r})
	}
	return out
}

func oneRequest(i int) provider.Batch {
	return provider.Batch{ID: "b", Model: "gpt-test", Requests: []provider.Request{{Key: "0", Input: "in " + strconv.Itoa(i)}}}
}

// TestTransportReadsEveryAnswer checks each fake's headers are read: what
// is left goes down by one a call.
func TestTransportReadsEveryAnswer(t *testing.T) {
	t.Parallel()
	for _, f := range limitedFakes(t, 600) {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			if _, ok := f.readings.Latest(); ok {
				t.Fatal("a reading before any call")
			}
			var last int64 = 600
			for i := range 3 {
				before := time.Now()
				if _, err := f.p.Complete(t.Context(), oneRequest(i)); err != nil {
					t.Fatal(err)
				}
				r, ok := f.readings.Latest()
				if !ok || r.At.Before(before) {
					t.Fatalf("call %d: reading %+v, %v; want one taken after the call", i, r, ok)
				}
				w := r.Requests
				if w.Limit != 600 || w.Remaining >= last || w.Remaining < 600-int64(i)-2 || !w.Reset.After(before) {
					t.Errorf("call %d: requests window %+v, want limit 600, fewer than %d left, a reset ahead", i, w, last)
				}
				last = w.Remaining
			}
		})
	}
}

// TestHeadersSlowTheCallsBeforeA429 drives each fake, whose account allows
// 120 calls a minute (2 a second, the bucket holding 120), as fast as four
// callers can, with no RPM set. Reading the headers, the calls slow down as
// the bucket empties, towards its refill rate: no call is refused.
// Without the readings the same callers empty the bucket and get 429s.
func TestHeadersSlowTheCallsBeforeA429(t *testing.T) {
	t.Parallel()
	const rpm, callers, run = 120, 4, 3 * time.Second
	drive := func(t *testing.T, p provider.Provider) (arrivals []time.Time) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		var n atomic.Int64
		stop := time.Now().Add(run)
		for range callers {
			wg.Go(func() {
				for time.Now().Before(stop) {
					_, _ = p.Complete(t.Context(), oneRequest(int(n.Add(1))))
					mu.Lock()
					arrivals = append(arrivals, time.Now())
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return arrivals
	}
	for _, f := range limitedFakes(t, rpm) {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			p, err := ratelimit.New(f.p, ratelimit.Limits{}, ratelimit.WithReadings(f.readings))
			if err != nil {
				t.Fatal(err)
			}
			arrivals := drive(t, p)
			if n := f.refused(); n != 0 {
				t.Fatalf("%d calls refused (429) with the headers read", n)
			}
			// The pace is what is left over the time until the bucket is
			// full again: fast while most is left, slower as it empties,
			// nearing the refill rate (2/s) with half the bucket left.
			start, end := arrivals[0], arrivals[len(arrivals)-1]
			var first, last int
			for _, at := range arrivals {
				if at.Sub(start) < time.Second {
					first++
				}
				if end.Sub(at) < time.Second {
					last++
				}
			}
			t.Logf("%d calls: %d in the first second, %d in the last; %d requests left", f.calls(), first, last, p.Status().Remaining.Requests.Remaining)
			if last > 8 || first < 3*last {
				t.Errorf("%d calls in the first second, %d in the last; want the calls to slow to a few a second", first, last)
			}
			st := p.Status()
			if st.Remaining == nil || st.Remaining.Requests.Remaining < 30 || st.RequestsPerMinute == nil || *st.RequestsPerMinute > 8*60 {
				t.Errorf("Status() = %+v; want a quarter of the bucket left at least, and the pace it allows", st)
			}
		})
	}
	t.Run("control: without readings", func(t *testing.T) {
		t.Parallel()
		f := limitedFakes(t, rpm)[0]
		drive(t, f.p)
		if f.refused() == 0 {
			t.Fatalf("no 429 in %d calls without reading the headers: the test cannot tell", f.calls())
		}
	})
}
