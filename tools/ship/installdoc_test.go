package ship

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trueup-dev/trueup/config"
)

// TestInstallDocValues takes the values file docs/install.md tells users to
// write, renders the chart with it, dry-runs the objects and parses the
// config, so the walk-through cannot drift from the chart.
func TestInstallDocValues(t *testing.T) {
	doc, err := readFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "```yaml\n# values-prod.yaml\n")
	if !ok {
		t.Fatal("docs/install.md has no values-prod.yaml block")
	}
	values, _, _ := strings.Cut(after, "```")
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
