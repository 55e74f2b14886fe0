// Package promcheck reads the Prometheus rules and Grafana dashboards under
// k8s/monitoring with the Prometheus project's own parsers (its PromQL
// parser and rule-file loader, github.com/prometheus/prometheus), and
// lists the metric names their queries use, so tests can check them
// against what a worker exports.
package promcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// Query is one PromQL expression and where it came from.
type Query struct {
	// Where names it: the alert, or the panel and target.
	Where string
	// Expr is the expression as written.
	Expr string
	// Parsed is Expr parsed (with Grafana's variables substituted).
	Parsed parser.Expr
}

// newParser is Prometheus's PromQL parser with its default options, as a
// Prometheus server and promtool use it.
func newParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// Rules reads a PrometheusRule manifest (monitoring.coreos.com/v1), checks
// its spec with Prometheus's rule-file loader (rulefmt: unknown fields,
// alert and record names, durations, templates, and every expression
// parsed) and returns its alerting and recording rules' expressions.
func Rules(manifest []byte) ([]rulefmt.Rule, []Query, error) {
	var obj struct {
		Kind string          `json:"kind"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(manifest, &obj); err != nil {
		return nil, nil, fmt.Errorf("read the PrometheusRule: %w", err)
	}
	if obj.Kind != "PrometheusRule" {
		return nil, nil, fmt.Errorf("kind %q, want PrometheusRule", obj.Kind)
	}
	// The CRD's spec is a rule file: {"groups": [...]}.
	spec, err := yaml.JSONToYAML(obj.Spec)
	if err != nil {
		return nil, nil, err
	}
	groups, errs := rulefmt.Parse(spec, false, model.UTF8Validation, newParser(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("rules: %w", errors.Join(errs...))
	}
	var rules []rulefmt.Rule
	var queries []Query
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			e, err := newParser().ParseExpr(r.Expr)
			if err != nil {
				return nil, nil, fmt.Errorf("group %s rule %s: %w", g.Name, name, err)
			}
			rules = append(rules, r)
			queries = append(queries, Query{Where: "rule " + name, Expr: r.Expr, Parsed: e})
		}
	}
	if len(queries) == 0 {
		return nil, nil, errors.New("no rules")
	}
	return rules, queries, nil
}

// grafanaVar matches Grafana's global variables that stand where PromQL
// wants a duration.
var grafanaVar = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)

// Dashboard reads a Grafana dashboard (JSON) and returns every query of
// its panels, rows' panels included, each parsed with Prometheus's PromQL
// parser after Grafana's duration variables ($__rate_interval,
// $__interval, $__range) are replaced by 5m. Template variables
// ($namespace) may appear only inside label matchers' strings. The
// metrics the dashboard's variables read (label_values(metric, label))
// are returned as queries of the metric alone.
func Dashboard(data []byte) ([]Query, error) {
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("dashboard JSON: %w", err)
	}
	if d.Title == "" || d.UID == "" {
		return nil, errors.New("dashboard without a title or uid")
	}
	var queries []Query
	var walk func(panels []panel) error
	walk = func(panels []panel) error {
		for _, p := range panels {
			for _, t := range p.Targets {
				where := fmt.Sprintf("panel %q target %s", p.Title, t.RefID)
				if strings.TrimSpace(t.Expr) == "" {
					return fmt.Errorf("%s: no expr", where)
				}
				e, err := newParser().ParseExpr(grafanaVar.ReplaceAllString(t.Expr, "5m"))
				if err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				queries = append(queries, Query{Where: where, Expr: t.Expr, Parsed: e})
			}
			if p.Type != "row" && p.Type != "text" && len(p.Targets) == 0 {
				return fmt.Errorf("panel %q has no query", p.Title)
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Query
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		s, _ := q.(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("variable %s: query %q: want label_values(metric, label)", v.Name, s)
		}
		e, err := newParser().ParseExpr(m[1])
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		queries = append(queries, Query{Where: "variable " + v.Name, Expr: m[1], Parsed: e})
	}
	if len(queries) == 0 {
		return nil, errors.New("dashboard without queries")
	}
	return queries, nil
}

// labelValues matches Grafana's label_values(metric, label) variable query.
var labelValues = regexp.MustCompile(`^\s*label_values\(\s*([^,]+?)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// dashboard is the part of Grafana's dashboard model this package reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// MetricNames returns the metric names e selects, sorted and without
// duplicates: each vector or matrix selector's name (`foo{…}`, or
// {__name__="foo"}).
func MetricNames(e parser.Expr) []string {
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name != "" {
			names = append(names, name)
		}
		return nil
	})
	slices.Sort(names)
	return slices.Compact(names)
}
