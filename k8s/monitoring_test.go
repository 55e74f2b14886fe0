package k8s

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aibatch/aibatch/internal/promcheck"
)

// monitoringOverlay builds the worker with the monitoring component.
const monitoringOverlay = "overlays/monitoring"

// dashboardMetrics are what the dashboard must show (issue 14): calls
// saved, backlog and oldest age per lane, batch sizes, wait times, results
// by status, dead letters, the provider's breaker, deferred requests, group
// sizes and the estimated cost, and (issue 15) the cost per model next to
// one call per request, requests served and provider items.
var dashboardMetrics = []string{
	"aibatch_api_calls_total", "aibatch_requests_total",
	"aibatch_pending_requests", "aibatch_ack_pending_requests", "aibatch_oldest_pending_timestamp_seconds",
	"aibatch_urgent_pending_requests", "aibatch_urgent_ack_pending_requests", "aibatch_urgent_oldest_pending_timestamp_seconds",
	"aibatch_batch_size_bucket", "aibatch_queue_wait_seconds_bucket",
	"aibatch_results_total", "aibatch_dead_letters_total",
	"aibatch_provider_up", "aibatch_breaker_open", "aibatch_deferred_total", "aibatch_group_batch_size",
	"aibatch_estimated_cost_dollars", "aibatch_estimated_saving_dollars",
	"aibatch_model_estimated_cost_dollars", "aibatch_model_one_by_one_cost_dollars",
	"aibatch_requests_served_total", "aibatch_provider_items_total",
}

// usedMetrics returns the metric names qs select.
func usedMetrics(qs []promcheck.Query) map[string]bool {
	used := map[string]bool{}
	for _, q := range qs {
		for _, n := range promcheck.MetricNames(q.Parsed) {
			used[n] = true
		}
	}
	return used
}

func TestMonitoring(t *testing.T) {
	t.Parallel()
	set := decodeSet(t, render(t, monitoringOverlay))
	if len(set.serviceMonitors) != 1 || len(set.rules) != 1 || len(set.dashboards) != 1 {
		t.Fatalf("%s builds %d ServiceMonitors, %d PrometheusRules and %d dashboard ConfigMaps; want one each",
			monitoringOverlay, len(set.serviceMonitors), len(set.rules), len(set.dashboards))
	}
	for _, dir := range []string{"base", "overlays/cluster"} {
		if s := decodeSet(t, render(t, dir)); len(s.serviceMonitors)+len(s.rules)+len(s.dashboards) > 0 {
			t.Errorf("%s holds monitoring objects: they need the Prometheus Operator's CRDs, so only the monitoring overlay has them", dir)
		}
	}
	svc, cm, d := set.services[0], set.configMaps[0], set.deployments[0]
	sm, rule, dash := set.serviceMonitors[0], set.rules[0], set.dashboards[0]
	c := workerContainer(t, d)
	adminPort := resolvePort(c, c.ReadinessProbe.HTTPGet.Port)

	t.Run("the ServiceMonitor scrapes the workers' /metrics", func(t *testing.T) {
		if sm.Metadata.Namespace != svc.Namespace {
			t.Errorf("ServiceMonitor in namespace %q, the Service in %q", sm.Metadata.Namespace, svc.Namespace)
		}
		if len(sm.Spec.Selector.MatchLabels) == 0 || !subset(sm.Spec.Selector.MatchLabels, svc.Labels) {
			t.Errorf("selector %v does not match the Service's labels %v", sm.Spec.Selector.MatchLabels, svc.Labels)
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("%d endpoints, want 1", len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Path != "/metrics" {
			t.Errorf("endpoint path %q, want /metrics", ep.Path)
		}
		found := false
		for _, p := range svc.Spec.Ports {
			if p.Name == ep.Port {
				found = true
				if got := resolvePort(c, p.TargetPort); got != adminPort {
					t.Errorf("endpoint port %s targets container port %d; the admin server listens on %d", ep.Port, got, adminPort)
				}
			}
		}
		if !found {
			t.Errorf("endpoint port %q is no port name of Service %s", ep.Port, svc.Name)
		}
		if sm.Spec.JobLabel != "" {
			t.Errorf("jobLabel %q: the alerts select job=%q, the Service's name, which the default gives", sm.Spec.JobLabel, svc.Name)
		}
	})

	t.Run("the alerts parse and are the ones promised", func(t *testing.T) {
		data, err := json.Marshal(rule)
		if err != nil {
			t.Fatal(err)
		}
		rules, queries, err := promcheck.Rules(data)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]int{}
		for i, r := range rules {
			byName[r.Alert] = i
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: want a severity label and summary and description annotations", r.Alert)
			}
			// Every selector names the ServiceMonitor's job.
			parser.Inspect(queries[i].Parsed, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					job := ""
					for _, m := range vs.LabelMatchers {
						if m.Name == "job" && m.Type == labels.MatchEqual {
							job = m.Value
						}
					}
					if job != svc.Name {
						t.Errorf("alert %s: %s selects job %q; the ServiceMonitor's job is %q", r.Alert, vs, job, svc.Name)
					}
				}
				return nil
			})
		}
		want := map[string]struct {
			metric string
			minFor time.Duration
		}{
			"AibatchProviderUnavailable": {"aibatch_provider_up", 5 * time.Minute},
			"AibatchOldestRequestTooOld": {"aibatch_oldest_pending_timestamp_seconds", 0},
			"AibatchDeadLettersRising":   {"aibatch_dead_letters_total", 0},
			"AibatchNoWorkerUp":          {"aibatch_build_info", time.Minute},
		}
		for name, w := range want {
			i, ok := byName[name]
			if !ok {
				t.Errorf("no alert %s", name)
				continue
			}
			if !slices.Contains(promcheck.MetricNames(queries[i].Parsed), w.metric) {
				t.Errorf("alert %s does not use %s: %s", name, w.metric, queries[i].Expr)
			}
			if got := time.Duration(rules[i].For); got < w.minFor {
				t.Errorf("alert %s: for %s, want at least %s", name, got, w.minFor)
			}
		}
		if i, ok := byName["AibatchOldestRequestTooOld"]; ok {
			checkOldestThreshold(t, queries[i], cm.Data["MAX_WAIT"])
		}
	})

	t.Run("the dashboard parses and shows what it must", func(t *testing.T) {
		if len(dash.Data) != 1 {
			t.Fatalf("dashboard ConfigMap %s has keys %v, want one .json", dash.Name, dash.Data)
		}
		for key, text := range dash.Data {
			if !strings.HasSuffix(key, ".json") {
				t.Errorf("dashboard key %q: Grafana's sidecar loads *.json", key)
			}
			queries, err := promcheck.Dashboard([]byte(text))
			if err != nil {
				t.Fatal(err)
			}
			used := usedMetrics(queries)
			for _, m := range dashboardMetrics {
				if !used[m] {
					t.Errorf("the dashboard shows no %s", m)
				}
			}
		}
	})
}

// checkOldestThreshold checks that the oldest-request alert fires at
// 2 × MAX_WAIT: every number the expression compares an age with.
func checkOldestThreshold(t *testing.T, q promcheck.Query, maxWait string) {
	t.Helper()
	if maxWait == "" {
		maxWait = "5m" // the worker's default
	}
	mw, err := time.ParseDuration(maxWait)
	if err != nil {
		t.Fatalf("MAX_WAIT=%q: %v", maxWait, err)
	}
	want := 2 * mw.Seconds()
	found := 0
	parser.Inspect(q.Parsed, func(n parser.Node, _ []parser.Node) error {
		be, ok := n.(*parser.BinaryExpr)
		if !ok || be.Op != parser.GTR {
			return nil
		}
		num, ok := be.RHS.(*parser.NumberLiteral)
		if !ok || num.Val == 0 {
			return nil // "> 0" drops the lanes with nothing waiting
		}
		found++
		if num.Val != want {
			t.Errorf("%s compares the age with %v s; 2 × MAX_WAIT (%s) is %v s: change them together", q.Where, num.Val, maxWait, want)
		}
		return nil
	})
	if found == 0 {
		t.Errorf("%s: no age threshold found in %s", q.Where, q.Expr)
	}
}

// The parsers catch mistakes: a broken expression in the rules or the
// dashboard fails.
func TestMonitoringParsersRejectMistakes(t *testing.T) {
	t.Parallel()
	rules, err := os.ReadFile(filepath.Join("monitoring", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dash, err := os.ReadFile(filepath.Join("monitoring", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := promcheck.Rules(rules); err != nil {
		t.Fatalf("unedited rules: %v", err)
	}
	if _, err := promcheck.Dashboard(dash); err != nil {
		t.Fatalf("unedited dashboard: %v", err)
	}
	for _, tt := range []struct{ name, old, new, want string }{
		{"bad PromQL", "== 0", "=== 0", "parse"},
		{"bad duration", "for: 5m", "for: 5 minutes", "5 minutes"},
		{"unknown rule field", "annotations:", "annotation:", "annotation"},
		{"bad template", "{{ $labels.pod }}", "{{ $labels.pod }", "template"},
	} {
		edited := strings.Replace(string(rules), tt.old, tt.new, 1)
		if edited == string(rules) {
			t.Fatalf("%s: the rules no longer contain %q", tt.name, tt.old)
		}
		if _, _, err := promcheck.Rules([]byte(edited)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("rules with %s: error %v, want one mentioning %q", tt.name, err, tt.want)
		}
	}
	for _, tt := range []struct{ name, old, new string }{
		{"unbalanced parenthesis", "sum(rate(aibatch_requests_total", "sum(rate(aibatch_requests_total("},
		{"unknown function", "histogram_quantile(", "histogram_quantil("},
	} {
		edited := strings.Replace(string(dash), tt.old, tt.new, 1)
		if edited == string(dash) {
			t.Fatalf("%s: the dashboard no longer contains %q", tt.name, tt.old)
		}
		if _, err := promcheck.Dashboard([]byte(edited)); err == nil {
			t.Errorf("dashboard with %s: no error", tt.name)
		}
	}
}
