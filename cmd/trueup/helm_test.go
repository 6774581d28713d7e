package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// helmExample is examples/helm, as the files of a repository.
func helmExample(t *testing.T) map[string]string {
	t.Helper()
	return repoFiles(t, filepath.Join(examples, "helm"))
}

// helmExampleConfig is the example's trueup.yaml for the repository at url,
// polled every second and diffed every two.
func helmExampleConfig(t *testing.T, url string) string {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(examples, "helm", "trueup.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := filepath.Abs(filepath.Join(examples, "keys", "demo.agekey"))
	s := strings.NewReplacer(
		"url: .", "url: "+url+"\n    auth: {usernameFile: username, passwordFile: password}\n   ",
		"interval: 1m", "interval: 1s",
		"[../keys/demo.agekey]", "["+key+"]",
		"    source: todo\n", "    source: todo\n    interval: 2s\n",
	).Replace(string(cfg))
	return writeGitConfig(t, s)
}

// deploymentImage checks the image of a Deployment's first container.
func deploymentImage(cs kubernetes.Interface, ns, name, want string) func() error {
	return func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := d.Spec.Template.Spec.Containers[0].Image; got != want {
			return fmt.Errorf("%s/%s runs %s, want %s", ns, name, got, want)
		}
		return nil
	}
}

// TestHelmExample runs the daemon on examples/helm, served from the
// loopback git server, against the local control plane: each stage's
// database before its app, the app's migration hook before its Deployment,
// a no-op re-apply, and an image moved by set-image and promote.
func TestHelmExample(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{Username: "ops", Password: "t0ken"})
	url := srv.CreateRepo("todo", helmExample(t))
	config := helmExampleConfig(t, url)
	kubeconfig := clustertest.Kubeconfig(t)
	cs := clientOf(t, kubeconfig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// When the app's Deployment appears, its database must be ready and its
	// migration done: trueup creates it only after both.
	created := make(chan error, 1)
	w, err := cs.AppsV1().Deployments("todo-development").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=todo"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added {
				created <- orderedBefore(ctx, cs, "todo-development")
				return
			}
		}
	}()

	addr := startDaemon(t, config, kubeconfig)
	clustertest.Eventually(t, "development runs the app", deploymentImage(cs, "todo-development", "todo", "ghcr.io/acme/todo:1.4.1"))
	if err := <-created; err != nil {
		t.Fatalf("the app was created out of order: %v", err)
	}
	clustertest.Eventually(t, "every environment synced", func() error {
		out, _, _ := run(t, "status", "--server", "http://"+addr, "-o", "json")
		if n := strings.Count(out, `"status": "synced"`); n != 4 {
			return fmt.Errorf("%d of 4 synced:\n%s", n, out)
		}
		if !strings.Contains(out, `"chart": "todo-0.3.1"`) || !strings.Contains(out, `"chart": "postgresql-1.2.0"`) {
			return fmt.Errorf("status lacks the charts' versions:\n%s", out)
		}
		return nil
	})

	// What the chart renders: the test hook left out, the namespace created
	// and kept, the autoscaler at the API version the cluster has.
	if _, err := cs.CoreV1().Pods("todo-development").Get(ctx, "todo-test-connection", metav1.GetOptions{}); err == nil {
		t.Error("the helm test hook was applied")
	}
	hpa, err := cs.AutoscalingV2().HorizontalPodAutoscalers("todo-production").Get(ctx, "todo", metav1.GetOptions{})
	if err != nil || hpa.Spec.Metrics == nil {
		t.Errorf("production's autoscaler is not autoscaling/v2 with metrics: %v", err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "todo-production", metav1.GetOptions{})
	if err != nil || ns.Annotations["trueup.dev/prune"] != "disabled" {
		t.Errorf("the created namespace is not kept from pruning: %v %v", err, ns.Annotations)
	}
	sec, err := cs.CoreV1().Secrets("todo-production").Get(ctx, "postgresql", metav1.GetOptions{})
	if err != nil || string(sec.Data["password"]) != "correct-horse-battery-staple" {
		t.Errorf("the encrypted values file did not reach the Secret: %v", err)
	}

	// Applied once, a chart environment has nothing more to apply.
	for _, env := range []string{"database-development", "development", "production"} {
		if out, errOut, code := run(t, "diff", env, "--config", config, "--kubeconfig", kubeconfig); code != 0 {
			t.Errorf("diff %s after the sync: exit %d\n%s%s", env, code, out, errOut)
		}
	}

	out, errOut, code := run(t, "set-image", "development", "todo=1.4.2", "--config", config, "--push")
	if code != 0 {
		t.Fatalf("set-image: exit %d: %s %s", code, out, errOut)
	}
	if stat := srv.Git("todo", "diff", "--numstat", "main~1", "main"); stat != "1\t1\tvalues/todo/development.yaml\n" {
		t.Errorf("set-image commit is not one line of the values file: %q", stat)
	}
	clustertest.Eventually(t, "the daemon applies the new tag", deploymentImage(cs, "todo-development", "todo", "ghcr.io/acme/todo:1.4.2"))
	clustertest.Eventually(t, "the migration hook ran again with the new image", func() error {
		j, err := cs.BatchV1().Jobs("todo-development").Get(ctx, "todo-migrate", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if img := j.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/acme/todo:1.4.2" || !complete(j) {
			return fmt.Errorf("migration job at %s, complete %v", img, complete(j))
		}
		return nil
	})

	out, errOut, code = run(t, "promote", "development", "production", "--config", config, "--push")
	if code != 0 {
		t.Fatalf("promote: exit %d: %s %s", code, out, errOut)
	}
	if stat := srv.Git("todo", "diff", "--numstat", "main~1", "main"); stat != "1\t1\tvalues/todo/production.yaml\n" {
		t.Errorf("promotion commit is not one line of production's values: %q", stat)
	}
	clustertest.Eventually(t, "production runs the promoted tag", deploymentImage(cs, "todo-production", "todo", "ghcr.io/acme/todo:1.4.2"))
}

// orderedBefore checks what must be done when an app's Deployment is
// created: its database ready and its migration complete.
func orderedBefore(ctx context.Context, cs kubernetes.Interface, ns string) error {
	sts, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "postgresql", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("no database yet: %w", err)
	}
	if !ready(sts) {
		return fmt.Errorf("database not ready: %d of 1 replicas", sts.Status.ReadyReplicas)
	}
	j, err := cs.BatchV1().Jobs(ns).Get(ctx, "todo-migrate", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("no migration yet: %w", err)
	}
	if !complete(j) {
		return fmt.Errorf("migration not complete: %+v", j.Status)
	}
	return nil
}

func ready(sts *appsv1.StatefulSet) bool { return sts.Status.ReadyReplicas >= 1 }

func complete(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// TestChartFromRepository deploys a chart from a loopback chart repository
// that wants basic auth: index.yaml and the packaged chart, as a chart
// repository serves them.
func TestChartFromRepository(t *testing.T) {
	ch, err := loader.LoadDir(filepath.Join(examples, "helm", "charts", "postgresql"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	archive, err := chartutil.Save(ch, dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	index := repo.NewIndexFile()
	if err := index.MustAdd(ch.Metadata, filepath.Base(archive), "", "sha256:"+hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	indexYAML, err := yaml.Marshal(index)
	if err != nil {
		t.Fatal(err)
	}
	var downloads int
	charts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "reader" || p != "s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/stable/index.yaml":
			w.Write(indexYAML)
		case "/stable/" + filepath.Base(archive):
			downloads++
			w.Write(data)
		default:
			http.NotFound(w, r)
		}
	}))
	defer charts.Close()

	srv := sourcetest.NewServer(t, sourcetest.Options{})
	url := srv.CreateRepo("db", map[string]string{"values/db.yaml": "auth:\n  password: not-a-secret-in-this-test\n"})
	writeFile(t, filepath.Join(dir, "username"), "reader\n")
	writeFile(t, filepath.Join(dir, "password"), "s3cret\n")
	config := filepath.Join(dir, "trueup.yaml")
	writeFile(t, config, `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - name: db
    url: `+url+`
environments:
  - name: chart-repo
    source: db
    namespace: chart-repo
    createNamespace: true
    timeout: 2m
    helm:
      chart: postgresql
      repository: `+charts.URL+`/stable
      version: 1.2.x
      valuesFiles: [values/db.yaml]
      auth: {usernameFile: username, passwordFile: password}
`)
	kubeconfig := clustertest.Kubeconfig(t)
	out, errOut, code := run(t, "apply", "chart-repo", "--config", config, "--kubeconfig", kubeconfig)
	if code != 0 {
		t.Fatalf("apply: exit %d: %s\n%s", code, errOut, out)
	}
	cs := clientOf(t, kubeconfig)
	if _, err := cs.AppsV1().StatefulSets("chart-repo").Get(context.Background(), "chart-repo", metav1.GetOptions{}); err != nil {
		t.Errorf("the chart's StatefulSet: %v", err)
	}
	if out, errOut, code := run(t, "diff", "chart-repo", "--config", config, "--kubeconfig", kubeconfig); code != 0 {
		t.Errorf("diff after apply: exit %d\n%s%s", code, out, errOut)
	}

	// Refused credentials fail the render, and nothing is applied.
	writeFile(t, filepath.Join(dir, "password"), "Wr0ngPassw0rd\n")
	_, errOut, code = run(t, "diff", "chart-repo", "--config", config, "--kubeconfig", kubeconfig)
	if code != 2 || !strings.Contains(errOut, "chart-repo") || !strings.Contains(errOut, "postgresql") || strings.Contains(errOut, "Wr0ngPassw0rd") {
		t.Errorf("diff with a refused password: exit %d: %s", code, errOut)
	}
	if downloads == 0 {
		t.Error("the chart was never downloaded")
	}
}

// TestHelmExampleBuilds renders every environment of examples/helm without
// a cluster, as helm template would, and fails one whose values file is
// encrypted for a key the config lacks.
func TestHelmExampleBuilds(t *testing.T) {
	cfg := filepath.Join(examples, "helm", "trueup.yaml")
	for _, env := range []string{"database-development", "development", "database-production", "production"} {
		out, errOut, code := run(t, "build", env, "--config", cfg)
		if code != 0 {
			t.Fatalf("build %s: exit %d: %s", env, code, errOut)
		}
		if strings.Contains(out, "correct-horse") || strings.Contains(out, "dev-only-p4ssword") {
			t.Errorf("build %s prints a password:\n%s", env, out)
		}
		if strings.Contains(out, "test-connection") {
			t.Errorf("build %s has the helm test hook", env)
		}
	}
	out, _, _ := run(t, "build", "development", "--config", cfg)
	for _, want := range []string{"kind: Deployment", "image: ghcr.io/acme/todo:1.4.1", "helm.sh/hook: pre-install,pre-upgrade", "namespace: todo-development"} {
		if !strings.Contains(out, want) {
			t.Errorf("development lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = run(t, "build", "database-production", "--config", cfg, "--show-secrets")
	if !strings.Contains(out, "password: correct-horse-battery-staple") {
		t.Errorf("--show-secrets does not show the decrypted password:\n%s", out)
	}

	// Without the demo key, the encrypted values file fails the render.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(examples, "helm"))); err != nil {
		t.Fatal(err)
	}
	noKey := filepath.Join(dir, "trueup.yaml")
	data, _ := os.ReadFile(noKey)
	writeFile(t, noKey, strings.Replace(string(data), "ageKeyFiles: [../keys/demo.agekey]", "ageKeyFiles: []", 1))
	_, errOut, code := run(t, "build", "database-production", "--config", noKey)
	for _, want := range []string{"database-production", "values/postgresql/production.secrets.yaml", "age1d2aq63gf68sass0sz8caj5a28l0hexx3eyaj2cnugggs5tmvn3sqnpvzxr"} {
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("build without the key: exit %d, error lacks %q: %s", code, want, errOut)
		}
	}
}
