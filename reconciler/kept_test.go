package reconciler

import (
	"context"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/object"
)

// TestKeptIsNoChange: a kept object is listed, but writes nothing, is no
// drift and no difference.
func TestKeptIsNoChange(t *testing.T) {
	id := func(name string) object.ObjMetadata {
		return object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "shop", Name: name}
	}
	for name, tc := range map[string]struct {
		actions    []Action
		hasChanges bool
		drift      int
		summary    string
	}{
		"only kept":          {actions: []Action{ActionUnchanged, ActionKeep}, summary: ""},
		"kept and a prune":   {actions: []Action{ActionKeep, ActionPrune}, hasChanges: true, drift: 1, summary: "ConfigMap/shop/o1"},
		"kept and an update": {actions: []Action{ActionUpdate, ActionKeep, ActionKeep}, hasChanges: true, drift: 1, summary: "ConfigMap/shop/o0"},
		"nothing":            {actions: []Action{ActionUnchanged}, summary: ""},
	} {
		t.Run(name, func(t *testing.T) {
			p := &Plan{}
			for i, a := range tc.actions {
				p.Changes = append(p.Changes, newChange(id("o"+string(rune('0'+i))), a))
			}
			if got := p.HasChanges(); got != tc.hasChanges {
				t.Errorf("HasChanges %v, want %v", got, tc.hasChanges)
			}
			if got := driftCount(p); got != tc.drift {
				t.Errorf("driftCount %d, want %d", got, tc.drift)
			}
			if got := driftSummary(p); got != tc.summary {
				t.Errorf("driftSummary %q, want %q", got, tc.summary)
			}
		})
	}
}

// TestKeptObjects: an object that opts out of pruning and leaves git is
// listed as kept — by trueup's annotation or cli-utils' — by the plan and
// by the apply that sees it leave, which writes nothing to it and drops it
// from the inventory; later plans do not mention it.
func TestKeptObjects(t *testing.T) {
	ctx := context.Background()
	const ns = "kept-env"
	files := map[string]string{
		"kustomization.yaml": "resources: [namespace.yaml, a.yaml, keep.yaml, on-remove.yaml]\n",
		"namespace.yaml":     strings.ReplaceAll(namespaceYAML, "prune-env", ns),
		"a.yaml":             cm("a", ""),
		"keep.yaml":          cm("keep", "  annotations:\n    trueup.dev/prune: disabled\n"),
		"on-remove.yaml":     cm("on-remove", "  annotations:\n    cli-utils.sigs.k8s.io/on-remove: keep\n"),
	}
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, desired(t, ns, files)), waitOpts)

	// Both leave git.
	files["kustomization.yaml"] = "resources: [namespace.yaml, a.yaml]\n"
	left := desired(t, ns, files)
	objectWrites := &writes{only: func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/namespaces/"+ns+"/") }}
	w := connect(t, objectWrites)
	p := plan(t, w, left)
	got := map[string]string{}
	for _, ch := range p.Changes {
		if ch.Action == ActionKeep {
			got[ch.ID()] = ch.Note
		}
	}
	want := map[string]string{
		"ConfigMap/kept-env/keep":      "trueup.dev/prune: disabled",
		"ConfigMap/kept-env/on-remove": "cli-utils.sigs.k8s.io/on-remove: keep",
	}
	if len(got) != len(want) || got["ConfigMap/kept-env/keep"] != want["ConfigMap/kept-env/keep"] ||
		got["ConfigMap/kept-env/on-remove"] != want["ConfigMap/kept-env/on-remove"] {
		t.Fatalf("kept %v, want %v (plan %v)", got, want, actions(p))
	}
	if p.HasChanges() || p.Count(ActionPrune) != 0 {
		t.Fatalf("a plan with only kept objects has changes: %v", actions(p))
	}
	if last := p.Changes[len(p.Changes)-1]; last.Action != ActionKeep {
		t.Errorf("kept objects are not listed after the desired ones: %v", p.Changes)
	}

	// An apply without prune keeps them listed, as it does prunes.
	out := applyOK(t, w, p, ApplyOptions{Wait: true, Timeout: waitOpts.Timeout})
	if out.Count(ResultKept) != 0 || !inventoryLists(t, ns, "keep", "on-remove") {
		t.Fatalf("an apply without prune dropped kept objects: %d kept", out.Count(ResultKept))
	}

	out = applyOK(t, w, plan(t, w, left), waitOpts)
	results := map[string]Result{}
	for _, r := range out.Objects {
		results[r.ID()] = r.Result
	}
	if out.Count(ResultKept) != 2 || results["ConfigMap/kept-env/keep"] != ResultKept || results["ConfigMap/kept-env/on-remove"] != ResultKept {
		t.Fatalf("apply results %v, want keep and on-remove kept", results)
	}
	if n := objectWrites.n.Load(); n != 0 {
		t.Errorf("keeping objects wrote %d requests to them", n)
	}
	cs := clientset(t)
	for _, name := range []string{"keep", "on-remove"} {
		if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("kept ConfigMap %s: %v", name, err)
		}
	}
	if inventoryLists(t, ns, "keep") || inventoryLists(t, ns, "on-remove") || !inventoryLists(t, ns, "a") {
		t.Errorf("the inventory still lists kept objects, or lost a")
	}

	// Once dropped, it is no longer the environment's: not listed again.
	p = plan(t, w, left)
	if p.Count(ActionKeep) != 0 || p.HasChanges() {
		t.Fatalf("the plan after the apply: %v", actions(p))
	}
	if out := applyOK(t, w, p, waitOpts); out.Count(ResultKept) != 0 {
		t.Errorf("the next apply reports %d kept", out.Count(ResultKept))
	}
}

// inventoryLists reports whether env's inventory lists every ConfigMap of
// names in namespace env.
func inventoryLists(t *testing.T, env string, names ...string) bool {
	t.Helper()
	inv, err := clientset(t).CoreV1().ConfigMaps(DefaultInventoryNamespace).Get(context.Background(),
		Owner{Environment: env}.withDefaults(env).inventoryName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		key := object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: env, Name: name}.String()
		if _, ok := inv.Data[key]; !ok {
			return false
		}
	}
	return true
}
