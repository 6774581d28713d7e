package ship

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/trueup-dev/trueup/config"
)

// installDoc is docs/install.md.
func installDoc(t *testing.T) string {
	t.Helper()
	doc, err := readFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

// yamlBlock is the text of the doc's ```yaml block whose first line is
// header.
func yamlBlock(t *testing.T, doc, header string) string {
	t.Helper()
	_, after, ok := strings.Cut(doc, "```yaml\n"+header+"\n")
	if !ok {
		t.Fatalf("docs/install.md has no yaml block starting %q", header)
	}
	block, _, _ := strings.Cut(after, "```")
	return block
}

// TestInstallDocValues takes the values file docs/install.md tells users to
// write, renders the chart with it, dry-runs the objects and parses the
// config, so the walk-through cannot drift from the chart.
func TestInstallDocValues(t *testing.T) {
	values := yamlBlock(t, installDoc(t), "# values-prod.yaml")
	f := filepath.Join(t.TempDir(), "values-prod.yaml")
	if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	manifest, err := Render(chartDir, "trueup", "trueup-system", f)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(manifest)
	if err != nil {
		t.Fatal(err)
	}
	cm := find(t, objs, "ConfigMap", "trueup-config")
	if _, err := config.Parse([]byte(nested[string](t, cm, "data", "trueup.yaml")), "values-prod.yaml config"); err != nil {
		t.Error(err)
	}
	find(t, objs, "RoleBinding", "trueup-managed")
	for _, err := range dryRun(t, restConfig(t), objs) {
		t.Error(err)
	}
}

// addValues adds added to values as the doc means "added to": mappings
// merge key by key, lists get the new items appended.
func addValues(values, added map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range values {
		out[k] = v
	}
	for k, v := range added {
		switch av := v.(type) {
		case map[string]any:
			if bv, ok := out[k].(map[string]any); ok {
				out[k] = addValues(bv, av)
				continue
			}
		case []any:
			if bv, ok := out[k].([]any); ok {
				out[k] = append(append([]any{}, bv...), av...)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// TestInstallDocClusters follows "Several clusters": step 2's values with
// the section's additions render, mount the Secret the section creates where
// the config's kubeconfigFile points, and dry-run; the ServiceAccount and
// RBAC it renders for the other cluster exist under the names its commands
// use.
func TestInstallDocClusters(t *testing.T) {
	doc := installDoc(t)
	base, err := chartutil.ReadValues([]byte(yamlBlock(t, doc, "# values-prod.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	added, err := chartutil.ReadValues([]byte(yamlBlock(t, doc, "# values-prod.yaml, added to step 2's")))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := chartutil.Values(addValues(base, added)).YAML()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "values-prod.yaml")
	if err := os.WriteFile(f, []byte(merged), 0o600); err != nil {
		t.Fatal(err)
	}
	objs := render(t, f)

	// Every Secret the values mount is one the section tells users to create.
	entries, _ := added["clusters"].([]any)
	if len(entries) == 0 {
		t.Fatal("the section's values set no clusters")
	}
	d := find(t, objs, "Deployment", "trueup")
	pod := &unstructured.Unstructured{Object: nested[map[string]any](t, d, "spec", "template", "spec")}
	c := &unstructured.Unstructured{Object: nested[[]any](t, pod, "containers")[0].(map[string]any)}
	for _, e := range entries {
		name, secret := e.(map[string]any)["name"].(string), e.(map[string]any)["secretName"].(string)
		if !strings.Contains(doc, "create secret generic "+secret+" ") {
			t.Errorf("the values mount Secret %s, which the section does not create", secret)
		}
		volume := ""
		for _, v := range nested[[]any](t, pod, "volumes") {
			if vs, ok := v.(map[string]any)["secret"].(map[string]any); ok && vs["secretName"] == secret {
				volume = v.(map[string]any)["name"].(string)
			}
		}
		var mount map[string]any
		for _, m := range nested[[]any](t, c, "volumeMounts") {
			if m.(map[string]any)["name"] == volume {
				mount = m.(map[string]any)
			}
		}
		want := map[string]any{"name": volume, "mountPath": "/etc/trueup/clusters/" + name, "readOnly": true}
		if volume == "" || !reflect.DeepEqual(mount, want) {
			t.Errorf("Secret %s: volume %q mounted as %v, want %v", secret, volume, mount, want)
		}
	}
	cm := find(t, objs, "ConfigMap", "trueup-config")
	cfg, err := config.Parse([]byte(nested[string](t, cm, "data", "trueup.yaml")), "values-prod.yaml config")
	if err != nil {
		t.Fatal(err)
	}
	on := map[string]string{}
	for _, e := range cfg.Environments {
		on[e.Name] = e.Cluster
	}
	if on["staging"] != "" || on["production"] != "production" {
		t.Errorf("environments' clusters: %v, want staging on the default cluster and production on production", on)
	}
	for _, err := range dryRun(t, restConfig(t), objs) {
		t.Error(err)
	}

	// The other cluster's ServiceAccount and RBAC: the templates the
	// section's helm template shows exist, and the ServiceAccount is the
	// one its token commands name.
	for _, m := range regexp.MustCompile(`--show-only (\S+)`).FindAllStringSubmatch(doc, -1) {
		if _, err := os.Stat(filepath.Join(chartDir, m[1])); err != nil {
			t.Errorf("the section shows %s: %v", m[1], err)
		}
	}
	remote := render(t, f, valuesFile(t, "rbac: {namespaces: [shop-production]}\n"))
	sa := find(t, remote, "ServiceAccount", "").GetName()
	for _, want := range []string{"create token " + sa + " ", "kubernetes.io/service-account.name: " + sa + "\n"} {
		if !strings.Contains(doc, want) {
			t.Errorf("the chart's ServiceAccount is %s, but the section has no %q", sa, want)
		}
	}
	if rb := find(t, remote, "RoleBinding", "trueup-managed"); rb.GetNamespace() != "shop-production" {
		t.Errorf("with rbac.namespaces [shop-production], the managed RoleBinding is in %q", rb.GetNamespace())
	}
}
