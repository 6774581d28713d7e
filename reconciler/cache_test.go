package reconciler

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
)

// TestCacheNamespacedRBAC: a daemon whose RBAC covers only the namespaces
// it deploys to watches each of those namespaces instead of the cluster, and
// is told of edits there; where it may not list at all, the watch is given
// up after its timeout instead of blocking the plan.
func TestCacheNamespacedRBAC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := clientset(t)
	for _, ns := range []string{"w-allowed", "w-forbidden"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Labels: map[string]string{EnvironmentLabel: ns}}, Data: map[string]string{"v": "1"}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const user = "trueup-limited"
	if _, err := cs.RbacV1().Roles("w-allowed").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "trueup"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings("w-allowed").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "trueup"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "trueup"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	kubeconfig := clustertest.Kubeconfig(t)
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	impersonate := user
	flags.Impersonate = &impersonate
	c, err := NewCluster(flags, ClusterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan string, 16)
	oc := newObjectCache(ctx, c, cacheOptions{log: slog.New(slog.DiscardHandler), onChange: func(env string) { changes <- env },
		selector: EnvironmentLabel, clusterWide: true, syncTimeout: 3 * time.Second})
	m, err := c.mapping(schema.GroupKind{Kind: "ConfigMap"}, "v1")
	if err != nil {
		t.Fatal(err)
	}
	store, ok := oc.store(ctx, m, "w-allowed")
	if !ok || get(store, "w-allowed", "settings") == nil {
		t.Fatalf("no synced watch of w-allowed (ok %v)", ok)
	}
	if _, wide := oc.informers[informerKey{resource: m.Resource}]; wide {
		t.Fatal("watching all namespaces, which RBAC forbids")
	}
	next := func(what string) string {
		t.Helper()
		for {
			select {
			case env := <-changes:
				if env == "w-allowed" {
					return env
				}
			case <-time.After(time.Minute):
				t.Fatalf("%s: no change reported", what)
				return ""
			}
		}
	}
	next("the watch's first list")
	cm, err := cs.CoreV1().ConfigMaps("w-allowed").Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["v"] = "edited"
	if _, err := cs.CoreV1().ConfigMaps("w-allowed").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	next("an edit in the allowed namespace")

	// Listing is forbidden here: the watch is given up, and reads of those
	// objects go to the API server (which refuses them, as it should).
	if _, ok := oc.store(ctx, m, "w-forbidden"); ok {
		t.Fatal("a watch where listing is forbidden reported synced")
	}
	// Remembered: the next plan does not wait for it again.
	if _, ok := oc.store(ctx, m, "w-forbidden"); ok || oc.informers[informerKey{resource: m.Resource, namespace: "w-forbidden"}] != nil {
		t.Fatal("the forbidden watch was tried again at once")
	}
	if _, kept := oc.informers[informerKey{resource: m.Resource, namespace: "w-forbidden"}]; kept {
		t.Error("the forbidden watch was kept")
	}
}
