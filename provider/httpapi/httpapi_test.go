package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/httpapi"
	"github.com/aibatch/aibatch/provider/httpapitest"
)

const testToken = "tok-test-0123456789abcdef"

func newBatch(n int) provider.Batch {
	b := provider.Batch{ID: "b1", Model: "my-model", Instructions: "Summarise."}
	for i := range n {
		b.Requests = append(b.Requests, provider.Request{Key: fmt.Sprint(i), Input: fmt.Sprintf("input <%d> & \"more\"", i)})
	}
	return b
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     httpapi.Config
		wantErr string
	}{
		{"valid", httpapi.Config{URL: "https://example.com/batch"}, ""},
		{"combined", httpapi.Config{URL: "http://127.0.0.1:9000/x", Mode: httpapi.ModeCombined, MaxResponseBytes: 10}, ""},
		{"no URL", httpapi.Config{}, "URL is required"},
		{"relative URL", httpapi.Config{URL: "/batch"}, "absolute"},
		{"bad scheme", httpapi.Config{URL: "ftp://host/batch"}, "absolute"},
		{"unparsable URL", httpapi.Config{URL: "http://user:hunter2@[::1"}, "not a valid URL"},
		{"single mode", httpapi.Config{URL: "http://h/b", Mode: "single"}, "Mode"},
		{"negative max bytes", httpapi.Config{URL: "http://h/b", MaxResponseBytes: -1}, "MaxResponseBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := httpapi.New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr == "" && p.Name() != "http":
				t.Errorf("Name() = %q", p.Name())
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New error = %v, want one containing %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Errorf("New error %q shows the URL's password", err)
			}
		})
	}
}

func TestRequestWireFormat(t *testing.T) {
	t.Parallel()
	srv := httpapitest.NewServer(httpapitest.WithToken(testToken))
	t.Cleanup(srv.Close)
	p, err := httpapi.New(httpapi.Config{URL: srv.URL, Token: testToken, Header: http.Header{"X-Tenant": {"acme"}}})
	if err != nil {
		t.Fatal(err)
	}
	b := newBatch(3)
	b.Requests[1].MaxOutputTokens = 40
	b.MaxOutputTokens = 900
	results, err := p.Complete(t.Context(), b)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if len(results) != 3 {
		t.Fatalf("got %d results", len(results))
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("endpoint got %d calls", len(reqs))
	}
	req := reqs[0]
	for k, want := range map[string]string{"Authorization": "Bearer " + testToken, "X-Tenant": "acme", "Content-Type": "application/json", "Accept": "application/json"} {
		if got := req.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	for i, it := range req.Items {
		want := httpapitest.Item{ID: b.Requests[i].Key, Input: b.Requests[i].Input, Instructions: b.Instructions, Model: b.Model, MaxOutputTokens: b.Requests[i].MaxOutputTokens}
		if !reflect.DeepEqual(it, want) {
			t.Errorf("item %d = %+v, want %+v", i, it, want)
		}
	}
	// The wire names are the contract: check them in the raw body.
	var raw struct {
		MaxOutputTokens int              `json:"max_output_tokens"`
		Items           []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(req.Body, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.MaxOutputTokens != 900 || req.MaxOutputTokens != 900 {
		t.Errorf("max_output_tokens = %d, want the batch's budget 900", raw.MaxOutputTokens)
	}
	for i, it := range raw.Items {
		_, hasMax := it["max_output_tokens"]
		if hasMax != (i == 1) {
			t.Errorf("item %d: max_output_tokens present = %v: %v", i, hasMax, it)
		}
		for _, k := range []string{"id", "input", "instructions", "model"} {
			if _, ok := it[k]; !ok {
				t.Errorf("item %d lacks %q: %v", i, k, it)
			}
		}
	}
	if strings.Contains(string(req.Body), `\u003c`) {
		t.Errorf("body escapes HTML: %s", req.Body)
	}
	for _, r := range results {
		in := b.Requests[0].Input
		for _, rq := range b.Requests {
			if rq.Key == r.Key {
				in = rq.Input
			}
		}
		want := provider.Usage{InputTokens: int64(len(b.Instructions)+len(in)+3) / 4, OutputTokens: int64(len(httpapitest.Answer(in))+3) / 4}
		if r.Usage != want {
			t.Errorf("key %s: usage %+v, want the item's %+v", r.Key, r.Usage, want)
		}
	}
}

// serve answers every call with status, header and body.
func serve(t *testing.T, status int, header map[string]string, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want map[string]string // key -> output, or "!perm"/"!trans" for an error
	}{
		{"error wins over output", `{"results":[{"id":"0","output":"x","error":"bad"},{"id":"1","output":"y"}]}`,
			map[string]string{"0": "!perm", "1": "y"}},
		{"retryable", `{"results":[{"id":"0","error":"busy","retryable":true}]}`, map[string]string{"0": "!trans"}},
		{"empty output is an answer", `{"results":[{"id":"0","output":""}]}`, map[string]string{"0": ""}},
		{"neither output nor error is missing", `{"results":[{"id":"0"},{"id":"0","output":"later"}]}`, map[string]string{"0": "later"}},
		{"unknown fields ignored", `{"results":[{"id":"0","output":"x","score":1}],"model":"m"}`, map[string]string{"0": "x"}},
		{"empty results", `{"results":[]}`, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := httpapi.New(httpapi.Config{URL: serve(t, 200, nil, tt.body)})
			if err != nil {
				t.Fatal(err)
			}
			results, err := p.Complete(t.Context(), newBatch(2))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if len(results) != len(tt.want) {
				t.Fatalf("results = %+v, want %v", results, tt.want)
			}
			for _, r := range results {
				want, ok := tt.want[r.Key]
				switch {
				case !ok:
					t.Errorf("unexpected result %+v", r)
				case want == "!perm" || want == "!trans":
					if r.Err == nil || provider.IsPermanent(r.Err) != (want == "!perm") || provider.ScopeOf(r.Err) != provider.ScopeRequest ||
						!strings.HasPrefix(r.Err.Error(), fmt.Sprintf("httpapi: item %q: ", r.Key)) {
						t.Errorf("key %s: Err = %v, want %s", r.Key, r.Err, want)
					}
				case r.Err != nil || r.Output != want:
					t.Errorf("key %s: %q, %v; want %q", r.Key, r.Output, r.Err, want)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		status         int
		header         map[string]string
		body           string
		cfg            httpapi.Config
		wantPermanent  bool
		wantScope      provider.Scope
		wantModel      bool // wraps provider.ErrUnknownModel
		wantStatus     int
		wantRetryAfter time.Duration
		wantText       string
	}{
		{name: "body quoted", status: 422, body: `{"error":"model my-model unknown"}`, wantPermanent: true, wantStatus: 422, wantText: "model my-model unknown"},
		{name: "unknown model", status: 404, body: `{"error":"no model my-model","code":"model_not_found"}`, wantPermanent: true, wantModel: true, wantStatus: 404, wantText: "no model"},
		{name: "404 of another kind", status: 404, body: `{"error":"no such path"}`, wantPermanent: true, wantStatus: 404, wantText: "no such path"},
		{name: "too large", status: 413, body: `{"error":"too many items"}`, wantPermanent: true, wantScope: provider.ScopeBatch, wantStatus: 413, wantText: "too many items"},
		{name: "token echoed is hidden", status: 401, body: "bad token " + testToken, wantScope: provider.ScopeProvider, wantStatus: 401, wantText: "[REDACTED]"},
		{name: "header value echoed is hidden", status: 403, body: "key s3cret-header refused", cfg: httpapi.Config{Header: http.Header{"X-Api-Key": {"s3cret-header"}}}, wantScope: provider.ScopeProvider, wantStatus: 403, wantText: "[REDACTED]"},
		{name: "long body cut", status: 500, body: strings.Repeat("é", 1000), wantScope: provider.ScopeProvider, wantStatus: 500, wantText: "..."},
		{name: "retry-after date", status: 503, header: map[string]string{"Retry-After": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, wantScope: provider.ScopeProvider, wantStatus: 503, wantRetryAfter: time.Hour},
		{name: "425", status: 425, wantScope: provider.ScopeProvider, wantStatus: 425},
		{name: "HTML 200", status: 200, body: "<html>hi</html>", wantScope: provider.ScopeBatch, wantText: "parse answer"},
		{name: "no results", status: 200, body: `{"answers":[]}`, wantScope: provider.ScopeBatch, wantText: `no "results"`},
		{name: "results not a list", status: 200, body: `{"results":{}}`, wantScope: provider.ScopeBatch, wantText: "parse answer"},
		{name: "truncated", status: 200, body: `{"results":[{"id":"0","output":"x"}],"truncated":true}`, wantPermanent: true, wantScope: provider.ScopeBatch, wantText: "cut off"},
		{name: "too long", status: 200, body: `{"results":[]}` + strings.Repeat(" ", 100), cfg: httpapi.Config{MaxResponseBytes: 50}, wantScope: provider.ScopeBatch, wantText: "exceeds 50 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.URL, cfg.Token = serve(t, tt.status, tt.header, tt.body), testToken
			p, err := httpapi.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Complete(t.Context(), newBatch(2))
			if err == nil {
				t.Fatal("Complete succeeded, want an error")
			}
			checkError(t, err, tt.wantPermanent, tt.wantStatus)
			if got := provider.ScopeOf(err); got != tt.wantScope || errors.Is(err, provider.ErrUnknownModel) != tt.wantModel {
				t.Errorf("error %v: scope %v, want %v; unknown model %v, want %v", err, got, tt.wantScope, !tt.wantModel, tt.wantModel)
			}
			// The date has one-second resolution: allow for it.
			if got := provider.RetryAfter(err); got > tt.wantRetryAfter || got < tt.wantRetryAfter-2*time.Second {
				t.Errorf("RetryAfter = %v, want about %v", got, tt.wantRetryAfter)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
			for _, secret := range []string{testToken, "s3cret-header"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains a secret", err)
				}
			}
		})
	}
}

func checkError(t *testing.T, err error, wantPermanent bool, wantStatus int) {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a *provider.Error", err)
	}
	if provider.IsPermanent(err) != wantPermanent {
		t.Errorf("error %v: permanent = %v, want %v", err, provider.IsPermanent(err), wantPermanent)
	}
	if pe.StatusCode != wantStatus {
		t.Errorf("StatusCode = %d, want %d", pe.StatusCode, wantStatus)
	}
	if !strings.HasPrefix(err.Error(), "httpapi: post batch: ") {
		t.Errorf("error %q does not say what was being done", err)
	}
}

func TestNetworkErrors(t *testing.T) {
	t.Parallel()
	t.Run("connection refused, password in URL", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		p, err := httpapi.New(httpapi.Config{URL: strings.Replace(srv.URL, "http://", "http://user:pw-secret-42@", 1) + "/batch"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Complete(t.Context(), newBatch(1))
		if err == nil {
			t.Fatal("want an error")
		}
		checkError(t, err, false, 0)
		if provider.ScopeOf(err) != provider.ScopeProvider {
			t.Errorf("error %v: scope %v, want provider", err, provider.ScopeOf(err))
		}
		if strings.Contains(err.Error(), "pw-secret-42") {
			t.Errorf("error %q contains the URL's password", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		srv := httpapitest.NewServer()
		t.Cleanup(srv.Close)
		p, err := httpapi.New(httpapi.Config{URL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err = p.Complete(ctx, newBatch(1))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v does not wrap context.Canceled", err)
		}
		checkError(t, err, false, 0)
	})
}

// TestOneRequest checks a batch of one request is that request's call: a
// 4xx rejection and a truncated answer are its own, an outage and an
// unknown model the whole call's.
func TestOneRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		body       string
		wantOutput string
		wantOwn    bool // a permanent ScopeRequest Result.Err
		wantScope  provider.Scope
	}{
		{name: "truncated answer", status: 200, body: `{"results":[{"id":"0","output":"cut sh"}],"truncated":true}`, wantOutput: "cut sh"},
		{name: "bad request", status: 400, body: `{"error":"input too strange"}`, wantOwn: true},
		{name: "too large", status: 413, body: `{"error":"input too long"}`, wantOwn: true},
		{name: "outage", status: 503, body: `{"error":"down"}`, wantScope: provider.ScopeProvider},
		{name: "wrong token", status: 401, body: `{"error":"who are you"}`, wantScope: provider.ScopeProvider},
		{name: "unknown model", status: 404, body: `{"error":"no model","code":"model_not_found"}`, wantScope: provider.ScopeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := httpapi.New(httpapi.Config{URL: serve(t, tt.status, nil, tt.body), Token: testToken})
			if err != nil {
				t.Fatal(err)
			}
			results, err := p.Complete(t.Context(), newBatch(1))
			switch {
			case tt.wantOutput != "":
				if err != nil || len(results) != 1 || results[0].Err != nil || results[0].Output != tt.wantOutput {
					t.Errorf("Complete = %+v, %v; want the cut-off output %q", results, err, tt.wantOutput)
				}
			case tt.wantOwn:
				if err != nil || len(results) != 1 || results[0].Key != "0" {
					t.Fatalf("Complete = %+v, %v; want the request's own error", results, err)
				}
				if e := results[0].Err; !provider.IsPermanent(e) || provider.ScopeOf(e) != provider.ScopeRequest || !strings.HasPrefix(e.Error(), "httpapi: post batch: ") {
					t.Errorf("Err %v, want a permanent ScopeRequest error", e)
				}
			default:
				if err == nil || results != nil || provider.ScopeOf(err) != tt.wantScope {
					t.Errorf("Complete = %+v, %v; want the whole call's error, scope %v", results, err, tt.wantScope)
				}
			}
		})
	}
}
