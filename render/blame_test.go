package render

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestErrorsBlameTheKustomizationOfTheEntry: a failing entry is blamed on
// the kustomization that lists it, wherever in the build it is: not on
// the kustomization kustomize happened to read last.
func TestErrorsBlameTheKustomizationOfTheEntry(t *testing.T) {
	cm := func(name string) string { return fmt.Sprintf(configMap, name) }
	badYAML := "apiVersion: v1\nkind: [ConfigMap\n"
	cases := []struct {
		name  string
		files map[string]string
		blame string
		want  string // in the rest of the message
	}{
		{
			name: "base first, then a missing file",
			files: map[string]string{
				"base/kustomization.yaml":          "resources: [cm.yaml]\n",
				"base/cm.yaml":                     cm("base"),
				"overlays/prod/kustomization.yaml": "resources: [../../base, missing.yaml]\n",
			},
			blame: "overlays/prod/kustomization.yaml", want: "overlays/prod/missing.yaml",
		},
		{
			name: "base first, then a file of bad YAML",
			files: map[string]string{
				"base/kustomization.yaml":          "resources: [cm.yaml]\n",
				"base/cm.yaml":                     cm("base"),
				"overlays/prod/kustomization.yaml": "resources: [../../base, bad.yaml]\n",
				"overlays/prod/bad.yaml":           badYAML,
			},
			blame: "overlays/prod/kustomization.yaml", want: "bad.yaml",
		},
		{
			name: "base last, then a missing patch",
			files: map[string]string{
				"base/kustomization.yaml":          "resources: [cm.yaml]\n",
				"base/cm.yaml":                     cm("base"),
				"overlays/prod/kustomization.yaml": "resources: [cm.yaml, ../../base]\npatches:\n- path: patch.yaml\n",
				"overlays/prod/cm.yaml":            cm("prod"),
			},
			blame: "overlays/prod/kustomization.yaml", want: "patch.yaml",
		},
		{
			name: "nested bases, then a file of bad YAML",
			files: map[string]string{
				"base/kustomization.yaml":          "resources: [cm.yaml]\n",
				"base/cm.yaml":                     cm("base"),
				"mid/kustomization.yaml":           "resources: [../base, cm.yaml]\n",
				"mid/cm.yaml":                      cm("mid"),
				"overlays/prod/kustomization.yaml": "resources: [../../mid, bad.yaml]\n",
				"overlays/prod/bad.yaml":           badYAML,
			},
			blame: "overlays/prod/kustomization.yaml", want: "bad.yaml",
		},
		{
			name: "a broken entry in the base itself, after its own base",
			files: map[string]string{
				"common/kustomization.yaml":        "resources: [cm.yaml]\n",
				"common/cm.yaml":                   cm("common"),
				"base/kustomization.yaml":          "resources: [../common, missing.yaml]\n",
				"overlays/prod/kustomization.yaml": "resources: [../../base]\n",
			},
			blame: "base/kustomization.yaml", want: "base/missing.yaml",
		},
		{
			name: "a broken patch file after the base",
			files: map[string]string{
				"base/kustomization.yaml":          "resources: [cm.yaml]\n",
				"base/cm.yaml":                     cm("base"),
				"overlays/prod/kustomization.yaml": "resources: [../../base]\npatches:\n- path: patch.yaml\n",
				"overlays/prod/patch.yaml":         badYAML,
			},
			blame: "overlays/prod/kustomization.yaml", want: "patch.yaml",
		},
		{
			name: "a broken patch file after a component",
			files: map[string]string{
				"base/kustomization.yaml":          "resources: [cm.yaml]\n",
				"base/cm.yaml":                     cm("base"),
				"components/x/kustomization.yaml":  "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nlabels:\n- pairs: {x: \"true\"}\n",
				"overlays/prod/kustomization.yaml": "resources: [../../base]\ncomponents: [../../components/x]\npatches:\n- path: patch.yaml\n",
				"overlays/prod/patch.yaml":         badYAML,
			},
			blame: "overlays/prod/kustomization.yaml", want: "patch.yaml",
		},
		{
			name: "a missing patch of a component, after its own component",
			files: map[string]string{
				"base/kustomization.yaml":          "resources: [cm.yaml]\n",
				"base/cm.yaml":                     cm("base"),
				"components/y/kustomization.yaml":  "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nlabels:\n- pairs: {y: \"true\"}\n",
				"components/x/kustomization.yaml":  "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncomponents: [../y]\npatches:\n- path: patch.yaml\n",
				"overlays/prod/kustomization.yaml": "resources: [../../base]\ncomponents: [../../components/x]\n",
			},
			blame: "components/x/kustomization.yaml", want: "patch.yaml",
		},
		{
			name: "an object of the overlay that its base last has too",
			files: map[string]string{
				"base/kustomization.yaml":          "resources: [cm.yaml]\n",
				"base/cm.yaml":                     cm("c"),
				"overlays/prod/kustomization.yaml": "resources: [cm.yaml, ../../base]\n",
				"overlays/prod/cm.yaml":            cm("c"),
			},
			blame: "overlays/prod/kustomization.yaml", want: "already registered id: ConfigMap.v1.[noGrp]/c",
		},
		{
			name: "a base in a directory of the overlay, then a missing file",
			files: map[string]string{
				"app/kustomization.yaml":      "resources: [base, missing.yaml]\n",
				"app/base/kustomization.yaml": "resources: [cm.yaml]\n",
				"app/base/cm.yaml":            cm("base"),
			},
			blame: "app/kustomization.yaml", want: "app/missing.yaml",
		},
		{
			name: "a missing file in the base's directory that the overlay lists",
			files: map[string]string{
				"app/kustomization.yaml":      "resources: [base, base/extra.yaml]\n",
				"app/base/kustomization.yaml": "resources: [cm.yaml]\n",
				"app/base/cm.yaml":            cm("base"),
			},
			blame: "app/kustomization.yaml", want: "app/base/extra.yaml",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := "overlays/prod"
			if _, ok := tc.files["app/kustomization.yaml"]; ok {
				dir = "app"
			}
			_, err := Build(context.Background(), mapFS(tc.files), Options{Path: dir})
			if err == nil {
				t.Fatal("Build succeeded, want an error")
			}
			msg := err.Error()
			rest, ok := strings.CutPrefix(msg, tc.blame+": ")
			if !ok {
				t.Errorf("error %q does not blame %s", msg, tc.blame)
			}
			if !strings.Contains(rest, tc.want) {
				t.Errorf("error %q does not name %s", msg, tc.want)
			}
		})
	}
}
