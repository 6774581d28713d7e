package reconciler

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/object"
)

// configMaps renders n ConfigMaps and their namespace as an overlay.
func configMaps(ns string, n int, value func(i int) string) map[string]string {
	files := map[string]string{"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n"}
	resources := []string{"ns.yaml"}
	for i := range n {
		name := fmt.Sprintf("cm-%02d.yaml", i)
		files[name] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%02d\ndata:\n  value: %q\n", i, value(i))
		resources = append(resources, name)
	}
	files["kustomization.yaml"] = "resources: [" + strings.Join(resources, ", ") + "]\n"
	return files
}

// groups counts the (kind, namespace) pairs of a plan's objects: what a
// plan in a new process may LIST.
func groups(d *Desired) int {
	seen := map[string]bool{}
	for _, o := range d.Objects {
		seen[o.GetKind()+"/"+o.GetNamespace()] = true
	}
	return len(seen)
}

// TestApplyCostsOnlyWhatChanged: in a new process, a no-op apply reads one
// LIST per kind and namespace plus the inventory, with no dry-run and no
// write; one changed object costs one dry-run, one apply and one inventory
// write.
func TestApplyCostsOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	d := desired(t, "cost-env", configMaps("cost-env", 30, func(int) string { return "v1" }))
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, d), waitOpts)

	var w writes
	fresh := connect(t, &w)
	p := plan(t, fresh, d)
	if p.HasChanges() {
		t.Fatalf("plan after apply: %v", actions(p))
	}
	applyOK(t, fresh, p, waitOpts)
	if w.n.Load() != 0 || w.dryRuns.Load() != 0 || w.reads.Load() > int64(groups(d))+1 {
		t.Errorf("no-op apply: %d writes, %d dry-runs, %d reads; want 0, 0 and at most %d", w.n.Load(), w.dryRuns.Load(), w.reads.Load(), groups(d)+1)
	}

	w.reset()
	changed := desired(t, "cost-env", configMaps("cost-env", 30, func(i int) string {
		if i == 7 {
			return "v2"
		}
		return "v1"
	}))
	out := applyOK(t, fresh, plan(t, fresh, changed), waitOpts)
	if out.Count(ResultConfigured) != 1 || out.Count(ResultUnchanged) != 30 {
		t.Fatalf("one change: %d configured, %d unchanged", out.Count(ResultConfigured), out.Count(ResultUnchanged))
	}
	// The inventory is written before the object (its record cleared,
	// so a cut-off apply leaves it to be dry-run) and after.
	if total := w.n.Load() + w.dryRuns.Load() + w.reads.Load(); w.dryRuns.Load() != 1 || w.n.Load() != 3 || total > 7 {
		t.Errorf("one change: %d writes, %d dry-runs, %d reads; want 3 (the object and the inventory before and after), 1, at most 7 in all (target: 10)",
			w.n.Load(), w.dryRuns.Load(), w.reads.Load())
	}
	cm, err := clientset(t).CoreV1().ConfigMaps("cost-env").Get(ctx, "cm-07", metav1.GetOptions{})
	if err != nil || cm.Data["value"] != "v2" || cm.Labels[EnvironmentLabel] != "cost-env" {
		t.Fatalf("cm-07 after the change: %v %v", cm, err)
	}
}

// TestPlanFindsDriftWithoutDryRuns: a kubectl scale, a kubectl edit and a
// deletion are each found by a plan in a new process, which dry-runs just
// those objects; applying heals them.
func TestPlanFindsDriftWithoutDryRuns(t *testing.T) {
	ctx := context.Background()
	files := configMaps("drift-env", 5, func(int) string { return "git" })
	files["kustomization.yaml"] = strings.Replace(files["kustomization.yaml"], "]", ", web.yaml]", 1)
	files["web.yaml"] = webDeployment
	d := desired(t, "drift-env", files)
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, d), waitOpts)

	cs := clientset(t)
	scale, err := cs.AppsV1().Deployments("drift-env").GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 3
	if _, err := cs.AppsV1().Deployments("drift-env").UpdateScale(ctx, "web", scale, metav1.UpdateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"data":{"value":"edited"}}`)
	if _, err := cs.CoreV1().ConfigMaps("drift-env").Patch(ctx, "cm-01", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps("drift-env").Delete(ctx, "cm-02", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	var w writes
	fresh := connect(t, &w)
	p, err := fresh.Plan(ctx, d, PlanOptions{Prune: true, ForceConflicts: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Action{"Deployment.apps/drift-env/web": ActionUpdate, "ConfigMap/drift-env/cm-01": ActionUpdate, "ConfigMap/drift-env/cm-02": ActionCreate}
	for id, a := range actions(p) {
		if want[id] == "" {
			want[id] = ActionUnchanged
		}
		if a != want[id] {
			t.Errorf("%s: %s, want %s", id, a, want[id])
		}
	}
	if n := w.dryRuns.Load(); n != 3 {
		t.Errorf("the plan made %d dry-runs, want 3 (the drifted objects only)", n)
	}
	// The daemon's plan keeps the diffs of the updates, not of the object
	// it creates whole.
	dp, err := fresh.Plan(ctx, d, PlanOptions{Prune: true, ForceConflicts: true, Diff: true, DiffUpdatesOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range dp.Changes {
		switch {
		case ch.Action == ActionUpdate && !strings.Contains(ch.Diff, "+++ git"):
			t.Errorf("%s/%s: an update without its diff", ch.Kind, ch.Name)
		case ch.Action == ActionCreate && ch.Diff != "":
			t.Errorf("%s/%s: a create with a diff:\n%s", ch.Kind, ch.Name, ch.Diff)
		}
	}
	if dp.Count(ActionUpdate) != 2 || dp.Count(ActionCreate) != 1 {
		t.Errorf("the daemon's plan: %v", actions(dp))
	}
	forced := waitOpts
	forced.ForceConflicts = true
	applyOK(t, fresh, p, forced)
	if p := plan(t, connect(t, nil), d); p.HasChanges() {
		t.Fatalf("after healing: %v", actions(p))
	}
}

// TestApplyWaitFalseDoesNotWait: with wait off, an apply of a Deployment
// whose Pods can never be scheduled returns as soon as it is applied.
func TestApplyWaitFalseDoesNotWait(t *testing.T) {
	d := desired(t, "nowait-env", map[string]string{
		"kustomization.yaml": "resources: [ns.yaml, web.yaml]\n",
		"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: nowait-env\n",
		"web.yaml":           unschedulable,
	})
	c := connect(t, nil)
	out := applyOK(t, c, plan(t, c, d), ApplyOptions{Prune: true, Timeout: time.Hour})
	if out.Count(ResultCreated) != 2 || out.Phases.Wait != 0 {
		t.Fatalf("created %d, waited %vs", out.Count(ResultCreated), out.Phases.Wait)
	}
	// Again, unchanged: still no wait, no failure.
	out = applyOK(t, c, plan(t, c, d), ApplyOptions{Prune: true, Timeout: time.Hour})
	if out.Count(ResultUnchanged) != 2 {
		t.Fatalf("second apply: %d unchanged", out.Count(ResultUnchanged))
	}
}

// webDeployment is a Deployment of one replica; unschedulable is one no
// node can run.
const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "ghcr.io/acme/web:1.0.0"}]
`

var unschedulable = strings.Replace(webDeployment, "    spec:\n", "    spec:\n      nodeSelector: {pool: none}\n", 1)

// TestInvalidObjectWritesNothing: a commit with an invalid object in a
// namespace it creates, beside a changed object and one that left git,
// fails its plan naming the object, and applies and prunes nothing.
func TestInvalidObjectWritesNothing(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	first := configMaps("aon-env", 3, func(int) string { return "one" })
	applyOK(t, c, plan(t, c, desired(t, "aon-env", first)), waitOpts)

	next := configMaps("aon-env", 2, func(int) string { return "two" }) // cm-02 leaves git, the others change
	next["new-ns.yaml"] = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: aon-new\n"
	next["bad.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: aon-new\ndata:\n  \"not a valid key!\": x\n"
	next["kustomization.yaml"] = strings.Replace(next["kustomization.yaml"], "]", ", new-ns.yaml, bad.yaml]", 1)
	d := desired(t, "aon-env", next)
	var w writes
	guarded := connect(t, &w)
	_, err := guarded.Plan(ctx, d, PlanOptions{Prune: true})
	if err == nil || !strings.Contains(err.Error(), "ConfigMap/aon-new/bad") || !strings.Contains(err.Error(), "not a valid key") {
		t.Fatalf("plan: got %v, want an error naming ConfigMap/aon-new/bad", err)
	}
	if w.n.Load() != 0 {
		t.Fatalf("the failed plan wrote %d times", w.n.Load())
	}
	cs := clientset(t)
	for name, want := range map[string]string{"cm-00": "one", "cm-02": "one"} {
		if cm, err := cs.CoreV1().ConfigMaps("aon-env").Get(ctx, name, metav1.GetOptions{}); err != nil || cm.Data["value"] != want {
			t.Errorf("%s after the failed plan: %v %v", name, cm.Data, err)
		}
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "aon-new", metav1.GetOptions{}); err == nil {
		t.Error("the new namespace was created though the commit cannot be applied")
	}
}

// TestObjectOfAnotherEnvironmentWritesNothing: an object another
// environment's inventory owns fails the plan, naming object and owner.
func TestObjectOfAnotherEnvironmentWritesNothing(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, desired(t, "owner-env", configMaps("owner-env", 2, func(int) string { return "mine" }))), waitOpts)

	// intruder renders its own objects into owner-env's namespace too,
	// among them one of owner-env's.
	files := map[string]string{
		"kustomization.yaml": "resources: [a.yaml, b.yaml]\n",
		"a.yaml":             "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: intruder-a\n  namespace: owner-env\ndata:\n  value: x\n",
		"b.yaml":             "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-01\n  namespace: owner-env\ndata:\n  value: taken\n",
	}
	var w writes
	guarded := connect(t, &w)
	_, err := guarded.Plan(ctx, desired(t, "intruder", files), PlanOptions{Prune: true, ForceConflicts: true})
	if err == nil || !strings.Contains(err.Error(), "ConfigMap/owner-env/cm-01") || !strings.Contains(err.Error(), "trueup-owner-env") {
		t.Fatalf("plan: got %v, want an error naming the object and its owner", err)
	}
	if w.n.Load() != 0 {
		t.Fatalf("the failed plan wrote %d times", w.n.Load())
	}
	if cm, err := clientset(t).CoreV1().ConfigMaps("owner-env").Get(ctx, "cm-01", metav1.GetOptions{}); err != nil || cm.Data["value"] != "mine" {
		t.Fatalf("cm-01: %v %v", cm, err)
	}
}

// TestCutOffApplyPrunesNothing: an apply whose API server goes away half
// way prunes nothing, and its inventory lists every object that exists, so
// the next apply finishes the job, prune included.
func TestCutOffApplyPrunesNothing(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, desired(t, "cut-env", configMaps("cut-env", 4, func(int) string { return "one" }))), waitOpts)

	// cm-03 leaves git; eight new ones arrive.
	next := desired(t, "cut-env", configMaps("cut-env", 3, func(int) string { return "one" }))
	more := desired(t, "cut-env", configMaps("cut-env", 12, func(int) string { return "one" }))
	for _, o := range more.Objects {
		if n := o.GetName(); n >= "cm-04" && o.GetKind() == "ConfigMap" {
			next.Objects = append(next.Objects, o)
		}
	}
	w := &writes{}
	w.cutAfter.Store(4) // the inventory's intent and three objects
	cut := connect(t, w)
	p := plan(t, cut, next)
	if p.Count(ActionPrune) != 1 || p.Count(ActionCreate) != 8 {
		t.Fatalf("plan: %v", actions(p))
	}
	out, err := cut.Apply(ctx, p, ApplyOptions{Prune: true, Timeout: time.Minute, MaxPrunePercent: 50})
	if err == nil && (out == nil || out.Err() == nil) {
		t.Fatal("the cut-off apply succeeded")
	}
	cs := clientset(t)
	if _, err := cs.CoreV1().ConfigMaps("cut-env").Get(ctx, "cm-03", metav1.GetOptions{}); err != nil {
		t.Fatalf("cm-03 was pruned by an apply that failed: %v", err)
	}
	inv, err := connect(t, nil).readInventory(ctx, Owner{}.withDefaults("cut-env"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := cs.CoreV1().ConfigMaps("cut-env").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range list.Items {
		id := object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "cut-env", Name: cm.Name}
		if _, ok := inv.records[id]; !ok && cm.Name != "kube-root-ca.crt" {
			t.Errorf("%s exists but the inventory does not list it", cm.Name)
		}
	}

	out = applyOK(t, connect(t, nil), plan(t, connect(t, nil), next), waitOpts)
	if out.Count(ResultPruned) != 1 {
		t.Fatalf("the next apply pruned %d, want 1", out.Count(ResultPruned))
	}
}

// TestApplySaysWhyWorkloadsFail: a wait that ends on unhealthy workloads
// says, for each, what its Pods or Job report: an image that cannot be
// pulled, a container that keeps crashing, a Job whose Pod failed. (The
// node simulator fails images named so.)
func TestApplySaysWhyWorkloadsFail(t *testing.T) {
	deployment := func(name, image string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: ` + name + `}
spec:
  selector: {matchLabels: {app: ` + name + `}}
  template:
    metadata: {labels: {app: ` + name + `}}
    spec:
      containers: [{name: main, image: "` + image + `"}]
`
	}
	d := desired(t, "why-env", map[string]string{
		"kustomization.yaml": "resources: [ns.yaml, pull.yaml, crash.yaml, job.yaml]\n",
		"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: why-env\n",
		"pull.yaml":          deployment("pull", "registry.example.com/acme/pull-error:1.0"),
		"crash.yaml":         deployment("crash", "ghcr.io/acme/crash-loop:1.0"),
		"job.yaml": `apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: "ghcr.io/acme/exit-1:1.0"}]
`,
	})
	c := connect(t, nil)
	opts := waitOpts
	opts.Timeout = 8 * time.Second
	out, err := c.Apply(context.Background(), plan(t, c, d), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"Deployment.apps/why-env/pull":  {"container main: ImagePullBackOff", `Back-off pulling image "registry.example.com/acme/pull-error:1.0"`},
		"Deployment.apps/why-env/crash": {"container main: CrashLoopBackOff", "last exit code 1"},
		"Job.batch/why-env/migrate":     {"failed: Failed: Job Failed", "BackoffLimitExceeded", "container migrate: Error, exit code 1"},
	}
	for _, o := range out.Objects {
		for _, w := range want[o.ID()] {
			if o.Result != ResultFailed || !strings.Contains(o.Error, w) {
				t.Errorf("%s: %s %q, want a failure saying %q", o.ID(), o.Result, o.Error, w)
			}
		}
	}
}

// TestForceNeverDeletesForAWrongManifest: trueup.dev/force replaces an
// object whose change is refused as immutable, but a manifest that is
// simply invalid fails the plan and the object stays.
func TestForceNeverDeletesForAWrongManifest(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	job := func(policy string) *Desired {
		return desired(t, "force-bad-env", map[string]string{
			"kustomization.yaml": "resources: [ns.yaml, job.yaml]\n",
			"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: force-bad-env\n",
			"job.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    trueup.dev/force: enabled\n" +
				"spec:\n  template:\n    spec:\n      restartPolicy: " + policy + "\n      containers: [{name: m, image: \"ghcr.io/acme/api:1.0.0\"}]\n",
		})
	}
	applyOK(t, c, plan(t, c, job("Never")), waitOpts)
	if _, err := c.Plan(ctx, job("Alwayz"), PlanOptions{Prune: true}); err == nil || !strings.Contains(err.Error(), "Alwayz") {
		t.Fatalf("an invalid forced change: got %v, want the plan to fail naming the value", err)
	}
	if _, err := clientset(t).BatchV1().Jobs("force-bad-env").Get(ctx, "migrate", metav1.GetOptions{}); err != nil {
		t.Fatalf("the Job is gone: %v", err)
	}
}

// TestPruneSparesObjectsNeverApplied: an object the inventory lists but
// trueup never applied (an apply stopped before it: no owning-inventory
// annotation) is someone else's, and is not pruned when it leaves git.
func TestPruneSparesObjectsNeverApplied(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, desired(t, "spare-env", configMaps("spare-env", 2, func(int) string { return "v" }))), waitOpts)
	cs := clientset(t)
	hand := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "by-hand", Namespace: "spare-env"}}
	if _, err := cs.CoreV1().ConfigMaps("spare-env").Create(ctx, hand, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	inv, err := c.readInventory(ctx, Owner{}.withDefaults("spare-env"))
	if err != nil {
		t.Fatal(err)
	}
	records := maps.Clone(inv.records)
	records[object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "spare-env", Name: "by-hand"}] = record{}
	if err := c.writeInventory(ctx, inv, records, "", ""); err != nil {
		t.Fatal(err)
	}
	p := plan(t, c, desired(t, "spare-env", configMaps("spare-env", 2, func(int) string { return "v" })))
	if p.Count(ActionPrune) != 0 {
		t.Fatalf("plans to prune an object trueup never applied: %v", actions(p))
	}
	applyOK(t, c, p, waitOpts)
	if _, err := cs.CoreV1().ConfigMaps("spare-env").Get(ctx, "by-hand", metav1.GetOptions{}); err != nil {
		t.Fatalf("by-hand is gone: %v", err)
	}
}

// TestUnrecordedApplyIsNotTakenForUnchanged: an apply whose object write
// landed but whose inventory was never updated (the API server gone right
// after) leaves no record saying the object holds the old manifest: when
// git goes back to it, the object is changed back.
func TestUnrecordedApplyIsNotTakenForUnchanged(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	v1 := desired(t, "unrec-env", configMaps("unrec-env", 1, func(int) string { return "one" }))
	applyOK(t, c, plan(t, c, v1), waitOpts)

	w := &writes{}
	w.cutAfter.Store(2) // the inventory's intent and the object: not the inventory after
	cut := connect(t, w)
	if _, err := cut.Apply(ctx, plan(t, cut, desired(t, "unrec-env", configMaps("unrec-env", 1, func(int) string { return "two" }))), waitOpts); err == nil {
		t.Fatal("the cut-off apply succeeded")
	}
	p := plan(t, connect(t, nil), v1)
	if got := actions(p)["ConfigMap/unrec-env/cm-00"]; got != ActionUpdate {
		t.Fatalf("back to the first manifest: cm-00 is %q, want update (plan %v)", got, actions(p))
	}
	applyOK(t, connect(t, nil), p, waitOpts)
	if cm, err := clientset(t).CoreV1().ConfigMaps("unrec-env").Get(ctx, "cm-00", metav1.GetOptions{}); err != nil || cm.Data["value"] != "one" {
		t.Fatalf("cm-00: %v %v", cm, err)
	}
}

// TestPlanSeesCRDsInstalledByOthers: a kind whose CRD someone else
// installed after the cluster client looked up the kinds is planned, not
// refused as unknown.
func TestPlanSeesCRDsInstalledByOthers(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, desired(t, "late-crd-env", configMaps("late-crd-env", 1, func(int) string { return "v" }))), waitOpts)
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	crd.SetName("gadgets.late.example.com")
	crd.Object["spec"] = map[string]any{"group": "late.example.com", "scope": "Namespaced",
		"names":    map[string]any{"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
		"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true, "schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}
	dyn := dynamicClient(t)
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the CRD is established", func() error {
		live, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil || !conditionTrue(live, "Established") {
			return fmt.Errorf("not yet: %v", err)
		}
		return nil
	})
	files := configMaps("late-crd-env", 1, func(int) string { return "v" })
	files["kustomization.yaml"] = strings.Replace(files["kustomization.yaml"], "]", ", gadget.yaml]", 1)
	files["gadget.yaml"] = "apiVersion: late.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\nspec:\n  size: 1\n"
	p := plan(t, c, desired(t, "late-crd-env", files))
	if got := actions(p)["Gadget.late.example.com/late-crd-env/g"]; got != ActionCreate {
		t.Fatalf("the Gadget: %q (plan %v)", got, actions(p))
	}
	applyOK(t, c, p, waitOpts)
}
