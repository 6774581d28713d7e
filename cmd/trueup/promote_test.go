package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// releaseOverlay is an environment with one Deployment whose image tag the
// overlay sets, as developers bump it in pull requests.
func releaseOverlay(ns, tag, extra string) map[string]string {
	dir := "overlays/" + ns + "/"
	return map[string]string{
		dir + "kustomization.yaml": `# ` + ns + `: developers bump the API tag below.
resources: [namespace.yaml, api.yaml]
images:
  - name: ghcr.io/acme/api # the API
    newTag: ` + tag + `
` + extra,
		dir + "namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n  annotations:\n    trueup.dev/prune: disabled\n",
		dir + "api.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "ghcr.io/acme/api:1.0.0"}]
`,
	}
}

// TestPromotionThroughTheDaemon walks a release on environment branches:
// a developer's set-image on staging is applied by the daemon; staging,
// healthy at the new tag, is promoted by exactly one commit on production,
// which the daemon then applies; a staging rollout that never becomes
// healthy promotes nothing.
func TestPromotionThroughTheDaemon(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{Username: "ops", Password: "t0ken"})
	url := srv.CreateRepo("deploy", sourcetest.Merge(releaseOverlay("promo-staging", "1.0.0", ""), releaseOverlay("promo-production", "1.0.0", "")))
	srv.Commit("deploy", "staging", sourcetest.Change{Message: "staging branch"})
	srv.Commit("deploy", "production", sourcetest.Change{Message: "production branch"})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "username"), "ops\n")
	writeFile(t, filepath.Join(dir, "password"), "t0ken\n")
	config := filepath.Join(dir, "trueup.yaml")
	writeFile(t, config, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - name: deploy
    url: `+url+`
    interval: 1s
    auth: {usernameFile: username, passwordFile: password}
environments:
  - name: promo-staging
    source: deploy
    branch: staging
    path: overlays/promo-staging
    namespace: promo-staging
    interval: 2s
    timeout: 10s
    promotion: {to: promo-production, auto: true}
  - name: promo-production
    source: deploy
    branch: production
    path: overlays/promo-production
    namespace: promo-production
    interval: 2s
`)
	kubeconfig := clustertest.Kubeconfig(t)
	cs := clientOf(t, kubeconfig)
	wantImage := func(ns, want string) func() error { return imageIn(cs, ns, want) }
	production := func() string { return strings.TrimSpace(srv.Git("deploy", "rev-parse", "production")) }
	productionStart := production()

	addr := startDaemon(t, config, kubeconfig)
	metrics := func() string { return scrape(addr) }

	clustertest.Eventually(t, "staging at 1.0.0", wantImage("promo-staging", "ghcr.io/acme/api:1.0.0"))
	clustertest.Eventually(t, "production at 1.0.0", wantImage("promo-production", "ghcr.io/acme/api:1.0.0"))
	// Equal images are no reason for a commit.
	clustertest.Eventually(t, "an up-to-date promotion counted", func() error {
		if !strings.Contains(metrics(), `trueup_promotions_total{from="promo-staging",result="up_to_date",to="promo-production"} 1`) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if production() != productionStart {
		t.Fatal("production got a commit though its images equal staging's")
	}

	// A developer bumps staging's tag.
	out, errOut, code := run(t, "set-image", "promo-staging", "api=1.1.0", "--config", config, "--push")
	if code != 0 || !strings.Contains(out, "promo-staging: set image api to 1.1.0") {
		t.Fatalf("set-image exit %d: %s %s", code, out, errOut)
	}
	bump := strings.TrimSpace(srv.Git("deploy", "rev-parse", "staging"))
	if stat := srv.Git("deploy", "diff", "--numstat", "staging~1", "staging"); stat != "1\t1\toverlays/promo-staging/kustomization.yaml\n" {
		t.Errorf("set-image commit changes more than one line: %q", stat)
	}
	clustertest.Eventually(t, "the daemon applies staging's new tag", wantImage("promo-staging", "ghcr.io/acme/api:1.1.0"))
	clustertest.Eventually(t, "production runs the promoted tag", wantImage("promo-production", "ghcr.io/acme/api:1.1.0"))
	commits := strings.Fields(srv.Git("deploy", "rev-list", productionStart+"..production"))
	if len(commits) != 1 {
		t.Fatalf("production got %d commits, want exactly one promotion", len(commits))
	}
	if msg := srv.Git("deploy", "log", "-1", "--format=%B", "production"); !strings.Contains(msg, "Promoted-From: promo-staging@"+bump) {
		t.Errorf("promotion commit lacks the trailer:\n%s", msg)
	}
	if m := metrics(); !strings.Contains(m, `trueup_promotions_total{from="promo-staging",result="promoted",to="promo-production"} 1`) {
		t.Errorf("promotion not counted:\n%s", grepLines(m, "trueup_promotions_total"))
	}

	// A rollout that cannot become healthy (no node matches) promotes nothing.
	promoted := production()
	bad := srv.Commit("deploy", "staging", sourcetest.Change{Message: "unschedulable 1.2.0", Files: releaseOverlay("promo-staging", "1.2.0",
		"patches:\n  - target: {kind: Deployment, name: api}\n    patch: '[{\"op\": \"add\", \"path\": \"/spec/template/spec/nodeSelector\", \"value\": {\"pool\": \"none\"}}]'\n")})
	clustertest.Eventually(t, "staging fails at the unhealthy revision", func() error {
		out, _, _ := run(t, "status", "promo-staging", "--server", "http://"+addr)
		if !strings.Contains(out, "failed") || !strings.Contains(out, "promo-staging") {
			return fmt.Errorf("status: %s", out)
		}
		return wantImage("promo-staging", "ghcr.io/acme/api:1.2.0")()
	})
	if production() != promoted {
		t.Errorf("an unhealthy staging rollout (%s) was promoted", bad[:7])
	}

	// By hand, --applied promotes what staging last ran healthy (1.1.0,
	// which production has), not the head of its branch (1.2.0).
	out, errOut, code = run(t, "promote", "promo-staging", "promo-production", "--applied", "--push",
		"--config", config, "--kubeconfig", kubeconfig)
	if code != 0 || !strings.Contains(out, "nothing to commit") {
		t.Errorf("promote --applied: exit %d: %s %s", code, out, errOut)
	}
	out, errOut, code = run(t, "promote", "promo-staging", "promo-production", "--pr-branch", "review/1.2.0", "--push", "--config", config, "-o", "json")
	if code != 0 || !strings.Contains(out, `"newTag": "1.2.0"`) || !strings.Contains(out, `"branch": "review/1.2.0"`) {
		t.Errorf("promote of the branch head for review: exit %d: %s %s", code, out, errOut)
	}
	if production() != promoted {
		t.Errorf("a promotion for review moved production:\n%s", srv.Git("deploy", "log", "-3", "--format=%h %s", "production"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
