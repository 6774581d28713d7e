package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trueup-dev/trueup/reconciler"
	"github.com/trueup-dev/trueup/reconciler/clustertest"
	"github.com/trueup-dev/trueup/source/sourcetest"
)

// team is one team's repository and config, with an environment called
// test whose objects go to the team's namespace.
type team struct {
	config, kubeconfig, ns string
	cs                     kubernetes.Interface
}

func newTeam(t *testing.T, srv *sourcetest.Server, repo, ns string) *team {
	t.Helper()
	dir := "overlays/test/"
	url := srv.CreateRepo(repo, map[string]string{
		dir + "kustomization.yaml": "namespace: " + ns + "\nresources: [namespace.yaml, app.yaml]\n",
		dir + "namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + ns + "}\n",
		dir + "app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {team: " + repo + "}\n---\n" +
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {k: v}\n",
	})
	tm := &team{config: filepath.Join(t.TempDir(), "trueup.yaml"), kubeconfig: clustertest.Kubeconfig(t), ns: ns}
	tm.cs = clientOf(t, tm.kubeconfig)
	tm.setName(t, url, "")
	return tm
}

// setName writes the team's config, with a top-level name when one is given.
func (tm *team) setName(t *testing.T, url, name string) {
	t.Helper()
	top := ""
	if name != "" {
		top = "name: " + name + "\n"
	}
	writeFile(t, tm.config, `apiVersion: trueup.dev/v1alpha1
kind: Config
`+top+`sources:
  - name: deploy
    url: `+url+`
environments:
  - name: test
    source: deploy
    path: overlays/test
    timeout: 1m
`)
}

func (tm *team) run(t *testing.T, verb string, args ...string) (string, string, int) {
	t.Helper()
	return run(t, append([]string{verb, "test", "--config", tm.config, "--kubeconfig", tm.kubeconfig}, args...)...)
}

// state fingerprints the team's objects and every inventory of the cluster.
func (tm *team) state(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	cms, err := tm.cs.CoreV1().ConfigMaps(tm.ns).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		out["cm/"+cm.Name] = cm.ResourceVersion
	}
	inv, err := tm.cs.CoreV1().ConfigMaps(reconciler.DefaultInventoryNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range inv.Items {
		out["inventory/"+cm.Name] = cm.ResourceVersion
	}
	return out
}

func sameState(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: %s changed (resourceVersion %s -> %s)", what, k, v, after[k])
		}
	}
}

// TestConfigsSharingAClusterNeverTouchEachOther has two teams apply their
// own configs, each with an environment called test, to one cluster. The
// second is refused before any write — by diff and by apply, even with
// --allow-mass-prune — with the owner named; the first team's objects and
// inventory are untouched. Once the second config has a name of its own,
// both converge side by side.
func TestConfigsSharingAClusterNeverTouchEachOther(t *testing.T) {
	srv := sourcetest.NewServer(t, sourcetest.Options{})
	a, b := newTeam(t, srv, "team-a", "shared-a"), newTeam(t, srv, "team-b", "shared-b")
	if out, errOut, code := a.run(t, "apply"); code != 0 {
		t.Fatalf("team A's apply: exit %d: %s %s", code, out, errOut)
	}
	before := a.state(t)
	for _, args := range [][]string{{"diff"}, {"apply"}, {"apply", "--allow-mass-prune"}} {
		out, errOut, code := b.run(t, args[0], args[1:]...)
		if code != 2 {
			t.Errorf("team B's %s: exit %d, want 2: %s %s", args, code, out, errOut)
		}
		for _, want := range []string{"inventory trueup-system/trueup-test belongs to", "team-a", "team-b", "overlays/test",
			"its own top-level name:", "nothing was written"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("team B's %s: error lacks %q:\n%s", args, want, errOut)
			}
		}
	}
	sameState(t, "after team B was refused", before, a.state(t))
	if _, err := b.cs.CoreV1().Namespaces().Get(context.Background(), "shared-b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("team B's namespace exists after its refused apply: %v", err)
	}

	b.setName(t, srv.URL("team-b"), "team-b")
	if out, errOut, code := b.run(t, "apply"); code != 0 {
		t.Fatalf("team B's apply as instance team-b: exit %d: %s %s", code, out, errOut)
	}
	after := a.state(t)
	sameState(t, "after team B's apply", before, after)
	if _, ok := after["inventory/team-b-test"]; !ok {
		t.Errorf("no inventory team-b-test: %v", after)
	}
	for _, tm := range []*team{a, b} {
		if out, errOut, code := tm.run(t, "diff"); code != 0 {
			t.Errorf("%s does not converge: diff exit %d: %s %s", tm.ns, code, out, errOut)
		}
	}
	out, _, code := run(t, "status", "--config", b.config, "--kubeconfig", b.kubeconfig, "-o", "json")
	var inv []reconciler.InventoryStatus
	if code != 0 || json.Unmarshal([]byte(out), &inv) != nil || len(inv) != 1 || inv[0].Instance != "team-b" || inv[0].Source == "" {
		t.Errorf("team B's status lists other instances or lacks its owner: %s", out)
	}
}

// TestWrongClusterWritesNothing applies an environment to a cluster that
// holds another environment's objects: diff predicts that the apply would
// fail, naming the owner, and exits 2; apply writes nothing, and leaves no
// inventory behind.
func TestWrongClusterWritesNothing(t *testing.T) {
	e := newGitEnv(t, "wc-staging")
	e.mustApply(t)
	before := e.resourceVersions(t)
	// The same objects, under another environment's name: a config that
	// points production at staging's cluster.
	writeFile(t, e.config, strings.Replace(readFile(t, e.config), "  - name: wc-staging\n", "  - name: wc-production\n", 1))
	for _, verb := range []string{"diff", "apply"} {
		out, errOut, code := run(t, verb, "wc-production", "--config", e.config, "--kubeconfig", e.kubeconfig)
		if code != 2 || !strings.Contains(errOut, `owned by environment "wc-staging" of instance "trueup"`) {
			t.Errorf("%s: exit %d, want 2 naming the owner: %s %s", verb, code, out, errOut)
		}
	}
	after := e.resourceVersions(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed (resourceVersion %s -> %s)", k, v, after[k])
		}
	}
	if _, err := e.cs.CoreV1().ConfigMaps(reconciler.DefaultInventoryNamespace).Get(context.Background(), "trueup-wc-production", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused apply left an inventory behind: %v", err)
	}
}

// TestInventoriesFromBeforeInstances upgrades: an inventory as trueup wrote
// it before instances (no owner recorded) is the environment's, its objects
// are kept and not re-applied, and the next apply records the owner.
func TestInventoriesFromBeforeInstances(t *testing.T) {
	e := newGitEnv(t, "upgraded")
	e.mustApply(t)
	ctx := context.Background()
	cms := e.cs.CoreV1().ConfigMaps(reconciler.DefaultInventoryNamespace)
	legacy, err := cms.Get(ctx, "trueup-upgraded", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{reconciler.InstanceAnnotation, reconciler.EnvironmentAnnotation, reconciler.SourceAnnotation, reconciler.PathAnnotation} {
		delete(legacy.Annotations, k)
	}
	if _, err := cms.Update(ctx, legacy, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := e.resourceVersions(t)
	out := e.mustApply(t)
	if !strings.Contains(out, " 0 created, 0 configured, 0 replaced") || !strings.Contains(out, "0 pruned") {
		t.Errorf("the apply after the upgrade changed objects:\n%s", out)
	}
	after := e.resourceVersions(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed (resourceVersion %s -> %s)", k, v, after[k])
		}
	}
	claimed, err := cms.Get(ctx, "trueup-upgraded", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := claimed.Annotations; a[reconciler.InstanceAnnotation] != "trueup" || a[reconciler.EnvironmentAnnotation] != "upgraded" ||
		!strings.HasSuffix(a[reconciler.SourceAnnotation], "/deploy") || len(claimed.Data) != len(legacy.Data) {
		t.Errorf("the inventory after the upgrade: annotations %v, %d entries (had %d)", a, len(claimed.Data), len(legacy.Data))
	}
}
