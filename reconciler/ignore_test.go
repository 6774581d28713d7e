package reconciler

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/object"
	"sigs.k8s.io/yaml"

	"github.com/trueup-dev/trueup/config"
)

func TestIgnoreTargets(t *testing.T) {
	deploy := object.ObjMetadata{GroupKind: schema.GroupKind{Group: "apps", Kind: "Deployment"}, Namespace: "shop", Name: "api"}
	cm := object.ObjMetadata{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Namespace: "shop", Name: "api"}
	for _, c := range []struct {
		target     config.IgnoreTarget
		deploy, cm bool
	}{
		{config.IgnoreTarget{}, true, true},
		{config.IgnoreTarget{Kind: "Deployment", Name: "api"}, true, false},
		{config.IgnoreTarget{Group: "apps"}, true, false},
		{config.IgnoreTarget{Group: "core", Kind: "ConfigMap"}, false, true},
		{config.IgnoreTarget{Namespace: "other"}, false, false},
		{config.IgnoreTarget{Kind: "Deployment", Name: "web"}, false, false},
	} {
		if got := ignoreTargets(c.target, deploy); got != c.deploy {
			t.Errorf("%+v targets the Deployment: %v, want %v", c.target, got, c.deploy)
		}
		if got := ignoreTargets(c.target, cm); got != c.cm {
			t.Errorf("%+v targets the ConfigMap: %v, want %v", c.target, got, c.cm)
		}
	}
}

// TestLeaveIgnored decides each ignored path of a Deployment: left out
// unless trueup alone would remove it, and never touched on a new object.
func TestLeaveIgnored(t *testing.T) {
	git := manifest(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop, annotations: {a: git}}
spec:
  replicas: 3
  template:
    spec:
      containers:
        - {name: api, image: "api:2", env: [{name: A, value: git}]}
        - {name: sidecar, image: "proxy:1"}
`)
	live := manifest(t, `apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
  annotations: {a: live}
  managedFields:
    - manager: trueup
      operation: Apply
      fieldsType: FieldsV1
      fieldsV1:
        f:metadata: {f:annotations: {f:a: {}}}
        f:spec:
          f:template:
            f:spec:
              f:containers:
                'k:{"name":"api"}': {.: {}, f:env: {'k:{"name":"A"}': {.: {}, f:value: {}}}}
    - manager: kube-controller-manager
      operation: Update
      subresource: scale
      fieldsType: FieldsV1
      fieldsV1: {f:spec: {f:replicas: {}}}
spec:
  replicas: 7
  template:
    spec:
      containers:
        - {name: api, image: "api:1", env: [{name: A, value: live}]}
        - {name: sidecar, image: "proxy:0"}
`)
	paths := func(ptrs ...string) [][]string {
		var out [][]string
		for _, p := range ptrs {
			tokens, err := config.ParsePointer(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, tokens)
		}
		return out
	}
	all := paths("/spec/replicas", "/metadata/annotations/a", "/spec/template/spec/containers/0/env/0/value",
		"/spec/template/spec/containers/1/image", "/spec/minReadySeconds")

	created := git.DeepCopy()
	if leaveIgnored(created, nil, all) || !reflect.DeepEqual(created, git) {
		t.Errorf("a new object lost its ignored fields: %v", created.Object)
	}

	got := git.DeepCopy()
	if !leaveIgnored(got, live, all) {
		t.Fatal("nothing left out")
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(got.Object, "spec", "replicas"); ok {
		t.Error("spec.replicas, owned by the scale subresource's writer, is still applied")
	}
	if a := got.GetAnnotations()["a"]; a != "live" {
		t.Errorf("annotation a, owned by trueup alone, is %q: want the live value kept", a)
	}
	containers, _, _ := unstructured.NestedSlice(got.Object, "spec", "template", "spec", "containers")
	api, sidecar := containers[0].(map[string]any), containers[1].(map[string]any)
	if v := api["env"].([]any)[0].(map[string]any)["value"]; v != "live" {
		t.Errorf("env A, owned by trueup within a keyed list, is %v: want the live value kept", v)
	}
	if api["image"] != "api:2" {
		t.Errorf("an image no rule names is %v, want git's", api["image"])
	}
	if _, ok := sidecar["image"]; ok || sidecar["name"] != "sidecar" {
		t.Errorf("the sidecar's image, owned by no one trueup knows, is still applied: %v", sidecar)
	}
}

// TestIgnoredReplicas: a kubectl scale of a Deployment whose spec.replicas
// is ignored is neither drift nor a conflict, and an apply does not revert
// it; an edit elsewhere in the same object still is drift, and is healed.
func TestIgnoredReplicas(t *testing.T) {
	ctx := context.Background()
	c := connect(t, nil)
	cs := clientset(t)
	const ns = "ignore-env"
	files := map[string]string{
		"kustomization.yaml": "resources: [ns.yaml, deploy.yaml]\n",
		"ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 3
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "registry.example/api:1"}]
`,
	}
	noWait := ApplyOptions{Prune: true, MaxPrunePercent: 50}
	applyOK(t, c, plan(t, c, desired(t, ns, files)), noWait)

	// The rule arrives after trueup applied replicas: it keeps them.
	d := desired(t, ns, files)
	d.Ignore = []config.IgnoreRule{{Target: config.IgnoreTarget{Kind: "Deployment", Name: "api"}, Paths: []string{"/spec/replicas"}}}
	if p := plan(t, c, d); p.HasChanges() {
		t.Fatalf("adding the rule changes %v", actions(p))
	}
	applyOK(t, c, plan(t, c, d), noWait)
	replicas := func() int32 {
		t.Helper()
		got, err := cs.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *got.Spec.Replicas
	}
	if n := replicas(); n != 3 {
		t.Fatalf("replicas %d after the rule, want 3 kept", n)
	}

	// kubectl scale deployment api --replicas=5
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 5}}
	if _, err := cs.AppsV1().Deployments(ns).UpdateScale(ctx, "api", scale, metav1.UpdateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
	// git moves on too: its replicas are ignored all the same.
	files["deploy.yaml"] = strings.Replace(files["deploy.yaml"], "replicas: 3", "replicas: 4", 1)
	d = desired(t, ns, files)
	d.Ignore = []config.IgnoreRule{{Target: config.IgnoreTarget{Kind: "Deployment", Name: "api"}, Paths: []string{"/spec/replicas"}}}
	p, err := c.Plan(ctx, d, PlanOptions{Prune: true, Diff: true}) // as trueup diff and apply: no force
	if err != nil {
		t.Fatalf("a scale of an ignored field is a conflict: %v", err)
	}
	if p.HasChanges() {
		t.Fatalf("a scale of an ignored field is drift: %v\n%s", actions(p), p.Changes[1].Diff)
	}
	p, err = c.Plan(ctx, d, PlanOptions{Prune: true, ForceConflicts: true}) // as the daemon
	if err != nil {
		t.Fatal(err)
	}
	applyOK(t, c, p, ApplyOptions{Prune: true, MaxPrunePercent: 50, ForceConflicts: true})
	if n := replicas(); n != 5 {
		t.Fatalf("replicas %d after an apply, want the scale's 5 kept", n)
	}

	// An edit elsewhere in the same object is still drift.
	edit := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"api","image":"registry.example/api:hotfix"}]}}}}`)
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "api", types.StrategicMergePatchType, edit, metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	p, err = c.Plan(ctx, d, PlanOptions{Prune: true, ForceConflicts: true, Diff: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(p)["Deployment.apps/"+ns+"/api"]; got != ActionUpdate {
		t.Fatalf("an edited image: %v, want an update", actions(p))
	}
	if diff := p.Changes[1].Diff; strings.Contains(diff, "replicas") || !strings.Contains(diff, "api:hotfix") {
		t.Errorf("the diff shows replicas, or not the image:\n%s", diff)
	}
	applyOK(t, c, p, ApplyOptions{Prune: true, MaxPrunePercent: 50, ForceConflicts: true})
	got, err := cs.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := got.Spec.Template.Spec.Containers[0].Image; img != "registry.example/api:1" || *got.Spec.Replicas != 5 {
		t.Errorf("after healing: image %s, replicas %d; want git's image and the scale's 5", img, *got.Spec.Replicas)
	}
	for _, mf := range got.ManagedFields {
		if mf.Manager == FieldManager && mf.Subresource == "" && strings.Contains(string(mf.FieldsV1.Raw), `"f:replicas"`) {
			t.Errorf("trueup still owns spec.replicas: %s", mf.FieldsV1.Raw)
		}
	}
}

func manifest(t *testing.T, text string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(text), &m); err != nil {
		t.Fatal(err)
	}
	// As the API server returns them: numbers as int64, via JSON.
	data, _ := json.Marshal(m)
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	return u
}
