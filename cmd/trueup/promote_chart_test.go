package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/trueup-dev/trueup/source/sourcetest"
)

// chartValues are a chart's environments' values files, as a repository
// keeps them: shared values, one file per environment, and production's
// secrets encrypted with SOPS (set-image and promote never decrypt them, so
// the ciphertext here is not real).
var chartValues = map[string]string{
	"values/todo/common.yaml": "# Values every stage shares.\nimage:\n  repository: ghcr.io/acme/todo\nservice:\n  port: 80\n",
	"values/todo/development.yaml": `# Development: one replica, the newest image.

replicaCount: 1
image:
  tag: "1.4.1"   # bumped by set-image
`,
	"values/todo/production.yaml": `# Production: autoscaled.
autoscaling:
    enabled: true
    minReplicas: 2

image:
    tag: "1.4.1"
`,
	"values/todo/production.secrets.yaml": `db:
    password: ENC[AES256_GCM,data:c2VjcmV0,iv:aXY=,tag:dGFn,type:str]
sops:
    mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]
    version: 3.9.0
`,
}

// chartConfig is a config with two chart environments on main (no chart
// is rendered, so the chart itself need not exist) and an overlay.
func chartConfig(t *testing.T, url string) string {
	t.Helper()
	config := filepath.Join(t.TempDir(), "trueup.yaml")
	writeFile(t, config, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: deploy, url: "`+url+`"}
environments:
  - name: development
    source: deploy
    path: charts/todo
    helm:
      valuesFiles: [values/todo/common.yaml, values/todo/development.yaml]
      images: [{name: todo, tag: image.tag, repository: image.repository}]
    promotion: {to: production}
  - name: production
    source: deploy
    path: charts/todo
    helm:
      valuesFiles: [values/todo/common.yaml, values/todo/production.yaml, values/todo/production.secrets.yaml]
      images: [{name: todo, tag: image.tag, repository: image.repository}]
  - name: secrets-only
    source: deploy
    path: charts/todo
    helm:
      valuesFiles: [values/todo/production.secrets.yaml]
      images: [{name: todo, tag: image.tag}]
  - {name: staging, source: deploy, path: overlays/promo-staging}
`)
	return config
}

// changedLines are the lines a commit removes and adds, without context.
func changedLines(diff string) string {
	var out []string
	for _, l := range strings.Split(diff, "\n") {
		if (strings.HasPrefix(l, "-") || strings.HasPrefix(l, "+")) && !strings.HasPrefix(l, "---") && !strings.HasPrefix(l, "+++") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestChartSetImageAndPromote: set-image on a chart environment is a
// pushed commit of one line in its last values file; promote carries the
// tag into production's last plain values file, past its encrypted one.
func TestChartSetImageAndPromote(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", sourcetest.Merge(chartValues, releaseOverlay("promo-staging", "1.0.0", "")))
	config := chartConfig(t, url)
	main := func() string { return strings.TrimSpace(srv.Git("deploy", "rev-parse", "main")) }
	start := main()

	out, errOut, code := run(t, "set-image", "development", "todo=1.4.2", "--config", config, "--push")
	if code != 0 || !strings.Contains(out, "pushed to main (development)\ndevelopment: set image todo to 1.4.2\n") {
		t.Fatalf("set-image: exit %d: %s %s", code, out, errOut)
	}
	if got := strings.Fields(srv.Git("deploy", "rev-list", start+"..main")); len(got) != 1 {
		t.Fatalf("set-image made %d commits", len(got))
	}
	if stat := srv.Git("deploy", "diff", "--numstat", "main~1", "main"); stat != "1\t1\tvalues/todo/development.yaml\n" {
		t.Errorf("set-image commit is not one line of the values file: %q", stat)
	}
	if got := changedLines(srv.Git("deploy", "diff", "--unified=0", "main~1", "main")); got != "-  tag: \"1.4.1\"   # bumped by set-image\n+  tag: \"1.4.2\"   # bumped by set-image" {
		t.Errorf("set-image changed:\n%s", got)
	}
	out, errOut, code = run(t, "set-image", "development", "todo=1.4.2", "--config", config, "--push")
	if code != 0 || !strings.Contains(out, "nothing to commit") {
		t.Errorf("the same tag again: exit %d: %s %s", code, out, errOut)
	}

	bump := main()
	out, errOut, code = run(t, "promote", "development", "production", "--config", config, "--push", "-o", "json")
	if code != 0 || !strings.Contains(out, `"file": "values/todo/production.yaml"`) || !strings.Contains(out, `"newTag": "1.4.2"`) {
		t.Fatalf("promote: exit %d: %s %s", code, out, errOut)
	}
	if stat := srv.Git("deploy", "diff", "--numstat", "main~1", "main"); stat != "1\t1\tvalues/todo/production.yaml\n" {
		t.Errorf("promotion commit is not one line of production's values: %q", stat)
	}
	if got := srv.Git("deploy", "show", "main:values/todo/production.yaml"); got != strings.Replace(chartValues["values/todo/production.yaml"], `"1.4.1"`, `"1.4.2"`, 1) {
		t.Errorf("production's values:\n%s", got)
	}
	msg := srv.Git("deploy", "log", "-1", "--format=%B", "main")
	if want := "production: promote todo 1.4.2 from development@" + bump[:7] + "\n\nPromoted-From: development@" + bump + "\n"; strings.TrimSpace(msg) != strings.TrimSpace(want) {
		t.Errorf("promotion message\n%s\nwant\n%s", msg, want)
	}
	out, errOut, code = run(t, "promote", "development", "production", "--config", config, "--push")
	if code != 0 || !strings.Contains(out, "production already runs development's images; nothing to commit") {
		t.Errorf("promoting again: exit %d: %s %s", code, out, errOut)
	}

	// What cannot be written fails, naming why, and commits nothing.
	promoted := main()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"set-image", "development", "web=1.0"}, `no image "web" in helm.images of development (have: todo)`},
		{[]string{"set-image", "development", "todo=@sha256:" + strings.Repeat("a", 64)}, "set a tag (todo=TAG)"},
		{[]string{"set-image", "secrets-only", "todo=1.4.2"}, "every file of helm.valuesFiles (values/todo/production.secrets.yaml) is encrypted with SOPS"},
		{[]string{"set-image", "secrets-only", "todo=ghcr.io/acme/todo:1.4.2"}, "gives no repository key for it"},
		{[]string{"promote", "staging", "production"}, "staging renders a kustomize overlay and production a Helm chart: promotion between a kustomize overlay and a Helm chart is not supported"},
	} {
		out, errOut, code := run(t, append(tc.args, "--config", config, "--push")...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, %s%s; want an error containing %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
	if main() != promoted {
		t.Error("a failed command moved main")
	}
}
