// Package ship checks what trueup ships beside its binary — the Helm chart,
// its dashboard and alerts, the Dockerfile and the generated docs — against
// the code they describe. It lives in the tools module because Helm and
// Prometheus are test-time dependencies only; the product's go.mod stays lean.
package ship

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/trueup-dev/trueup/reconciler"
)

// KubeVersion is the Kubernetes version charts are rendered for: the one the
// local control plane (tools/build-testbin.sh) runs, so Capabilities in
// templates agree with the server the objects are then checked against.
var KubeVersion = chartutil.KubeVersion{Version: "v1.35.4", Major: "1", Minor: "35"}

// Render does what `helm template NAME CHART -n NAMESPACE -f VALUES...` does,
// including the values.schema.json check, and returns the manifest text.
func Render(chartDir, name, namespace string, valuesFiles ...string) (string, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return "", fmt.Errorf("load chart %s: %w", chartDir, err)
	}
	vals := map[string]any{}
	for _, f := range valuesFiles {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return "", fmt.Errorf("values %s: %w", f, err)
		}
		vals = chartutil.CoalesceTables(v.AsMap(), vals)
	}
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.ClientOnly, inst.DryRun, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = name, namespace
	kv := KubeVersion
	inst.KubeVersion = &kv
	rel, err := inst.Run(chrt, vals)
	if err != nil {
		return "", fmt.Errorf("render %s: %w", chartDir, err)
	}
	return rel.Manifest, nil
}

// Objects splits a multi-document manifest into objects, skipping empty
// documents as kubectl does.
func Objects(manifest string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decode manifest: %w", err)
		}
		if s := strings.TrimSpace(string(raw)); s == "" || s == "null" || s == "{}" {
			continue
		}
		// Unstructured's own decoder keeps integers as int64, as the API
		// machinery does; a plain map would hold float64.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("decode manifest: %w", err)
		}
		out = append(out, u)
	}
}

// Metric is one metric the daemon exports, as reconciler.NewMetrics
// registers it.
type Metric struct {
	Name, Type, Help string
	Labels           []string
}

// capture is a Registerer that keeps what it is given, so the collectors'
// types and descriptions can be read without any series existing.
type capture struct{ collectors []prometheus.Collector }

func (c *capture) Register(col prometheus.Collector) error {
	c.collectors = append(c.collectors, col)
	return nil
}

func (c *capture) MustRegister(cols ...prometheus.Collector) {
	c.collectors = append(c.collectors, cols...)
}

func (c *capture) Unregister(prometheus.Collector) bool { return false }

// Metrics returns the daemon's metrics sorted by name. They come from the
// Desc of each collector NewMetrics registers: a Vec without series is not
// gathered, but it always describes itself.
func Metrics() ([]Metric, error) {
	var c capture
	reconciler.NewMetrics(&c)
	var out []Metric
	for _, col := range c.collectors {
		typ := ""
		switch col.(type) {
		case *prometheus.GaugeVec, prometheus.Gauge:
			typ = "gauge"
		case *prometheus.CounterVec, prometheus.Counter:
			typ = "counter"
		case *prometheus.HistogramVec, prometheus.Histogram:
			typ = "histogram"
		case *prometheus.SummaryVec, prometheus.Summary:
			typ = "summary"
		default:
			return nil, fmt.Errorf("metrics: collector %T has no known type", col)
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { col.Describe(ch); close(ch) }()
		for d := range ch {
			m, err := parseDesc(d.String())
			if err != nil {
				return nil, err
			}
			m.Type = typ
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// parseDesc reads Desc.String(), the only public view of a Desc's name,
// help and variable labels: Desc{fqName: "x", help: "y", constLabels: {},
// variableLabels: {a,b}}.
func parseDesc(s string) (Metric, error) {
	var m Metric
	rest, ok := strings.CutPrefix(s, `Desc{fqName: `)
	if !ok {
		return m, fmt.Errorf("metrics: unexpected Desc %s", s)
	}
	var err error
	if m.Name, rest, err = quoted(rest); err != nil {
		return m, fmt.Errorf("metrics: name in %s: %w", s, err)
	}
	rest, ok = strings.CutPrefix(rest, `, help: `)
	if !ok {
		return m, fmt.Errorf("metrics: no help in %s", s)
	}
	if m.Help, rest, err = quoted(rest); err != nil {
		return m, fmt.Errorf("metrics: help in %s: %w", s, err)
	}
	i := strings.Index(rest, "variableLabels: {")
	if i < 0 {
		return m, fmt.Errorf("metrics: no variableLabels in %s", s)
	}
	labels := rest[i+len("variableLabels: {"):]
	labels = labels[:strings.IndexByte(labels, '}')]
	if labels != "" {
		m.Labels = strings.Split(labels, ",")
	}
	return m, nil
}

// quoted reads a Go-quoted string at the start of s.
func quoted(s string) (string, string, error) {
	var b bytes.Buffer
	if len(s) == 0 || s[0] != '"' {
		return "", s, errors.New("not a quoted string")
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
			if i < len(s) {
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", s, errors.New("unterminated string")
}

// readFile is os.ReadFile with the file named in the error.
func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}
