package render

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/ignore"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"

	"github.com/trueup-dev/trueup/config"
)

// ChartOptions says which chart to render and how, as helm template would.
type ChartOptions struct {
	// Path is the chart directory in the repository, the one holding
	// Chart.yaml; ignored when Archive is set.
	Path string
	// Archive is a packaged chart (.tgz) fetched from a chart repository;
	// nil renders the chart at Path.
	Archive []byte
	// ReleaseName is .Release.Name; empty is helm template's
	// "release-name".
	ReleaseName string
	// Namespace is the release namespace (empty: "default", as helm
	// template has it); it is also set on namespaced objects that set
	// none, as helm install does.
	Namespace string
	// ValuesFiles are repository-relative, slash separated; later files
	// win, as helm's -f. SOPS files are decrypted through Decrypter.
	ValuesFiles []string
	// Values win over the files, as helm's --set.
	Values map[string]any
	// Capabilities are the target cluster's; nil: Helm's default API
	// versions and the Kubernetes version of trueup's client-go, as the
	// helm CLI has them.
	Capabilities *Capabilities
	// Decrypter, when set, decrypts SOPS files as they are read.
	Decrypter Decrypter
	// Inputs, when set, records the repository files the render reads. A
	// chart at Path is read by listing its directory, which Inputs does
	// not track: its Inputs are never Unchanged.
	Inputs *Inputs
	// Limits bound the files the render reads and the objects it builds;
	// a zero field is that limit's default.
	Limits config.Limits
}

// Capabilities are the target cluster's, as helm template's
// --kube-version and --api-versions.
type Capabilities struct {
	KubeVersion string   // e.g. v1.35.0; empty: that of trueup's client-go
	APIVersions []string // group/version and group/version/Kind entries, as Helm's VersionSet
}

// Chart is a rendered chart.
type Chart struct {
	// Name and Version are those of the rendered chart's Chart.yaml.
	Name, Version string
	// Objects are the manifests in Helm's install order, then the install
	// and upgrade hooks with their helm.sh/hook annotations.
	Objects []*unstructured.Unstructured
}

// maxChartDepth bounds how deeply packaged subcharts may nest: an archive
// can hold itself, and Helm would unpack it without end.
const maxChartDepth = 16

// BuildChart renders a chart as helm template does, in memory: the chart
// at opts.Path of the tree (through the same guards as an overlay: nothing
// outside the repository, every file held to the limits and decrypted),
// or opts.Archive. Nothing is executed, and nothing reaches the network.
func (tr *Tree) BuildChart(ctx context.Context, opts ChartOptions) (c *Chart, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := newChartBuild(tr.t, opts)
	if err != nil {
		return nil, err
	}
	// Helm's loader and template engine, and a decrypter's parser, may
	// panic on some input, and a repository's content must not take the
	// daemon down: the panic is the render's error.
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("%s: rendering failed on this input: %v", b.where, r)
		}
	}()
	return b.build(ctx)
}

func (b *chartBuild) build(ctx context.Context) (*Chart, error) {
	ch, err := b.load()
	if err != nil {
		return nil, err
	}
	vals, err := b.values()
	if err != nil {
		return nil, err
	}
	docs, err := b.render(ch, vals)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	objs, err := b.objects(docs)
	if err != nil {
		return nil, err
	}
	return &Chart{Name: ch.Metadata.Name, Version: ch.Metadata.Version, Objects: objs}, nil
}

// chartBuild is one render of a chart.
type chartBuild struct {
	t     *tree
	opts  ChartOptions
	g     *guardedFS
	dir   string // the chart's directory; "" for an archive
	where string // what errors name: dir, or the archive
}

func newChartBuild(t *tree, opts ChartOptions) (*chartBuild, error) {
	b := &chartBuild{t: t, opts: opts, where: "chart archive",
		g: newGuardedFS(t, Options{Decrypter: opts.Decrypter, Inputs: opts.Inputs, Limits: opts.Limits})}
	if opts.Archive == nil {
		dir, err := cleanPath(opts.Path)
		if err != nil {
			return nil, fmt.Errorf("chart path %q is outside the repository", opts.Path)
		}
		b.dir, b.where = dir, dir
		b.g.sizeOnly = func(rel string) bool {
			name, ok := inDir(b.dir, rel)
			return ok && notYAML(name)
		}
	}
	if opts.Inputs != nil && t.links > 0 {
		opts.Inputs.markInexact()
	}
	return b, nil
}

// inDir returns rel relative to dir, when it is inside it.
func inDir(dir, rel string) (string, bool) {
	if dir == "." {
		return rel, true
	}
	return strings.CutPrefix(rel, dir+"/")
}

// notYAML reports a chart file (name is relative to the chart) that is not
// YAML to measure: a template, text that becomes YAML only once rendered,
// or a packaged subchart, whose files are measured as it is unpacked.
func notYAML(name string) bool {
	for {
		dir, rest, ok := strings.Cut(name, "/")
		switch {
		case !ok:
			return false
		case dir == "templates":
			return true
		case dir != "charts":
			return false
		}
		sub, inner, ok := strings.Cut(rest, "/")
		if !ok {
			return isChartArchive(sub)
		}
		name = inner
	}
}

// isChartArchive reports a file name that Helm unpacks as a subchart in
// charts/.
func isChartArchive(name string) bool { return path.Ext(name) == ".tgz" }

// load reads the chart and checks that Helm can install it, as helm
// template does.
func (b *chartBuild) load() (*chart.Chart, error) {
	var files []*loader.BufferedFile
	var err error
	if b.opts.Archive != nil {
		if err := checkSize(b.where, int64(len(b.opts.Archive)), b.g.limits); err != nil {
			return nil, err
		}
		files, err = b.unpack(b.where, b.opts.Archive, 0)
	} else {
		files, err = b.readDir()
	}
	if err != nil {
		return nil, err
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, b.helmError(err)
	}
	if b.opts.Archive != nil {
		b.where = ch.Metadata.Name + "-" + ch.Metadata.Version + ".tgz"
	}
	if t := ch.Metadata.Type; t != "" && t != "application" {
		return nil, fmt.Errorf("%s: %s charts are not installable", b.where, t)
	}
	if deps := ch.Metadata.Dependencies; deps != nil {
		if err := checkDependencies(ch, deps); err != nil {
			return nil, fmt.Errorf("%s: %w", b.where, err)
		}
	}
	return ch, nil
}

// checkDependencies refuses a chart whose Chart.yaml names dependencies
// its charts/ directory lacks, as helm install does.
func checkDependencies(ch *chart.Chart, reqs []*chart.Dependency) error {
	var missing []string
	for _, r := range reqs {
		if !slices.ContainsFunc(ch.Dependencies(), func(d *chart.Chart) bool { return d.Name() == r.Name }) {
			missing = append(missing, r.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("found in Chart.yaml, but missing in charts/ directory: %s", strings.Join(missing, ", "))
	}
	return nil
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// readDir reads the chart's files as Helm's loader.LoadDir does, with its
// .helmignore, through the guarded filesystem. A symlink in the chart that
// leaves the repository is an error even where .helmignore would skip it:
// Helm follows links, and it is no part of a chart.
func (b *chartBuild) readDir() ([]*loader.BufferedFile, error) {
	g, top := b.g, b.t.abs(b.dir)
	if !g.IsDir(top) {
		if err := g.violation(); err != nil {
			return nil, fmt.Errorf("%s: %w", b.dir, err)
		}
		return nil, fmt.Errorf("%s: %w", b.dir, fs.ErrNotExist)
	}
	var links []string
	for link := range b.t.escapes {
		if _, ok := inDir(b.dir, link); ok {
			links = append(links, link)
		}
	}
	if len(links) > 0 {
		slices.Sort(links)
		g.inside(b.t.abs(links[0]))
		return nil, fmt.Errorf("%s: %w", b.dir, g.violation())
	}
	rules := ignore.Empty()
	if name := path.Join(b.dir, ignore.HelmIgnore); g.Exists(b.t.abs(name)) {
		data, err := g.ReadFile(b.t.abs(name))
		if err != nil {
			return nil, err
		}
		if rules, err = ignore.Parse(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	rules.AddDefaults()

	var files []*loader.BufferedFile
	chartYAML := false
	err := g.Walk(top, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == top {
			return err
		}
		rel, _ := repoRel(p)
		name, _ := inDir(b.dir, rel)
		switch {
		case rules.Ignore(name, fi) && fi.IsDir():
			return filepath.SkipDir
		case rules.Ignore(name, fi) || fi.IsDir():
			return nil
		}
		data, err := g.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(name, "charts/") && isChartArchive(name) {
			if _, err := b.unpack(rel, data, 1); err != nil {
				return err
			}
		}
		chartYAML = chartYAML || name == "Chart.yaml"
		files = append(files, &loader.BufferedFile{Name: name, Data: bytes.TrimPrefix(data, utf8BOM)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !chartYAML {
		return nil, fmt.Errorf("%s is not a chart: Chart.yaml: %w", b.dir, fs.ErrNotExist)
	}
	return files, nil
}

// unpack reads a packaged chart, named name, and holds its files to the
// limits before Helm parses any: those of its own packaged subcharts too,
// depth levels down.
func (b *chartBuild) unpack(name string, data []byte, depth int) ([]*loader.BufferedFile, error) {
	if depth > maxChartDepth {
		return nil, fmt.Errorf("%s: packaged subcharts nest more than %d deep", name, maxChartDepth)
	}
	files, err := loader.LoadArchiveFiles(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, oneLine(err))
	}
	l := b.g.limits
	for _, f := range files {
		file := name + "/" + f.Name
		if err := checkSize(file, int64(len(f.Data)), l); err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(f.Name, "charts/") && isChartArchive(f.Name):
			_, err = b.unpack(file, f.Data, depth+1)
		case !notYAML(f.Name):
			err = (&fileScan{budget: l.MaxYAMLNodes}).check(file, f.Data, l)
		}
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

// values merges the values files, later ones winning, and the inline
// values over them, as helm's -f and --set.
func (b *chartBuild) values() (map[string]any, error) {
	vals := map[string]any{}
	for _, file := range b.opts.ValuesFiles {
		rel, err := cleanPath(file)
		if err != nil {
			return nil, fmt.Errorf("values file %q is outside the repository", file)
		}
		data, err := b.readValuesFile(rel)
		if err != nil {
			return nil, err
		}
		v, err := chartutil.ReadValues(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, oneLine(err))
		}
		vals = mergeMaps(vals, v)
	}
	if len(b.opts.Values) > 0 {
		// As if parsed from YAML: numbers float64, every map
		// map[string]any, which is what Helm's merges look for.
		data, err := json.Marshal(b.opts.Values)
		if err != nil {
			return nil, fmt.Errorf("%s: inline values: %w", b.where, err)
		}
		var inline map[string]any
		if err := json.Unmarshal(data, &inline); err != nil {
			return nil, fmt.Errorf("%s: inline values: %w", b.where, err)
		}
		vals = mergeMaps(vals, inline)
	}
	return vals, nil
}

func (b *chartBuild) readValuesFile(rel string) ([]byte, error) {
	abs := b.t.abs(rel)
	if !b.g.Exists(abs) || b.g.IsDir(abs) {
		if err := b.g.violation(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("values file %s: %w", rel, fs.ErrNotExist)
	}
	return b.g.ReadFile(abs)
}

// mergeMaps merges b into a, b winning, maps key by key: helm's own merge
// of -f files (values.Options.MergeValues), which it does not export.
func mergeMaps(a, b map[string]any) map[string]any {
	out := maps.Clone(a)
	for k, v := range b {
		if vm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(am, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// defaultKubeVersion is the Kubernetes version of the client-go trueup is
// built with (v1.35.4 for client-go v0.35.4), as the helm CLI reports by
// default; the SDK alone says v1.20.0, which charts that need a recent
// Kubernetes refuse. "" when the build records no client-go.
func defaultKubeVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range info.Deps {
		if m.Path == "k8s.io/client-go" {
			if v, ok := strings.CutPrefix(m.Version, "v0."); ok {
				return "v1." + v
			}
		}
	}
	return ""
}

// render renders the chart as helm template does (an install, client
// only: no cluster, no lookup, no DNS), and returns the documents an apply
// applies: the CRDs of crds/, the manifests in Helm's install order, then
// the install and upgrade hooks. Test hooks and those only for delete or
// rollback are left out, as is NOTES.txt.
func (b *chartBuild) render(ch *chart.Chart, vals map[string]any) ([]manifest, error) {
	if err := checkSchemas(ch); err != nil {
		return nil, fmt.Errorf("%s: %w", b.where, err)
	}
	name := cmp.Or(b.opts.ReleaseName, "release-name")
	if err := chartutil.ValidateReleaseName(name); err != nil {
		return nil, fmt.Errorf("%s: release name %q: %w", b.where, name, oneLine(err))
	}
	caps := chartutil.DefaultCapabilities.Copy()
	kubeVersion := defaultKubeVersion()
	if c := b.opts.Capabilities; c != nil {
		kubeVersion = cmp.Or(c.KubeVersion, kubeVersion)
		caps.APIVersions = append(caps.APIVersions, c.APIVersions...)
	}
	if kubeVersion != "" {
		kv, err := chartutil.ParseKubeVersion(kubeVersion)
		if err != nil {
			return nil, fmt.Errorf("%s: kube version %q: %w", b.where, kubeVersion, err)
		}
		caps.KubeVersion = *kv
	}
	if want := ch.Metadata.KubeVersion; want != "" && !chartutil.IsCompatibleRange(want, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("%s: chart requires kubeVersion: %s which is incompatible with Kubernetes %s", b.where, want, caps.KubeVersion.String())
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return nil, b.helmError(err)
	}
	opts := chartutil.ReleaseOptions{Name: name, Namespace: cmp.Or(b.opts.Namespace, "default"), Revision: 1, IsInstall: true}
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals, opts, caps, false)
	if err != nil {
		return nil, b.helmError(err)
	}
	var e engine.Engine // no client: lookup finds nothing; no DNS
	files, err := e.Render(ch, top)
	if err != nil {
		return nil, b.helmError(err)
	}
	for k := range files {
		if strings.HasSuffix(k, "NOTES.txt") {
			delete(files, k)
		}
	}
	hooks, docs, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, b.helmError(err)
	}
	var out []manifest
	for _, crd := range ch.CRDObjects() {
		// A file in crds/ may hold several documents.
		split := releaseutil.SplitManifests(string(crd.File.Data))
		keys := slices.Collect(maps.Keys(split))
		sort.Sort(releaseutil.BySplitManifestsOrder(keys))
		for _, k := range keys {
			out = append(out, manifest{source: crd.Filename, text: split[k]})
		}
	}
	for _, m := range docs {
		out = append(out, manifest{source: m.Name, text: m.Content})
	}
	for _, h := range hooks {
		if slices.ContainsFunc(h.Events, isApplyHook) {
			out = append(out, manifest{source: h.Path, text: h.Manifest})
		}
	}
	return out, nil
}

// checkSchemas refuses a values schema, of the chart or a subchart, that
// refers outside itself: Helm would resolve it with file, http and https
// loaders, reading the daemon's files or reaching any host.
func checkSchemas(ch *chart.Chart) error {
	if ch.Schema != nil {
		var doc any
		// One that does not parse is Helm's to report.
		if json.Unmarshal(ch.Schema, &doc) == nil {
			if ref := externalRef(doc); ref != "" {
				return fmt.Errorf("%s/values.schema.json refers to %q: a schema may only refer within itself", ch.ChartFullPath(), ref)
			}
		}
	}
	for _, dep := range ch.Dependencies() {
		if err := checkSchemas(dep); err != nil {
			return err
		}
	}
	return nil
}

// builtinSchemas are the metaschemas Helm's validator
// (santhosh-tekuri/jsonschema) holds itself, by URL without the scheme.
var builtinSchemas = map[string]bool{
	"json-schema.org/schema":               true,
	"json-schema.org/draft/2020-12/schema": true,
	"json-schema.org/draft/2019-09/schema": true,
	"json-schema.org/draft-07/schema":      true,
	"json-schema.org/draft-06/schema":      true,
	"json-schema.org/draft-04/schema":      true,
}

// externalRef returns a reference in the JSON schema v that the validator
// would load: a $ref that is neither a fragment of the schema itself nor
// a built-in metaschema, or a $schema that is not built in.
func externalRef(v any) string {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			switch s, ok := v[k].(string); {
			case !ok:
				if ref := externalRef(v[k]); ref != "" {
					return ref
				}
			case k == "$ref" || k == "$dynamicRef" || k == "$recursiveRef":
				if !strings.HasPrefix(s, "#") && !builtinSchema(s) {
					return s
				}
			case k == "$schema":
				if !builtinSchema(s) {
					return s
				}
			}
		}
	case []any:
		for _, e := range v {
			if ref := externalRef(e); ref != "" {
				return ref
			}
		}
	}
	return ""
}

func builtinSchema(ref string) bool {
	u, _, _ := strings.Cut(ref, "#")
	u, ok := strings.CutPrefix(u, "http://")
	if !ok {
		u, ok = strings.CutPrefix(u, "https://")
	}
	return ok && builtinSchemas[u]
}

// manifest is a rendered document and the template it came from.
type manifest struct{ source, text string }

func isApplyHook(e release.HookEvent) bool {
	switch e {
	case release.HookPreInstall, release.HookPostInstall, release.HookPreUpgrade, release.HookPostUpgrade:
		return true
	}
	return false
}

// objects parses the rendered documents, each held to the YAML limits
// first, and the whole to the limits on what a render builds.
func (b *chartBuild) objects(docs []manifest) ([]*unstructured.Unstructured, error) {
	l := b.g.limits
	limits := &renderLimits{dir: b.where, limits: l}
	var objs []*unstructured.Unstructured
	for _, m := range docs {
		if err := (&fileScan{budget: l.MaxYAMLNodes}).check(m.source, []byte(m.text), l); err != nil {
			return nil, fmt.Errorf("%s: %w", b.where, err)
		}
		// sigs.k8s.io/yaml reads YAML as helm install and kubectl do.
		data, err := yaml.YAMLToJSON([]byte(m.text))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", b.where, m.source, err)
		}
		if string(data) == "null" {
			continue // comments alone
		}
		if err := limits.object(data); err != nil {
			return nil, err
		}
		// Numbers as the int64/float64 that unstructured objects hold.
		var v any
		if err := utiljson.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", b.where, m.source, err)
		}
		items, err := kubeObjects(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", b.where, m.source, err)
		}
		objs = append(objs, items...)
	}
	if err := limits.objects(len(objs)); err != nil {
		return nil, err
	}
	setNamespace(objs, b.opts.Namespace)
	return objs, nil
}

// kubeObjects returns the object that v, a document, is, or the items of
// a list, which helm install and kubectl apply one by one.
func kubeObjects(v any) ([]*unstructured.Unstructured, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("document is not a Kubernetes object")
	}
	u := &unstructured.Unstructured{Object: m}
	if u.GetKind() == "" || u.GetAPIVersion() == "" {
		return nil, errors.New("document is not a Kubernetes object: it has no kind or apiVersion")
	}
	items, ok := m["items"].([]any)
	if !ok || !strings.HasSuffix(u.GetKind(), "List") {
		return []*unstructured.Unstructured{u}, nil
	}
	var out []*unstructured.Unstructured
	for _, item := range items {
		objs, err := kubeObjects(item)
		if err != nil {
			return nil, fmt.Errorf("%s item: %w", u.GetKind(), err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// setNamespace sets namespace on the namespaced objects that set none,
// deciding scope as a kustomize render does.
func setNamespace(objs []*unstructured.Unstructured, namespace string) {
	if namespace == "" {
		return
	}
	clusterCRDs := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			addClusterScopedCRD(clusterCRDs, o.Object)
		}
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if o.GetNamespace() == "" && namespaced(resid.NewGvk(gvk.Group, gvk.Version, gvk.Kind), clusterCRDs) {
			o.SetNamespace(namespace)
		}
	}
}

// helmError is err, from Helm, as one line naming the chart: Helm's
// messages, of schema validation for one, may span lines. Helm names the
// template a template error is in.
func (b *chartBuild) helmError(err error) error {
	return fmt.Errorf("%s: %w", b.where, oneLine(err))
}

// oneLine is err on one line.
func oneLine(err error) error {
	msg := err.Error()
	if flat := strings.Join(strings.Fields(strings.ReplaceAll(msg, mountPoint+"/", "")), " "); flat != msg {
		return errors.New(flat)
	}
	return err
}
