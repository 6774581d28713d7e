package main

import (
	"strings"
	"testing"
)

// TestBuildSelfHosted renders the example in which trueup manages its own
// release (examples/platform): the chart's committed output, through
// kustomize, as the daemon would apply it.
func TestBuildSelfHosted(t *testing.T) {
	out, errOut, code := run(t, "build", "trueup", "--config", examples+"/platform/trueup.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"kind: Namespace", "kind: Deployment", "name: trueup", "- --leader-elect",
		"kind: ClusterRole", "namespace: trueup-system", "trueup.dev/prune: disabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q", want)
		}
	}
}
