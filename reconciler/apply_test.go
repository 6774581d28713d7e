package reconciler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/render"
	"github.com/trueup-dev/trueup/source"
)

func TestMain(m *testing.M) {
	code := m.Run()
	clustertest.Stop()
	os.Exit(code)
}

// writes counts the requests a Cluster makes: writes (requests that can
// change the cluster), dry-runs (how a plan asks what would change), and the
// reads beyond discovery.
type writes struct {
	n       atomic.Int64 // writes
	dryRuns atomic.Int64
	reads   atomic.Int64 // GETs and LISTs, not discovery, not watches
	// only, when set, limits counting to the requests it accepts.
	only func(*http.Request) bool
	// cut, when set, fails every request, as if the process were gone.
	cut atomic.Bool
	// cutAfter, when above 0, sets cut once that many writes went through.
	cutAfter atomic.Int64
}

func (w *writes) RoundTrip(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if w.cut.Load() {
			return nil, errors.New("connection cut by the test")
		}
		switch {
		case w.only != nil && !w.only(r):
		case r.Method == http.MethodGet, r.Method == http.MethodHead, r.Method == http.MethodOptions:
			if !isDiscovery(r.URL.Path) && r.URL.Query().Get("watch") != "true" {
				w.reads.Add(1)
			}
		case r.URL.Query().Get("dryRun") == "All":
			w.dryRuns.Add(1)
		case strings.HasSuffix(r.URL.Path, "/selfsubjectaccessreviews"):
		default:
			if n := w.n.Add(1); n == w.cutAfter.Load() {
				w.cut.Store(true)
			}
		}
		return rt.RoundTrip(r)
	})
}

// reset zeroes the counts.
func (w *writes) reset() {
	w.n.Store(0)
	w.dryRuns.Store(0)
	w.reads.Store(0)
}

// isDiscovery reports the requests that find out which kinds the server
// has (/api, /apis, /apis/GROUP/VERSION, /openapi/...), which kubectl's disk
// cache usually answers.
func isDiscovery(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case parts[0] == "openapi", parts[0] == "version":
		return true
	case parts[0] == "api":
		return len(parts) <= 2
	case parts[0] == "apis":
		return len(parts) <= 3
	}
	return false
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func connect(t testing.TB, w *writes) *Cluster {
	t.Helper()
	return connectWith(t, w, ClusterOptions{})
}

func connectWith(t testing.TB, w *writes, opts ClusterOptions) *Cluster {
	t.Helper()
	kubeconfig := clustertest.Kubeconfig(t)
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	if w != nil {
		flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
			c.Wrap(w.RoundTrip)
			return c
		}
	}
	c, err := NewCluster(flags, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func clientset(t *testing.T) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", clustertest.Kubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// desired renders files (an overlay at the root) as environment env.
func desired(t *testing.T, env string, files map[string]string) *Desired {
	t.Helper()
	repo := fstest.MapFS{}
	for name, content := range files {
		repo[name] = &fstest.MapFile{Data: []byte(content)}
	}
	objs, err := render.Build(context.Background(), repo, render.Options{Path: ".", Namespace: env})
	if err != nil {
		t.Fatal(err)
	}
	return &Desired{Environment: env, Revision: source.Revision{Commit: "0123456789abcdef"}, Objects: objs}
}

func plan(t testing.TB, c *Cluster, d *Desired) *Plan {
	t.Helper()
	p, err := c.Plan(context.Background(), d, PlanOptions{Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func actions(p *Plan) map[string]Action {
	out := map[string]Action{}
	for _, c := range p.Changes {
		out[c.ID()] = c.Action
	}
	return out
}

func applyOK(t *testing.T, c *Cluster, p *Plan, opts ApplyOptions) *Outcome {
	t.Helper()
	out, err := c.Apply(context.Background(), p, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Err(); err != nil {
		for _, o := range out.Objects {
			t.Logf("%s %s %s", o.ID(), o.Result, o.Error)
		}
		t.Fatal(err)
	}
	return out
}

var waitOpts = ApplyOptions{Prune: true, Wait: true, Timeout: 2 * time.Minute, MaxPrunePercent: 50}

// TestApplyExamples applies the examples' development overlay onto the full
// control plane: everything is created and owned by trueup, the migration
// Job completes before the API Deployment exists, and a second run changes
// nothing and writes nothing.
func TestApplyExamples(t *testing.T) {
	ctx := context.Background()
	d, err := examplesRenderer(t).Render(ctx, "development")
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, nil)
	p := plan(t, c, d)
	if n := p.Count(ActionCreate); n != len(d.Objects) || p.HasChanges() != true {
		t.Fatalf("first plan: %d creates of %d objects: %v", n, len(d.Objects), actions(p))
	}
	// At the moment the API Deployment appears, its migration Job must
	// already be complete: watch for it while the apply runs.
	cs := clientset(t)
	watch, err := cs.AppsV1().Deployments("shop-development").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=api"})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	jobDoneFirst := make(chan error, 1)
	go func() {
		for range watch.ResultChan() {
			job, err := cs.BatchV1().Jobs("shop-development").Get(ctx, "db-migrate", metav1.GetOptions{})
			switch {
			case err != nil:
				jobDoneFirst <- fmt.Errorf("the Deployment exists, the Job does not: %v", err)
			case !jobComplete(job):
				jobDoneFirst <- fmt.Errorf("the Deployment exists before the Job completed: %+v", job.Status)
			default:
				jobDoneFirst <- nil
			}
			return
		}
	}()
	out := applyOK(t, c, p, waitOpts)
	select {
	case err := <-jobDoneFirst:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(time.Minute):
		t.Error("no watch event for the Deployment")
	}
	if n := out.Count(ResultCreated); n != len(d.Objects) {
		t.Fatalf("created %d of %d", n, len(d.Objects))
	}

	dep, err := cs.AppsV1().Deployments("shop-development").Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	managers := map[string]bool{}
	for _, mf := range dep.ManagedFields {
		managers[mf.Manager+"/"+string(mf.Operation)] = true
	}
	if !managers[FieldManager+"/Apply"] {
		t.Errorf("Deployment fields are not applied by %q: %v", FieldManager, managers)
	}
	job, err := cs.BatchV1().Jobs("shop-development").Get(ctx, "db-migrate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if job.Status.CompletionTime == nil {
		t.Fatal("the migration Job has not completed")
	}

	var w writes
	again := connect(t, &w)
	p2 := plan(t, again, d)
	if p2.HasChanges() {
		t.Fatalf("second plan has changes: %v", actions(p2))
	}
	out2 := applyOK(t, again, p2, waitOpts)
	if n := out2.Count(ResultUnchanged); n != len(d.Objects) {
		t.Errorf("second apply: %d of %d unchanged", n, len(d.Objects))
	}
	if w.n.Load() != 0 || w.dryRuns.Load() != 0 || w.reads.Load() > int64(groups(d))+1 {
		t.Errorf("an unchanged plan and apply made %d writes, %d dry-runs and %d reads; want 0, 0 and at most %d",
			w.n.Load(), w.dryRuns.Load(), w.reads.Load(), groups(d)+1)
	}
}

const (
	kustomization = "resources: [namespace.yaml, a.yaml, b.yaml, c.yaml, d.yaml, keep.yaml]\n"
	namespaceYAML = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prune-env\n  annotations:\n    trueup.dev/prune: disabled\n"
)

func cm(name, extra string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  labels:\n    app: shop\n" + extra + "data:\n  k: v\n"
}

// TestPruneSafety: pruning touches only this environment's inventory, keeps
// objects that opt out, and stops when it would delete too much.
func TestPruneSafety(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	files := map[string]string{
		"kustomization.yaml": kustomization,
		"namespace.yaml":     namespaceYAML,
		"a.yaml":             cm("a", ""), "b.yaml": cm("b", ""), "c.yaml": cm("c", ""), "d.yaml": cm("d", ""),
		"keep.yaml": cm("keep", "  annotations:\n    trueup.dev/prune: disabled\n"),
	}
	applyOK(t, c, plan(t, c, desired(t, "prune-env", files)), waitOpts)
	cs := clientset(t)
	// Made by hand, with the same labels: never trueup's to delete.
	hand := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "by-hand", Namespace: "prune-env", Labels: map[string]string{"app": "shop"}}}
	if _, err := cs.CoreV1().ConfigMaps("prune-env").Create(ctx, hand, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// b leaves git: exactly one prune.
	files["kustomization.yaml"] = strings.Replace(kustomization, " b.yaml,", "", 1)
	p := plan(t, c, desired(t, "prune-env", files))
	if got := actions(p); got["ConfigMap/prune-env/b"] != ActionPrune || p.Count(ActionPrune) != 1 || p.Count(ActionUnchanged) != 5 {
		t.Fatalf("plan after removing b: %v", got)
	}
	applyOK(t, c, p, waitOpts)
	exists := func(name string) bool {
		_, err := cs.CoreV1().ConfigMaps("prune-env").Get(ctx, name, metav1.GetOptions{})
		return err == nil
	}
	if exists("b") || !exists("by-hand") {
		t.Fatalf("after prune: b exists %v, by-hand exists %v", exists("b"), exists("by-hand"))
	}

	// An emptied overlay would prune a, c and d (keep and the namespace opt
	// out): 3 of an inventory of 6 is over 50%.
	empty := desired(t, "prune-env", map[string]string{"kustomization.yaml": "resources: []\n"})
	p = plan(t, c, empty)
	if p.Count(ActionPrune) != 3 {
		t.Fatalf("emptied overlay plans %d prunes: %v", p.Count(ActionPrune), actions(p))
	}
	var w writes
	guarded := connect(t, &w)
	if _, err := guarded.Apply(ctx, plan(t, guarded, empty), waitOpts); err == nil || !strings.Contains(err.Error(), "maxPrunePercent") {
		t.Fatalf("mass prune: got %v", err)
	}
	if w.n.Load() != 0 || !exists("a") {
		t.Fatalf("the refused mass prune wrote %d requests", w.n.Load())
	}
	opted := waitOpts
	opted.AllowMassPrune = true
	out := applyOK(t, c, p, opted)
	if out.Count(ResultPruned) != 3 {
		t.Errorf("pruned %d, want 3", out.Count(ResultPruned))
	}
	for name, want := range map[string]bool{"a": false, "c": false, "d": false, "keep": true, "by-hand": true} {
		if exists(name) != want {
			t.Errorf("ConfigMap %s exists=%v, want %v", name, !want, want)
		}
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "prune-env", metav1.GetOptions{}); err != nil {
		t.Errorf("the namespace was pruned despite trueup.dev/prune: disabled: %v", err)
	}
}

// TestConflicts: a field another manager owns is reported with the manager;
// ForceConflicts takes it over.
func TestConflicts(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	files := map[string]string{
		"kustomization.yaml": "resources: [ns.yaml, cm.yaml]\n",
		"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: conflict-env\n",
		"cm.yaml":            cm("shared", ""),
	}
	applyOK(t, c, plan(t, c, desired(t, "conflict-env", files)), waitOpts)
	cs := clientset(t)
	patch := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"shared","namespace":"conflict-env"},"data":{"k":"by-ops"}}`)
	force := true
	if _, err := cs.CoreV1().ConfigMaps("conflict-env").Patch(ctx, "shared", types.ApplyPatchType, patch,
		metav1.PatchOptions{FieldManager: "ops-team", Force: &force}); err != nil {
		t.Fatal(err)
	}
	files["cm.yaml"] = strings.Replace(cm("shared", ""), "k: v", "k: from-git", 1)
	d := desired(t, "conflict-env", files)
	_, err := c.Plan(ctx, d, PlanOptions{Prune: true})
	if err == nil || !strings.Contains(err.Error(), "ops-team") || !strings.Contains(err.Error(), ".data.k") {
		t.Fatalf("conflict: got %v, want one naming the manager and field", err)
	}
	p, err := c.Plan(ctx, d, PlanOptions{Prune: true, ForceConflicts: true})
	if err != nil {
		t.Fatal(err)
	}
	forced := waitOpts
	forced.ForceConflicts = true
	applyOK(t, c, p, forced)
	got, err := cs.CoreV1().ConfigMaps("conflict-env").Get(ctx, "shared", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "from-git" {
		t.Fatalf("after forced apply: %v %v", got.Data, err)
	}
}

// TestApplyCRDWithItsObjects: a CRD and objects of its kind in one apply;
// the diff cannot dry-run the objects yet and plans them as creates, and
// cli-utils applies the CRD first.
func TestApplyCRDWithItsObjects(t *testing.T) {
	c := connect(t, nil)
	d := desired(t, "crd-env", map[string]string{
		"kustomization.yaml": "resources: [ns.yaml, crd.yaml, widget.yaml]\n",
		"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: crd-env\n",
		"crd.yaml": `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`,
		"widget.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gear\nspec:\n  size: 3\n",
	})
	p := plan(t, c, d)
	if got := actions(p); got["Widget.example.com/crd-env/gear"] != ActionCreate || p.Count(ActionCreate) != 3 {
		t.Fatalf("plan: %v", got)
	}
	out := applyOK(t, c, p, waitOpts)
	if out.Count(ResultCreated) != 3 {
		t.Fatalf("created %d of 3", out.Count(ResultCreated))
	}
	// A fresh connection discovers the new kind; nothing is left to change.
	if p := plan(t, connect(t, nil), d); p.HasChanges() {
		t.Fatalf("after apply: %v", actions(p))
	}
}

// TestApplyReportsUnhealthy: an object that never becomes healthy fails the
// apply once the environment's timeout passes.
func TestApplyReportsUnhealthy(t *testing.T) {
	c := connect(t, nil)
	d := desired(t, "unhealthy-env", map[string]string{
		"kustomization.yaml": "resources: [ns.yaml, web.yaml]\n",
		"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: unhealthy-env\n",
		"web.yaml":           unschedulable, // no Pod is ever scheduled
	})
	opts := waitOpts
	opts.Timeout = 3 * time.Second
	out, err := c.Apply(context.Background(), plan(t, c, d), opts)
	if err != nil {
		t.Fatal(err)
	}
	if out.Err() == nil {
		t.Fatal("apply succeeded though the Deployment cannot become Available")
	}
	for _, o := range out.Objects {
		want := ResultCreated
		if o.Kind == "Deployment" {
			want = ResultFailed
			// The reason is the scheduler's, not just kstatus' summary.
			if !strings.Contains(o.Error, "Unschedulable") || !strings.Contains(o.Error, "didn't match Pod's node affinity/selector") {
				t.Errorf("the failure does not say why: %s", o.Error)
			}
		}
		if o.Result != want {
			t.Errorf("%s: %s (%s), want %s", o.ID(), o.Result, o.Error, want)
		}
	}
	if err := out.Err(); err == nil || !strings.Contains(err.Error(), "Unschedulable") {
		t.Errorf("the apply's error does not carry the reason: %v", err)
	}
	// Run again, with nothing to change: still not healthy, still failing.
	again, err := c.Apply(context.Background(), plan(t, c, d), opts)
	if err != nil || again.Err() == nil || again.Count(ResultFailed) != 1 {
		t.Fatalf("unchanged but unhealthy: %v, %d failed", err, again.Count(ResultFailed))
	}
}

// TestForceReplacesImmutableJob: a Job whose pod template changed cannot be
// updated; with trueup.dev/force: enabled it is deleted and recreated,
// without it the diff says why it cannot proceed.
func TestForceReplacesImmutableJob(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	job := func(tag, annotations string) map[string]string {
		return map[string]string{
			"kustomization.yaml": "resources: [ns.yaml, job.yaml]\n",
			"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: force-env\n",
			"job.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n" + annotations +
				"spec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: \"ghcr.io/acme/api:" + tag + "\"}]\n",
		}
	}
	forced := "  annotations:\n    trueup.dev/force: enabled\n"
	applyOK(t, c, plan(t, c, desired(t, "force-env", job("1.0.0", forced))), waitOpts)
	cs := clientset(t)
	before, err := cs.BatchV1().Jobs("force-env").Get(ctx, "migrate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := c.Plan(ctx, desired(t, "force-env", job("1.1.0", "")), PlanOptions{Prune: true}); err == nil ||
		!strings.Contains(err.Error(), "field is immutable") {
		t.Fatalf("unforced immutable change: got %v", err)
	}

	p := plan(t, c, desired(t, "force-env", job("1.1.0", forced)))
	if got := actions(p); got["Job.batch/force-env/migrate"] != ActionReplace {
		t.Fatalf("plan: %v", got)
	}
	out := applyOK(t, c, p, waitOpts)
	if out.Count(ResultReplaced) != 1 {
		t.Fatalf("replaced %d, want 1", out.Count(ResultReplaced))
	}
	after, err := cs.BatchV1().Jobs("force-env").Get(ctx, "migrate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID == before.UID || after.Spec.Template.Spec.Containers[0].Image != "ghcr.io/acme/api:1.1.0" || after.Status.CompletionTime == nil {
		t.Fatalf("after replace: uid changed %v, image %s, completed %v", after.UID != before.UID,
			after.Spec.Template.Spec.Containers[0].Image, after.Status.CompletionTime != nil)
	}
}

func jobComplete(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func dynamicClient(t *testing.T) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", clustertest.Kubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return dynamic.NewForConfigOrDie(cfg)
}
