package reconciler

import (
	"reflect"
	"sort"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/trueup-dev/trueup/config"
)

func obj(apiVersion, kind, name string, annotations map[string]string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{}
	o.SetAPIVersion(apiVersion)
	o.SetKind(kind)
	o.SetName(name)
	if kind != "Namespace" && kind != "CustomResourceDefinition" {
		o.SetNamespace("app")
	}
	o.SetAnnotations(annotations)
	return o
}

func hook(kind, name, events, weight string) *unstructured.Unstructured {
	a := map[string]string{HookAnnotation: events}
	if weight != "" {
		a[HookWeightAnnotation] = weight
	}
	return obj("batch/v1", kind, name, a)
}

// TestSortObjectsHelmHooks: namespaces and CRDs first, then pre-install
// and pre-upgrade hooks by weight, the rest, and post hooks by weight.
func TestSortObjectsHelmHooks(t *testing.T) {
	objs := object.UnstructuredSet{
		obj("apps/v1", "Deployment", "app", nil),
		hook("Job", "notify", "post-install,post-upgrade", ""),
		hook("Job", "migrate", "pre-upgrade,pre-install", "5"),
		hook("Job", "backup", "pre-upgrade", "-3"),
		obj("v1", "Namespace", "app", nil),
		obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com", nil),
		hook("Job", "odd", "pre-delete", ""), // not a hook an apply runs: with the rest
		obj("v1", "ConfigMap", "conf", map[string]string{HookAnnotation: "pre-install", HookWeightAnnotation: "x"}),
	}
	stages, err := sortObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for _, s := range stages {
		var names []string
		for _, o := range s {
			names = append(names, o.GetKind()+"/"+o.GetName())
		}
		sort.Strings(names) // the order within a stage does not matter
		got = append(got, names)
	}
	want := [][]string{
		{"CustomResourceDefinition/widgets.example.com", "Namespace/app"},
		{"Job/backup"},
		{"ConfigMap/conf"}, // an unreadable weight is 0, as Helm has it
		{"Job/migrate"},
		{"Deployment/app", "Job/odd"},
		{"Job/notify"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stages\n got %v\nwant %v", got, want)
	}

	// Without hooks, the order is cli-utils' alone.
	plain, err := sortObjects(object.UnstructuredSet{obj("apps/v1", "Deployment", "app", nil), obj("v1", "Namespace", "app", nil)})
	if err != nil || len(plain) != 2 || plain[0][0].GetKind() != "Namespace" {
		t.Errorf("without hooks: %v, %v", plain, err)
	}
}

func TestReplaceable(t *testing.T) {
	for _, tc := range []struct {
		obj  *unstructured.Unstructured
		want bool
	}{
		{obj("batch/v1", "Job", "j", nil), false},
		{obj("batch/v1", "Job", "j", map[string]string{ForceAnnotation: ForceEnabled}), true},
		{hook("Job", "j", "pre-install", ""), true},
		{hook("Job", "j", "test", ""), false},
	} {
		if got := replaceable(tc.obj); got != tc.want {
			t.Errorf("replaceable(%v) = %v, want %v", tc.obj.GetAnnotations(), got, tc.want)
		}
	}
}

func TestWithCreatedNamespace(t *testing.T) {
	env := &config.Environment{Namespace: "app", CreateNamespace: true}
	objs := withCreatedNamespace(env, []*unstructured.Unstructured{obj("v1", "ConfigMap", "c", nil)})
	if len(objs) != 2 || objs[0].GetKind() != "Namespace" || objs[0].GetName() != "app" || !keep(objs[0]) {
		t.Fatalf("namespace not added first, kept from pruning: %v", objs)
	}
	// A render that defines the namespace keeps its own.
	own := obj("v1", "Namespace", "app", map[string]string{"team": "a"})
	if objs := withCreatedNamespace(env, []*unstructured.Unstructured{own}); len(objs) != 1 || objs[0] != own {
		t.Errorf("the render's own namespace replaced: %v", objs)
	}
	env.CreateNamespace = false
	if objs := withCreatedNamespace(env, nil); len(objs) != 0 {
		t.Errorf("namespace created without createNamespace: %v", objs)
	}
}
