package render

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// buildBoth renders dir of repo the plain way and with krusty. plain is nil
// when the plain way declines.
func buildBoth(t testing.TB, repo fs.FS, dir, namespace string) (plain, kustomized []byte, kerr error) {
	t.Helper()
	tree, err := Load(repo)
	if err != nil {
		t.Fatal(err)
	}
	gfs := newGuardedFS(tree.t, Options{})
	if res, ok := plainResources(gfs, tree.t.abs(dir)); ok {
		// As Build: a plain build that cannot be converted is krusty's.
		if objs, err := objects(res, namespace, &renderLimits{dir: dir, limits: gfs.limits}); err == nil {
			if plain, err = YAML(objs); err != nil {
				t.Fatal(err)
			}
			if plain == nil {
				plain = []byte{}
			}
		}
	}
	objs, kerr := tree.krusty(dir, Options{Path: dir, Namespace: namespace})
	if kerr == nil {
		kustomized, _ = YAML(objs)
	}
	return plain, kustomized, kerr
}

// same fails the test unless a plain build, where there is one, is
// exactly kustomize's.
func same(t testing.TB, repo fs.FS, dir string) (plainBuilt bool) {
	t.Helper()
	plain, kustomized, kerr := buildBoth(t, repo, dir, "ns")
	if plain == nil {
		return false
	}
	if kerr != nil {
		t.Fatalf("%s: built plainly, but kustomize fails: %v\nplain:\n%s", dir, kerr, plain)
	}
	if !bytes.Equal(plain, kustomized) {
		t.Fatalf("%s: the plain build differs from kustomize's\nplain:\n%s\nkustomize:\n%s", dir, plain, kustomized)
	}
	return true
}

func mapFS(files map[string]string) fstest.MapFS {
	repo := fstest.MapFS{}
	for name, content := range files {
		repo[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return repo
}

const (
	plainKustomization = "resources: [a.yaml, b.yaml]\n"
	objA               = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n"
	objB               = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: b\nstringData:\n  k: v\n"
)

// TestPlainMatchesKustomize: every kustomization the plain build takes on
// comes out exactly as kustomize builds it, and everything else is left to
// kustomize.
func TestPlainMatchesKustomize(t *testing.T) {
	many := func(n int) string {
		var b strings.Builder
		kinds := []string{"ConfigMap", "Service", "ServiceAccount", "Secret"}
		for i := range n {
			// Reverse order of names, mixed kinds: the order is kustomize's to decide.
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: %s\nmetadata:\n  name: r-%03d\n", kinds[i%len(kinds)], n-i)
		}
		return b.String()
	}
	cases := map[string]struct {
		files map[string]string
		plain bool // the plain build takes it on
	}{
		"two files": {files: map[string]string{"kustomization.yaml": plainKustomization, "a.yaml": objA, "b.yaml": objB}, plain: true},
		"apiVersion and kind": {files: map[string]string{
			"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" + plainKustomization, "a.yaml": objA, "b.yaml": objB}, plain: true},
		"many objects of mixed kinds": {files: map[string]string{"kustomization.yaml": "resources: [all.yaml]\n", "all.yaml": many(200)}, plain: true},
		"kind priorities, webhooks last, CRDs and their objects, unknown kinds": {files: map[string]string{
			"kustomization.yaml": "resources: [mix.yaml]\n",
			"mix.yaml": `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: v}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec: {group: example.com, scope: Cluster, names: {kind: Widget, plural: widgets}}
---
apiVersion: v1
kind: Namespace
metadata: {name: z}
---
apiVersion: example.com/v1
kind: Namespace
metadata: {name: y}
---
apiVersion: batch/v1
kind: Job
metadata: {name: j, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: c}
`}, plain: true},
		"lists are expanded, empty documents skipped": {files: map[string]string{
			"kustomization.yaml": "resources: [list.yaml]\n",
			"list.yaml":          "---\n---\napiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(objA, "\n", "\n  ") + "\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n",
		}, plain: true},
		"local-config resources are left out": {files: map[string]string{
			"kustomization.yaml": "resources: [a.yaml, local.yaml]\n", "a.yaml": objA,
			"local.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: l\n  annotations: {config.kubernetes.io/local-config: \"true\"}\n---\n" +
				"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m\n  annotations: {config.kubernetes.io/local-config: \"false\"}\n",
		}, plain: true},
		"directories whose kustomizations are plain": {files: map[string]string{
			"kustomization.yaml": "resources: [base, extra/x.yaml]\n", "extra/x.yaml": objB,
			"base/kustomization.yml": "resources: [a.yaml]\n", "base/a.yaml": objA,
		}, plain: true},
		"a base outside the overlay": {files: map[string]string{
			"overlay/kustomization.yaml": "resources: [../base]\n", "base/kustomization.yaml": "resources: [a.yaml]\n", "base/a.yaml": objA,
		}, plain: true},
		"namespaced and cluster-scoped objects of the same name": {files: map[string]string{
			"kustomization.yaml": "resources: [a.yaml, b.yaml]\n", "a.yaml": objA,
			"b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: other\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n",
		}, plain: true},
		"JSON": {files: map[string]string{"kustomization.yaml": "resources: [a.json]\n",
			"a.json": `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}, "data": {"n": "1"}}`}, plain: true},
		"no resources": {files: map[string]string{"kustomization.yaml": "resources: []\n"}, plain: true},

		// Left to kustomize: its fields, and its errors.
		"a namespace field": {files: map[string]string{"kustomization.yaml": "namespace: x\n" + plainKustomization, "a.yaml": objA, "b.yaml": objB}},
		"images":            {files: map[string]string{"kustomization.yaml": "images: [{name: x, newTag: '1'}]\n" + plainKustomization, "a.yaml": objA, "b.yaml": objB}},
		"a component":       {files: map[string]string{"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n" + plainKustomization, "a.yaml": objA, "b.yaml": objB}},
		"the same object twice": {files: map[string]string{"kustomization.yaml": "resources: [a.yaml, b.yaml]\n", "a.yaml": objA,
			"b.yaml": strings.Replace(objA, "name: a", "name: a\n  namespace: default", 1)}},
		"the same file twice": {files: map[string]string{"kustomization.yaml": "resources: [a.yaml, a.yaml]\n", "a.yaml": objA}},
		"a file outside the kustomization": {files: map[string]string{
			"overlay/kustomization.yaml": "resources: [../a.yaml]\n", "a.yaml": objA}},
		"a missing file":                      {files: map[string]string{"kustomization.yaml": "resources: [gone.yaml]\n"}},
		"broken YAML":                         {files: map[string]string{"kustomization.yaml": "resources: [a.yaml]\n", "a.yaml": "kind: [\n"}},
		"a remote base":                       {files: map[string]string{"kustomization.yaml": "resources: [https://github.com/acme/deploy//base]\n"}},
		"two kustomization files":             {files: map[string]string{"kustomization.yaml": "resources: [a.yaml]\n", "kustomization.yml": "resources: [a.yaml]\n", "a.yaml": objA}},
		"a directory without a kustomization": {files: map[string]string{"kustomization.yaml": "resources: [sub]\n", "sub/a.yaml": objA}},
		"a cycle":                             {files: map[string]string{"kustomization.yaml": "resources: [sub]\n", "sub/kustomization.yaml": "resources: [..]\n"}},
		"a base that holds the overlay": {files: map[string]string{
			"overlay/kustomization.yaml": "resources: [base]\n", "overlay/base/kustomization.yaml": "resources: [../..]\n",
			"kustomization.yaml": "resources: [a.yaml]\n", "a.yaml": objA}},
		"an empty kustomization":   {files: map[string]string{"kustomization.yaml": ""}},
		"only apiVersion and kind": {files: map[string]string{"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"}},
		"resources commented out":  {files: map[string]string{"kustomization.yaml": "resources:\n# - a.yaml\n", "a.yaml": objA}},
		"kustomize's own annotations, which it strips": {files: map[string]string{"kustomization.yaml": plainKustomization, "b.yaml": objB,
			"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations: {internal.config.kubernetes.io/prefixes: p}\n"}},
		"kustomize's build annotations, inconsistent": {files: map[string]string{"kustomization.yaml": plainKustomization, "b.yaml": objB,
			"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations: {internal.config.kubernetes.io/previousNames: 'x,y'}\n"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := "."
			if _, ok := tc.files["overlay/kustomization.yaml"]; ok {
				dir = "overlay"
			}
			if got := same(t, mapFS(tc.files), dir); got != tc.plain {
				_, _, kerr := buildBoth(t, mapFS(tc.files), dir, "ns")
				t.Fatalf("built plainly: %v, want %v (kustomize: %v)", got, tc.plain, kerr)
			}
		})
	}
}

// TestPlainMatchesKustomizeOnTheRepositories: the golden test repositories
// and the examples, every kustomization in them.
func TestPlainMatchesKustomizeOnTheRepositories(t *testing.T) {
	for _, root := range []string{filepath.Join("testdata", "golden"), filepath.Join("..", "examples")} {
		repo := os.DirFS(root)
		err := fs.WalkDir(repo, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !isKustomization(p) {
				return err
			}
			same(t, repo, filepath.Dir(p))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzPlainKustomizationMatchesKustomize: whatever the kustomization says
// (its resources the file a.yaml, a directory sub/ and whatever else it
// names), a plain build is exactly kustomize's, or there is none.
func FuzzPlainKustomizationMatchesKustomize(f *testing.F) {
	f.Add([]byte(plainKustomization), []byte(objA))
	f.Add([]byte("resources:\n"), []byte(objA))
	f.Add([]byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml, sub, sub/../a.yaml]\n"), []byte(objB))
	f.Add([]byte("resources: [./sub/, a.yaml]\nnamespace: x\n"), []byte(objA))
	f.Fuzz(func(t *testing.T, kustomization, a []byte) {
		if len(kustomization)+len(a) > 1<<16 {
			return
		}
		repo := fstest.MapFS{
			"kustomization.yaml":     {Data: kustomization},
			"a.yaml":                 {Data: a},
			"sub/kustomization.yaml": {Data: []byte("resources: [b.yaml]\n")},
			"sub/b.yaml":             {Data: []byte(objB)},
		}
		same(t, repo, ".")
	})
}

// FuzzPlainMatchesKustomize: whatever two resource files hold, a plain
// build is exactly kustomize's, or there is none.
func FuzzPlainMatchesKustomize(f *testing.F) {
	f.Add([]byte(objA), []byte(objB))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: []\n"), []byte("---\n# nothing\n"))
	f.Add([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: n, annotations: {config.kubernetes.io/local-config: 'yes'}}\n"),
		[]byte("apiVersion: x.io/v1\nkind: Namespace\nmetadata: {name: n}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: n, namespace: default}\n"))
	f.Add([]byte("a: &x [1, 2]\nb: *x\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: anchors}\n"), []byte("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"j\"}}"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if len(a)+len(b) > 1<<16 {
			return
		}
		repo := fstest.MapFS{
			"kustomization.yaml": {Data: []byte(plainKustomization)},
			"a.yaml":             {Data: a},
			"b.yaml":             {Data: b},
		}
		same(t, repo, ".")
	})
}
