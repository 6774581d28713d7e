package reconciler

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
)

// TestDriftWatchNamespacedRBAC: a daemon whose RBAC covers only the
// namespaces it deploys to still watches its objects there; where it may
// not list, Track gives up after its timeout and asks for a diff instead of
// blocking the environment.
func TestDriftWatchNamespacedRBAC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := clientset(t)
	for _, ns := range []string{"w-allowed", "w-forbidden"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{}); err != nil {
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
	c, err := NewCluster(flags, "")
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan string, 16)
	w, err := c.WatchDrift(ctx, slog.New(slog.DiscardHandler), func(env string) { changes <- env })
	if err != nil {
		t.Fatal(err)
	}
	w.syncTimeout = 3 * time.Second
	configMap := func(ns string) []*unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("ConfigMap")
		u.SetNamespace(ns)
		u.SetName("settings")
		return []*unstructured.Unstructured{u}
	}
	next := func(what string) string {
		t.Helper()
		select {
		case env := <-changes:
			return env
		case <-time.After(time.Minute):
			t.Fatalf("%s: no change reported", what)
			return ""
		}
	}

	if err := w.Track("allowed", configMap("w-allowed")); err != nil {
		t.Fatal(err)
	}
	if env := next("after Track"); env != "allowed" {
		t.Fatalf("Track asked a diff of %q", env)
	}
	cm, err := cs.CoreV1().ConfigMaps("w-allowed").Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["v"] = "edited"
	if _, err := cs.CoreV1().ConfigMaps("w-allowed").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if env := next("an edit in the allowed namespace"); env != "allowed" {
		t.Fatalf("edit reported for %q", env)
	}

	// Listing is forbidden here: Track returns, and the environment still
	// gets its diff.
	if err := w.Track("forbidden", configMap("w-forbidden")); err != nil {
		t.Fatal(err)
	}
	if env := next("a forbidden watch"); env != "forbidden" {
		t.Fatalf("Track asked a diff of %q", env)
	}
}
