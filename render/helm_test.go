package render_test

// An external test, so that it can decrypt with the secrets package, which
// imports render.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/render"
	"github.com/trueup-dev/trueup/secrets"
)

// chartGolden compares got with testdata/charts/expected/name.yaml, or
// rewrites it with -update (the flag render_test.go declares).
func chartGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", "charts", "expected", name+".yaml")
	if f := flag.Lookup("update"); f != nil && f.Value.String() == "true" {
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

// packChart packs the chart directory dir as helm package does: every
// file under a top directory named after the chart.
func packChart(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	top := filepath.Base(dir)
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: path.Join(top, p), Mode: 0o644, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// chartRepo is testdata/charts/repo with app's packaged dependency and an
// encrypted values file, SOPS's own from the secrets package's tests.
func chartRepo(t *testing.T) fstest.MapFS {
	t.Helper()
	repo := fstest.MapFS{}
	root := filepath.Join("testdata", "charts", "repo")
	err := fs.WalkDir(os.DirFS(root), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(filepath.Join(root, p))
		repo[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	repo["app/charts/packaged-0.1.0.tgz"] = &fstest.MapFile{Data: packChart(t, filepath.Join("testdata", "charts", "packaged"))}
	enc, err := os.ReadFile(filepath.Join("..", "secrets", "testdata", "encrypted", "creds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	repo["values/creds.enc.yaml"] = &fstest.MapFile{Data: enc}
	return repo
}

func loadTree(t *testing.T, repo fs.FS) *render.Tree {
	t.Helper()
	tree, err := render.Load(repo)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func decryptor(t *testing.T) *secrets.Decryptor {
	t.Helper()
	d, err := secrets.New(secrets.Options{AgeKeyFiles: []string{filepath.Join("..", "secrets", "testdata", "keys", "test.agekey")}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// objectsByName indexes objects by kind and name.
func objectsByName(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		out[o.GetKind()+"/"+o.GetName()] = o
	}
	return out
}

func configData(t *testing.T, objs map[string]*unstructured.Unstructured, name string) map[string]string {
	t.Helper()
	o, ok := objs[name]
	if !ok {
		t.Fatalf("no %s rendered", name)
	}
	data, _, err := unstructured.NestedStringMap(o.Object, "data")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// prodOptions render app as a production environment would: every
// feature at once.
func prodOptions(t *testing.T) render.ChartOptions {
	return render.ChartOptions{
		Path: "app", ReleaseName: "shop", Namespace: "shop-prod",
		ValuesFiles: []string{"values/base.yaml", "values/prod.yaml", "values/creds.enc.yaml"},
		Values: map[string]any{
			"replicas": 3, // an int, as yaml.v3 decodes the config
			"nested":   map[string]any{"fromInline": "inline", "overridden": "inline"},
			"user":     "${user}",
		},
		Capabilities: &render.Capabilities{KubeVersion: "v1.35.0", APIVersions: []string{"batch/v1", "batch/v1/CronJob"}},
		Decrypter:    decryptor(t),
	}
}

func TestBuildChartGolden(t *testing.T) {
	tree := loadTree(t, chartRepo(t))
	cases := []struct {
		name string
		opts render.ChartOptions
	}{
		{"app-prod", prodOptions(t)},
		{"app-defaults", render.ChartOptions{Path: "app"}},
		{"packaged-archive", render.ChartOptions{Archive: packChart(t, filepath.Join("testdata", "charts", "packaged")), ReleaseName: "svc", Namespace: "edge"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tree.BuildChart(context.Background(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			out, err := render.YAML(c.Objects)
			if err != nil {
				t.Fatal(err)
			}
			chartGolden(t, tc.name, fmt.Appendf(nil, "# %s %s\n%s", c.Name, c.Version, out))
		})
	}
}

func TestBuildChartValues(t *testing.T) {
	c, err := loadTree(t, chartRepo(t)).BuildChart(context.Background(), prodOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	objs := objectsByName(c.Objects)
	got := configData(t, objs, "ConfigMap/shop-app")
	want := map[string]string{
		"greeting": "hello from base", // the chart's, then base's; prod sets none
		"replicas": "3",               // inline wins over base
		// Inline values look as if read from YAML, as the files' do.
		"replicasType": "float64",
		// Maps merge key by key, later winning; lists are replaced.
		"nested":           `{"fromBase":"base","fromChart":"chart","fromInline":"inline","fromProd":"prod","overridden":"inline"}`,
		"list":             `["prod"]`,
		"releaseNamespace": "shop-prod",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if colour := configData(t, objs, "ConfigMap/sub")["colour"]; colour != "green" {
		t.Errorf("subchart colour = %q, want prod's green over both charts' own", colour)
	}
	if c.Name != "app" || c.Version != "1.2.3" {
		t.Errorf("chart %s %s, want app 1.2.3", c.Name, c.Version)
	}
}

func TestBuildChartDecryptsValuesFiles(t *testing.T) {
	c, err := loadTree(t, chartRepo(t)).BuildChart(context.Background(), prodOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	s := objectsByName(c.Objects)["Secret/credentials"]
	if s == nil {
		t.Fatal("no Secret rendered")
	}
	data, _, _ := unstructured.NestedStringMap(s.Object, "stringData")
	// user: the inline value wins over the decrypted file.
	if data["password"] != "yaml-s3cret" || data["user"] != "${user}" {
		t.Errorf("stringData = %v, want the decrypted password and the inline user", data)
	}
}

func TestBuildChartDependencies(t *testing.T) {
	c, err := loadTree(t, chartRepo(t)).BuildChart(context.Background(), render.ChartOptions{Path: "app"})
	if err != nil {
		t.Fatal(err)
	}
	objs := objectsByName(c.Objects)
	if colour := configData(t, objs, "ConfigMap/sub")["colour"]; colour != "red" {
		t.Errorf("unpacked subchart: colour %q, want the parent's red", colour)
	}
	svc := objs["Service/packaged"]
	if svc == nil {
		t.Fatal("packaged subchart: no Service rendered")
	}
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(ports) != 1 || ports[0].(map[string]any)["port"] != int64(8080) {
		t.Errorf("packaged subchart: ports %v, want 8080 as an int64", ports)
	}
}

func TestBuildChartCapabilities(t *testing.T) {
	tree := loadTree(t, chartRepo(t))
	for _, tc := range []struct {
		name string
		caps *render.Capabilities
		want map[string]string
	}{
		{"helm's defaults", nil, map[string]string{"kubeVersion": "v1.20.0", "cronJobs": "false", "widgets": "false"}},
		{"the cluster's", &render.Capabilities{KubeVersion: "1.35.2", APIVersions: []string{"example.com/v1", "example.com/v1/Widget"}},
			map[string]string{"kubeVersion": "v1.35.2", "cronJobs": "false", "widgets": "true"}},
		{"an API version by kind", &render.Capabilities{APIVersions: []string{"batch/v1/CronJob"}},
			map[string]string{"kubeVersion": "v1.20.0", "cronJobs": "true", "widgets": "false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tree.BuildChart(context.Background(), render.ChartOptions{Path: "app", Capabilities: tc.caps})
			if err != nil {
				t.Fatal(err)
			}
			got := configData(t, objectsByName(c.Objects), "ConfigMap/capabilities")
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestBuildChartHooks(t *testing.T) {
	c, err := loadTree(t, chartRepo(t)).BuildChart(context.Background(), render.ChartOptions{Path: "app"})
	if err != nil {
		t.Fatal(err)
	}
	objs := objectsByName(c.Objects)
	job := objs["Job/migrate"]
	if job == nil {
		t.Fatal("the pre-install hook is missing")
	}
	want := map[string]string{"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-weight": "-5", "helm.sh/hook-delete-policy": "before-hook-creation"}
	for k, v := range want {
		if got := job.GetAnnotations()[k]; got != v {
			t.Errorf("hook annotation %s = %q, want %q", k, got, v)
		}
	}
	if objs["ConfigMap/after-upgrade"] == nil {
		t.Error("the post-upgrade hook is missing")
	}
	for _, name := range []string{"Pod/smoke-test", "Pod/legacy-test", "Job/cleanup"} {
		if objs[name] != nil {
			t.Errorf("%s is rendered: test hooks and delete or rollback hooks are no part of an apply", name)
		}
	}
	// Hooks come after the release's manifests, as helm template puts them.
	last := c.Objects[len(c.Objects)-1]
	if last.GetName() != "after-upgrade" && last.GetName() != "migrate" {
		t.Errorf("the last object is %s %s, want a hook", last.GetKind(), last.GetName())
	}
}

func TestBuildChartNamespaceDefaulting(t *testing.T) {
	c, err := loadTree(t, chartRepo(t)).BuildChart(context.Background(), render.ChartOptions{Path: "app", Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ConfigMap/release-name-app":                   "shop",
		"Job/migrate":                                  "shop", // a hook
		"ConfigMap/pinned":                             "platform",
		"ClusterRole/reader":                           "",
		"CustomResourceDefinition/widgets.example.com": "",
		"Widget/cluster-widget":                        "",     // cluster-scoped by its CRD in crds/
		"Gizmo/namespaced-gizmo":                       "shop", // namespaced by its CRD
		"Gadget/unknown-kind":                          "shop", // unknown: namespaced
		"ServiceAccount/listed-a":                      "shop", // an item of a List
	}
	got := objectsByName(c.Objects)
	for name, ns := range want {
		o, ok := got[name]
		if !ok {
			t.Errorf("%s is missing", name)
			continue
		}
		if o.GetNamespace() != ns {
			t.Errorf("%s: namespace %q, want %q", name, o.GetNamespace(), ns)
		}
	}
	if got["List/"] != nil {
		t.Error("a List is rendered as such: its items are the objects")
	}
}

// TestBuildChartReadsOnlyTheChart: a chart's files are its directory's,
// less what .helmignore leaves out; .Files.Get of anything else is empty.
func TestBuildChartReadsOnlyTheChart(t *testing.T) {
	c, err := loadTree(t, chartRepo(t)).BuildChart(context.Background(), render.ChartOptions{Path: "app"})
	if err != nil {
		t.Fatal(err)
	}
	got := configData(t, objectsByName(c.Objects), "ConfigMap/release-name-app")
	if got["file"] != "data from the chart's files\n" {
		t.Errorf("file = %q, want the chart's files/data.txt", got["file"])
	}
	for _, k := range []string{"outsideChart", "outsideRepo", "ignored"} {
		if got[k] != "" {
			t.Errorf("%s = %q, want nothing", k, got[k])
		}
	}
	if want := ".helmignore,crds/widgets.yaml,files/data.txt"; got["files"] != want {
		t.Errorf("the chart's files are %q, want %q", got["files"], want)
	}
	out, _ := render.YAML(c.Objects)
	if bytes.Contains(out, []byte("outside-the-chart")) || bytes.Contains(out, []byte("name: ignored")) {
		t.Errorf("the render shows what is not the chart's:\n%s", out)
	}
}

func TestBuildChartArchive(t *testing.T) {
	// The tree is read for values files only; its charts are no matter.
	tree := loadTree(t, fstest.MapFS{"values.yaml": {Data: []byte("port: 9090\n")}})
	c, err := tree.BuildChart(context.Background(), render.ChartOptions{
		Path:    "ignored",
		Archive: packChart(t, filepath.Join("testdata", "charts", "packaged")), ValuesFiles: []string{"values.yaml"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "packaged" || c.Version != "0.1.0" || len(c.Objects) != 1 {
		t.Fatalf("got %s %s with %d objects, want packaged 0.1.0 with its Service", c.Name, c.Version, len(c.Objects))
	}
	ports, _, _ := unstructured.NestedSlice(c.Objects[0].Object, "spec", "ports")
	if len(ports) != 1 || ports[0].(map[string]any)["port"] != int64(9090) {
		t.Errorf("ports %v, want the values file's 9090", ports)
	}
}

// TestBuildChartTemplatesAreNotMeasuredAsYAML: a template is text, YAML
// only once rendered, and is held to the size limit alone; what it renders
// is measured, and so are the chart's other files.
func TestBuildChartTemplatesAreNotMeasuredAsYAML(t *testing.T) {
	// As written, the template nests five deep: its {{ }} read as two
	// flow mappings. Rendered, it nests three deep.
	tmpl := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels:\n    app: {{ .Chart.Name }}\n"
	chartYAML := "apiVersion: v2\nname: deep\nversion: 1.0.0\n"
	limits := config.Limits{MaxYAMLDepth: 4}
	repo := fstest.MapFS{
		"deep/Chart.yaml":          {Data: []byte(chartYAML)},
		"deep/templates/cm.yaml":   {Data: []byte(tmpl)},
		"deeper/Chart.yaml":        {Data: []byte(chartYAML)},
		"deeper/templates/cm.yaml": {Data: []byte(tmpl + "data:\n  x: {{ dict \"a\" (dict \"b\" (dict \"c\" 1)) | toJson }}\n")},
		"deepvalues/Chart.yaml":    {Data: []byte(chartYAML)},
		"deepvalues/values.yaml":   {Data: []byte("a:\n  b:\n    c:\n      d:\n        e: 1\n")},
	}
	tree := loadTree(t, repo)
	if _, err := tree.BuildChart(context.Background(), render.ChartOptions{Path: "deep", Limits: limits}); err != nil {
		t.Fatalf("a template measured as YAML: %v", err)
	}
	for _, dir := range []string{"deeper", "deepvalues"} {
		_, err := tree.BuildChart(context.Background(), render.ChartOptions{Path: dir, Limits: limits})
		if le := (*render.LimitError)(nil); !errors.As(err, &le) || le.Key != "maxYAMLDepth" {
			t.Errorf("%s: got %v, want maxYAMLDepth", dir, err)
		}
	}
}

// failingDecrypter cannot open one file.
type failingDecrypter struct{ file string }

func (d failingDecrypter) DecryptFile(file string, data []byte) ([]byte, error) {
	if file == d.file {
		return nil, fmt.Errorf("decrypt %s: no matching key", file)
	}
	return data, nil
}

func TestBuildChartErrors(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	link := func(target string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink}
	}
	chartYAML := file("apiVersion: v2\nname: c\nversion: 1.0.0\n")
	cm := file("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")
	cases := []struct {
		name string
		repo fstest.MapFS
		opts render.ChartOptions
		want []string // substrings of the one-line error
		is   error
	}{
		{
			name: "symlink in the chart leaving the repository",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "c/templates/passwd.yaml": link("../../../etc/passwd")},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c/templates/passwd.yaml", "../../../etc/passwd", "outside the repository"},
		},
		{
			name: "chart reached through a symlink leaving the repository",
			repo: fstest.MapFS{"charts": link("/etc")},
			opts: render.ChartOptions{Path: "charts/c"},
			want: []string{"charts", "/etc", "outside the repository"},
		},
		{
			name: "chart path climbing out",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML},
			opts: render.ChartOptions{Path: "../x"},
			want: []string{`"../x"`, "outside the repository"},
		},
		{
			name: "missing chart directory",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML},
			opts: render.ChartOptions{Path: "nope"},
			want: []string{"nope"}, is: fs.ErrNotExist,
		},
		{
			name: "missing Chart.yaml",
			repo: fstest.MapFS{"c/templates/cm.yaml": cm},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c is not a chart", "Chart.yaml"}, is: fs.ErrNotExist,
		},
		{
			name: "invalid Chart.yaml",
			repo: fstest.MapFS{"c/Chart.yaml": file("apiVersion: v2\nversion: 1.0.0\n")},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: ", "name is required"},
		},
		{
			name: "missing dependency",
			repo: fstest.MapFS{
				"c/Chart.yaml":                file("apiVersion: v2\nname: c\nversion: 1.0.0\ndependencies:\n- name: present\n  version: 1.0.0\n- name: redis\n  version: 1.0.0\n  repository: https://charts.example.com\n"),
				"c/charts/present/Chart.yaml": file("apiVersion: v2\nname: present\nversion: 1.0.0\n"),
			},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: ", "missing in charts/", "redis"},
		},
		{
			name: "library chart",
			repo: fstest.MapFS{"c/Chart.yaml": file("apiVersion: v2\nname: c\nversion: 1.0.0\ntype: library\n")},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: ", "library charts are not installable"},
		},
		{
			name: "failing template",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "c/templates/cm.yaml": file("{{ fail \"the value is wrong\" }}\n")},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: ", "c/templates/cm.yaml", "the value is wrong"},
		},
		{
			// The regexp compiles with a panic, which text/template
			// turns into an error.
			name: "template panicking",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "c/templates/cm.yaml": file("{{ regexReplaceAll \"(\" \"x\" \"y\" }}\n")},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: ", "c/templates/cm.yaml", "regexReplaceAll"},
		},
		{
			name: "template that does not parse",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "c/templates/cm.yaml": file("{{ if }}\n")},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: ", "c/templates/cm.yaml"},
		},
		{
			name: "rendered YAML that does not parse",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "c/templates/cm.yaml": file("a: b: c\n")},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: ", "c/templates/cm.yaml"},
		},
		{
			name: "rendered document that is no object",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "c/templates/cm.yaml": file("metadata:\n  name: x\n")},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: ", "c/templates/cm.yaml", "no kind"},
		},
		{
			name: "values against the chart's schema",
			repo: fstest.MapFS{
				"c/Chart.yaml":         chartYAML,
				"c/values.schema.json": file(`{"type": "object", "properties": {"port": {"type": "integer"}}, "required": ["port"]}`),
			},
			opts: render.ChartOptions{Path: "c", Values: map[string]any{"port": "http"}},
			want: []string{"c: ", "port"},
		},
		{
			name: "schema reading a file",
			repo: fstest.MapFS{
				"c/Chart.yaml":         chartYAML,
				"c/values.schema.json": file(`{"properties": {"a": {"$ref": "file:///etc/passwd"}}}`),
			},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: c/values.schema.json refers to", "file:///etc/passwd"},
		},
		{
			name: "subchart schema reaching the network",
			repo: fstest.MapFS{
				"c/Chart.yaml":                  chartYAML,
				"c/charts/s/Chart.yaml":         file("apiVersion: v2\nname: s\nversion: 1.0.0\n"),
				"c/charts/s/values.schema.json": file(`{"$schema": "http://json-schema.org/draft-07/schema#", "$ref": "https://schemas.example.com/s.json"}`),
			},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c: c/charts/s/values.schema.json refers to", "https://schemas.example.com/s.json"},
		},
		{
			name: "kubeVersion the cluster does not meet",
			repo: fstest.MapFS{"c/Chart.yaml": file("apiVersion: v2\nname: c\nversion: 1.0.0\nkubeVersion: '>=1.30.0-0'\n")},
			opts: render.ChartOptions{Path: "c", Capabilities: &render.Capabilities{KubeVersion: "v1.29.4"}},
			want: []string{"c: ", "kubeVersion", "v1.29.4"},
		},
		{
			name: "invalid kube version",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML},
			opts: render.ChartOptions{Path: "c", Capabilities: &render.Capabilities{KubeVersion: "latest"}},
			want: []string{"c: ", `"latest"`},
		},
		{
			name: "invalid release name",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML},
			opts: render.ChartOptions{Path: "c", ReleaseName: "Not_A_Name"},
			want: []string{"c: ", "Not_A_Name"},
		},
		{
			name: "missing values file",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML},
			opts: render.ChartOptions{Path: "c", ValuesFiles: []string{"values/missing.yaml"}},
			want: []string{"values/missing.yaml"}, is: fs.ErrNotExist,
		},
		{
			name: "values file climbing out",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML},
			opts: render.ChartOptions{Path: "c", ValuesFiles: []string{"../values.yaml"}},
			want: []string{`"../values.yaml"`, "outside the repository"},
		},
		{
			name: "values file through a symlink leaving the repository",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "values.yaml": link("/etc/passwd")},
			opts: render.ChartOptions{Path: "c", ValuesFiles: []string{"values.yaml"}},
			want: []string{"values.yaml", "/etc/passwd", "outside the repository"},
		},
		{
			name: "values file that does not parse",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "v.yaml": file("a: [\n")},
			opts: render.ChartOptions{Path: "c", ValuesFiles: []string{"v.yaml"}},
			want: []string{"v.yaml: "},
		},
		{
			name: "values file that is no mapping",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "v.yaml": file("- a\n")},
			opts: render.ChartOptions{Path: "c", ValuesFiles: []string{"v.yaml"}},
			want: []string{"v.yaml: "},
		},
		{
			name: "values file that does not decrypt",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "v.yaml": file("a: 1\n")},
			opts: render.ChartOptions{Path: "c", ValuesFiles: []string{"v.yaml"}, Decrypter: failingDecrypter{"v.yaml"}},
			want: []string{"v.yaml", "no matching key"},
		},
		{
			name: "broken chart archive",
			repo: fstest.MapFS{},
			opts: render.ChartOptions{Archive: []byte("not gzip")},
			want: []string{"chart archive: "},
		},
		{
			name: "broken packaged subchart",
			repo: fstest.MapFS{"c/Chart.yaml": chartYAML, "c/charts/s-1.0.0.tgz": file("not gzip")},
			opts: render.ChartOptions{Path: "c"},
			want: []string{"c/charts/s-1.0.0.tgz: "},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTree(t, tc.repo).BuildChart(context.Background(), tc.opts)
			if err == nil {
				t.Fatal("BuildChart succeeded, want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if strings.Contains(msg, "/repo/") {
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

// panickingDecrypter fails as a parser may on crafted input.
type panickingDecrypter struct{}

func (panickingDecrypter) DecryptFile(string, []byte) ([]byte, error) { panic("index out of range") }

// TestBuildChartPanicIsAnError: what panics in a render, in Helm or in
// what it reads through, fails the render alone. (Helm's engine turns a
// template's panics into errors itself: "template panicking" above.)
func TestBuildChartPanicIsAnError(t *testing.T) {
	_, err := loadTree(t, chartRepo(t)).BuildChart(context.Background(), render.ChartOptions{Path: "app", Decrypter: panickingDecrypter{}})
	if want := "app: rendering failed on this input: index out of range"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// TestBuildChartSymlinks uses a real directory, since os.DirFS follows
// links on disk and the render must not.
func TestBuildChartSymlinks(t *testing.T) {
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
	write("app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 1.0.0\n")
	if err := os.Symlink("../shared", filepath.Join(dir, "app", "templates")); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "leak.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leaked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write("bad/Chart.yaml", "apiVersion: v2\nname: bad\nversion: 1.0.0\n")
	if err := os.Symlink(outside, filepath.Join(dir, "bad", "templates")); err != nil {
		t.Fatal(err)
	}
	tree := loadTree(t, os.DirFS(dir))

	c, err := tree.BuildChart(context.Background(), render.ChartOptions{Path: "app"})
	if err != nil {
		t.Fatalf("a link inside the repository must work: %v", err)
	}
	if len(c.Objects) != 1 || c.Objects[0].GetName() != "shared" {
		t.Fatalf("got %v, want the linked ConfigMap", c.Objects)
	}
	_, err = tree.BuildChart(context.Background(), render.ChartOptions{Path: "bad"})
	if err == nil || !strings.Contains(err.Error(), "bad/templates") || !strings.Contains(err.Error(), "outside the repository") {
		t.Fatalf("got %v, want an escape error naming bad/templates", err)
	}
}

func TestBuildChartLimits(t *testing.T) {
	chartYAML := []byte("apiVersion: v2\nname: c\nversion: 1.0.0\n")
	many := "{{ range until 11 }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{{ . }}\n{{ end }}\n"
	repo := fstest.MapFS{
		"c/Chart.yaml":           {Data: chartYAML},
		"c/templates/many.yaml":  {Data: []byte(many)},
		"big.yaml":               {Data: []byte("a: " + strings.Repeat("x", 2048) + "\n")},
		"small/Chart.yaml":       {Data: chartYAML},
		"small/values.yaml":      {Data: []byte("a: " + strings.Repeat("x", 2048) + "\n")},
		"small/templates/a.yaml": {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")},
	}
	tree := loadTree(t, repo)
	cases := []struct {
		name      string
		opts      render.ChartOptions
		file, key string
	}{
		{"values file over maxFileSize", render.ChartOptions{Path: "c", ValuesFiles: []string{"big.yaml"}, Limits: config.Limits{MaxFileSize: 1024}}, "big.yaml", "maxFileSize"},
		{"chart file over maxFileSize", render.ChartOptions{Path: "small", Limits: config.Limits{MaxFileSize: 1024}}, "small/values.yaml", "maxFileSize"},
		{"objects over maxObjects", render.ChartOptions{Path: "c", Limits: config.Limits{MaxObjects: 10}}, "c", "maxObjects"},
		{"objects over maxRenderedSize", render.ChartOptions{Path: "c", Limits: config.Limits{MaxRenderedSize: 500}}, "c", "maxRenderedSize"},
		{"archive over maxFileSize", render.ChartOptions{Archive: packChart(t, filepath.Join("testdata", "charts", "packaged")), Limits: config.Limits{MaxFileSize: 100}}, "chart archive", "maxFileSize"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tree.BuildChart(context.Background(), tc.opts)
			le := (*render.LimitError)(nil)
			if !errors.As(err, &le) || !errors.Is(err, render.ErrLimit) {
				t.Fatalf("got %v, want a LimitError", err)
			}
			if le.File != tc.file || le.Key != tc.key {
				t.Errorf("limit %s of %s, want %s of %s (%v)", le.Key, le.File, tc.key, tc.file, err)
			}
		})
	}
	if c, err := tree.BuildChart(context.Background(), render.ChartOptions{Path: "c", Limits: config.Limits{MaxObjects: 11}}); err != nil || len(c.Objects) != 11 {
		t.Errorf("at the limit: %v, want 11 objects", err)
	}
}

func TestBuildChartCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := loadTree(t, chartRepo(t)).BuildChart(ctx, render.ChartOptions{Path: "app"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// TestBuildChartConcurrent: one tree serves concurrent chart renders, each
// with capabilities of its own, as a tree serves concurrent overlay builds
// (run with -race: Helm appends a render's API versions to its default
// set, a global).
func TestBuildChartConcurrent(t *testing.T) {
	tree := loadTree(t, chartRepo(t))
	optsFor := func(i int) render.ChartOptions {
		return render.ChartOptions{Path: "app", Namespace: fmt.Sprint("ns-", i%4),
			Capabilities: &render.Capabilities{APIVersions: []string{fmt.Sprintf("example.com/v%d", i%4)}}}
	}
	want := map[int][]byte{}
	for i := range 4 {
		c, err := tree.BuildChart(context.Background(), optsFor(i))
		if err != nil {
			t.Fatal(err)
		}
		want[i], _ = render.YAML(c.Objects)
	}
	if bytes.Equal(want[0], want[1]) {
		t.Fatal("renders with different options are the same")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			c, err := tree.BuildChart(context.Background(), optsFor(i))
			if err != nil {
				errs <- err
				return
			}
			if got, _ := render.YAML(c.Objects); !bytes.Equal(got, want[i%4]) {
				errs <- fmt.Errorf("render %d differs from its own alone:\n%s", i, got)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
