package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
)

// TestRenderOverALimitFailsAlone: an environment whose commit holds a
// YAML bomb fails its render, naming the environment, the file and the
// limit; the other environments of the same revision render; and an
// environment's own limits from the config are the ones applied.
func TestRenderOverALimitFailsAlone(t *testing.T) {
	dir := t.TempDir()
	laughs := "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	for i := 1; i < 9; i++ {
		a := fmt.Sprintf("*l%d", i-1)
		laughs += fmt.Sprintf("  l%d: &l%d [%s]\n", i, i, strings.Repeat(a+", ", 9)+a)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"
	for name, content := range map[string]string{
		"base/kustomization.yaml":          "resources: [a.yaml, b.yaml]\n",
		"base/a.yaml":                      fmt.Sprintf(cm, "a"),
		"base/b.yaml":                      fmt.Sprintf(cm, "b"),
		"overlays/prod/kustomization.yaml": "resources: [../../base, bomb.yaml]\n",
		"overlays/prod/bomb.yaml":          fmt.Sprintf(cm, "lol") + "data:\n" + laughs,
		"overlays/dev/kustomization.yaml":  "resources: [../../base]\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse([]byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources: [{name: repo, url: `+dir+`}]
environments:
  - {name: prod, source: repo, path: overlays/prod}
  - {name: dev, source: repo, path: overlays/dev}
  - {name: small, source: repo, path: overlays/dev, limits: {maxObjects: 1}}
`), "trueup.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.New(source.Options{Name: "repo", URL: dir})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRenderer(cfg, map[string]source.Source{"repo": src}, nil, slog.New(slog.DiscardHandler))
	_, err = r.Render(context.Background(), "prod")
	if want := "render prod: overlays/prod/bomb.yaml: YAML aliases expand to"; err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "(limit limits.maxYAMLNodes)") {
		t.Errorf("prod: got %v, want %s...", err, want)
	}
	if d, err := r.Render(context.Background(), "dev"); err != nil || len(d.Objects) != 2 {
		t.Errorf("dev: got %v, want its 2 objects", err)
	}
	_, err = r.Render(context.Background(), "small")
	if want := "render small: overlays/dev: renders 2 objects, more than 1 (limit limits.maxObjects)"; err == nil || err.Error() != want {
		t.Errorf("small: got %v, want %s", err, want)
	}
}
