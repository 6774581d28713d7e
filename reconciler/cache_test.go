package reconciler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	neturl "net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
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

// TestUnavailable: errors that say the API server is away are waited out;
// answers that refuse the request are not.
func TestUnavailable(t *testing.T) {
	gr := schema.GroupResource{Resource: "configmaps"}
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"connection refused": {&neturl.Error{Op: "Get", URL: "https://127.0.0.1:6443", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, true},
		"connection reset":   {fmt.Errorf("watch: %w", syscall.ECONNRESET), true},
		"unexpected EOF":     {io.ErrUnexpectedEOF, true},
		"too many requests":  {apierrors.NewTooManyRequests("storage is (re)initializing", 1), true},
		"unavailable":        {apierrors.NewServiceUnavailable("starting"), true},
		"timeout":            {apierrors.NewTimeoutError("slow", 1), true},
		"forbidden":          {apierrors.NewForbidden(gr, "", errors.New("RBAC")), false},
		"not found":          {apierrors.NewNotFound(gr, ""), false},
		"gone":               {apierrors.NewResourceExpired("too old resource version"), false},
		"canceled":           {fmt.Errorf("list: %w", context.Canceled), false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := unavailable(tc.err); got != tc.want {
				t.Errorf("unavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestPersist: a request is tried again while the API server is away and
// returns its answer once there is one; a refusal returns at once, and so
// does an ended context.
func TestPersist(t *testing.T) {
	away := &neturl.Error{Op: "Get", URL: "https://127.0.0.1:6443", Err: syscall.ECONNREFUSED}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "", errors.New("RBAC"))
	t.Run("away, then back", func(t *testing.T) {
		calls := &serverCalls{log: slog.New(slog.DiscardHandler)}
		n := 0
		v, err := persist(context.Background(), calls, func() (int, error) {
			if n++; n < 4 {
				return 0, away
			}
			return 42, nil
		})
		if v != 42 || err != nil || n != 4 || calls.away() || calls.refusal() != nil {
			t.Fatalf("got %v %v after %d calls (away %v, refusal %v)", v, err, n, calls.away(), calls.refusal())
		}
	})
	t.Run("refused", func(t *testing.T) {
		calls := &serverCalls{log: slog.New(slog.DiscardHandler)}
		n := 0
		_, err := persist(context.Background(), calls, func() (int, error) { n++; return 0, forbidden })
		if !apierrors.IsForbidden(err) || n != 1 || calls.away() || !apierrors.IsForbidden(calls.refusal()) {
			t.Fatalf("got %v after %d calls (away %v, refusal %v)", err, n, calls.away(), calls.refusal())
		}
	})
	t.Run("context ends", func(t *testing.T) {
		calls := &serverCalls{log: slog.New(slog.DiscardHandler)}
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		_, err := persist(ctx, calls, func() (int, error) {
			if n++; n == 2 {
				cancel()
			}
			return 0, away
		})
		if !errors.Is(err, syscall.ECONNREFUSED) || n != 2 || !calls.away() || calls.refusal() != nil {
			t.Fatalf("got %v after %d calls (away %v, refusal %v)", err, n, calls.away(), calls.refusal())
		}
	})
}

// TestCacheServerAway: a watch whose API server is away is neither waited
// for nor given up: the read goes to the server at once, and the watch
// keeps trying, to serve once the server is back — it is not taken for one
// RBAC forbids and left alone for minutes.
func TestCacheServerAway(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connections are refused
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: away, cluster: {server: "https://`+addr+`", insecure-skip-tls-verify: true}}]
users: [{name: away, user: {token: t}}]
contexts: [{name: away, context: {cluster: away, user: away}}]
current-context: away
`), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	c, err := NewCluster(flags, ClusterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oc := newObjectCache(ctx, c, cacheOptions{selector: EnvironmentLabel, syncTimeout: time.Minute})
	m := &meta.RESTMapping{Resource: corev1.SchemeGroupVersion.WithResource("configmaps"),
		GroupVersionKind: corev1.SchemeGroupVersion.WithKind("ConfigMap"), Scope: meta.RESTScopeNamespace}
	start := time.Now()
	if _, ok := oc.store(ctx, m, "away"); ok {
		t.Fatal("a watch of an unreachable server reported synced")
	}
	if took := time.Since(start); took >= time.Minute {
		t.Errorf("the read waited %s, the whole sync timeout, for a server that is away", took)
	}
	key := informerKey{resource: m.Resource, namespace: "away"}
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if oc.informers[key] == nil {
		t.Error("the watch was given up while its server was away")
	}
	if _, memo := oc.unwatchable[key]; memo {
		t.Error("a server that is away was taken for one that refuses the watch")
	}
}
