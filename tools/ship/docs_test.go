package ship

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trueup-dev/trueup/config"
)

// TestDocsAreFresh regenerates the tables of docs/metrics.md (from
// reconciler.NewMetrics) and docs/config.md (from config/config.go's doc
// comments) and fails when the checked-in files differ. `make docs` (-update)
// rewrites them.
func TestDocsAreFresh(t *testing.T) {
	metrics, err := MetricsTable()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigTables("../../config/config.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct{ path, name, body string }{
		{"../../docs/metrics.md", "metrics", metrics},
		{"../../docs/config.md", "config", cfg},
	} {
		data, err := readFile(d.path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := replaceGenerated(string(data), d.name, d.body)
		if err != nil {
			t.Fatalf("%s: %v", d.path, err)
		}
		if *update {
			if err := os.WriteFile(d.path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if diff := cmp.Diff(want, string(data)); diff != "" {
			t.Errorf("%s is stale; run `make docs` (-want +got):\n%s", d.path, diff)
		}
	}
}

// TestConfigKeysAreParsed: every key the generated table lists is one
// config.Parse accepts (an unknown key is an error), so a yamlKey that
// misspells a field fails here rather than in a reader's config.
func TestConfigKeysAreParsed(t *testing.T) {
	tables, err := ConfigTables("../../config/config.go")
	if err != nil {
		t.Fatal(err)
	}
	yaml := map[string][]string{}
	section := ""
	for _, line := range strings.Split(tables, "\n") {
		if s, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.Trim(s, "`")
			continue
		}
		if strings.HasPrefix(line, "| `") {
			yaml[section] = append(yaml[section], strings.Split(line, "`")[1])
		}
	}
	if len(yaml["environments[]"]) < 10 || len(yaml["sources[]"]) < 4 {
		t.Fatalf("tables parsed into %v", yaml)
	}
	// A config that sets every key, each with a valid value, must parse.
	doc := "apiVersion: trueup.dev/v1alpha1\nkind: Config\n"
	limitValues := map[string]string{"maxFileSize": "4Mi", "maxYAMLNodes": "1000", "maxYAMLDepth": "50",
		"maxRenderedSize": "64Mi", "maxObjects": "100"}
	limits := func(indent string, keys []string) string {
		out := indent + "limits:\n"
		for _, k := range keys {
			if f, ok := strings.CutPrefix(k, "limits."); ok {
				if limitValues[f] == "" {
					t.Errorf("limits.%s: no test value; add one", f)
				}
				out += indent + "  " + f + ": " + limitValues[f] + "\n"
			}
		}
		return out
	}
	doc += limits("", yaml["Top level"])
	doc += "name: all-keys\n"
	for _, k := range yaml["clusters[]"] {
		if k != "name" && k != "kubeconfigFile" && k != "context" {
			t.Errorf("clusters[].%s: no test value; add one", k)
		}
	}
	doc += "clusters:\n  - name: c\n    kubeconfigFile: /k\n    context: admin\n"
	doc += "sources:\n  - name: s\n    url: https://git.example.com/x.git\n    interval: 1m\n    timeout: 1m\n"
	nestedKeys := map[string][]string{}
	for _, k := range yaml["sources[]"] {
		if parent, f, ok := strings.Cut(k, "."); ok {
			nestedKeys[parent] = append(nestedKeys[parent], f)
		} else if k != "name" && k != "url" && k != "interval" && k != "timeout" {
			t.Errorf("sources[].%s: no test value; add one", k)
		}
	}
	for parent, fields := range nestedKeys {
		doc += "    " + parent + ":\n"
		for _, f := range fields {
			v := "/f"
			switch f {
			case "authorName":
				v = "ci"
			case "authorEmail":
				v = "ci@example.com"
			}
			doc += "      " + f + ": " + v + "\n"
		}
	}
	doc += "decryption:\n"
	for _, k := range yaml["decryption"] {
		doc += "  " + k + ": [/k]\n"
	}
	values := map[string]string{"name": "e", "source": "s", "branch": "main", "path": ".", "namespace": "n",
		"interval": "1m", "timeout": "1m", "prune": "true", "selfHeal": "true", "wait": "true", "dependsOn": "[f]",
		"maxPrunePercent": "10", "allowMassPrune": "true", "cluster": "c", "createNamespace": "true"}
	doc += "environments:\n  - name: f\n    source: s\n  -\n"
	promotion := ""
	for _, k := range yaml["environments[]"] {
		switch {
		case k == "promotion.to":
			promotion += "      to: f\n"
		case k == "promotion.auto":
			promotion += "      auto: true\n"
		case strings.HasPrefix(k, "limits."), k == "helm", k == "ignore": // below, and on an environment of its own
		case values[k] != "":
			doc += "    " + k + ": " + values[k] + "\n"
		default:
			t.Errorf("environments[].%s: no test value; add one", k)
		}
	}
	doc = strings.Replace(doc, "  -\n    name", "  - name", 1) + "    promotion:\n" + promotion + limits("    ", yaml["environments[]"])
	// Every key of an ignore rule.
	ignoreValues := map[string]string{"target.group": "apps", "target.kind": "Deployment", "target.name": "api",
		"target.namespace": "n", "paths": "[/spec/replicas]"}
	doc += "    ignore:\n      - target:\n"
	paths := ""
	for _, k := range yaml["environments[].ignore[]"] {
		v, ok := ignoreValues[k]
		switch {
		case !ok:
			t.Errorf("environments[].ignore[].%s: no test value; add one", k)
		case strings.HasPrefix(k, "target."):
			doc += "          " + strings.TrimPrefix(k, "target.") + ": " + v + "\n"
		default:
			paths = "        " + k + ": " + v + "\n"
		}
	}
	doc += paths
	// A chart environment: every key of helm and of its images.
	helmValues := map[string]string{"releaseName": "r", "valuesFiles": "[v.yaml]", "values": "{a: 1}",
		"chart": "c", "repository": "https://charts.example.com", "version": "1.0.0",
		"auth.usernameFile": "/u", "auth.passwordFile": "/p", "images": ""}
	doc += "  - name: g\n    source: s\n    helm:\n"
	auth := ""
	for _, k := range yaml["environments[].helm"] {
		v, ok := helmValues[k]
		switch {
		case !ok:
			t.Errorf("environments[].helm.%s: no test value; add one", k)
		case strings.HasPrefix(k, "auth."):
			auth += "        " + strings.TrimPrefix(k, "auth.") + ": " + v + "\n"
		case k != "images":
			doc += "      " + k + ": " + v + "\n"
		}
	}
	doc += "      auth:\n" + auth + "      images:\n        -"
	for _, k := range yaml["environments[].helm.images[]"] {
		doc += " " + k + ": " + map[string]string{"name": "app", "tag": "image.tag", "repository": "image.repository"}[k] + "\n         "
	}
	doc = strings.TrimRight(doc, " ")
	if _, err := config.Parse([]byte(doc), "all-keys.yaml"); err != nil {
		t.Errorf("a config with every documented key: %v\n%s", err, doc)
	}
}
