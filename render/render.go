// Package render builds an environment's kustomize overlay into Kubernetes
// objects, entirely in memory, from an exact revision of its repository.
//
// The overlay sees only the repository: remote bases, exec and Helm plugins are
// off, and a path or symlink that leaves the repository is an error. SOPS files
// are decrypted as kustomize reads them through a Decrypter, so plaintext never
// reaches disk.
package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"

	"github.com/trueup-dev/trueup/config"
)

// Decrypter turns an encrypted repo file into plaintext. It returns data
// unchanged when the file is not encrypted. path is slash-separated and
// relative to the repository root.
type Decrypter interface {
	DecryptFile(path string, data []byte) ([]byte, error)
}

// Options says what to build.
type Options struct {
	// Path is the overlay directory, relative to the repository root.
	Path string
	// Namespace is set on namespaced objects that set none; empty leaves them.
	Namespace string
	// Decrypter, when set, decrypts SOPS files as kustomize reads them.
	Decrypter Decrypter
	// Inputs, when set, records the files the render reads.
	Inputs *Inputs
	// Limits bound the files the render reads and the objects it builds; a
	// zero field is that limit's default.
	Limits config.Limits
}

// Build renders the overlay at opts.Path of repo. repo is read whole into
// memory first; an fs.ReadLinkFS lets symlinks be checked rather than followed.
func Build(ctx context.Context, repo fs.FS, opts Options) ([]*unstructured.Unstructured, error) {
	t, err := Load(repo)
	if err != nil {
		return nil, err
	}
	return t.Build(ctx, opts)
}

// Tree is a revision of a repository loaded for rendering. Loading reads
// every file, so a revision that several environments render is loaded
// once and shared: a Tree serves any number of concurrent Builds.
type Tree struct{ t *tree }

// Load reads repo into memory for rendering.
func Load(repo fs.FS) (*Tree, error) {
	t, err := loadTree(repo)
	if err != nil {
		return nil, err
	}
	return &Tree{t: t}, nil
}

// Build renders the overlay at opts.Path of the tree.
func (tr *Tree) Build(ctx context.Context, opts Options) ([]*unstructured.Unstructured, error) {
	dir, err := cleanPath(opts.Path)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t := tr.t
	gfs := newGuardedFS(t, opts)
	if opts.Inputs != nil && t.links > 0 {
		opts.Inputs.markInexact()
	}
	if !gfs.IsDir(t.abs(dir)) {
		if err := gfs.violation(); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		return nil, fmt.Errorf("%s: %w", dir, fs.ErrNotExist)
	}

	res, ok := plainResources(gfs, t.abs(dir))
	if ok {
		objs, err := objects(res, opts.Namespace, &renderLimits{dir: dir, limits: gfs.limits})
		if err == nil || errors.Is(err, ErrLimit) {
			return objs, err
		}
	}
	// Over a limit is over it for kustomize too, and kustomize must not
	// read what is.
	if v := gfs.violation(); errors.Is(v, ErrLimit) {
		return nil, v
	}
	return tr.krusty(dir, opts)
}

// krusty builds the overlay at dir with kustomize itself. It starts afresh:
// what a plain build saw is not its to report.
func (tr *Tree) krusty(dir string, opts Options) ([]*unstructured.Unstructured, error) {
	gfs := newGuardedFS(tr.t, opts)
	rm, err := runKustomize(gfs, tr.t.abs(dir))
	// A policy violation is the real cause even when kustomize reports
	// something else (or nothing) about the path it could not read.
	if v := gfs.violation(); v != nil {
		return nil, v
	}
	if err != nil {
		// Kustomize names the file it was reading only sometimes, and its
		// messages may span lines; callers want one line naming the file.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), mountPoint+"/", "")), " ")
		return nil, fmt.Errorf("%s: %w", gfs.blame(dir, msg), errors.New(msg))
	}
	return objects(rm.Resources(), opts.Namespace, &renderLimits{dir: dir, limits: gfs.limits})
}

// runKustomize runs kustomize on dir. Kustomize panics on some input it
// considers impossible — its own build annotations
// (internal.config.kubernetes.io/previousNames and the like) written into a
// manifest by hand, for one — and a repository's content must not take the
// daemon down: the panic is the build's error.
func runKustomize(gfs *guardedFS, dir string) (rm resmap.ResMap, err error) {
	defer func() {
		if r := recover(); r != nil {
			rm, err = nil, fmt.Errorf("kustomize failed on this input: %v", r)
		}
	}()
	k := krusty.MakeKustomizer(&krusty.Options{
		Reorder:          krusty.ReorderOptionLegacy,
		LoadRestrictions: types.LoadRestrictionsRootOnly,
		PluginConfig:     types.DisabledPluginConfig(),
	})
	return k.Run(gfs, dir)
}

// cleanPath checks that an overlay path stays inside the repository.
func cleanPath(p string) (string, error) {
	if p == "" {
		p = "."
	}
	c := path.Clean(p)
	if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("overlay path %q is outside the repository", p)
	}
	return c, nil
}

// objects converts kustomize's resources, applying the default namespace,
// and holds them to the limits on what a render builds.
func objects(res []*resource.Resource, namespace string, limits *renderLimits) ([]*unstructured.Unstructured, error) {
	if err := limits.objects(len(res)); err != nil {
		return nil, err
	}
	clusterCRDs := clusterScopedCRDs(res)
	out := make([]*unstructured.Unstructured, 0, len(res))
	for _, r := range res {
		// Through JSON, so numbers become the int64/float64 that the
		// Kubernetes libraries expect of unstructured objects.
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		if err := limits.object(data); err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		if namespace != "" && u.GetNamespace() == "" && namespaced(r.GetGvk(), clusterCRDs) {
			u.SetNamespace(namespace)
		}
		out = append(out, u)
	}
	return out, nil
}

// namespaced decides a kind's scope without a cluster: kustomize's built-in
// schema knows the core kinds, and CRDs in the same render declare their own.
// Unknown kinds are assumed namespaced, as most custom resources are.
func namespaced(gvk resid.Gvk, clusterCRDs map[string]bool) bool {
	if gvk.IsClusterScoped() {
		return false
	}
	return !clusterCRDs[gvk.Group+"/"+gvk.Kind]
}

func clusterScopedCRDs(res []*resource.Resource) map[string]bool {
	out := map[string]bool{}
	for _, r := range res {
		if r.GetKind() != "CustomResourceDefinition" {
			continue
		}
		if m, err := r.Map(); err == nil {
			addClusterScopedCRD(out, m)
		}
	}
	return out
}

// addClusterScopedCRD notes the kind that crd, a CustomResourceDefinition,
// declares when that kind is cluster-scoped.
func addClusterScopedCRD(out map[string]bool, crd map[string]any) {
	group, _, _ := unstructured.NestedString(crd, "spec", "group")
	kind, _, _ := unstructured.NestedString(crd, "spec", "names", "kind")
	if scope, _, _ := unstructured.NestedString(crd, "spec", "scope"); scope == "Cluster" {
		out[group+"/"+kind] = true
	}
}

// YAML writes objects as one multi-document YAML stream.
func YAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("marshal %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(data)
	}
	return b.Bytes(), nil
}
