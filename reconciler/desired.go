// Package reconciler makes a cluster equal to an environment's git state: it
// works out the desired objects for an environment at an exact revision and
// (in later stages) diffs, applies, prunes and reports on them.
package reconciler

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/trueup-dev/trueup/config"
	"github.com/trueup-dev/trueup/render"
	"github.com/trueup-dev/trueup/source"
)

// Desired is what one environment should look like: the objects rendered from
// one exact revision of its source.
type Desired struct {
	Environment string
	// Owner is whose inventory the objects go into; a zero Owner is the
	// environment of the default instance.
	Owner    Owner
	Revision source.Revision
	// Chart is the chart and version a chart environment rendered, as
	// Helm names them (todo-0.3.1); empty for an overlay.
	Chart   string
	Objects []*unstructured.Unstructured
	// Ignore are the environment's ignore rules: fields of the objects
	// that trueup leaves to their other owners.
	Ignore []config.IgnoreRule
	// Decrypt is the time spent decrypting SOPS files, a part of the
	// render; zero when the render was reused or nothing was encrypted.
	Decrypt time.Duration
}

// timedDecrypter adds up the time its Decrypter takes: decryption happens
// file by file as kustomize reads, so it can only be timed at the hook.
type timedDecrypter struct {
	render.Decrypter
	total time.Duration
}

func (t *timedDecrypter) DecryptFile(path string, data []byte) ([]byte, error) {
	start := time.Now()
	defer func() { t.total += time.Since(start) }()
	return t.Decrypter.DecryptFile(path, data)
}

// Renderer turns an environment of the config into its desired objects. It
// holds one Source per configured source, so environments on the same
// repository share one clone.
type Renderer struct {
	cfg       *config.Config
	sources   map[string]source.Source
	decrypter render.Decrypter
	log       *slog.Logger
	// capabilities and charts serve chart environments; see
	// UseCapabilities and UseCharts.
	capabilities CapabilitiesFunc
	charts       *source.Charts

	mu    sync.Mutex
	cache map[string]*rendered // by environment
	// trees are the revisions loaded last, shared by the environments that
	// render them: a repository of many environments is loaded once per
	// revision, not once per environment.
	trees []*loadedTree
}

// loadedTree is one revision loaded for rendering, once.
type loadedTree struct {
	source, revision string
	once             sync.Once
	tree             *render.Tree
	err              error
}

// keptTrees is how many loaded revisions the Renderer keeps.
const keptTrees = 4

// rendered is an environment's last render and what it read. The objects
// are kept as JSON, a fraction of their size as maps: a daemon of many
// environments keeps one render of each.
type rendered struct {
	revision source.Revision
	inputs   *render.Inputs
	objects  [][]byte
	chart    string
	// key is what besides the repository the render was made from (see
	// chartInput); a render is reused only for the same key.
	key string
}

// NewRenderer wires a Renderer. sources maps source names to their Source;
// decrypter may be nil when no environment has encrypted files.
func NewRenderer(cfg *config.Config, sources map[string]source.Source, decrypter render.Decrypter, log *slog.Logger) *Renderer {
	return &Renderer{cfg: cfg, sources: sources, decrypter: decrypter, log: log, cache: map[string]*rendered{}}
}

// Render fetches the environment's source and builds its overlay at the
// branch head: what the commands do.
func (r *Renderer) Render(ctx context.Context, envName string) (*Desired, error) {
	env, src, err := r.lookup(envName)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := src.Fetch(ctx); err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	r.log.Debug("fetched", "env", env.Name, "source", env.Source, "duration", time.Since(start))
	rev, err := src.Revision(ctx, env.Branch)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	return r.RenderAt(ctx, envName, rev)
}

// lookup returns the environment called envName and its source.
func (r *Renderer) lookup(envName string) (*config.Environment, source.Source, error) {
	env, err := r.cfg.Environment(envName)
	if err != nil {
		return nil, nil, err
	}
	src, ok := r.sources[env.Source]
	if !ok {
		return nil, nil, fmt.Errorf("render %s: source %q is not configured", env.Name, env.Source)
	}
	return env, src, nil
}

// RenderAt builds the environment's overlay at rev, a revision its source
// read: what the daemon does, whose source loops read the revisions so
// that a render never waits on the network.
func (r *Renderer) RenderAt(ctx context.Context, envName string, rev source.Revision) (*Desired, error) {
	env, _, err := r.lookup(envName)
	if err != nil {
		return nil, err
	}
	desired, err := r.renderAt(ctx, env, rev)
	if err != nil {
		return nil, err
	}
	desired.Owner, desired.Ignore = OwnerOf(r.cfg, env), env.Ignore
	return desired, nil
}

func (r *Renderer) renderAt(ctx context.Context, env *config.Environment, rev source.Revision) (*Desired, error) {
	log := r.log.With("env", env.Name, "source", env.Source)
	var chart *chartInput
	if env.Helm != nil {
		var err error
		if chart, err = r.chartInput(ctx, env); err != nil {
			return nil, fmt.Errorf("render %s: %w", env.Name, err)
		}
	}
	key := ""
	if chart != nil {
		key = chart.key
	}
	r.mu.Lock()
	last := r.cache[env.Name]
	r.mu.Unlock()
	if last != nil && last.key != key {
		last = nil
	}
	if last != nil && last.revision.ID() == rev.ID() {
		return last.desired(env.Name, last.revision)
	}
	// A new revision whose changes miss every file this environment read
	// renders the same objects: skip kustomize and decryption.
	if last != nil && last.inputs.Unchanged(rev.FS) {
		r.mu.Lock()
		r.cache[env.Name] = &rendered{revision: rev, inputs: last.inputs, objects: last.objects, chart: last.chart, key: key}
		r.mu.Unlock()
		log.Debug("inputs unchanged; render reused", "revision", rev.Short())
		return last.desired(env.Name, rev)
	}
	start := time.Now()
	inputs := &render.Inputs{}
	var dec *timedDecrypter
	opts := render.Options{Path: env.Path, Namespace: env.Namespace, Inputs: inputs, Limits: env.Limits}
	if r.decrypter != nil {
		dec = &timedDecrypter{Decrypter: r.decrypter}
		opts.Decrypter = dec
	}
	tree, err := r.tree(rev)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	var objs []*unstructured.Unstructured
	var chartName string
	if chart != nil {
		objs, chartName, err = buildChart(ctx, tree, env, chart, opts)
	} else {
		objs, err = tree.Build(ctx, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	objs = withCreatedNamespace(env, objs)
	frozen, err := freeze(objs)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	r.mu.Lock()
	r.cache[env.Name] = &rendered{revision: rev, inputs: inputs, objects: frozen, chart: chartName, key: key}
	r.mu.Unlock()
	log.Debug("rendered", "revision", rev.Short(), "objects", len(objs), "chart", chartName, "duration", time.Since(start))
	desired := &Desired{Environment: env.Name, Revision: rev, Chart: chartName, Objects: objs}
	if dec != nil {
		desired.Decrypt = dec.total
	}
	return desired, nil
}

// tree loads a revision, or returns it loaded by an earlier render. A
// failed load is not kept.
func (r *Renderer) tree(rev source.Revision) (*render.Tree, error) {
	r.mu.Lock()
	var lt *loadedTree
	for _, t := range r.trees {
		if t.source == rev.Source && t.revision == rev.ID() {
			lt = t
		}
	}
	if lt == nil {
		lt = &loadedTree{source: rev.Source, revision: rev.ID()}
		r.trees = append(r.trees, lt)
		if len(r.trees) > keptTrees {
			r.trees = r.trees[1:]
		}
	}
	r.mu.Unlock()
	lt.once.Do(func() { lt.tree, lt.err = render.Load(rev.FS) })
	if lt.err != nil {
		r.mu.Lock()
		r.trees = slices.DeleteFunc(r.trees, func(t *loadedTree) bool { return t == lt })
		r.mu.Unlock()
	}
	return lt.tree, lt.err
}

// desired returns the cached render as the objects at rev, fresh copies
// that callers may change.
func (c *rendered) desired(env string, rev source.Revision) (*Desired, error) {
	objs := make([]*unstructured.Unstructured, len(c.objects))
	for i, data := range c.objects {
		objs[i] = &unstructured.Unstructured{}
		if err := objs[i].UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("render %s: cached object: %w", env, err)
		}
	}
	return &Desired{Environment: env, Revision: rev, Chart: c.chart, Objects: objs}, nil
}

func freeze(objs []*unstructured.Unstructured) ([][]byte, error) {
	out := make([][]byte, len(objs))
	for i, o := range objs {
		data, err := o.MarshalJSON()
		if err != nil {
			return nil, err
		}
		out[i] = bytes.Clone(data) // without the encoder's spare capacity
	}
	return out, nil
}
