package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibatch/aibatch/internal/promcheck"
	"github.com/aibatch/aibatch/jetstream/jetstreamtest"
)

// exportedNames reads Prometheus text exposition and returns the names a
// query may use: each family's name, and for a histogram or summary its
// _bucket, _sum and _count series.
func exportedNames(exposition string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(exposition, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		switch f[3] {
		case "histogram":
			names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
		case "summary":
			names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
		}
	}
	return names
}

// Every metric the dashboard and the alerts under k8s/monitoring use is on
// a real worker's /metrics. The worker gets traffic that makes every
// series appear: calls with PRICES set (cost), a cut-off answer (a group's
// call size changes), an invalid request (an error result and a dead
// letter) and an urgent request.
func TestProcessMonitoringUsesExportedMetrics(t *testing.T) {
	t.Parallel()
	var queries []promcheck.Query
	rules, err := os.ReadFile(filepath.Join("..", "..", "k8s", "monitoring", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, qs, err := promcheck.Rules(rules)
	if err != nil {
		t.Fatal(err)
	}
	queries = append(queries, qs...)
	dash, err := os.ReadFile(filepath.Join("..", "..", "k8s", "monitoring", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	qs, err = promcheck.Dashboard(dash)
	if err != nil {
		t.Fatal(err)
	}
	queries = append(queries, qs...)

	ns := jetstreamtest.RunServer(t, "")
	_, js := jetstreamtest.Connect(t, ns)
	logQueueOnFailure(t, js)
	fake := newFake(t)
	fake.SetOutputCap(1) // a combined call of more than one request is cut off
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	w := startWorker(t, "", map[string]string{
		"NATS_URL":        ns.ClientURL(),
		"OPENAI_BASE_URL": fake.URL,
		"OPENAI_API_KEY":  procSecret,
		"ADMIN_ADDR":      adminAddr,
		"PRICES":          "gpt-4o-mini=0.15/0.60",
		"MAX_BATCH_SIZE":  "3",
		"MAX_WAIT":        "500ms", // partial groups are held until then
		"POLL_INTERVAL":   "20ms",
	})
	waitStreams(t, js)
	// Two requests and an invalid one make a full batch of three.
	publishRequests(t, js, "ai.requests.proc", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, "ai.requests.proc", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "ai.urgent.proc", []byte(`{"id":"u-1","input":"now"}`)); err != nil {
		t.Fatal(err)
	}
	jetstreamtest.Eventually(t, 20*time.Second, "four results and a dead letter stored", func() bool {
		return jetstreamtest.Count(t, js, "AI_RESULTS") >= 4 && jetstreamtest.Count(t, js, "AI_DEAD") >= 1
	})

	var exposition string
	jetstreamtest.Eventually(t, 10*time.Second, "/metrics with the group size and the cost", func() bool {
		status, body := get(t, "http://"+adminAddr+"/metrics")
		exposition = body
		return status == http.StatusOK && strings.Contains(body, "aibatch_group_batch_size{") &&
			strings.Contains(body, "aibatch_estimated_cost_dollars ")
	})
	exported := exportedNames(exposition)
	checked := 0
	for _, q := range queries {
		for _, name := range promcheck.MetricNames(q.Parsed) {
			checked++
			if !exported[name] {
				known := slices.Sorted(func(yield func(string) bool) {
					for n := range exported {
						if strings.HasPrefix(n, "aibatch_") && !yield(n) {
							return
						}
					}
				})
				t.Errorf("%s uses %s, which the worker does not export; it exports %v", q.Where, name, known)
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d metric uses checked: the queries were not read", checked)
	}
	w.stop(t)
}
