package ship

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// notExported are series the queries may use that trueup does not export:
// Prometheus's own per-target health, for "is any replica up".
var notExported = map[string]bool{"up": true}

// grafanaVars stand in for Grafana's variables so a panel's query is PromQL.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
	"${environment}", "x", "$environment", "x",
)

// labelValues is Grafana's template-variable function, not PromQL.
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_]+\)$`)

// exportedNames is every metric name a scrape of the daemon can show:
// histograms also as _bucket, _sum and _count.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	ms, err := Metrics()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range ms {
		names[m.Name] = true
		if m.Type == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[m.Name+s] = true
			}
		}
	}
	if len(names) < 10 {
		t.Fatalf("only %d metric names from reconciler.NewMetrics: %v", len(names), names)
	}
	return names
}

// query is a PromQL expression and where it was found.
type query struct{ where, expr string }

func dashboardQueries(t *testing.T) []query {
	t.Helper()
	data, err := readFile(chartDir + "/files/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Type  string
				Query json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	var out []query
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out = append(out, query{fmt.Sprintf("dashboard panel %q target %d", p.Title, i), tg.Expr})
		}
	}
	env := false
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		if m := labelValues.FindStringSubmatch(q.Query); m != nil {
			q.Query = m[1]
		}
		out = append(out, query{"dashboard variable " + v.Name, q.Query})
		env = env || v.Name == "environment"
	}
	if !env {
		t.Error("the dashboard has no environment variable")
	}
	return out
}

func ruleQueries(t *testing.T) []query {
	t.Helper()
	rule := find(t, render(t, allOptions), "PrometheusRule", "")
	var out []query
	for _, g := range nested[[]any](t, rule, "spec", "groups") {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			rm := r.(map[string]any)
			out = append(out, query{fmt.Sprintf("alert %v", rm["alert"]), fmt.Sprint(rm["expr"])})
		}
	}
	return out
}

// checkQuery parses expr and returns the metric names it selects that are
// not in allowed.
func checkQuery(expr string, allowed map[string]bool) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return nil, err
	}
	var unknown []string
	selectors := 0
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selectors++
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				name = m.Value
			}
		}
		if !allowed[name] {
			unknown = append(unknown, name)
		}
		return nil
	})
	if selectors == 0 {
		return nil, fmt.Errorf("selects no metric")
	}
	return unknown, nil
}

// TestQueriesNameExportedMetrics parses every PromQL expression of the
// dashboard and the alerts and checks each selects only metrics the daemon
// exports, as reconciler.NewMetrics registers them.
func TestQueriesNameExportedMetrics(t *testing.T) {
	exported := exportedNames(t)
	allowed := map[string]bool{}
	for n := range exported {
		allowed[n] = true
	}
	for n := range notExported {
		allowed[n] = true
	}
	queries := append(dashboardQueries(t), ruleQueries(t)...)
	if len(queries) < 15 {
		t.Fatalf("only %d queries found", len(queries))
	}
	used := map[string]bool{}
	for _, q := range queries {
		unknown, err := checkQuery(q.expr, allowed)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
		}
		for _, n := range unknown {
			t.Errorf("%s: %q uses %s, which trueup does not export", q.where, q.expr, n)
		}
		e, _ := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(q.expr))
		if e != nil {
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					used[strings.TrimSuffix(vs.Name, "_bucket")] = true
				}
				return nil
			})
		}
	}
	// The issue asks for these on the dashboard or in alerts.
	for _, m := range []string{"trueup_sync_status", "trueup_drift_objects", "trueup_last_sync_timestamp_seconds",
		"trueup_reconcile_duration_seconds", "trueup_reconcile_total", "trueup_promotions_total", "trueup_source_fetch_total"} {
		if !used[m] {
			t.Errorf("no query uses %s", m)
		}
	}

	// A rename in reconciler/metrics.go must fail this test: with any used
	// metric gone from the exported set, the queries using it are reported.
	t.Run("renamed metric is caught", func(t *testing.T) {
		for name := range used {
			if notExported[name] {
				continue
			}
			without := map[string]bool{}
			for n := range allowed {
				if strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count") != name {
					without[n] = true
				}
			}
			caught := false
			for _, q := range queries {
				if unknown, _ := checkQuery(q.expr, without); len(unknown) > 0 {
					caught = true
				}
			}
			if !caught {
				t.Errorf("renaming %s would go unnoticed", name)
			}
		}
	})
	t.Run("bad PromQL is caught", func(t *testing.T) {
		if _, err := checkQuery(`sum by (environment (trueup_drift_objects)`, allowed); err == nil {
			t.Error("a syntax error parsed")
		}
	})
}
