package reconciler

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
)

// TestDeletionOrder: dependents go first, Namespaces and CRDs last; a
// depends-on on an object not deleted leaves the rest ordered; a cycle
// still deletes Namespaces last.
func TestDeletionOrder(t *testing.T) {
	ns := ref("v1", "Namespace", "", "shop", "")
	cm := ref("v1", "ConfigMap", "shop", "settings", "")
	job := ref("batch/v1", "Job", "shop", "migrate", "")
	api := ref("apps/v1", "Deployment", "shop", "api", "batch/namespaces/shop/Job/migrate")
	web := ref("apps/v1", "Deployment", "shop", "web", "apps/namespaces/shop/StatefulSet/db") // db stays
	loopA := ref("v1", "ConfigMap", "shop", "a", "/namespaces/shop/ConfigMap/b")
	loopB := ref("v1", "ConfigMap", "shop", "b", "/namespaces/shop/ConfigMap/a")
	for name, tc := range map[string]struct {
		objs object.UnstructuredSet
		want [][]string
	}{
		"nothing":           {objs: nil, want: nil},
		"dependents first":  {objs: object.UnstructuredSet{ns, cm, job, api}, want: [][]string{{"Deployment.apps/shop/api"}, {"ConfigMap/shop/settings", "Job.batch/shop/migrate"}, {"Namespace/shop"}}},
		"external depends":  {objs: object.UnstructuredSet{ns, web, cm}, want: [][]string{{"ConfigMap/shop/settings", "Deployment.apps/shop/web"}, {"Namespace/shop"}}},
		"a cycle":           {objs: object.UnstructuredSet{loopA, ns, loopB}, want: [][]string{{"ConfigMap/shop/a", "ConfigMap/shop/b"}, {"Namespace/shop"}}},
		"no namespace here": {objs: object.UnstructuredSet{job, api}, want: [][]string{{"Deployment.apps/shop/api"}, {"Job.batch/shop/migrate"}}},
	} {
		t.Run(name, func(t *testing.T) {
			var got [][]string
			for _, stage := range deletionOrder(tc.objs) {
				var names []string
				for _, id := range stage {
					names = append(names, idString(id))
				}
				got = append(got, names)
			}
			if strings.Join(flat(got), "|") != strings.Join(flat(tc.want), "|") {
				t.Errorf("order %v, want %v", got, tc.want)
			}
		})
	}
}

func flat(stages [][]string) []string {
	var out []string
	for _, s := range stages {
		out = append(out, strings.Join(s, ","))
	}
	return out
}

// deleteLog records the DELETE requests a Cluster sends, in order; before
// runs as each goes out, and fail answers some with 403 Forbidden instead
// of sending them.
type deleteLog struct {
	before func(path string)
	fail   func(path string) bool

	mu    sync.Mutex
	paths []string
	other int // writes that are not DELETEs (inventory updates)
}

func (d *deleteLog) RoundTrip(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		switch r.Method {
		case http.MethodDelete:
			d.mu.Lock()
			d.paths = append(d.paths, r.URL.Path)
			d.mu.Unlock()
			if d.before != nil {
				d.before(r.URL.Path)
			}
			if d.fail != nil && d.fail(r.URL.Path) {
				body := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"deletes forbidden by the test","reason":"Forbidden","code":403}`
				return &http.Response{StatusCode: http.StatusForbidden, Status: "403 Forbidden", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
					Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
			}
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			if !strings.HasSuffix(r.URL.Path, "/selfsubjectaccessreviews") {
				d.mu.Lock()
				d.other++
				d.mu.Unlock()
			}
		}
		return rt.RoundTrip(r)
	})
}

// index is where the first DELETE whose path ends with suffix is in the
// log; -1 when there is none.
func (d *deleteLog) index(suffix string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, p := range d.paths {
		if strings.HasSuffix(p, suffix) {
			return i
		}
	}
	return -1
}

func (d *deleteLog) count() (deletes, others int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.paths), d.other
}

func connectLogged(t *testing.T, d *deleteLog) *Cluster {
	t.Helper()
	kubeconfig := clustertest.Kubeconfig(t)
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.Wrap(d.RoundTrip)
		return c
	}
	c, err := NewCluster(flags, ClusterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := clientset(t).CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

const (
	destroyJob = `apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: "ghcr.io/acme/api:1.0.0"}]
`
	destroyDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  annotations: {config.kubernetes.io/depends-on: batch/Job/migrate}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "ghcr.io/acme/api:1.0.0"}]
`
)

func results(out *DestroyOutcome) map[string]Result {
	got := map[string]Result{}
	for _, r := range out.Objects {
		got[r.ID()] = r.Result
	}
	return got
}

func destroyActions(p *DestroyPlan) []string {
	var out []string
	for _, ch := range p.Changes {
		out = append(out, string(ch.Action)+" "+ch.ID())
	}
	return out
}

// TestDestroy tears an environment down: its Deployment goes (and is gone)
// before the Job it depends on is deleted, its ConfigMap and Job before its
// Namespace, which goes too; an object annotated trueup.dev/prune: disabled
// is kept, another environment's object and one the inventory lists but
// trueup never applied are left alone, and the inventory is deleted last.
// A second destroy finds nothing and writes nothing.
func TestDestroy(t *testing.T) {
	ctx := context.Background()
	const env, shared = "destroy-env", "destroy-shared"
	ensureNamespace(t, shared)
	c := connect(t, nil)
	files := map[string]string{
		"kustomization.yaml": "resources: [namespace.yaml, a.yaml, job.yaml, deployment.yaml, keep.yaml]\n",
		"namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + env + "\n",
		"a.yaml":             cm("a", ""),
		"job.yaml":           destroyJob,
		"deployment.yaml":    destroyDeployment,
		"keep.yaml":          strings.Replace(cm("keep", "  annotations:\n    trueup.dev/prune: disabled\n"), "metadata:\n", "metadata:\n  namespace: "+shared+"\n", 1),
	}
	applyOK(t, c, plan(t, c, desired(t, env, files)), waitOpts)
	theirs := strings.Replace(cm("theirs", ""), "metadata:\n", "metadata:\n  namespace: "+shared+"\n", 1)
	applyOK(t, c, plan(t, c, desired(t, "destroy-other", map[string]string{"kustomization.yaml": "resources: [theirs.yaml]\n", "theirs.yaml": theirs})), waitOpts)

	// Listed in the inventory, never applied (an apply cut off before it).
	cs := clientset(t)
	hand := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "by-hand", Namespace: shared}}
	if _, err := cs.CoreV1().ConfigMaps(shared).Create(ctx, hand, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	inv, err := c.readInventory(ctx, Owner{}.withDefaults(env))
	if err != nil {
		t.Fatal(err)
	}
	records := maps.Clone(inv.records)
	records[object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: shared, Name: "by-hand"}] = record{}
	if err := c.writeInventory(ctx, inv, records, "", ""); err != nil {
		t.Fatal(err)
	}

	// At each DELETE, note whether what must be gone by then is.
	var mu sync.Mutex
	existed := map[string]bool{}
	exists := func(get func() error) bool { return !apierrors.IsNotFound(get()) }
	log := &deleteLog{before: func(path string) {
		var what string
		var there bool
		switch {
		case strings.HasSuffix(path, "/jobs/migrate"):
			what, there = "api at the Job's delete", exists(func() error {
				_, err := cs.AppsV1().Deployments(env).Get(ctx, "api", metav1.GetOptions{})
				return err
			})
		case strings.HasSuffix(path, "/namespaces/"+env):
			what, there = "migrate at the Namespace's delete", exists(func() error {
				_, err := cs.BatchV1().Jobs(env).Get(ctx, "migrate", metav1.GetOptions{})
				return err
			})
		default:
			return
		}
		mu.Lock()
		defer mu.Unlock()
		existed[what] = there
	}}
	d := connectLogged(t, log)
	p, err := d.PlanDestroy(ctx, Owner{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"prune Deployment.apps/destroy-env/api",
		"prune ConfigMap/destroy-env/a", "prune Job.batch/destroy-env/migrate",
		"prune Namespace/destroy-env",
		"keep ConfigMap/destroy-shared/keep",
		"unchanged ConfigMap/destroy-shared/by-hand",
	}
	if got := destroyActions(p); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !p.Found || p.Revision != "0123456789abcdef" || p.Changes[4].Note != "trueup.dev/prune: disabled" ||
		p.Changes[5].Note != "not this environment's: never applied by it" {
		t.Fatalf("plan %+v", p)
	}
	if n, _ := log.count(); n != 0 {
		t.Fatalf("the plan sent %d deletes", n)
	}

	out, err := d.Destroy(ctx, p, DestroyOptions{Wait: true, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Err(); err != nil {
		t.Fatal(err)
	}
	got := results(out)
	if out.Count(ResultPruned) != 4 || got["ConfigMap/destroy-shared/keep"] != ResultKept || got["ConfigMap/destroy-shared/by-hand"] != ResultUnchanged || !out.InventoryDeleted {
		t.Fatalf("outcome %v, inventory deleted %v", got, out.InventoryDeleted)
	}
	mu.Lock()
	if len(existed) != 2 || existed["api at the Job's delete"] || existed["migrate at the Namespace's delete"] {
		t.Errorf("out of order: %v", existed)
	}
	mu.Unlock()
	if i, j := log.index("/deployments/api"), log.index("/jobs/migrate"); i < 0 || j < i {
		t.Errorf("the Deployment's delete (#%d) is not before the Job's (#%d)", i, j)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, env, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Namespace is still there: %v", err)
	}
	for _, name := range []string{"keep", "theirs", "by-hand"} {
		if _, err := cs.CoreV1().ConfigMaps(shared).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("ConfigMap %s/%s: %v", shared, name, err)
		}
	}
	if _, err := cs.CoreV1().ConfigMaps(DefaultInventoryNamespace).Get(ctx, "trueup-"+env, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the inventory is still there: %v", err)
	}
	if _, err := cs.CoreV1().ConfigMaps(DefaultInventoryNamespace).Get(ctx, "trueup-destroy-other", metav1.GetOptions{}); err != nil {
		t.Errorf("the other environment's inventory: %v", err)
	}

	// Again: nothing to destroy, and nothing written.
	deletes, others := log.count()
	p, err = d.PlanDestroy(ctx, Owner{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	out, err = d.Destroy(ctx, p, DestroyOptions{Wait: true})
	if err != nil || p.Found || out.Found || len(out.Objects) != 0 || out.InventoryDeleted {
		t.Fatalf("second destroy: %+v %v", out, err)
	}
	if d2, o2 := log.count(); d2 != deletes || o2 != others {
		t.Errorf("the second destroy wrote %d deletes and %d other writes", d2-deletes, o2-others)
	}
}

// TestDestroyFailureKeepsInventory: a deletion that fails stops the
// destroy after its stage: what depends on the failing object went, what
// it depends on was not touched, and the inventory lists exactly what is
// left, so the next destroy finishes the job.
func TestDestroyFailureKeepsInventory(t *testing.T) {
	ctx := context.Background()
	const env = "destroy-fail-env"
	c := connect(t, nil)
	files := map[string]string{
		"kustomization.yaml": "resources: [namespace.yaml, a.yaml, b.yaml]\n",
		"namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + env + "\n",
		"a.yaml":             cm("a", ""),
		"b.yaml":             cm("b", "  annotations:\n    config.kubernetes.io/depends-on: /ConfigMap/a\n"),
	}
	applyOK(t, c, plan(t, c, desired(t, env, files)), waitOpts)
	log := &deleteLog{fail: func(path string) bool { return strings.HasSuffix(path, "/configmaps/a") }}
	d := connectLogged(t, log)
	p, err := d.PlanDestroy(ctx, Owner{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	out, err := d.Destroy(ctx, p, DestroyOptions{Wait: true, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := results(out)
	if got["ConfigMap/destroy-fail-env/b"] != ResultPruned || got["ConfigMap/destroy-fail-env/a"] != ResultFailed ||
		got["Namespace/destroy-fail-env"] != ResultSkipped || out.InventoryDeleted {
		t.Fatalf("outcome %v, inventory deleted %v", got, out.InventoryDeleted)
	}
	if err := out.Err(); err == nil || !strings.Contains(err.Error(), "ConfigMap/destroy-fail-env/a") || !strings.Contains(err.Error(), "destroy again") {
		t.Errorf("Err() = %v", err)
	}
	if log.index("/namespaces/"+env) >= 0 {
		t.Error("the Namespace's delete was sent after a failure")
	}
	cs := clientset(t)
	if _, err := cs.CoreV1().ConfigMaps(env).Get(ctx, "a", metav1.GetOptions{}); err != nil {
		t.Errorf("a: %v", err)
	}
	if !inventoryLists(t, env, "a") || inventoryLists(t, env, "b") {
		t.Errorf("the inventory after the failure does not list exactly what is left")
	}

	// Again, without the failure.
	p, err = c.PlanDestroy(ctx, Owner{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	if got := destroyActions(p); strings.Join(got, ",") != "prune ConfigMap/destroy-fail-env/a,prune Namespace/destroy-fail-env" {
		t.Fatalf("plan of the retry: %v", got)
	}
	out, err = c.Destroy(ctx, p, DestroyOptions{Wait: true, Timeout: 2 * time.Minute})
	if err != nil || out.Err() != nil || !out.InventoryDeleted || out.Count(ResultPruned) != 2 {
		t.Fatalf("retry: %v %v %+v", err, out.Err(), out)
	}
}

// TestDestroyKeepsSharedNamespace: a Namespace of the environment that
// holds another inventory's objects is kept, since deleting it would
// delete them.
func TestDestroyKeepsSharedNamespace(t *testing.T) {
	ctx := context.Background()
	const env = "destroy-ns-env"
	c := connect(t, nil)
	applyOK(t, c, plan(t, c, desired(t, env, map[string]string{
		"kustomization.yaml": "resources: [namespace.yaml, a.yaml]\n",
		"namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + env + "\n",
		"a.yaml":             cm("a", ""),
	})), waitOpts)
	theirs := strings.Replace(cm("theirs", ""), "metadata:\n", "metadata:\n  namespace: "+env+"\n", 1)
	applyOK(t, c, plan(t, c, desired(t, "destroy-ns-other", map[string]string{"kustomization.yaml": "resources: [theirs.yaml]\n", "theirs.yaml": theirs})), waitOpts)

	p, err := c.PlanDestroy(ctx, Owner{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	if got := destroyActions(p); strings.Join(got, ",") != "prune ConfigMap/destroy-ns-env/a,keep Namespace/destroy-ns-env" ||
		p.Changes[1].Note != "holds objects of another inventory: ConfigMap/destroy-ns-env/theirs" {
		t.Fatalf("plan: %v (%q)", got, p.Changes[len(p.Changes)-1].Note)
	}
	out, err := c.Destroy(ctx, p, DestroyOptions{Wait: true, Timeout: time.Minute})
	if err != nil || out.Err() != nil || !out.InventoryDeleted {
		t.Fatalf("destroy: %v %v", err, out.Err())
	}
	cs := clientset(t)
	if _, err := cs.CoreV1().ConfigMaps(env).Get(ctx, "theirs", metav1.GetOptions{}); err != nil {
		t.Errorf("the other environment's ConfigMap: %v", err)
	}
	if _, err := cs.CoreV1().ConfigMaps(env).Get(ctx, "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a is still there: %v", err)
	}
}

// TestDestroyRefusesAnotherOwner: an inventory that records another owner
// is refused before anything is deleted.
func TestDestroyRefusesAnotherOwner(t *testing.T) {
	ctx := context.Background()
	const env = "destroy-owned-env"
	c := connect(t, nil)
	want := desired(t, env, configMaps(env, 1, func(int) string { return "v" }))
	want.Owner = Owner{Environment: env, Source: "example.com/acme/deploy"}.withDefaults(env)
	applyOK(t, c, plan(t, c, want), waitOpts)

	log := &deleteLog{}
	d := connectLogged(t, log)
	_, err := d.PlanDestroy(ctx, Owner{Environment: env, Source: "example.com/acme/other"})
	var oe *OwnerError
	if !errors.As(err, &oe) || oe.Owner.Source != "example.com/acme/deploy" {
		t.Fatalf("got %v, want an OwnerError", err)
	}
	if n, o := log.count(); n+o != 0 {
		t.Errorf("the refused destroy wrote %d requests", n+o)
	}
	if _, err := clientset(t).CoreV1().ConfigMaps(env).Get(ctx, "cm-00", metav1.GetOptions{}); err != nil {
		t.Errorf("cm-00: %v", err)
	}
}
