package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/object"
	"sigs.k8s.io/cli-utils/pkg/object/graph"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/render"
	"github.com/trueup-dev/trueup/source"
)

// Helm's hook annotations, which a chart's hooks carry as rendered.
const (
	HookAnnotation       = "helm.sh/hook"
	HookWeightAnnotation = "helm.sh/hook-weight"
)

// capabilitiesTTL is how long a cluster's version and API versions are
// reused for rendering charts: they change with an upgrade or a new CRD,
// and a chart that tests for one renders with it at the next read.
const capabilitiesTTL = 5 * time.Minute

// CapabilitiesFunc gives a chart environment's render the version and API
// versions of the cluster it applies to.
type CapabilitiesFunc func(ctx context.Context, env *config.Environment) (*render.Capabilities, error)

// UseCapabilities makes chart renders see their clusters' capabilities;
// without it they see Helm's defaults, as helm template does. Call it
// before the first render.
func (r *Renderer) UseCapabilities(f CapabilitiesFunc) { r.capabilities = f }

// UseCharts lets chart environments fetch their charts from chart
// repositories. Call it before the first render.
func (r *Renderer) UseCharts(c *source.Charts) { r.charts = c }

// chartInput is what a chart environment's render needs besides the
// repository: its cluster's capabilities and, for a chart from a
// repository, the chart. key is their digest: a render is reused only
// while it stays the same.
type chartInput struct {
	caps    *render.Capabilities
	archive *source.ChartArchive
	key     string
}

func (r *Renderer) chartInput(ctx context.Context, env *config.Environment) (*chartInput, error) {
	in := &chartInput{}
	h := sha256.New()
	if r.capabilities != nil {
		caps, err := r.capabilities(ctx, env)
		if err != nil {
			return nil, err
		}
		in.caps = caps
		fmt.Fprintf(h, "%s\n%s\n", caps.KubeVersion, strings.Join(caps.APIVersions, ","))
	}
	if env.Helm.IsRemote() {
		if r.charts == nil {
			return nil, fmt.Errorf("chart %s from %s: chart repositories are not set up", env.Helm.Chart, env.Helm.Repository)
		}
		a, err := r.charts.Fetch(ctx, env.Helm)
		if err != nil {
			return nil, err
		}
		in.archive = a
		fmt.Fprintf(h, "%s\n", a.Digest)
	}
	in.key = hex.EncodeToString(h.Sum(nil))
	return in, nil
}

// buildChart renders a chart environment; chart names the chart and its
// version, as Helm writes them (todo-0.3.1).
func buildChart(ctx context.Context, tree *render.Tree, env *config.Environment, in *chartInput, opts render.Options) (objs []*unstructured.Unstructured, chart string, err error) {
	h := env.Helm
	co := render.ChartOptions{
		Path: env.Path, ReleaseName: h.ReleaseName, Namespace: env.Namespace,
		ValuesFiles: h.ValuesFiles, Values: h.Values, Capabilities: in.caps,
		Decrypter: opts.Decrypter, Inputs: opts.Inputs, Limits: opts.Limits,
	}
	if in.archive != nil {
		co.Archive = in.archive.Data
	}
	c, err := tree.BuildChart(ctx, co)
	if err != nil {
		return nil, "", err
	}
	return c.Objects, c.Name + "-" + c.Version, nil
}

// withCreatedNamespace adds the environment's namespace when it asks for it
// to be created and the render does not define it. The namespace is never
// pruned: what others put in it is not the environment's to delete. A
// preview's namespace is its own, and goes with its teardown.
func withCreatedNamespace(env *config.Environment, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	if !env.CreateNamespace {
		return objs
	}
	for _, o := range objs {
		if isNamespace(o) && o.GetName() == env.Namespace {
			return objs
		}
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(env.Namespace)
	if env.Preview() == "" {
		ns.SetAnnotations(map[string]string{PruneAnnotation: PruneDisabled})
	}
	return append([]*unstructured.Unstructured{ns}, objs...)
}

// isNamespace reports a core Namespace.
func isNamespace(o *unstructured.Unstructured) bool {
	return o.GetKind() == "Namespace" && o.GroupVersionKind().Group == ""
}

// hookPhase is when a Helm hook is applied: before the rest (pre-install,
// pre-upgrade), after it (post-install, post-upgrade), or, for an object
// that is no hook, with the rest.
type hookPhase int

const (
	phaseSetup hookPhase = iota // the namespaces and CRDs pre-hooks may need
	phasePre
	phaseMain
	phasePost
)

// phaseOf reads an object's helm.sh/hook annotation. An apply installs and
// upgrades at once, so an install hook and an upgrade hook are the same.
func phaseOf(obj *unstructured.Unstructured) hookPhase {
	hooks := obj.GetAnnotations()[HookAnnotation]
	if hooks == "" {
		return phaseMain
	}
	for h := range strings.SplitSeq(hooks, ",") {
		switch strings.TrimSpace(h) {
		case "pre-install", "pre-upgrade":
			return phasePre
		case "post-install", "post-upgrade":
			return phasePost
		}
	}
	return phaseMain
}

// replaceable reports an object trueup may delete and recreate when the API
// server rejects its change as immutable: one that says so, or a Helm hook,
// which Helm recreates on every release (its default delete policy,
// before-hook-creation) — a migration Job with a new image, say.
func replaceable(obj *unstructured.Unstructured) bool {
	a := obj.GetAnnotations()
	return a[ForceAnnotation] == ForceEnabled || phaseOf(obj) != phaseMain
}

// hookWeight is a hook's helm.sh/hook-weight; 0 when unset or not a number,
// as Helm has it.
func hookWeight(obj *unstructured.Unstructured) int {
	w, _ := strconv.Atoi(strings.TrimSpace(obj.GetAnnotations()[HookWeightAnnotation]))
	return w
}

// sortObjects orders objects into apply stages: by their dependencies
// (cli-utils' depends-on, CRDs before their objects, namespaces before
// what is in them) and, when some are Helm hooks, first the namespaces and
// CRDs, then the pre-install and pre-upgrade hooks by weight, then the rest,
// then the post-install and post-upgrade hooks by weight, as Helm runs them.
// A dependency across those groups is not waited for.
func sortObjects(objs object.UnstructuredSet) ([]object.UnstructuredSet, error) {
	type group struct {
		phase  hookPhase
		weight int
	}
	byGroup := map[group]object.UnstructuredSet{}
	hooks := false
	for _, o := range objs {
		g := group{phase: phaseOf(o)}
		if g.phase != phaseMain {
			hooks = true
			g.weight = hookWeight(o)
		}
		byGroup[g] = append(byGroup[g], o)
	}
	if !hooks {
		return graph.SortObjs(objs)
	}
	// The setup group takes what the hooks may need from the rest.
	mainGroup, setup := group{phase: phaseMain}, group{phase: phaseSetup}
	var main object.UnstructuredSet
	for _, o := range byGroup[mainGroup] {
		if object.IsCRD(o) || isNamespace(o) {
			byGroup[setup] = append(byGroup[setup], o)
		} else {
			main = append(main, o)
		}
	}
	byGroup[mainGroup] = main
	groups := make([]group, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b group) int {
		if a.phase != b.phase {
			return int(a.phase) - int(b.phase)
		}
		return a.weight - b.weight
	})
	var stages []object.UnstructuredSet
	for _, g := range groups {
		if len(byGroup[g]) == 0 {
			continue
		}
		sets, err := graph.SortObjs(byGroup[g])
		if err != nil {
			return nil, err
		}
		stages = append(stages, sets...)
	}
	return stages, nil
}

// Capabilities reads the cluster's version and API versions for rendering
// charts, as Helm's install does, and keeps them for a while. When the API
// server cannot be read, the last ones read serve.
func (c *Cluster) Capabilities(ctx context.Context) (*render.Capabilities, error) {
	c.mu.Lock()
	caps, at := c.caps, c.capsAt
	c.mu.Unlock()
	if caps != nil && time.Since(at) < capabilitiesTTL {
		return caps, nil
	}
	fresh, err := c.readCapabilities(ctx)
	if err != nil {
		if caps != nil {
			return caps, nil
		}
		return nil, c.named(fmt.Errorf("read the cluster's version and API versions for Helm: %w", err))
	}
	c.mu.Lock()
	c.caps, c.capsAt = fresh, time.Now()
	c.mu.Unlock()
	return fresh, nil
}

func (c *Cluster) readCapabilities(ctx context.Context) (*render.Capabilities, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dc := c.clientset.Discovery()
	v, err := dc.ServerVersion()
	if err != nil {
		return nil, err
	}
	// A group that cannot be listed (an aggregated API that is down) leaves
	// its versions out; the rest still serve, as Helm has it.
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil && len(lists) == 0 {
		return nil, err
	}
	caps := &render.Capabilities{KubeVersion: v.GitVersion}
	for _, l := range lists {
		caps.APIVersions = append(caps.APIVersions, l.GroupVersion)
		for _, r := range l.APIResources {
			caps.APIVersions = append(caps.APIVersions, l.GroupVersion+"/"+r.Kind)
		}
	}
	slices.Sort(caps.APIVersions)
	caps.APIVersions = slices.Compact(caps.APIVersions)
	return caps, nil
}
