package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trueup-dev/trueup/reconciler"
)

// runIn runs the CLI with stdin read from in.
func runIn(t *testing.T, in io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = executeIn(context.Background(), args, in, &out, &errOut)
	return out.String(), errOut.String(), code
}

func (e *gitEnv) destroy(t *testing.T, in io.Reader, args ...string) (string, string, int) {
	t.Helper()
	return runIn(t, in, append([]string{"destroy", e.name, "--config", e.config, "--kubeconfig", e.kubeconfig}, args...)...)
}

// TestDestroyCommand: destroy lists what it deletes and asks; "n" (or
// input that is not a terminal) deletes nothing and exits 2, "y" deletes
// every object but the kept Namespace and the inventory; --yes -o json does
// the same without asking; an environment with nothing left is no error.
func TestDestroyCommand(t *testing.T) {
	ctx := context.Background()
	e := newGitEnv(t, "destroy-cli")
	e.mustApply(t)
	before := e.resourceVersions(t)
	inventory := func() bool {
		_, err := e.cs.CoreV1().ConfigMaps(reconciler.DefaultInventoryNamespace).Get(ctx, "trueup-destroy-cli", metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}

	out, errOut, code := e.destroy(t, strings.NewReader("n\n"))
	if code != exitError || !strings.Contains(errOut, "error: destroy destroy-cli: not confirmed; nothing was deleted") {
		t.Fatalf("answered n: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"- delete Deployment.apps/destroy-cli/web\n", "- delete ConfigMap/destroy-cli/x\n", "- delete Secret/destroy-cli/app-secret\n",
		"= keep Namespace/destroy-cli (trueup.dev/prune: disabled)\n",
		"then the inventory trueup-system/trueup-destroy-cli\n",
		"Delete these 5 objects of destroy-cli? [y/N] ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the listing lacks %q:\n%s", want, out)
		}
	}
	// Typed into a file, a yes is not taken for one.
	answers := filepath.Join(t.TempDir(), "answers")
	writeFile(t, answers, "y\n")
	f, err := os.Open(answers)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, errOut, code := e.destroy(t, f); code != exitError || !strings.Contains(errOut, "not a terminal") || !strings.Contains(errOut, "--yes") {
		t.Fatalf("stdin a file: exit %d, stderr %q", code, errOut)
	}
	if after := e.resourceVersions(t); !maps.Equal(before, after) || !inventory() {
		t.Fatalf("an unconfirmed destroy changed objects: %v -> %v", before, after)
	}

	out, errOut, code = e.destroy(t, strings.NewReader("y\n"))
	if code != 0 {
		t.Fatalf("answered y: exit %d: %s\n%s", code, errOut, out)
	}
	for _, want := range []string{"Deployment.apps/destroy-cli/web pruned\n", "Namespace/destroy-cli kept (trueup.dev/prune: disabled)\n",
		"destroy-cli: 5 pruned, 1 kept, 0 failed, 0 skipped in", "inventory trueup-system/trueup-destroy-cli deleted\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("the outcome lacks %q:\n%s", want, out)
		}
	}
	if left := e.resourceVersions(t); len(left) != 1 || left["cm/kube-root-ca.crt"] == "" {
		t.Errorf("left after destroy: %v", left)
	}
	if inventory() {
		t.Error("the inventory is still there")
	}
	if _, err := e.cs.CoreV1().Namespaces().Get(ctx, "destroy-cli", metav1.GetOptions{}); err != nil {
		t.Errorf("the kept Namespace: %v", err)
	}

	e.mustApply(t)
	out, errOut, code = e.destroy(t, strings.NewReader(""), "--yes", "-o", "json")
	if code != 0 || errOut != "" {
		t.Fatalf("--yes -o json: exit %d: %s", code, errOut)
	}
	var got reconciler.DestroyOutcome
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if !got.Found || !got.InventoryDeleted || got.Count(reconciler.ResultPruned) != 5 || got.Count(reconciler.ResultKept) != 1 || got.Environment != "destroy-cli" {
		t.Errorf("json outcome: %+v", got)
	}

	out, errOut, code = e.destroy(t, strings.NewReader(""))
	if code != 0 || !strings.Contains(out, "destroy-cli: nothing to destroy (no inventory trueup-system/trueup-destroy-cli)") {
		t.Errorf("nothing left: exit %d: %s\n%s", code, errOut, out)
	}
}
