package main

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trueup-dev/trueup/source/sourcetest"
)

// TestKeptOutput: an object that opts out of pruning and leaves git is
// shown as kept by diff (which is no difference: exit 0) and by the apply
// that drops it from the inventory, and by neither after that.
func TestKeptOutput(t *testing.T) {
	e := newGitEnv(t, "kept-cli")
	files := overlayFiles("kept-cli", "1")
	files["envs/kept-cli/x.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  annotations: {trueup.dev/prune: disabled}\ndata: {k: v}\n"
	e.srv.Commit("deploy", "main", sourcetest.Change{Files: files})
	e.mustApply(t)

	files["envs/kept-cli/kustomization.yaml"] = strings.Replace(files["envs/kept-cli/kustomization.yaml"], " x.yaml,", "", 1)
	e.srv.Commit("deploy", "main", sourcetest.Change{Files: files, Delete: []string{"envs/kept-cli/x.yaml"}})
	text, errOut, code := e.run(t, "diff")
	if code != 0 {
		t.Fatalf("diff with only a kept object: exit %d (%s), want 0:\n%s", code, errOut, text)
	}
	for _, want := range []string{"= keep ConfigMap/kept-cli/x (trueup.dev/prune: disabled)", "0 to prune, 1 kept, 5 unchanged"} {
		if !strings.Contains(text, want) {
			t.Errorf("diff lacks %q:\n%s", want, text)
		}
	}
	assertChanges(t, e, map[string]string{"ConfigMap/x": "keep"})

	out := e.mustApply(t)
	for _, want := range []string{"ConfigMap/kept-cli/x kept (trueup.dev/prune: disabled)\n", " 0 pruned, 1 kept, 0 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	if _, err := e.cs.CoreV1().ConfigMaps("kept-cli").Get(context.Background(), "x", metav1.GetOptions{}); err != nil {
		t.Errorf("the kept ConfigMap: %v", err)
	}

	text, _, code = e.run(t, "diff")
	if code != 0 || strings.Contains(text, "keep ") || !strings.Contains(text, "0 kept") {
		t.Errorf("diff after the apply that dropped x (exit %d):\n%s", code, text)
	}
	if out := e.mustApply(t); strings.Contains(out, " kept (") || !strings.Contains(out, "0 kept") {
		t.Errorf("the next apply:\n%s", out)
	}
}
