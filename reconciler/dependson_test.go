package reconciler

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/cli-utils/pkg/object"
	"sigs.k8s.io/cli-utils/pkg/object/dependson"

	"github.com/trueup-dev/trueup/render"
	"github.com/trueup-dev/trueup/source"
)

// ref is an object of namespace (empty: cluster-scoped) depending on deps.
func ref(apiVersion, kind, namespace, name, deps string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{}
	o.SetAPIVersion(apiVersion)
	o.SetKind(kind)
	o.SetNamespace(namespace)
	o.SetName(name)
	if deps != "" {
		o.SetAnnotations(map[string]string{dependson.Annotation: deps, "other": "kept"})
	}
	return o
}

func TestExplicitDependsOn(t *testing.T) {
	// Every case renders these, and the API Deployment of namespace a
	// depending on deps.
	rendered := func() object.UnstructuredSet {
		return object.UnstructuredSet{
			ref("v1", "Namespace", "", "a", ""),
			ref("v1", "Namespace", "", "b", ""),
			ref("batch/v1", "Job", "a", "migrate", ""),
			ref("batch/v1", "Job", "b", "migrate", ""),
			ref("rbac.authorization.k8s.io/v1", "ClusterRole", "", "reader", ""),
			ref("v1", "ConfigMap", "a", "conf", ""),
		}
	}
	for name, tc := range map[string]struct {
		deps string
		want string // the annotation after; "" for unchanged
		err  string // what the error must say, besides the object and the annotation
	}{
		"relative":          {deps: "batch/Job/migrate", want: "batch/namespaces/a/Job/migrate"},
		"core relative":     {deps: "/ConfigMap/conf", want: "/namespaces/a/ConfigMap/conf"},
		"explicit":          {deps: "batch/namespaces/b/Job/migrate"},
		"explicit spaced":   {deps: " batch/namespaces/a/Job/migrate , /Namespace/a"},
		"cluster-scoped":    {deps: "rbac.authorization.k8s.io/ClusterRole/reader,/Namespace/a"},
		"mixed":             {deps: "/Namespace/a, batch/Job/migrate,batch/namespaces/b/Job/migrate", want: "/Namespace/a,batch/namespaces/a/Job/migrate,batch/namespaces/b/Job/migrate"},
		"relative missing":  {deps: "batch/Job/migrate,batch/Job/seed", err: `batch/Job/seed: the render has no Job.batch/a/seed`},
		"unknown kind":      {deps: "example.com/Widget/w", err: `example.com/Widget/w: the render has no Widget.example.com/a/w (nor a cluster-scoped Widget.example.com/w)`},
		"cluster missing":   {deps: "rbac.authorization.k8s.io/ClusterRole/writer", err: "the render has no ClusterRole.rbac.authorization.k8s.io/writer;"},
		"explicit missing":  {deps: "batch/namespaces/c/Job/migrate", err: "the render has no Job.batch/c/migrate;"},
		"malformed":         {deps: "batch/Job", err: `expected 3 or 5 fields, found 2: "batch/Job"`},
		"trailing comma":    {deps: "batch/Job/migrate,", err: "expected 3 or 5 fields, found 1"},
		"not namespaces":    {deps: "batch/ns/a/Job/migrate", err: `missing "namespaces" field`},
		"empty in the list": {deps: "batch/Job/migrate,,/Namespace/a", err: "index: 1"},
	} {
		t.Run(name, func(t *testing.T) {
			objs := rendered()
			api := ref("apps/v1", "Deployment", "a", "api", tc.deps)
			objs = append(objs, api)
			got, err := explicitDependsOn(objs)
			if tc.err != "" {
				if err == nil {
					t.Fatalf("no error; annotation %q", api.GetAnnotations()[dependson.Annotation])
				}
				for _, s := range []string{"Deployment.apps/a/api: annotation " + dependson.Annotation + ": ", tc.err} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a := api.GetAnnotations()
			if a["other"] != "kept" {
				t.Errorf("other annotations: %v", a)
			}
			if tc.want == "" {
				if len(got) != 0 || a[dependson.Annotation] != tc.deps {
					t.Errorf("rewrote %d objects, annotation %q; want it as written", len(got), a[dependson.Annotation])
				}
				return
			}
			if len(got) != 1 || got[0] != api || a[dependson.Annotation] != tc.want {
				t.Errorf("rewrote %d objects, annotation %q; want %q", len(got), a[dependson.Annotation], tc.want)
			}
		})
	}
}

// TestExplicitDependsOnPerNamespace: the same relative reference, as a
// base gives every overlay, resolves in each object's own namespace, and
// the objects sort by it; a cluster-scoped object cannot be relative.
func TestExplicitDependsOnPerNamespace(t *testing.T) {
	objs := object.UnstructuredSet{
		ref("apps/v1", "Deployment", "a", "api", "batch/Job/migrate"),
		ref("apps/v1", "Deployment", "b", "api", "batch/Job/migrate"),
		ref("batch/v1", "Job", "a", "migrate", ""),
		ref("batch/v1", "Job", "b", "migrate", ""),
	}
	got, err := explicitDependsOn(objs)
	if err != nil || len(got) != 2 {
		t.Fatalf("rewrote %d, %v", len(got), err)
	}
	for _, o := range objs[:2] {
		if want := "batch/namespaces/" + o.GetNamespace() + "/Job/migrate"; o.GetAnnotations()[dependson.Annotation] != want {
			t.Errorf("%s: %q, want %q", o.GetNamespace(), o.GetAnnotations()[dependson.Annotation], want)
		}
	}
	stages, err := sortObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 2 || stages[0][0].GetKind() != "Job" || stages[0][1].GetKind() != "Job" {
		t.Errorf("stages: %v", stageNames(stages))
	}

	cluster := ref("rbac.authorization.k8s.io/v1", "ClusterRole", "", "reader", "batch/Job/migrate")
	_, err = explicitDependsOn(append(objs, cluster))
	if err == nil || !strings.Contains(err.Error(), "ClusterRole.rbac.authorization.k8s.io/reader: annotation "+dependson.Annotation+
		": batch/Job/migrate: the render has no Job.batch/migrate;") {
		t.Errorf("a cluster-scoped object's 3-part reference to a namespaced kind: %v", err)
	}

	// Each object that fails is named.
	objs = object.UnstructuredSet{
		ref("apps/v1", "Deployment", "a", "api", "batch/Job/migrate"),
		ref("apps/v1", "Deployment", "b", "api", "batch/Job/migrate"),
	}
	_, err = explicitDependsOn(objs)
	if err == nil || !strings.Contains(err.Error(), "2 objects would fail") || !strings.Contains(err.Error(), "Deployment.apps/b/api") {
		t.Errorf("two failures: %v", err)
	}
}

// TestResolveDependsOnFingerprints: the inventory records the manifest
// applied, so a rewritten object is fingerprinted again.
func TestResolveDependsOnFingerprints(t *testing.T) {
	api := ref("apps/v1", "Deployment", "a", "api", "batch/Job/migrate")
	job := ref("batch/v1", "Job", "a", "migrate", "")
	p := &Plan{fingerprints: map[object.ObjMetadata]string{}}
	for _, o := range []*unstructured.Unstructured{api, job} {
		p.fingerprints[object.UnstructuredToObjMetadata(o)] = fingerprint(o.Object)
	}
	before := fingerprint(api.Object)
	if err := p.resolveDependsOn(object.UnstructuredSet{api, job}); err != nil {
		t.Fatal(err)
	}
	id := object.UnstructuredToObjMetadata(api)
	if got := p.fingerprints[id]; got == before || got != fingerprint(api.Object) {
		t.Errorf("fingerprint %s, before %s, of the rewritten object %s", got, before, fingerprint(api.Object))
	}
}

func stageNames(stages []object.UnstructuredSet) [][]string {
	var out [][]string
	for _, s := range stages {
		var names []string
		for _, o := range s {
			names = append(names, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
		}
		out = append(out, names)
	}
	return out
}

// dependsOnRepo is a base with a migration Job and a Deployment that waits
// for it by a namespace-relative reference, and an overlay per namespace
// that sets only its namespace.
func dependsOnRepo(namespaces ...string) fs.FS {
	repo := fstest.MapFS{
		"base/kustomization.yaml": {Data: []byte("resources: [job.yaml, deployment.yaml]\n")},
		"base/job.yaml": {Data: []byte(`apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: "ghcr.io/acme/api:1.0.0"}]
`)},
		"base/deployment.yaml": {Data: []byte(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  annotations:
    config.kubernetes.io/depends-on: batch/Job/migrate
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers: [{name: api, image: "ghcr.io/acme/api:1.0.0"}]
`)},
	}
	for _, ns := range namespaces {
		repo["overlays/"+ns+"/kustomization.yaml"] = &fstest.MapFile{Data: []byte("namespace: " + ns + "\nresources: [namespace.yaml, ../../base]\n")}
		repo["overlays/"+ns+"/namespace.yaml"] = &fstest.MapFile{Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n")}
	}
	return repo
}

// TestDependsOnAcrossOverlays: one base's namespace-relative depends-on
// orders the Job before the Deployment in two overlays with different
// namespaces: the Job is complete at the moment each Deployment appears,
// each live Deployment carries the explicit reference to its own
// namespace's Job, and a second plan finds nothing to do.
func TestDependsOnAcrossOverlays(t *testing.T) {
	ctx := context.Background()
	namespaces := []string{"dependson-a", "dependson-b"}
	repo := dependsOnRepo(namespaces...)
	c := connect(t, nil)
	cs := clientset(t)
	for _, ns := range namespaces {
		// The environment sets no namespace: kustomize's does.
		objs, err := render.Build(ctx, repo, render.Options{Path: "overlays/" + ns})
		if err != nil {
			t.Fatal(err)
		}
		d := &Desired{Environment: ns, Revision: source.Revision{Commit: "0123456789abcdef"}, Objects: objs}
		p := plan(t, c, d)
		job, api := stageOf(p, "Job.batch/"+ns+"/migrate"), stageOf(p, "Deployment.apps/"+ns+"/api")
		if job < 0 || api <= job {
			t.Fatalf("%s: the Job is in stage %d, the Deployment in %d: %v", ns, job, api, p.stages)
		}
		order := jobCompleteWhenDeploymentAppears(ctx, t, cs, ns)
		applyOK(t, c, p, waitOpts)
		select {
		case err := <-order:
			if err != nil {
				t.Fatalf("%s: %v", ns, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s: no watch event for the Deployment", ns)
		}
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := dep.Annotations[dependson.Annotation], "batch/namespaces/"+ns+"/Job/migrate"; got != want {
			t.Errorf("%s: live depends-on %q, want %q", ns, got, want)
		}
		for _, o := range objs {
			if o.GetKind() == "Deployment" && o.GetAnnotations()[dependson.Annotation] != "batch/Job/migrate" {
				t.Errorf("%s: the plan rewrote the render's own object: %v", ns, o.GetAnnotations())
			}
		}
		if again := plan(t, c, d); again.HasChanges() {
			t.Errorf("%s: second plan has changes: %v", ns, actions(again))
		}
	}

	// A reference to nothing in the render fails the plan, as the CLI
	// prints it.
	objs, err := render.Build(ctx, repo, render.Options{Path: "overlays/dependson-a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			o.SetAnnotations(map[string]string{dependson.Annotation: "batch/Job/migrat"})
		}
	}
	_, err = c.Plan(ctx, &Desired{Environment: "dependson-a", Objects: objs}, PlanOptions{Prune: true})
	want := "plan dependson-a: Deployment.apps/dependson-a/api: annotation config.kubernetes.io/depends-on: batch/Job/migrat: " +
		"the render has no Job.batch/dependson-a/migrat; an object can only depend on objects of its own environment"
	if err == nil || err.Error() != want {
		t.Errorf("a reference to no object:\n got %v\nwant %s", err, want)
	}
}

// stageOf is the index of the plan's stage that applies the object; -1 if
// none does.
func stageOf(p *Plan, id string) int {
	for i, s := range p.stages {
		for _, o := range s {
			if idString(o) == id {
				return i
			}
		}
	}
	return -1
}

// jobCompleteWhenDeploymentAppears watches for the Deployment api of ns and
// reports, at its first event, whether the Job migrate had completed.
func jobCompleteWhenDeploymentAppears(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) <-chan error {
	t.Helper()
	w, err := cs.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=api"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	done := make(chan error, 1)
	go func() {
		for range w.ResultChan() {
			job, err := cs.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
			switch {
			case err != nil:
				done <- fmt.Errorf("the Deployment exists, the Job does not: %w", err)
			case !jobComplete(job):
				done <- fmt.Errorf("the Deployment exists before the Job completed: %+v", job.Status)
			default:
				done <- nil
			}
			return
		}
	}()
	return done
}
