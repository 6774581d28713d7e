package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// clientOf is a clientset for a kubeconfig file.
func clientOf(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// imageIn returns a check that the api Deployment in ns runs want.
func imageIn(cs kubernetes.Interface, ns, want string) func() error {
	return func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "api", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := d.Spec.Template.Spec.Containers[0].Image; got != want {
			return fmt.Errorf("%s runs %s, want %s", ns, got, want)
		}
		return nil
	}
}

// TestOneDaemonTwoClusters runs staging and production on control planes
// of their own under one daemon, whose default cluster holds neither: each
// is applied and drift-watched on its cluster, staging's images reach
// production by automatic promotion and dependsOn across the clusters,
// `promote --applied` reads staging's revision from staging's cluster, and
// with production's API server stopped, production fails naming its
// cluster while staging goes on syncing, and production catches up once
// its cluster is back.
func TestOneDaemonTwoClusters(t *testing.T) {
	stagingCP, productionCP := clustertest.Private(t), clustertest.Private(t)
	home := clustertest.Kubeconfig(t)
	staging, production := clientOf(t, stagingCP.Kubeconfig), clientOf(t, productionCP.Kubeconfig)

	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("deploy", sourcetest.Merge(releaseOverlay("mc-staging", "1.0.0", ""), releaseOverlay("mc-production", "1.0.0", "")))
	srv.Commit("deploy", "staging", sourcetest.Change{Message: "staging branch"})
	srv.Commit("deploy", "production", sourcetest.Change{Message: "production branch"})
	dir := t.TempDir()
	config := filepath.Join(dir, "trueup.yaml")
	// The interval of the environments is long: only the watches can
	// notice drift within the test. Without a controller manager no
	// Deployment becomes available, so nothing waits for health.
	writeFile(t, config, `apiVersion: trueup.dev/v1alpha1
kind: Config
clusters:
  - name: staging
    kubeconfigFile: `+stagingCP.Kubeconfig+`
  - name: production
    kubeconfigFile: `+productionCP.Kubeconfig+`
sources:
  - name: deploy
    url: `+url+`
    interval: 1s
environments:
  - name: mc-staging
    cluster: staging
    source: deploy
    branch: staging
    path: overlays/mc-staging
    namespace: mc-staging
    interval: 10m
    wait: false
    selfHeal: true
    promotion: {to: mc-production, auto: true}
  - name: mc-production
    cluster: production
    source: deploy
    branch: production
    path: overlays/mc-production
    namespace: mc-production
    interval: 10m
    wait: false
    selfHeal: true
    dependsOn: [mc-staging]
`)
	addr := startDaemon(t, config, home)
	ctx := context.Background()
	statusOf := func(env string) (reconciler.EnvStatus, error) {
		var st reconciler.EnvStatus
		resp, err := http.Get("http://" + addr + "/api/v1/environments/" + env)
		if err != nil {
			return st, err
		}
		defer resp.Body.Close()
		return st, json.NewDecoder(resp.Body).Decode(&st)
	}

	clustertest.Eventually(t, "staging applied on its cluster", imageIn(staging, "mc-staging", "ghcr.io/acme/api:1.0.0"))
	clustertest.Eventually(t, "production applied on its cluster", imageIn(production, "mc-production", "ghcr.io/acme/api:1.0.0"))
	for _, c := range []struct {
		cs       kubernetes.Interface
		ns, what string
	}{{production, "mc-staging", "staging on production's cluster"}, {staging, "mc-production", "production on staging's cluster"},
		{clientOf(t, home), "mc-staging", "staging on the default cluster"}, {clientOf(t, home), "mc-production", "production on the default cluster"}} {
		if _, err := c.cs.CoreV1().Namespaces().Get(ctx, c.ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s: namespace %s: %v", c.what, c.ns, err)
		}
	}
	for env, cluster := range map[string]string{"mc-staging": "staging", "mc-production": "production"} {
		clustertest.Eventually(t, env+" reported synced on its cluster", func() error {
			st, err := statusOf(env)
			if err == nil && (st.Status != reconciler.StatusSynced || st.Cluster != cluster) {
				err = fmt.Errorf("status %+v", st)
			}
			return err
		})
	}
	out, _, _ := run(t, "status", "--server", "http://"+addr)
	if !strings.Contains(out, "CLUSTER") || !strings.Contains(out, "production") {
		t.Errorf("status table names no cluster:\n%s", out)
	}
	if m := scrape(addr); !strings.Contains(m, `cluster="production",environment="mc-production"`) || !strings.Contains(m, `trueup_watches{cluster="staging"}`) {
		t.Errorf("metrics name no cluster:\n%s", grepLines(m, "cluster="))
	}
	out, errOut, code := run(t, "status", "--config", config, "--kubeconfig", home, "-o", "json")
	var inv []reconciler.InventoryStatus
	clusterOf := map[string]string{}
	if code == 0 && json.Unmarshal([]byte(out), &inv) == nil {
		for _, i := range inv {
			clusterOf[i.Environment] = i.Cluster
		}
	}
	if len(inv) != 2 || clusterOf["mc-staging"] != "staging" || clusterOf["mc-production"] != "production" {
		t.Errorf("status from the clusters: exit %d: %s %s", code, out, errOut)
	}

	// Drift on either cluster is seen by its watches and healed.
	for _, c := range []struct {
		cs kubernetes.Interface
		ns string
	}{{staging, "mc-staging"}, {production, "mc-production"}} {
		if err := c.cs.AppsV1().Deployments(c.ns).Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		clustertest.Eventually(t, "the deleted Deployment in "+c.ns+" healed", imageIn(c.cs, c.ns, "ghcr.io/acme/api:1.0.0"))
	}

	// A tag bumped on staging reaches production across the clusters.
	if out, errOut, code := run(t, "set-image", "mc-staging", "api=1.1.0", "--config", config, "--push"); code != 0 {
		t.Fatalf("set-image: exit %d: %s %s", code, out, errOut)
	}
	clustertest.Eventually(t, "staging at 1.1.0", imageIn(staging, "mc-staging", "ghcr.io/acme/api:1.1.0"))
	clustertest.Eventually(t, "production promoted to 1.1.0", imageIn(production, "mc-production", "ghcr.io/acme/api:1.1.0"))
	// staging's applied revision is on staging's cluster, not --kubeconfig's.
	out, errOut, code = run(t, "promote", "mc-staging", "mc-production", "--applied", "--push", "--config", config, "--kubeconfig", home)
	if code != 0 || !strings.Contains(out, "nothing to commit") {
		t.Errorf("promote --applied: exit %d: %s %s", code, out, errOut)
	}

	// Production's cluster goes away: production fails, naming it;
	// staging keeps syncing.
	productionCP.StopAPIServer(t)
	if out, errOut, code := run(t, "set-image", "mc-staging", "api=1.2.0", "--config", config, "--push"); code != 0 {
		t.Fatalf("set-image: exit %d: %s %s", code, out, errOut)
	}
	clustertest.Eventually(t, "staging at 1.2.0 while production's cluster is down", imageIn(staging, "mc-staging", "ghcr.io/acme/api:1.2.0"))
	clustertest.Eventually(t, "production failed on its cluster", func() error {
		st, err := statusOf("mc-production")
		if err == nil && (st.Status != reconciler.StatusFailed || !strings.Contains(st.LastError, "cluster production: ")) {
			err = fmt.Errorf("status %+v", st)
		}
		return err
	})
	if st, err := statusOf("mc-staging"); err != nil || st.Status != reconciler.StatusSynced {
		t.Errorf("staging while production's cluster is down: %+v, %v", st, err)
	}
	productionCP.StartAPIServer(t)
	clustertest.Eventually(t, "production catches up once its cluster is back", imageIn(production, "mc-production", "ghcr.io/acme/api:1.2.0"))
}
