package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	clustertest.Stop()
	os.Exit(code)
}

// gitEnv is one environment served from the loopback git server, with a
// config file pointing at it.
type gitEnv struct {
	name, config, kubeconfig string
	srv                      *sourcetest.Server
	cs                       kubernetes.Interface
}

func overlayFiles(env string, replicas string) map[string]string {
	encrypted, err := os.ReadFile(filepath.Join(examples, "base", "db-credentials.enc.yaml"))
	if err != nil {
		panic(err)
	}
	dir := "envs/" + env + "/"
	return map[string]string{
		dir + "kustomization.yaml": "resources: [namespace.yaml, web.yaml, x.yaml, y.yaml, app-secret.yaml, db-credentials.enc.yaml]\n",
		dir + "namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + env + "\n  annotations:\n    trueup.dev/prune: disabled\n",
		dir + "web.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: ` + replicas + `
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "ghcr.io/acme/web:1.0.0"}]
`,
		dir + "x.yaml":                  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: v}\n",
		dir + "y.yaml":                  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\ndata: {k: v}\n",
		dir + "app-secret.yaml":         "apiVersion: v1\nkind: Secret\nmetadata: {name: app-secret}\nstringData: {token: old-t0ken-value, user: admin}\n",
		dir + "db-credentials.enc.yaml": string(encrypted),
	}
}

func newGitEnv(t *testing.T, name string) *gitEnv {
	t.Helper()
	srv := sourcetest.NewServer(t, sourcetest.Options{Username: "ops", Password: "t0ken"})
	url := srv.CreateRepo("deploy", overlayFiles(name, "1"))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "username"), "ops\n")
	writeFile(t, filepath.Join(dir, "password"), "t0ken\n")
	key, _ := filepath.Abs(filepath.Join(examples, "keys", "demo.agekey"))
	cfg := `apiVersion: trueup.dev/v1alpha1
kind: Config
sources:
  - name: deploy
    url: ` + url + `
    auth: {usernameFile: username, passwordFile: password}
decryption:
  ageKeyFiles: [` + key + `]
environments:
  - name: ` + name + `
    source: deploy
    path: envs/` + name + `
    namespace: ` + name + `
    timeout: 2m
`
	writeFile(t, filepath.Join(dir, "trueup.yaml"), cfg)
	kubeconfig := clustertest.Kubeconfig(t)
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return &gitEnv{name: name, config: filepath.Join(dir, "trueup.yaml"), kubeconfig: kubeconfig, srv: srv,
		cs: kubernetes.NewForConfigOrDie(restCfg)}
}

func (e *gitEnv) run(t *testing.T, verb string, args ...string) (string, string, int) {
	t.Helper()
	return run(t, append([]string{verb, e.name, "--config", e.config, "--kubeconfig", e.kubeconfig}, args...)...)
}

func (e *gitEnv) mustApply(t *testing.T) string {
	t.Helper()
	out, errOut, code := e.run(t, "apply")
	if code != 0 {
		t.Fatalf("apply exit %d: %s\n%s", code, errOut, out)
	}
	return out
}

// resourceVersions fingerprints every object of the environment's namespace.
func (e *gitEnv) resourceVersions(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	cms, err := e.cs.CoreV1().ConfigMaps(e.name).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cms.Items {
		out["cm/"+o.Name] = o.ResourceVersion
	}
	secrets, err := e.cs.CoreV1().Secrets(e.name).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range secrets.Items {
		out["secret/"+o.Name] = o.ResourceVersion
	}
	deps, err := e.cs.AppsV1().Deployments(e.name).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range deps.Items {
		out["deployment/"+o.Name] = o.ResourceVersion
	}
	return out
}

func TestDiffAndApplyFollowCommits(t *testing.T) {
	e := newGitEnv(t, "cycle")
	js, _, code := e.run(t, "diff", "-o", "json")
	if code != 1 {
		t.Fatalf("diff before the first apply: exit %d, want 1", code)
	}
	// Every object is new, including the decrypted Secret, and its namespace
	// does not exist yet: the full objects are in the plan, values masked.
	if !strings.Contains(js, "db-credentials") || strings.Contains(js, "demo-only-s3cret") ||
		strings.Contains(js, "old-t0ken-value") || strings.Contains(js, "b2xkLXQwa2VuLXZhbHVl") {
		t.Errorf("first plan leaks secret values or lacks the Secret:\n%s", js)
	}
	out := e.mustApply(t)
	if !strings.Contains(out, "cycle at ") || !strings.Contains(out, "6 created") {
		t.Fatalf("apply output:\n%s", out)
	}
	if _, _, code := e.run(t, "diff"); code != 0 {
		t.Fatalf("diff right after apply: exit %d, want 0", code)
	}

	// A commit that scales the Deployment and deletes a ConfigMap diffs as
	// exactly that update and that prune.
	files := overlayFiles("cycle", "2")
	files["envs/cycle/kustomization.yaml"] = strings.Replace(files["envs/cycle/kustomization.yaml"], " y.yaml,", "", 1)
	e.srv.Commit("deploy", "main", sourcetest.Change{Files: files, Delete: []string{"envs/cycle/y.yaml"}})
	text, errOut, code := e.run(t, "diff")
	if code != 1 {
		t.Fatalf("diff after the commit: exit %d (%s), want 1", code, errOut)
	}
	for _, want := range []string{
		"~ update Deployment.apps/cycle/web", "-  replicas: 1", "+  replicas: 2",
		"- prune ConfigMap/cycle/y", "0 to create, 1 to update, 0 to replace, 1 to prune",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("diff lacks %q:\n%s", want, text)
		}
	}
	assertChanges(t, e, map[string]string{"Deployment/web": "update", "ConfigMap/y": "prune"})
	e.mustApply(t)
	ctx := context.Background()
	dep, err := e.cs.AppsV1().Deployments("cycle").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || *dep.Spec.Replicas != 2 {
		t.Fatalf("after apply: %v %v", dep.Spec.Replicas, err)
	}
	if _, err := e.cs.CoreV1().ConfigMaps("cycle").Get(ctx, "y", metav1.GetOptions{}); err == nil {
		t.Error("ConfigMap y survived its deletion from git")
	}
	if _, errOut, code := e.run(t, "diff"); code != 0 {
		t.Fatalf("diff after applying the commit: exit %d %s, want 0", code, errOut)
	}

	// A Secret value change shows as changed, its values masked.
	files["envs/cycle/app-secret.yaml"] = strings.Replace(files["envs/cycle/app-secret.yaml"], "old-t0ken-value", "new-t0ken-value", 1)
	e.srv.Commit("deploy", "main", sourcetest.Change{Files: files})
	text, _, code = e.run(t, "diff")
	if code != 1 || !strings.Contains(text, "~ update Secret/cycle/app-secret") ||
		!strings.Contains(text, "token: '*** (before)'") || !strings.Contains(text, "token: '*** (after)'") ||
		!strings.Contains(text, "user: '***'") {
		t.Errorf("secret diff (exit %d):\n%s", code, text)
	}
	for _, secret := range []string{"t0ken-value", "b2xkLXQwa2VuLXZhbHVl", "bmV3LXQwa2VuLXZhbHVl", "admin", "YWRtaW4=", "demo-only-s3cret"} {
		if strings.Contains(text, secret) {
			t.Errorf("diff shows secret material %q", secret)
		}
	}
	assertChanges(t, e, map[string]string{"Secret/app-secret": "update"})
	e.mustApply(t)
	sec, err := e.cs.CoreV1().Secrets("cycle").Get(ctx, "app-secret", metav1.GetOptions{})
	if err != nil || string(sec.Data["token"]) != "new-t0ken-value" {
		t.Errorf("Secret not updated: %v", err)
	}
}

// assertChanges checks `diff -o json` lists exactly want (kind/name: action).
func assertChanges(t *testing.T, e *gitEnv, want map[string]string) {
	t.Helper()
	js, _, _ := e.run(t, "diff", "-o", "json")
	var plan struct {
		Changes []struct{ Kind, Name, Action string }
	}
	if err := json.Unmarshal([]byte(js), &plan); err != nil {
		t.Fatalf("-o json: %v\n%s", err, js)
	}
	changed := map[string]string{}
	for _, c := range plan.Changes {
		if c.Action != "unchanged" {
			changed[c.Kind+"/"+c.Name] = c.Action
		}
	}
	if len(changed) != len(want) {
		t.Errorf("changes %v, want exactly %v", changed, want)
	}
	for k, v := range want {
		if changed[k] != v {
			t.Errorf("%s: %q, want %q", k, changed[k], v)
		}
	}
}

// TestFailuresLeaveTheClusterUntouched: after a good apply, a broken
// kustomization or a wrong SOPS key fails before anything is written.
func TestFailuresLeaveTheClusterUntouched(t *testing.T) {
	e := newGitEnv(t, "untouched")
	e.mustApply(t)
	before := e.resourceVersions(t)
	if len(before) < 4 {
		t.Fatalf("expected the environment's objects, got %v", before)
	}
	check := func(t *testing.T, want ...string) {
		t.Helper()
		for _, verb := range []string{"diff", "apply"} {
			out, errOut, code := e.run(t, verb)
			if code < 2 {
				t.Fatalf("%s exit %d, want 2 or more; output:\n%s", verb, code, out)
			}
			if lines := strings.Count(strings.TrimSpace(errOut), "\n"); lines != 0 {
				t.Errorf("%s error is %d lines: %s", verb, lines+1, errOut)
			}
			for _, w := range want {
				if !strings.Contains(errOut, w) {
					t.Errorf("%s error %q lacks %q", verb, errOut, w)
				}
			}
		}
		after := e.resourceVersions(t)
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s changed (resourceVersion %s -> %s)", k, v, after[k])
			}
		}
	}

	t.Run("broken kustomization", func(t *testing.T) {
		files := overlayFiles("untouched", "3")
		files["envs/untouched/kustomization.yaml"] = "resources: [namespace.yaml, web.yaml\n"
		e.srv.Commit("deploy", "main", sourcetest.Change{Files: files})
		check(t, "render untouched", "envs/untouched/kustomization.yaml")
		e.srv.Commit("deploy", "main", sourcetest.Change{Files: overlayFiles("untouched", "1")})
	})
	t.Run("invalid object in a namespace the commit creates", func(t *testing.T) {
		// Beside it the Deployment changes and y leaves git: none of it may
		// happen, and the new namespace may not be created either.
		files := overlayFiles("untouched", "3")
		files["envs/untouched/kustomization.yaml"] = strings.Replace(files["envs/untouched/kustomization.yaml"], " y.yaml,", " new-ns.yaml, bad.yaml,", 1)
		files["envs/untouched/new-ns.yaml"] = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: untouched-new\n"
		files["envs/untouched/bad.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: untouched-new\ndata:\n  \"not a valid key!\": x\n"
		e.srv.Commit("deploy", "main", sourcetest.Change{Files: files})
		check(t, "plan untouched", "ConfigMap/untouched-new/bad", "not a valid key")
		if _, err := e.cs.CoreV1().Namespaces().Get(context.Background(), "untouched-new", metav1.GetOptions{}); err == nil {
			t.Error("the namespace of a commit that cannot be applied was created")
		}
		e.srv.Commit("deploy", "main", sourcetest.Change{Files: overlayFiles("untouched", "1")})
	})
	t.Run("object of another environment", func(t *testing.T) {
		other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "z", Namespace: "untouched",
			Annotations: map[string]string{"config.k8s.io/owning-inventory": "trueup-other"}}, Data: map[string]string{"k": "theirs"}}
		if _, err := e.cs.CoreV1().ConfigMaps("untouched").Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		before = e.resourceVersions(t)
		files := overlayFiles("untouched", "3")
		files["envs/untouched/kustomization.yaml"] = strings.Replace(files["envs/untouched/kustomization.yaml"], " y.yaml,", " y.yaml, z.yaml,", 1)
		files["envs/untouched/z.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: z}\ndata: {k: ours}\n"
		e.srv.Commit("deploy", "main", sourcetest.Change{Files: files})
		check(t, "plan untouched", "ConfigMap/untouched/z", "owned by inventory trueup-system/trueup-other")
		e.srv.Commit("deploy", "main", sourcetest.Change{Files: overlayFiles("untouched", "1")})
	})
	t.Run("wrong SOPS key", func(t *testing.T) {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		wrong := filepath.Join(t.TempDir(), "wrong.agekey")
		writeFile(t, wrong, id.String()+"\n")
		cfg := readFile(t, e.config)
		key, _ := filepath.Abs(filepath.Join(examples, "keys", "demo.agekey"))
		writeFile(t, e.config, strings.Replace(cfg, key, wrong, 1))
		check(t, "render untouched", "envs/untouched/db-credentials.enc.yaml", "no matching key")
	})
}

// TestMassPruneOptIns: an overlay emptied by a commit would prune most of
// the inventory; `trueup apply` refuses, and prunes with --allow-mass-prune
// or with allowMassPrune in the config — never what is not in the
// inventory.
func TestMassPruneOptIns(t *testing.T) {
	e := newGitEnv(t, "mass-prune")
	e.mustApply(t)
	emptied := map[string]string{"envs/mass-prune/kustomization.yaml": "resources: [namespace.yaml]\n"}
	e.srv.Commit("deploy", "main", sourcetest.Change{Files: emptied})
	before := e.resourceVersions(t)
	out, errOut, code := e.run(t, "apply")
	if code < 2 || !strings.Contains(errOut, "maxPrunePercent") || !strings.Contains(errOut, "--allow-mass-prune") {
		t.Fatalf("emptied overlay: exit %d, %s%s", code, out, errOut)
	}
	for k, v := range before {
		if after := e.resourceVersions(t); after[k] != v {
			t.Errorf("a refused mass prune changed %s", k)
		}
	}
	out, errOut, code = e.run(t, "apply", "--allow-mass-prune")
	if code != 0 || strings.Count(out, " pruned\n") != 5 {
		t.Fatalf("--allow-mass-prune: exit %d, want 5 pruned:\n%s%s", code, out, errOut)
	}

	// The config's opt-in does the same, for the daemon too.
	e.srv.Commit("deploy", "main", sourcetest.Change{Files: overlayFiles("mass-prune", "1")})
	e.mustApply(t)
	e.srv.Commit("deploy", "main", sourcetest.Change{Files: emptied})
	writeFile(t, e.config, strings.Replace(readFile(t, e.config), "    timeout: 2m\n", "    timeout: 2m\n    allowMassPrune: true\n", 1))
	out, errOut, code = e.run(t, "apply")
	if code != 0 || strings.Count(out, " pruned\n") != 5 {
		t.Fatalf("allowMassPrune: true: exit %d, want 5 pruned:\n%s%s", code, out, errOut)
	}
}

// TestApplySaysWhyUnhealthy: an object that does not become healthy within
// the timeout fails the apply, and the output says why in the scheduler's
// words; with wait: false the same apply succeeds at once.
func TestApplySaysWhyUnhealthy(t *testing.T) {
	e := newGitEnv(t, "why")
	files := overlayFiles("why", "1")
	files["envs/why/web.yaml"] = strings.Replace(files["envs/why/web.yaml"], "    spec:\n", "    spec:\n      nodeSelector: {pool: none}\n", 1)
	e.srv.Commit("deploy", "main", sourcetest.Change{Files: files})
	writeFile(t, e.config, strings.Replace(readFile(t, e.config), "timeout: 2m", "timeout: 3s", 1))
	out, errOut, code := e.run(t, "apply")
	if code < 2 || !strings.Contains(out, "Deployment.apps/why/web failed: not healthy within 3s: ") ||
		!strings.Contains(out, "Unschedulable: 0/1 nodes are available") || !strings.Contains(out, "1 failed") ||
		!strings.Contains(errOut, "Unschedulable") {
		t.Fatalf("apply exit %d:\n%s%s", code, out, errOut)
	}
	writeFile(t, e.config, strings.Replace(readFile(t, e.config), "timeout: 3s", "timeout: 3s\n    wait: false", 1))
	if out, errOut, code := e.run(t, "apply"); code != 0 || !strings.Contains(out, "0 failed") {
		t.Fatalf("wait: false: exit %d:\n%s%s", code, out, errOut)
	}
}
