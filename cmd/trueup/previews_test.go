package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// TestPreviewEnvironments runs the daemon with a preview over feature
// branches of a loopback git server: a pushed branch becomes an environment
// in its own namespace and follows its commits; a broken render and a
// failing fetch tear nothing down; the branch's deletion, and a head past
// the ttl, tear its environment down and leave the other one alone.
func TestPreviewEnvironments(t *testing.T) {
	ctx := context.Background()
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	cm := func(name, value string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\ndata: {v: \"" + value + "\"}\n"
	}
	url := srv.CreateRepo("canny", map[string]string{
		"overlays/test/kustomization.yaml":   "resources: [app.yaml]\n",
		"overlays/test/app.yaml":             cm("app", "main"),
		"overlays/stable/kustomization.yaml": "resources: [stable.yaml]\n",
		"overlays/stable/stable.yaml":        cm("stable", "1"),
	})
	dir := t.TempDir()
	config := filepath.Join(dir, "trueup.yaml")
	writeFile(t, config, `apiVersion: trueup.dev/v1alpha1
kind: Config
name: pv
sources:
  - name: canny
    url: `+url+`
    interval: 1s
environments:
  - name: stable
    source: canny
    path: overlays/stable
    namespace: pv-stable
    createNamespace: true
previews:
  - name: test
    source: canny
    branches: ["feature/*"]
    path: overlays/test
    namespace: pv-{{ .Branch }}
    ttl: 1h
    interval: 1s
    timeout: 1m
`)
	kubeconfig := clustertest.Kubeconfig(t)
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(restCfg)

	addr := freeAddr(t)
	runCtx, cancel := context.WithCancel(ctx)
	exited := make(chan struct{})
	log := &syncBuffer{}
	go func() {
		defer close(exited)
		execute(runCtx, []string{"run", "--config", config, "--kubeconfig", kubeconfig, "--http-addr", addr,
			"--cache-dir", t.TempDir(), "--log-format", "json"}, log, log)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	})

	statuses := func() map[string]reconciler.EnvStatus {
		out := map[string]reconciler.EnvStatus{}
		resp, err := http.Get("http://" + addr + "/api/v1/environments")
		if err != nil {
			return out
		}
		defer resp.Body.Close()
		var list []reconciler.EnvStatus
		_ = json.NewDecoder(resp.Body).Decode(&list)
		for _, s := range list {
			out[s.Name] = s
		}
		return out
	}
	value := func(ns, name string) (string, error) {
		got, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return got.Data["v"], nil
	}
	applied := func(what, ns, name, want string) {
		t.Helper()
		clustertest.Eventually(t, what, func() error {
			v, err := value(ns, name)
			if err != nil {
				return err
			}
			if v != want {
				return fmt.Errorf("%s/%s holds %q", ns, name, v)
			}
			return nil
		})
	}
	gone := func(what, env, ns string) {
		t.Helper()
		clustertest.Eventually(t, what, func() error {
			if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %s: %v", ns, err)
			}
			if _, err := cs.CoreV1().ConfigMaps("trueup-system").Get(ctx, "pv-"+env, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("inventory pv-%s: %v", env, err)
			}
			if _, listed := statuses()[env]; listed {
				return fmt.Errorf("%s is still in the status API", env)
			}
			return nil
		})
	}
	fetches := regexp.MustCompile(`trueup_source_fetch_total\{result="(success|failure)",source="canny"\} (\d+)`)
	fetched := func(result string) int {
		for _, m := range fetches.FindAllStringSubmatch(scrape(addr), -1) {
			if m[1] == result {
				n, _ := strconv.Atoi(m[2])
				return n
			}
		}
		return 0
	}
	// twoMoreFetches waits until the source was fetched twice more with
	// the result: time enough for a teardown to have started, were it to.
	twoMoreFetches := func(result string) {
		t.Helper()
		since := fetched(result)
		clustertest.Eventually(t, "two more fetches ("+result+")", func() error {
			if n := fetched(result); n < since+2 {
				return fmt.Errorf("%d since", n-since)
			}
			return nil
		})
	}

	applied("the stable environment", "pv-stable", "stable", "1")
	stable, err := cs.CoreV1().ConfigMaps("pv-stable").Get(ctx, "stable", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// A branch appears: its environment is applied in its own namespace.
	srv.Commit("canny", "feature/login", sourcetest.Change{Files: map[string]string{"overlays/test/app.yaml": cm("app", "login-1")}})
	applied("feature/login's environment", "pv-feature-login", "app", "login-1")
	clustertest.Eventually(t, "test-feature-login synced in the status API", func() error {
		if s := statuses()["test-feature-login"]; s.Status != reconciler.StatusSynced {
			return fmt.Errorf("status %q", s.Status)
		}
		return nil
	})
	if m := scrape(addr); !strings.Contains(m, `trueup_sync_status{environment="test-feature-login",status="synced"} 1`) {
		t.Errorf("no synced series for the preview:\n%s", grepLines(m, "trueup_sync_status"))
	}

	// A commit to it is applied.
	srv.Commit("canny", "feature/login", sourcetest.Change{Files: map[string]string{"overlays/test/app.yaml": cm("app", "login-2")}})
	applied("the next commit on feature/login", "pv-feature-login", "app", "login-2")

	// A broken render fails the environment and tears nothing down.
	srv.Commit("canny", "feature/login", sourcetest.Change{Files: map[string]string{"overlays/test/kustomization.yaml": "resources: [missing.yaml]\n"}})
	clustertest.Eventually(t, "the broken render fails", func() error {
		if s := statuses()["test-feature-login"]; s.Status != reconciler.StatusFailed {
			return fmt.Errorf("status %q", s.Status)
		}
		return nil
	})
	twoMoreFetches("success")
	if v, err := value("pv-feature-login", "app"); err != nil || v != "login-2" {
		t.Fatalf("after a broken render: %q, %v; want the last good state", v, err)
	}

	// The branch goes while fetches fail: nothing is torn down.
	srv.Fail(true)
	srv.Git("canny", "branch", "-D", "feature/login")
	twoMoreFetches("failure")
	if v, err := value("pv-feature-login", "app"); err != nil || v != "login-2" {
		t.Fatalf("after failed fetches: %q, %v; want it kept", v, err)
	}

	// The first fetch that succeeds sees the branch gone: teardown.
	srv.Fail(false)
	gone("feature/login's teardown", "test-feature-login", "pv-feature-login")
	if !strings.Contains(log.String(), `"msg":"torn down"`) {
		t.Error("no log line of the teardown")
	}
	events, err := cs.CoreV1().Events("trueup-system").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=pv-test-feature-login,reason=" + reconciler.ReasonTornDown})
	if err != nil || len(events.Items) == 0 {
		t.Errorf("no %s Event: %v", reconciler.ReasonTornDown, err)
	}
	if m := scrape(addr); strings.Contains(m, `environment="test-feature-login"`) {
		t.Errorf("metric series of the torn down environment remain:\n%s", grepLines(m, "test-feature-login"))
	}

	// A head commit older than the ttl tears down too.
	srv.Commit("canny", "feature/old", sourcetest.Change{Files: map[string]string{"overlays/test/app.yaml": cm("app", "old")}})
	applied("feature/old's environment", "pv-feature-old", "app", "old")
	srv.Commit("canny", "feature/old", sourcetest.Change{Message: "a commit of long ago", Date: time.Now().Add(-2 * time.Hour)})
	gone("feature/old's teardown after its ttl", "test-feature-old", "pv-feature-old")

	// The other environment was left alone throughout.
	after, err := cs.CoreV1().ConfigMaps("pv-stable").Get(ctx, "stable", metav1.GetOptions{})
	if err != nil || after.ResourceVersion != stable.ResourceVersion {
		t.Errorf("the stable environment changed: %v, resourceVersion %s -> %s", err, stable.ResourceVersion, after.ResourceVersion)
	}
}
