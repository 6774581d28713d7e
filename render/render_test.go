package render

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

var update = flag.Bool("update", false, "rewrite golden files with the current output")

// golden compares got with testdata/expected/name.yaml, or rewrites it.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", "expected", name+".yaml")
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./render -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", file, got)
	}
}

func TestBuildGolden(t *testing.T) {
	cases := []struct {
		name, repo string
		opts       Options
	}{
		{"basic-dev", "basic", Options{Path: "overlays/dev", Namespace: "app-dev"}},
		{"basic-base-no-namespace", "basic", Options{Path: "base"}},
		{"basic-dev-dotted-path", "basic", Options{Path: "./overlays/../overlays/dev/", Namespace: "app-dev"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Build(context.Background(), os.DirFS(filepath.Join("testdata", "golden", tc.repo)), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			out, err := YAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, out)
		})
	}
}

func TestBuildNamespaceDefaulting(t *testing.T) {
	objs, err := Build(context.Background(), os.DirFS("testdata/golden/basic"), Options{Path: "overlays/dev", Namespace: "app-dev"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Deployment/api":         "app-dev",
		"Service/api":            "app-dev",
		"ConfigMap/shared":       "platform", // set by the manifest
		"ClusterRole/api-reader": "",
		"CustomResourceDefinition/tenants.example.com": "",
		"Tenant/acme":   "",        // cluster-scoped by its CRD
		"Widget/gadget": "app-dev", // unknown kind: namespaced
	}
	got := map[string]string{}
	for _, o := range objs {
		got[o.GetKind()+"/"+o.GetName()] = o.GetNamespace()
	}
	for k, ns := range want {
		if g, ok := got[k]; !ok || g != ns {
			t.Errorf("%s: namespace %q (present %v), want %q", k, g, ok, ns)
		}
	}
}

// upperDecrypter stands in for SOPS: it proves the hook sees the repo-relative
// path of exactly the files kustomize reads, and that its output is used.
type upperDecrypter struct{ seen []string }

func (u *upperDecrypter) DecryptFile(path string, data []byte) ([]byte, error) {
	u.seen = append(u.seen, path)
	if strings.HasSuffix(path, ".env") {
		return bytes.ToUpper(data), nil
	}
	if strings.Contains(path, "broken") {
		return nil, errors.New("decrypt " + path + ": no matching key")
	}
	return data, nil
}

func TestBuildDecryptsWhatKustomizeReads(t *testing.T) {
	repo := fstest.MapFS{
		"app/kustomization.yaml": {Data: []byte("secretGenerator:\n- name: creds\n  envs: [creds.env]\n")},
		"app/creds.env":          {Data: []byte("token=abc\n")},
		"other/unused.yaml":      {Data: []byte("not: read")},
	}
	d := &upperDecrypter{}
	objs, err := Build(context.Background(), repo, Options{Path: "app", Decrypter: d})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects, want 1", len(objs))
	}
	data, _, _ := unstructured.NestedString(objs[0].Object, "data", "TOKEN")
	if data != "QUJD" { // base64("ABC")
		t.Errorf("secret data = %q, want the decrypted value", data)
	}
	if strings.Join(d.seen, ",") != "app/creds.env" {
		t.Errorf("decrypter saw %v, want only app/creds.env", d.seen)
	}
}

func TestBuildErrors(t *testing.T) {
	kust := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	link := func(target string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink}
	}
	cm := kust("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")
	cases := []struct {
		name string
		repo fstest.MapFS
		path string
		want []string // substrings of the one-line error
		is   error
	}{
		{
			name: "broken kustomization",
			repo: fstest.MapFS{"app/kustomization.yaml": kust("resources: [a.yaml\n")},
			path: "app", want: []string{"kustomization.yaml"},
		},
		{
			name: "unknown kustomization field",
			repo: fstest.MapFS{"app/kustomization.yaml": kust("resourcez: [a.yaml]\n")},
			path: "app", want: []string{"resourcez"},
		},
		{
			name: "missing resource",
			repo: fstest.MapFS{"app/kustomization.yaml": kust("resources: [missing.yaml]\n")},
			path: "app", want: []string{"missing.yaml"},
		},
		{
			name: "symlink escaping the repo",
			repo: fstest.MapFS{
				"app/kustomization.yaml": kust("resources: [passwd.yaml]\n"),
				"app/passwd.yaml":        link("../../../etc/passwd"),
			},
			path: "app", want: []string{"app/passwd.yaml", "../../../etc/passwd", "outside the repository"},
		},
		{
			name: "absolute symlink",
			repo: fstest.MapFS{
				"app/kustomization.yaml": kust("resources: [base]\n"),
				"app/base":               link("/etc"),
			},
			path: "app", want: []string{"app/base", "/etc", "outside the repository"},
		},
		{
			name: "relative path climbing out",
			repo: fstest.MapFS{"app/kustomization.yaml": kust("resources: [../../../../etc]\n")},
			path: "app", want: []string{"/etc", "outside the repository"},
		},
		{
			name: "overlay path climbing out",
			repo: fstest.MapFS{"app/kustomization.yaml": kust("resources: []\n")},
			path: "../elsewhere", want: []string{"../elsewhere", "outside the repository"},
		},
		{
			name: "remote git base",
			repo: fstest.MapFS{"app/kustomization.yaml": kust("resources:\n- github.com/acme/deploy//base?ref=main\n")},
			path: "app", want: []string{"app/kustomization.yaml", "github.com/acme/deploy"}, is: ErrRemote,
		},
		{
			name: "remote https resource",
			repo: fstest.MapFS{"app/kustomization.yaml": kust("resources:\n- https://example.com/x.yaml\n")},
			path: "app", want: []string{"https://example.com/x.yaml"}, is: ErrRemote,
		},
		{
			name: "helm chart",
			repo: fstest.MapFS{"app/kustomization.yaml": kust("helmCharts:\n- name: redis\n  repo: https://charts.example.com\n")},
			path: "app", want: []string{"helm"},
		},
		{
			name: "exec plugin",
			repo: fstest.MapFS{
				"app/kustomization.yaml": kust("generators: [gen.yaml]\n"),
				"app/gen.yaml":           kust("apiVersion: example.com/v1\nkind: Exec\nmetadata:\n  name: x\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n"),
			},
			path: "app", want: []string{"plugin"},
		},
		{
			name: "decryption failure",
			repo: fstest.MapFS{
				"app/kustomization.yaml": kust("resources: [broken-secret.yaml]\n"),
				"app/broken-secret.yaml": cm,
			},
			path: "app", want: []string{"app/broken-secret.yaml", "no matching key"},
		},
		{
			// Kustomize panics on its own build annotations when they do
			// not add up; a repository must not crash the daemon.
			name: "kustomize's build annotations, inconsistent",
			repo: fstest.MapFS{
				"app/kustomization.yaml": kust("resources: [a.yaml, b.yaml]\n"),
				"app/a.yaml":             kust("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations: {internal.config.kubernetes.io/previousNames: 'x,y'}\n"),
				"app/b.yaml":             cm,
			},
			path: "app", want: []string{"app/kustomization.yaml", "kustomize failed", "number of previous names"},
		},
		{
			name: "missing overlay",
			repo: fstest.MapFS{"app/kustomization.yaml": kust("resources: []\n")},
			path: "nope", want: []string{"nope"}, is: fs.ErrNotExist,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(context.Background(), tc.repo, Options{Path: tc.path, Decrypter: &upperDecrypter{}})
			if err == nil {
				t.Fatal("Build succeeded, want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if strings.Contains(msg, mountPoint+"/") {
				t.Errorf("error leaks the in-memory mount point: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", msg, tc.is)
			}
		})
	}
}

// TestBuildSymlinks uses a real directory, as `--repo DIR` does, because
// os.DirFS follows links on disk and the render must not.
func TestBuildSymlinks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("shared/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n")
	write("app/kustomization.yaml", "resources: [linked/cm.yaml]\n")
	if err := os.Symlink("../shared", filepath.Join(dir, "app", "linked")); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leaked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	write("bad/kustomization.yaml", "resources: [../escape/secret.yaml]\n")

	objs, err := Build(context.Background(), os.DirFS(dir), Options{Path: "app"})
	if err != nil {
		t.Fatalf("a link inside the repo must work: %v", err)
	}
	if len(objs) != 1 || objs[0].GetName() != "shared" {
		t.Fatalf("got %v, want the linked ConfigMap", objs)
	}

	_, err = Build(context.Background(), os.DirFS(dir), Options{Path: "bad"})
	if err == nil || !strings.Contains(err.Error(), "outside the repository") {
		t.Fatalf("got %v, want an escape error", err)
	}
}

func TestIsRemoteRef(t *testing.T) {
	for ref, want := range map[string]bool{
		"../base":                              false,
		"deployment.yaml":                      false,
		"https://example.com/a.yaml":           true,
		"ssh://git@example.com/acme/deploy":    true,
		"git@github.com:acme/deploy.git//base": true,
		"github.com/acme/deploy/base":          true,
		"git::https://example.com/repo":        true,
		"file:///tmp/repo":                     true,
		"":                                     false,
		"apiVersion: v1\nkind: x":              false,
	} {
		if got := isRemoteRef(ref); got != want {
			t.Errorf("isRemoteRef(%q) = %v, want %v", ref, got, want)
		}
	}
}

// TestBuildObjectsAreDeepCopyable guards the contract with the Kubernetes
// libraries: unstructured content must be JSON types (int64, not int).
func TestBuildObjectsAreDeepCopyable(t *testing.T) {
	objs, err := Build(context.Background(), os.DirFS("testdata/golden/basic"), Options{Path: "overlays/dev"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		_ = o.DeepCopy() // panics on non-JSON types
	}
}

// TestTreeSharedByConcurrentBuilds: one loaded tree serves concurrent
// builds of different overlays, each with its own decrypter and inputs,
// with the same results as builds of their own (run with -race).
func TestTreeSharedByConcurrentBuilds(t *testing.T) {
	repo := os.DirFS(filepath.Join("testdata", "golden", "basic"))
	tree, err := Load(repo)
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"overlays/dev", "base"}
	want := map[string][]byte{}
	for _, p := range paths {
		objs, err := Build(context.Background(), repo, Options{Path: p, Namespace: "ns", Decrypter: &upperDecrypter{}})
		if err != nil {
			t.Fatal(err)
		}
		want[p], _ = YAML(objs)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			p := paths[i%len(paths)]
			objs, err := tree.Build(context.Background(), Options{Path: p, Namespace: "ns", Decrypter: &upperDecrypter{}, Inputs: &Inputs{}})
			if err != nil {
				errs <- err
				return
			}
			if got, _ := YAML(objs); !bytes.Equal(got, want[p]) {
				errs <- fmt.Errorf("%s: a shared tree built something else:\n%s", p, got)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
