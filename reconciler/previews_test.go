package reconciler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/source"
)

func previewConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - {name: canny, url: "https://git.example.com/canny.git"}
  - {name: other, url: "https://git.example.com/other.git"}
previews:
  - name: test
    source: canny
    branches: [develop, "feature/*"]
    path: overlays/test
    namespace: "canny-{{ .Branch }}"
`+extra), "previews.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func names(m map[string]config.Environment) string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// TestPlanPreviews decides which preview environments exist after a fetch.
func TestPlanPreviews(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	cfg := previewConfig(t, "    ttl: 72h\n    maxEnvironments: 3\n")
	branch := func(name string, age time.Duration) source.Branch {
		return source.Branch{Name: name, Commit: "c0ffee", Time: now.Add(-age)}
	}
	branches := []source.Branch{branch("main", 0), branch("develop", time.Hour), branch("feature/login", 2*time.Hour),
		branch("feature/old", 100*time.Hour), branch("feature/a/b", 0), branch("fix/x", 0)}

	got := planPreviews(cfg, "canny", branches, nil, now)
	if n := names(got.envs); n != "test-develop test-feature-login" {
		t.Errorf("environments %q; want develop and feature/login (main and fix/x do not match, feature/a/b is two levels, feature/old is past its ttl)", n)
	}
	if len(got.teardowns) != 0 {
		t.Errorf("teardowns without environments: %v", got.teardowns)
	}
	if e := got.envs["test-feature-login"]; e.Namespace != "canny-feature-login" || e.Branch != "feature/login" || e.Preview() != "test" {
		t.Errorf("environment %+v", e)
	}
	if other := planPreviews(cfg, "other", branches, nil, now); len(other.envs)+len(other.teardowns) != 0 {
		t.Errorf("another source's fetch touches the previews: %+v", other)
	}

	// The branch goes, one expires, and more arrive than there is room for.
	existing := got.envs
	existing["test-gone"] = config.Environment{Name: "test-gone"} // found as an inventory only
	branches = []source.Branch{branch("develop", 80*time.Hour), branch("feature/login", time.Hour),
		branch("feature/n1", 3*time.Minute), branch("feature/n2", 2*time.Minute), branch("feature/n3", time.Minute)}
	got = planPreviews(cfg, "canny", branches, existing, now)
	if n := names(got.envs); n != "test-feature-login test-feature-n2 test-feature-n3" {
		t.Errorf("environments %q; want feature/login kept and the two newest new ones", n)
	}
	var reasons []string
	for _, td := range got.teardowns {
		reasons = append(reasons, td.env.Name+": "+td.reason)
	}
	want := []string{`test-develop: branch "develop" has had no commit for 72h0m0s (ttl)`, "test-gone: its branch is gone"}
	if !slices.Equal(reasons, want) {
		t.Errorf("teardowns\n%s\nwant\n%s", strings.Join(reasons, "\n"), strings.Join(want, "\n"))
	}
	if s := got.skipped["test"]; !slices.Equal(s, []string{"feature/n1"}) {
		t.Errorf("skipped %v, want the oldest new branch", s)
	}

	// An environment that exists keeps its place even when the room is less.
	existing = got.envs
	tight := previewConfig(t, "    maxEnvironments: 1\n")
	got = planPreviews(tight, "canny", append(branches, branch("feature/n4", 0)), existing, now)
	if n := names(got.envs); n != "test-feature-login test-feature-n2 test-feature-n3" || len(got.teardowns) != 0 {
		t.Errorf("a lower maxEnvironments dropped environments: %q, teardowns %v", n, got.teardowns)
	}
	if s := got.skipped["test"]; !slices.Equal(s, []string{"feature/n4", "feature/n1", "develop"}) {
		t.Errorf("skipped %v, want the new branches newest first (develop has no ttl here)", s)
	}
}

// TestPlanPreviewsAtScale: 500 branches make at most maxEnvironments.
func TestPlanPreviewsAtScale(t *testing.T) {
	cfg := previewConfig(t, "")
	var branches []source.Branch
	for i := range 500 {
		branches = append(branches, source.Branch{Name: fmt.Sprintf("feature/b%03d", i), Time: time.Unix(int64(i), 0)})
	}
	got := planPreviews(cfg, "canny", branches, nil, time.Unix(1000, 0))
	if len(got.envs) != config.DefaultMaxPreviews || len(got.skipped["test"]) != 500-config.DefaultMaxPreviews {
		t.Fatalf("%d environments, %d skipped", len(got.envs), len(got.skipped["test"]))
	}
	if _, ok := got.envs["test-feature-b499"]; !ok {
		t.Errorf("the newest branch is not among %s", names(got.envs))
	}
}
