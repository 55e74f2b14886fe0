package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/client"
	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/wire"
)

// TestQuality runs a real worker with shadow sampling on, against a fake
// whose combined answers go wrong after position 10, serves its stats
// through the real admin API, and reads them with publisher quality.
func TestQuality(t *testing.T) {
	t.Parallel()
	cfg := workerConfig()
	cfg.MaxWait = 10 * time.Second // full calls of 50, whatever the machine's load
	w := startWorker(t, cfg, batch.WithShadow(batch.ShadowConfig{Rate: 1}))
	w.fake.SetWrongAfter(10)
	c := w.newClient(t, "quality")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var pending []*client.Pending
	for i := range 100 {
		p, err := c.Submit(ctx, wire.Request{Input: fmt.Sprintf("q %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	for _, p := range pending {
		if r, err := p.Wait(ctx); err != nil || r.Status != wire.StatusOK {
			t.Fatalf("result %+v, %v", r, err)
		}
	}
	for w.engine.Stats().Shadow.Samples < 100 {
		if ctx.Err() != nil {
			t.Fatalf("shadow stats %+v, want 100 samples", w.engine.Stats().Shadow)
		}
		time.Sleep(10 * time.Millisecond)
	}

	srv, err := admin.New(admin.Config{Token: "s3cret", Engine: w.engine})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(srv.Handler())
	t.Cleanup(api.Close)
	statsURL := api.URL + "/admin/batch-stats"

	code, stdout, stderr := runCLI(t, "quality", "--stats-url", statsURL, "--token", "s3cret")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	t.Logf("publisher quality:\n%s", stdout)
	for _, want := range []string{
		"shadow sampling: rate 1, agree at score 0.9, quality guard off",
		"picked 100, shadow calls 100, samples 100, dropped 0, failed 0",
		"group: model test-model, instructions -, topic quality",
		"samples 100, agreement 0.20",
		"BATCH SIZE  SAMPLES  AGREEMENT  MEAN SCORE\n21-50       100      0.20",
		"6-10        10       1.00",
		"11-20       20       0.00",
		"agreement of at least 0.9: positions up to 10 keep to it: calls of at most 10 requests keep answers as they would be alone",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(stdout, "s3cret") {
		t.Error("the output shows the token")
	}

	code, stdout, _ = runCLI(t, "quality", "--stats-url", statsURL, "--token", "s3cret", "--json")
	var st batch.ShadowStats
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || code != exitOK {
		t.Fatalf("--json: exit %d, %v: %s", code, err, stdout)
	}
	if want := w.engine.Stats().Shadow; st.Samples != want.Samples || len(st.Groups) != 1 || len(st.Groups[0].ByPosition) != len(want.Groups[0].ByPosition) {
		t.Errorf("--json gave %+v, the engine has %+v", st, want)
	}

	code, _, stderr = runCLI(t, "quality", "--stats-url", statsURL)
	if code != exitUsage || !strings.Contains(stderr, "pass the worker's ADMIN_TOKEN with --token") {
		t.Errorf("without the token: exit %d, stderr %s", code, stderr)
	}
}

func TestQualityReports(t *testing.T) {
	t.Parallel()
	serve := func(body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	off, err := json.Marshal(admin.StatsResponse{Worker: admin.WorkerStats{Shadow: batch.ShadowStats{AgreeAt: 0.9, Window: 50}}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"sampling off", []string{"--stats-url", serve(string(off))}, exitOK, "shadow sampling is off on this worker (SHADOW_RATE=0)", ""},
		{"an older worker", []string{"--stats-url", serve(`{"worker":{"requests":3}}`)}, exitUsage, "", "has no worker.shadow"},
		{"not JSON", []string{"--stats-url", serve(`<html>`)}, exitUsage, "", "decode"},
		{"no worker", []string{"--stats-url", "http://127.0.0.1:1/admin/batch-stats"}, exitUsage, "", "get http://127.0.0.1:1"},
		{"bad URL", []string{"--stats-url", "stats"}, exitUsage, "", `--stats-url "stats" is not an http(s) URL`},
		{"bad target", []string{"--target", "0"}, exitUsage, "", "--target 0"},
		{"help", []string{"--help"}, exitOK, "Usage: publisher quality", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, append([]string{"quality"}, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(stdout, tc.wantStdout) || !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout, stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
		})
	}
	if defaultStatsURL != "http://"+admin.DefaultAddr+"/admin/batch-stats" {
		t.Errorf("defaultStatsURL %s is not batch-stats on admin.DefaultAddr %s", defaultStatsURL, admin.DefaultAddr)
	}
}
