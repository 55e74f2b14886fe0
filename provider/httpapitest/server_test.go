package httpapitest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/httpapitest"
)

const items = `{"items":[{"id":"a","input":"x","instructions":"i","model":"m"},{"id":"b","input":"y","instructions":"i","model":"m"},{"id":"c","input":"z","instructions":"i","model":"m","max_output_tokens":5}]}`

type reply struct {
	status int
	header http.Header
	body   []byte
}

func send(t *testing.T, ctx context.Context, srv *httpapitest.Server, method, contentType, auth, body string) (reply, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: res.StatusCode, header: res.Header, body: b}, nil
}

// results posts the three items and decodes the answer.
func results(t *testing.T, srv *httpapitest.Server) []httpapitest.Result {
	t.Helper()
	r, err := send(t, t.Context(), srv, http.MethodPost, "application/json", "", items)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("post = %d %s, %v", r.status, r.body, err)
	}
	var a struct{ Results []httpapitest.Result }
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return a.Results
}

// summary renders results as "id=output" or "id!error(retryable)".
func summary(rs []httpapitest.Result) []string {
	var out []string
	for _, r := range rs {
		switch {
		case r.Error != "":
			out = append(out, r.ID+"!"+map[bool]string{true: "retryable", false: "final"}[r.Retryable])
		case r.Output != nil:
			out = append(out, r.ID+"="+*r.Output)
		default:
			out = append(out, r.ID)
		}
	}
	return out
}

func TestAnswer(t *testing.T) {
	t.Parallel()
	x, y, z := "a="+httpapitest.Answer("x"), "b="+httpapitest.Answer("y"), "c="+httpapitest.Answer("z")
	tests := []struct {
		name    string
		arrange func(*httpapitest.Server)
		want    []string
		ordered bool
	}{
		{"complete", func(*httpapitest.Server) {}, []string{x, y, z}, true},
		{"dropped", func(s *httpapitest.Server) { s.DropItems(1) }, []string{x, y}, true},
		{"omitted", func(s *httpapitest.Server) { s.OmitInput("x") }, []string{y, z}, true},
		{"rejected", func(s *httpapitest.Server) { s.RejectInput("y", false) }, []string{x, "b!final", z}, true},
		{"rejected retryable", func(s *httpapitest.Server) { s.RejectInput("y", true) }, []string{x, "b!retryable", z}, true},
		{"repeated ids", func(s *httpapitest.Server) { s.RepeatIDs(true) },
			[]string{"not-asked=" + httpapitest.Answer("not asked"), x, y, z, "a=repeated: " + httpapitest.Answer("x")}, true},
		{"rewritten", func(s *httpapitest.Server) {
			s.SetResultsFunc(func(rs []httpapitest.Result) []httpapitest.Result { return rs[2:] })
		}, []string{z}, true},
		{"shuffled", func(s *httpapitest.Server) { s.Shuffle(true) }, []string{x, y, z}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httpapitest.NewServer()
			t.Cleanup(srv.Close)
			tt.arrange(srv)
			got := summary(results(t, srv))
			if tt.ordered {
				if !slices.Equal(got, tt.want) {
					t.Errorf("results = %q, want %q", got, tt.want)
				}
				return
			}
			if slices.Equal(got, tt.want) {
				t.Errorf("results %q are in request order", got)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("results = %q, want %q in any order", got, tt.want)
			}
		})
	}
}

func TestUsageAndRequests(t *testing.T) {
	t.Parallel()
	srv := httpapitest.NewServer()
	t.Cleanup(srv.Close)
	rs := results(t, srv)
	if u := rs[0].Usage; u == nil || u.InputTokens != 1 || u.OutputTokens != int64(len(httpapitest.Answer("x"))+3)/4 {
		t.Errorf("usage = %+v", rs[0].Usage)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || len(reqs[0].Items) != 3 || reqs[0].Items[2].MaxOutputTokens != 5 ||
		!reflect.DeepEqual(reqs[0].Items[0], httpapitest.Item{ID: "a", Input: "x", Instructions: "i", Model: "m"}) || len(reqs[0].Body) == 0 {
		t.Errorf("Requests() = %+v", reqs)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		opts           []httpapitest.Option
		arrange        func(*httpapitest.Server)
		method         string
		contentType    string
		auth           string
		body           string
		wantStatus     int
		wantRetryAfter string
	}{
		{name: "GET", method: http.MethodGet, wantStatus: 405},
		{name: "no token", opts: []httpapitest.Option{httpapitest.WithToken("t")}, body: items, wantStatus: 401},
		{name: "wrong token", opts: []httpapitest.Option{httpapitest.WithToken("t")}, auth: "Bearer u", body: items, wantStatus: 401},
		{name: "right token", opts: []httpapitest.Option{httpapitest.WithToken("t")}, auth: "Bearer t", body: items, wantStatus: 200},
		{name: "text body", contentType: "text/plain", body: items, wantStatus: 415},
		{name: "charset is fine", contentType: "application/json; charset=utf-8", body: items, wantStatus: 200},
		{name: "bad JSON", body: "{", wantStatus: 400},
		{name: "unknown field", body: `{"items":[],"extra":1}`, wantStatus: 400},
		{name: "no items", body: `{"items":[]}`, wantStatus: 400},
		{name: "item without model", body: `{"items":[{"id":"a","input":"x"}]}`, wantStatus: 400},
		{name: "injected 429", arrange: func(s *httpapitest.Server) { s.FailNext(1, 429) }, body: items, wantStatus: 429, wantRetryAfter: "1"},
		{name: "injected 500", arrange: func(s *httpapitest.Server) { s.FailNext(1, 500) }, body: items, wantStatus: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httpapitest.NewServer(tt.opts...)
			t.Cleanup(srv.Close)
			if tt.arrange != nil {
				tt.arrange(srv)
			}
			method, ct := tt.method, tt.contentType
			if method == "" {
				method = http.MethodPost
			}
			if ct == "" {
				ct = "application/json"
			}
			r, err := send(t, t.Context(), srv, method, ct, tt.auth, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
			if got := r.header.Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
			if tt.wantStatus != 200 {
				var e struct{ Error string }
				if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
					t.Errorf("error body = %s, want {\"error\":...}", r.body)
				}
			}
			if srv.Calls() != 1 {
				t.Errorf("Calls() = %d", srv.Calls())
			}
		})
	}
}

func TestOneShots(t *testing.T) {
	t.Parallel()
	srv := httpapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.FailNext(1, 503)
	srv.SetMalformedNext(1)
	var got []string
	for range 3 {
		r, err := send(t, t.Context(), srv, http.MethodPost, "application/json", "", items)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, map[bool]string{true: "json", false: "broken"}[json.Valid(r.body)]+"/"+http.StatusText(r.status))
	}
	if want := []string{"json/Service Unavailable", "broken/OK", "json/OK"}; !slices.Equal(got, want) {
		t.Errorf("answers = %q, want %q", got, want)
	}
}

func TestDelayAndConcurrency(t *testing.T) {
	t.Parallel()
	srv := httpapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := send(t, ctx, srv, http.MethodPost, "application/json", "", items); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want deadline exceeded", err)
	}
	// A fresh server: the cancelled call may still be running on the first.
	srv = httpapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.SetDelay(50 * time.Millisecond)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if r, err := send(t, t.Context(), srv, http.MethodPost, "application/json", "", items); err != nil || r.status != 200 {
				t.Errorf("post = %d, %v", r.status, err)
			}
		})
	}
	wg.Wait()
	if got := srv.MaxConcurrent(); got < 2 || got > 3 {
		t.Errorf("MaxConcurrent() = %d, want 2..3", got)
	}
}
