package render

import (
	"path"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/provider"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/yaml"
)

// plainResources builds, without krusty, a kustomization that only lists
// resources: files, or directories whose kustomization is as plain. That is
// how large generated overlays usually look, and where krusty is slowest:
// it checks each resource it adds against every one it holds, reading each
// one's id from its YAML again each time (kustomize issue #5084), so 1,000
// objects cost a second and 5,000 half a minute. Here the same result takes
// one parse — kustomize's own parser, its id rules (the same id twice is an
// error), its dropping of local-config resources and its legacy order — and
// a map. ok is false for anything else, and for anything wrong: then krusty
// builds the kustomization, and reports the problem in its own words.
// TestPlainMatchesKustomize and FuzzPlainMatchesKustomize hold the two to
// the same output.
func plainResources(fsys filesys.FileSystem, dir string) (res []*resource.Resource, ok bool) {
	b := &plainBuilder{fsys: fsys, rf: provider.NewDefaultDepProvider().GetResourceFactory(),
		visited: map[string]bool{}, ids: map[string]bool{}}
	if !b.kustomization(dir, nil) {
		return nil, false
	}
	var kept []plainResource
	for _, r := range b.res {
		if !isLocalConfig(r.Resource) {
			kept = append(kept, r)
		}
	}
	sort.SliceStable(kept, func(i, j int) bool { return legacyLess(kept[i].id, kept[j].id) })
	res = make([]*resource.Resource, len(kept))
	for i, r := range kept {
		res[i] = r.Resource
	}
	return res, true
}

// plainResource is a resource and its id, read once.
type plainResource struct {
	*resource.Resource
	id resid.ResId
}

type plainBuilder struct {
	fsys    filesys.FileSystem
	rf      *resource.Factory
	visited map[string]bool // kustomization directories, against cycles
	ids     map[string]bool
	res     []plainResource
}

// plainKeys are the only fields of a plain kustomization.
var plainKeys = map[string]bool{"apiVersion": true, "kind": true, "resources": true}

// kustomization adds the resources of the kustomization in dir, reached
// from the kustomizations in chain.
func (b *plainBuilder) kustomization(dir string, chain []string) bool {
	if b.visited[dir] {
		return false // reached twice: krusty says why
	}
	for _, root := range chain {
		if root == dir || strings.HasPrefix(root, dir+"/") {
			return false // a base that holds a kustomization on its way there: a cycle to krusty
		}
	}
	b.visited[dir] = true
	chain = append(chain, dir)
	file, ok := b.kustomizationFile(dir)
	if !ok {
		return false
	}
	data, err := b.fsys.ReadFile(file)
	if err != nil {
		return false
	}
	var k map[string]any
	if err := yaml.Unmarshal(data, &k); err != nil {
		return false
	}
	for key := range k {
		if !plainKeys[key] {
			return false
		}
	}
	if v, ok := k["apiVersion"]; ok && v != types.KustomizationVersion {
		return false
	}
	if v, ok := k["kind"]; ok && v != types.KustomizationKind {
		return false
	}
	// Without resources — not even an empty list — a kustomization is
	// empty, which kustomize refuses.
	entries, ok := k["resources"].([]any)
	if !ok {
		return false
	}
	for _, e := range entries {
		entry, ok := e.(string)
		if !ok || entry == "" || isRemoteRef(entry) || path.IsAbs(entry) {
			return false
		}
		if !b.resource(dir, path.Join(dir, entry), chain) {
			return false
		}
	}
	return true
}

// kustomizationFile finds the one kustomization file in dir.
func (b *plainBuilder) kustomizationFile(dir string) (string, bool) {
	var found []string
	for name := range kustomizationNames {
		if p := path.Join(dir, name); b.fsys.Exists(p) && !b.fsys.IsDir(p) {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return "", false
	}
	return found[0], true
}

// resource adds a directory's kustomization or a file's resources. Files
// must be inside the kustomization's directory, as krusty's root-only
// loading has it; directories may be anywhere in the repository.
func (b *plainBuilder) resource(dir, p string, chain []string) bool {
	if b.fsys.IsDir(p) {
		return b.kustomization(p, chain)
	}
	if !strings.HasPrefix(p, dir+"/") {
		return false
	}
	data, err := b.fsys.ReadFile(p)
	if err != nil {
		return false
	}
	rs, err := b.rf.SliceFromBytes(data)
	if err != nil {
		return false
	}
	for _, r := range rs {
		if hasKustomizeAnnotation(r) {
			return false
		}
		id := r.CurId()
		key := id.Gvk.String() + "|" + id.EffectiveNamespace() + "|" + id.Name
		if b.ids[key] {
			return false // kustomize refuses the same id twice
		}
		b.ids[key] = true
		b.res = append(b.res, plainResource{Resource: r, id: id})
	}
	return true
}

// hasKustomizeAnnotation reports a resource that carries an annotation of
// kustomize's own: its build annotations (internal.config.kubernetes.io/...)
// are its working state, which it reads and strips from what it builds, and
// those of kyaml (config.kubernetes.io/path, index, ...) may be too. krusty
// knows what each means; a plain build does not.
func hasKustomizeAnnotation(r *resource.Resource) bool {
	// Kustomize rewrites the annotations as it goes, which drops an empty
	// or null annotations field; a plain build would keep it.
	if n, err := r.Pipe(kyaml.Lookup(kyaml.MetadataField, kyaml.AnnotationsField)); err != nil || n != nil && len(n.Content()) == 0 {
		return true
	}
	for k := range r.GetAnnotations() {
		if strings.Contains(k, "config.kubernetes.io/") || strings.Contains(k, "config.k8s.io/") {
			if k != konfig.IgnoredByKustomizeAnnotation {
				return true
			}
		}
	}
	return false
}

// isLocalConfig reports a resource kustomize leaves out of its output.
func isLocalConfig(r *resource.Resource) bool {
	v, ok := r.GetAnnotations()[konfig.IgnoredByKustomizeAnnotation]
	return ok && v != "false"
}

// legacyLess is kustomize's legacy order: by kind (Namespaces first, then
// the kinds others need, webhooks last), group and version, then namespace
// and name. Among Namespaces of different groups the order is reversed, as
// kustomize has it.
func legacyLess(a, b resid.ResId) bool {
	if !a.Gvk.Equals(b.Gvk) {
		if a.Gvk.Kind == "Namespace" && b.Gvk.Kind == "Namespace" && (a.Gvk.Group == "" || b.Gvk.Group == "") {
			return b.Gvk.IsLessThan(a.Gvk)
		}
		return a.Gvk.IsLessThan(b.Gvk)
	}
	return sortKey(a) < sortKey(b)
}

func sortKey(id resid.ResId) string {
	ns, name := id.Namespace, id.Name
	if ns == "" {
		ns = "~X"
	}
	if name == "" {
		name = "~N"
	}
	return id.Gvk.String() + "|" + ns + "|" + name
}
