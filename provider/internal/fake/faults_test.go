package fake_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

func TestOutputCap(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	if c.CutOff(100) {
		t.Error("CutOff without a cap")
	}
	c.SetOutputCap(3)
	if c.OutputCap() != 3 || c.CutOff(3) || !c.CutOff(4) {
		t.Errorf("cap 3: OutputCap %d, CutOff(3) %v, CutOff(4) %v", c.OutputCap(), c.CutOff(3), c.CutOff(4))
	}
	c.SetOutputCap(-1)
	if c.OutputCap() != 0 || c.CutOff(4) {
		t.Error("a negative cap did not remove it")
	}
}

func TestRefuseInput(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	if c.Refused("a") {
		t.Error("refused before RefuseInput")
	}
	c.RefuseInput("b")
	if c.Refused("a") || !c.Refused("a", "b") || !c.Refused("b") {
		t.Error("Refused does not report the refused input among others")
	}
}

func TestRequireKey(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	if !c.KeyAccepted("any") || c.KeyAccepted("") {
		t.Error("without RequireKey any non-empty key must be accepted, and no key refused")
	}
	c.RequireKey("k1")
	if c.KeyAccepted("k2") || !c.KeyAccepted("k1") {
		t.Error("RequireKey(k1) does not accept exactly k1")
	}
	c.RequireKey("k2") // rotated
	if c.KeyAccepted("k1") || !c.KeyAccepted("k2") {
		t.Error("a rotated key is not the one accepted")
	}
}

func TestFailFor(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	if c.Failing() != 0 {
		t.Error("failing before FailFor")
	}
	c.FailFor(time.Hour, 503)
	if c.Failing() != 503 || c.Failing() != 503 {
		t.Error("FailFor(1h, 503) is not failing every call")
	}
	c.FailFor(0, 503)
	if c.Failing() != 0 {
		t.Error("FailFor(0) did not end the failure")
	}
	start := time.Now()
	c.FailFor(20*time.Millisecond, 500)
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for c.Failing() == 500 {
		select {
		case <-deadline:
			t.Fatal("FailFor(20ms) still failing after 10s")
		case <-tick.C:
		}
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Errorf("FailFor(20ms) ended after %v", took)
	}
}

func TestHangFor(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.Hang(r) {
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	get := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		res, err := srv.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		return err
	}
	if err := get(t.Context()); err != nil {
		t.Fatalf("no hang: %v", err)
	}
	c.HangFor(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := get(ctx); err == nil {
		t.Fatal("a hanging call was answered")
	}
	start := time.Now()
	c.HangFor(30 * time.Millisecond)
	if err := get(t.Context()); err != nil {
		t.Fatalf("after the hang: %v", err)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Errorf("HangFor(30ms) let a call through after %v", took)
	}
	c.HangFor(0)
	if err := get(t.Context()); err != nil {
		t.Fatalf("HangFor(0): %v", err)
	}
}

func TestCallSizes(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	if c.CallSizes() != nil {
		t.Error("sizes before any call")
	}
	c.RecordSize(5)
	c.RecordSize(1)
	got := c.CallSizes()
	if !slices.Equal(got, []int{5, 1}) {
		t.Errorf("CallSizes = %v", got)
	}
	got[0] = 99
	if c.CallSizes()[0] != 5 {
		t.Error("CallSizes returned its own slice")
	}
}

func TestCutBytes(t *testing.T) {
	t.Parallel()
	if got := fake.CutBytes("héllo", 2); got != "h" {
		t.Errorf("CutBytes cut a rune: %q", got)
	}
	if got := fake.CutBytes("abc", 10); got != "abc" {
		t.Errorf("CutBytes(abc, 10) = %q", got)
	}
}

func TestCutAnswer(t *testing.T) {
	t.Parallel()
	full := `{"results":[{"id":"0","output":"aaaa"},{"id":"1","output":"bbbb"},{"id":"2","output":"cccc"},{"id":"3","output":"dddd"}]}`
	tests := []struct {
		name      string
		capItems  int
		cut       bool
		maxTokens int64
		wantCut   bool
		wantMax   int
	}{
		{"whole", 0, false, 0, false, len(full)},
		{"within the limit", 0, false, 1000, false, len(full)},
		{"cap", 2, true, 0, true, len(full) / 2},
		{"limit", 0, false, 5, true, 20},
		{"both, the limit first", 3, true, 2, true, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, cut := fake.CutAnswer(full, 4, tt.capItems, tt.cut, tt.maxTokens)
			if cut != tt.wantCut || len(got) > tt.wantMax || !strings.HasPrefix(full, got) {
				t.Fatalf("CutAnswer = %q, %v; want a prefix of at most %d bytes, cut %v", got, cut, tt.wantMax, tt.wantCut)
			}
			if cut && json.Valid([]byte(got)) {
				t.Errorf("a cut answer is valid JSON: %q", got)
			}
		})
	}
}

func TestParseBatchSchema(t *testing.T) {
	t.Parallel()
	withEnum := strings.Replace(fake.BatchSchema, `"id":{"type":"string"}`, `"id":{"type":"string","enum":["a","b"]}`, 1)
	var reordered map[string]any
	if err := json.Unmarshal([]byte(withEnum), &reordered); err != nil {
		t.Fatal(err)
	}
	indented, err := json.MarshalIndent(reordered, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		raw     string
		wantIDs []string
		wantOK  bool
		wantErr bool
	}{
		{"no enum", fake.BatchSchema, nil, true, false},
		{"enum", withEnum, []string{"a", "b"}, true, false},
		{"enum, other spacing and key order", string(indented), []string{"a", "b"}, true, false},
		{"other schema", `{"type":"object"}`, nil, false, false},
		{"enum not a list", strings.Replace(withEnum, `["a","b"]`, `"a"`, 1), nil, false, true},
		{"enum of numbers", strings.Replace(withEnum, `["a","b"]`, `[1]`, 1), nil, false, true},
		{"not JSON", `{`, nil, false, true},
		{"structured output", strings.Replace(fake.BatchSchema, `"output":{"type":"string"}`, `"output":{"type":"string","enum":["x"]}`, 1), nil, true, false},
		{"enum at the root", strings.Replace(fake.BatchSchema, `"required":["results"]`, `"required":["results"],"enum":["x"]`, 1), nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			answer, ok, err := fake.ParseBatchSchema(json.RawMessage(tt.raw))
			if (err != nil) != tt.wantErr || ok != tt.wantOK || !slices.Equal(answer.IDs, tt.wantIDs) {
				t.Errorf("ParseBatchSchema = %v, %v, %v; want %v, %v, error %v", answer.IDs, ok, err, tt.wantIDs, tt.wantOK, tt.wantErr)
			}
		})
	}
}
