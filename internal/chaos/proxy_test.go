package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/internal/chaos"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/openaitest"
)

// recorder is an http.RoundTripper that keeps the last raw answer.
type recorder struct {
	mu     sync.Mutex
	status int
	header http.Header
	body   []byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.status, r.header, r.body = resp.StatusCode, resp.Header.Clone(), body
	r.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func (r *recorder) last() (int, http.Header, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, r.header, r.body
}

// proxyBundle is a fake OpenAI API behind a Proxy, and the real openai
// provider calling through it.
type proxyBundle struct {
	proxy    *chaos.Proxy
	provider *openai.Provider
	rec      *recorder
}

func setupProxy(t *testing.T, rates chaos.FaultRates) proxyBundle {
	t.Helper()
	fake := openaitest.NewServer(openaitest.WithAPIKey("sk-proxy-test"))
	t.Cleanup(fake.Close)
	proxy, err := chaos.NewProxy(chaos.ProxyConfig{Upstream: fake.URL, Rates: rates, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	rec := &recorder{}
	p, err := openai.New(openai.Config{APIKey: "sk-proxy-test", BaseURL: proxy.URL(0), HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	return proxyBundle{proxy: proxy, provider: p, rec: rec}
}

var threeItems = provider.Batch{ID: "b", Model: "gpt-4o-mini", Requests: []provider.Request{
	{Key: "0", Input: "alpha"}, {Key: "1", Input: "beta"}, {Key: "2", Input: "gamma"},
}}

// content returns choices[0].message.content of a chat.completion body.
func content(t *testing.T, body []byte) string {
	t.Helper()
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) == 0 {
		t.Fatalf("answer is not a chat.completion with a choice: %v: %s", err, body)
	}
	return c.Choices[0].Message.Content
}

// batchResults parses a batch answer's content.
func batchResults(t *testing.T, content string) []openaitest.Result {
	t.Helper()
	var a struct {
		Results []openaitest.Result `json:"results"`
	}
	if err := json.Unmarshal([]byte(content), &a); err != nil {
		t.Fatalf("content is not a batch answer: %v: %s", err, content)
	}
	return a.Results
}

// apiErrorOf parses OpenAI's error JSON.
func apiErrorOf(t *testing.T, body []byte) (typ string, code *string) {
	t.Helper()
	var e struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Message == "" {
		t.Fatalf("body is not OpenAI's error JSON: %v: %s", err, body)
	}
	return e.Error.Type, e.Error.Code
}

func TestProxyInjectsWireFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rates chaos.FaultRates
		fault string
		check func(t *testing.T, b proxyBundle, results []provider.Result, err error)
	}{
		{
			name: "no fault passes the answer through",
			check: func(t *testing.T, b proxyBundle, results []provider.Result, err error) {
				if err != nil || len(results) != 3 {
					t.Fatalf("results %v, err %v; want 3 answers", results, err)
				}
				for _, r := range results {
					if want := openaitest.Answer(threeItems.Requests[r.Key[0]-'0'].Input); r.Output != want {
						t.Errorf("result %s = %q, want %q", r.Key, r.Output, want)
					}
				}
			},
		},
		{
			name: "500 with error JSON", rates: chaos.FaultRates{ServerError: 1}, fault: chaos.FaultServerError,
			check: func(t *testing.T, b proxyBundle, _ []provider.Result, err error) {
				status, _, body := b.rec.last()
				if typ, _ := apiErrorOf(t, body); status != 500 || typ != "server_error" {
					t.Errorf("answer %d type %q, want 500 server_error", status, typ)
				}
				var pe *provider.Error
				if !errors.As(err, &pe) || pe.StatusCode != 500 || pe.Permanent {
					t.Errorf("provider error %v, want a transient HTTP 500", err)
				}
			},
		},
		{
			name: "429 with Retry-After", rates: chaos.FaultRates{RateLimit: 1}, fault: chaos.FaultRateLimit,
			check: func(t *testing.T, b proxyBundle, _ []provider.Result, err error) {
				status, header, body := b.rec.last()
				if _, code := apiErrorOf(t, body); status != 429 || header.Get("Retry-After") != "1" || code == nil || *code != "rate_limit_exceeded" {
					t.Errorf("answer %d Retry-After %q code %v, want 429, 1, rate_limit_exceeded", status, header.Get("Retry-After"), code)
				}
				if provider.RetryAfter(err) != time.Second {
					t.Errorf("provider's retry-after = %s from %v, want 1s", provider.RetryAfter(err), err)
				}
			},
		},
		{
			name: "timeout hangs until the client gives up", rates: chaos.FaultRates{Timeout: 1}, fault: chaos.FaultTimeout,
			check: func(t *testing.T, _ proxyBundle, _ []provider.Result, err error) {
				if !errors.Is(err, context.DeadlineExceeded) || provider.IsPermanent(err) {
					t.Errorf("error %v, want a transient deadline exceeded", err)
				}
			},
		},
		{
			name: "an item dropped from the content", rates: chaos.FaultRates{DropItem: 1}, fault: chaos.FaultDropItem,
			check: func(t *testing.T, b proxyBundle, results []provider.Result, err error) {
				_, _, body := b.rec.last()
				if got := batchResults(t, content(t, body)); len(got) != 2 {
					t.Errorf("content has %d results, want 2 of 3", len(got))
				}
				if err != nil || len(results) != 2 {
					t.Errorf("provider gave %d results (err %v), want 2", len(results), err)
				}
			},
		},
		{
			name: "malformed content", rates: chaos.FaultRates{Malformed: 1}, fault: chaos.FaultMalformed,
			check: func(t *testing.T, b proxyBundle, _ []provider.Result, err error) {
				status, _, body := b.rec.last()
				if c := content(t, body); status != 200 || json.Valid([]byte(c)) {
					t.Errorf("answer %d with content %q, want 200 with content that is not JSON", status, c)
				}
				if err == nil || provider.IsPermanent(err) {
					t.Errorf("error %v, want a transient parse error", err)
				}
			},
		},
		{
			name: "an unknown id added", rates: chaos.FaultRates{UnknownID: 1}, fault: chaos.FaultUnknownID,
			check: func(t *testing.T, b proxyBundle, results []provider.Result, err error) {
				_, _, body := b.rec.last()
				got := batchResults(t, content(t, body))
				unknown := 0
				for _, r := range got {
					if r.ID != "0" && r.ID != "1" && r.ID != "2" {
						unknown++
					}
				}
				if len(got) != 4 || unknown != 1 {
					t.Errorf("content has %d results, %d unknown; want 4 with 1 unknown", len(got), unknown)
				}
				if err != nil || len(results) != 3 {
					t.Errorf("provider gave %d results (err %v), want the 3 asked for", len(results), err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupProxy(t, tt.rates)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			results, err := b.provider.Complete(ctx, threeItems)
			tt.check(t, b, results, err)
			stats := b.proxy.Stats()
			if stats.Calls != 1 {
				t.Errorf("proxy counted %d calls, want 1", stats.Calls)
			}
			if tt.fault != "" && stats.Faults[tt.fault] != 1 {
				t.Errorf("proxy counted faults %v, want one %s", stats.Faults, tt.fault)
			}
			if tt.fault == "" && len(stats.Faults) != 0 {
				t.Errorf("proxy counted faults %v, want none", stats.Faults)
			}
		})
	}
}

func TestProxyHoldNextHoldsOneCallOfItsSlot(t *testing.T) {
	t.Parallel()
	fake := openaitest.NewServer()
	t.Cleanup(fake.Close)
	proxy, err := chaos.NewProxy(chaos.ProxyConfig{Upstream: fake.URL, Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	client := func(slot int) *openai.Provider {
		p, err := openai.New(openai.Config{APIKey: "sk-x", BaseURL: proxy.URL(slot)})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	held, _ := proxy.HoldNext(1)

	// Slot 0's call is not held.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client(0).Complete(ctx, threeItems); err != nil {
		t.Fatalf("slot 0 call: %v", err)
	}
	select {
	case <-held:
		t.Fatal("HoldNext(1) fired on a call of slot 0")
	default:
	}

	// Slot 1's call is held until the client gives up.
	callCtx, callCancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := client(1).Complete(callCtx, threeItems)
		done <- err
	}()
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("slot 1's call was not held")
	}
	select {
	case err := <-done:
		t.Fatalf("held call answered: %v", err)
	case <-time.After(100 * time.Millisecond): // still held
	}
	callCancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("held call ended with %v, want the client's cancel", err)
	}

	// The hold was used up: the next call of slot 1 is answered.
	if _, err := client(1).Complete(ctx, threeItems); err != nil {
		t.Fatalf("slot 1's next call: %v", err)
	}
	if got := proxy.Stats().Faults[chaos.FaultHeld]; got != 1 {
		t.Fatalf("held calls = %d, want 1", got)
	}
}

func TestProxyAnswerNextFiresAfterASuccessfulAnswer(t *testing.T) {
	t.Parallel()
	b := setupProxy(t, chaos.FaultRates{})
	answered, disarm := b.proxy.AnswerNext(0)
	select {
	case <-answered:
		t.Fatal("fired before any call")
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.provider.Complete(ctx, threeItems); err != nil {
		t.Fatal(err)
	}
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("AnswerNext did not fire after an answer")
	}
	if disarm() {
		t.Fatal("disarm after firing reported that it cancelled")
	}
	_, disarm = b.proxy.AnswerNext(0)
	if !disarm() {
		t.Fatal("disarm before any call did not cancel")
	}
}

func TestNewProxyRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  chaos.ProxyConfig
	}{
		{"no upstream", chaos.ProxyConfig{}},
		{"relative upstream", chaos.ProxyConfig{Upstream: "/v1"}},
		{"rates over 1", chaos.ProxyConfig{Upstream: "http://127.0.0.1:1/v1", Rates: chaos.FaultRates{ServerError: 0.6, Timeout: 0.6}}},
		{"negative rate", chaos.ProxyConfig{Upstream: "http://127.0.0.1:1/v1", Rates: chaos.FaultRates{DropItem: -0.1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if p, err := chaos.NewProxy(tt.cfg); err == nil {
				p.Close()
				t.Fatalf("NewProxy(%+v) succeeded, want an error", tt.cfg)
			}
		})
	}
}

func TestProxyOutageFailsEveryCallWith5xxInTurn(t *testing.T) {
	t.Parallel()
	// Random faults are not drawn while a period runs: every call would
	// otherwise time out.
	b := setupProxy(t, chaos.FaultRates{Timeout: 1})
	if err := b.proxy.StartOutage(time.Hour); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{500, 503, 529, 500} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := b.provider.Complete(ctx, threeItems)
		cancel()
		status, _, body := b.rec.last()
		if typ, _ := apiErrorOf(t, body); status != want || typ == "" {
			t.Errorf("call %d: answer %d type %q, want %d with OpenAI's error JSON", i, status, typ, want)
		}
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.StatusCode != want || pe.Permanent || provider.ScopeOf(err) != provider.ScopeProvider {
			t.Errorf("call %d: provider error %v, want a transient HTTP %d of provider scope", i, err, want)
		}
	}
	stats := b.proxy.Stats()
	if stats.Calls != 4 || stats.Forwarded != 0 || stats.Faults[chaos.FaultOutage] != 4 || len(stats.Faults) != 1 {
		t.Errorf("stats %+v, want 4 calls, none forwarded, 4 outage faults and no other", stats)
	}
	if len(stats.Periods) != 1 {
		t.Fatalf("periods %+v, want one", stats.Periods)
	}
	p := stats.Periods[0]
	if p.Kind != chaos.PeriodOutage || p.Failed != 4 || p.ByStatus[500] != 2 || p.ByStatus[503] != 1 || p.ByStatus[529] != 1 || !p.Recovered.IsZero() {
		t.Errorf("period %+v, want an outage that failed 2×500, 503 and 529, not recovered", p)
	}
}

func TestProxyKeyRejectionAnswers401InvalidAPIKey(t *testing.T) {
	t.Parallel()
	b := setupProxy(t, chaos.FaultRates{})
	if err := b.proxy.StartKeyRejection(time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := b.proxy.StartOutage(time.Hour); err != nil { // the key is checked first
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := b.provider.Complete(ctx, threeItems)
	status, _, body := b.rec.last()
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if jerr := json.Unmarshal(body, &e); jerr != nil || status != http.StatusUnauthorized || e.Error.Type != "invalid_request_error" || e.Error.Code == nil || *e.Error.Code != "invalid_api_key" {
		t.Fatalf("answer %d %s, want 401 invalid_request_error invalid_api_key", status, body)
	}
	// OpenAI quotes the key it was given, masked.
	if msg := e.Error.Message; !strings.HasPrefix(msg, "Incorrect API key provided: sk-") || strings.Contains(msg, "sk-proxy-test") || !strings.Contains(msg, "test.") {
		t.Errorf("message %q, want the key masked but for its first 3 and last 4 characters", msg)
	}
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusUnauthorized || provider.ScopeOf(err) != provider.ScopeProvider {
		t.Errorf("provider error %v, want an HTTP 401 of provider scope", err)
	}
	stats := b.proxy.Stats()
	if stats.Faults[chaos.FaultKeyRejected] != 1 || stats.Faults[chaos.FaultOutage] != 0 {
		t.Errorf("faults %v, want one key rejection and no outage", stats.Faults)
	}
}

func TestProxyRejectsBadPeriods(t *testing.T) {
	t.Parallel()
	b := setupProxy(t, chaos.FaultRates{})
	for name, err := range map[string]error{
		"zero outage":         b.proxy.StartOutage(0),
		"outage of 404":       b.proxy.StartOutage(time.Minute, 404),
		"negative key period": b.proxy.StartKeyRejection(-time.Second),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if p := b.proxy.Stats().Periods; len(p) != 0 {
		t.Errorf("periods %+v started by bad calls", p)
	}
}
